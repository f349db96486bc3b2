"""Pure planning: a Segment event, the destination settings and what Zendesk is known to hold → the Zendesk
operations to perform (`Plan`), or why not (`Skip`), or `InvalidEvent`. No I/O anywhere in this package."""

from stream.mapping.fields import Dropped, DropReason, FieldKind, FieldOption, FieldType, Known, KnownField
from stream.mapping.operations import (
    EnsureField,
    EnsureMembership,
    Operation,
    OrgRef,
    Plan,
    RemoveMembership,
    SendEvent,
    Skip,
    UpsertOrganization,
    UpsertUser,
    UserRef,
)
from stream.mapping.plan import plan
from stream.mapping.settings import DestinationSettings

__all__ = [
    "DestinationSettings",
    "DropReason",
    "Dropped",
    "EnsureField",
    "EnsureMembership",
    "FieldKind",
    "FieldOption",
    "FieldType",
    "Known",
    "KnownField",
    "Operation",
    "OrgRef",
    "Plan",
    "RemoveMembership",
    "SendEvent",
    "Skip",
    "UpsertOrganization",
    "UpsertUser",
    "UserRef",
    "plan",
]
