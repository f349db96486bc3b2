"""Group → (fields to create) + organization upsert + membership.

docs/semantics.md "Group → organization upsert + membership":

1. No ``groupId`` → DLQ ``invalid_payload``.
2. No ``userId``: with ``allowGroupWithoutUserId`` the organization is upserted only; without it → skip
   ``missing_user_id``.
3. ``groupId`` → ``external_id`` (the match key). Mapped: name, domainNames → domain_names, tags, url,
   deleted. A string for domain_names or tags becomes a one-element list; other values that do not fit are
   dropped and recorded.
4. Every other trait → ``organization_fields``, with the same snake_case, matching and auto-create rules as
   user fields. ``userId``, ``id``, ``anonymousId`` and ``groupId`` traits never become fields.
5. Without traits the upsert carries ``external_id`` only (Zendesk decides).
6. Then the user is linked: `EnsureMembership` with the user found by ``userId`` (external_id), else by
   ``context.traits.email`` (the user's traits on a group call live in ``context.traits``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from stream.errors import InvalidEvent
from stream.events import SegmentEvent
from stream.mapping.fields import Dropped, DropReason, FieldKind, Known, dropped, plan_fields
from stream.mapping.identify import valid_email
from stream.mapping.keys import title_for_key, to_snake_case
from stream.mapping.operations import (
    EnsureField,
    EnsureMembership,
    Operation,
    OrgRef,
    Plan,
    Skip,
    UpsertOrganization,
    UserRef,
)
from stream.mapping.settings import DestinationSettings
from stream.outcomes import DlqReason, SkipReason

__all__ = ["plan_group"]

_STANDARD: Final = frozenset({"name", "domain_names", "tags", "url", "deleted"})
_IGNORED: Final = frozenset({"user_id", "id", "anonymous_id", "group_id"})
RESERVED_ORGANIZATION_KEYS: Final = _STANDARD | _IGNORED


def _string_list(value: object) -> list[str] | None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return None
    result: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            return None
        text = str(item).strip()
        if text and text not in result:
            result.append(text)
    return result


def _standard(key: str, value: object) -> object | DropReason:
    if key == "name":
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return DropReason.INVALID_VALUE
    if key in ("domain_names", "tags"):
        items = _string_list(value)
        return DropReason.INVALID_VALUE if items is None else items
    if key == "url":
        return value if isinstance(value, str) else DropReason.INVALID_VALUE
    # deleted
    return value if isinstance(value, bool) else DropReason.INVALID_VALUE


def plan_group(event: SegmentEvent, settings: DestinationSettings, known: Known) -> Plan | Skip:
    if event.group_id is None:
        raise InvalidEvent(DlqReason.INVALID_PAYLOAD, "group event has no groupId")
    if event.user_id is None and not settings.allow_group_without_user_id:
        return Skip(
            reason=SkipReason.MISSING_USER_ID,
            detail="group event has no userId (allowGroupWithoutUserId is off)",
        )

    traits: Mapping[str, Any] = event.traits
    lost: list[Dropped] = []
    organization: dict[str, Any] = {"external_id": event.group_id}
    for original, value in traits.items():
        key = to_snake_case(original)
        if key not in _STANDARD or key in organization or value is None:
            continue
        mapped = _standard(key, value)
        if isinstance(mapped, DropReason):
            lost.append(dropped(original, mapped))
        else:
            organization[key] = mapped

    fields = plan_fields(
        traits,
        kind=FieldKind.ORGANIZATION,
        known=known,
        reserved=RESERVED_ORGANIZATION_KEYS,
        deny=settings.field_deny_list,
        auto_create=settings.auto_create_fields,
        cap=settings.max_auto_created_fields,
    )
    lost.extend(fields.dropped)
    if fields.values:
        organization["organization_fields"] = dict(fields.values)

    operations: list[Operation] = [
        EnsureField(kind=FieldKind.ORGANIZATION, key=key, type=field_type, title=title_for_key(key))
        for key, field_type in fields.create
    ]
    operations.append(UpsertOrganization(organization=organization))
    if event.user_id is not None:
        user = UserRef(external_id=event.user_id, email=valid_email(event.context_traits.get("email")))
        operations.append(EnsureMembership(user=user, organization=OrgRef(external_id=event.group_id)))
    return Plan(event_type="group", operations=tuple(operations), dropped=tuple(lost))
