"""The operation model: what the executor carries out against Zendesk, in order.

A `Plan` is an ordered tuple of operations. Each operation is a frozen value holding everything the executor
needs and nothing that needs I/O to know: Zendesk's numeric ids of users and organizations are not known to
the planner, so operations that need them carry a `UserRef` / `OrgRef` saying *what to look up*.

Every operation is safe to repeat (at-least-once delivery): fields are ensured, users and organizations are
upserted by their match key, memberships are ensured or removed idempotently. `SendEvent` is the exception
(Zendesk does not deduplicate events): the executor must not re-send one whose delivery was confirmed.

Bodies are plain dicts ready for JSON; treat them as read-only. They may hold personal data: log
`Plan.summary` (or `Operation.summary()`), never the bodies.

Operations, in the order a plan can hold them:

- `EnsureField`: ``POST /api/v2/{user,organization}_fields`` with `body()` unless the key exists; a 422
  "key taken" means another replica won: refresh `Known`, re-plan the event, continue.
- `UpsertUser`: ``POST /api/v2/users/create_or_update`` with `body()`.
- `RemoveMembership`: resolve the user and the organization; find the membership (all pages); DELETE it.
  No such organization, not a member, or a 404 on delete: success.
- `UpsertOrganization`: ``POST /api/v2/organizations/create_or_update`` with `body()`.
- `EnsureMembership`: resolve the user (unknown → DLQ user_not_found) and the organization;
  ``POST /api/v2/organization_memberships``; "already a member" is success.
- `SendEvent`: resolve the user (unknown → DLQ user_not_found); ``POST /api/v2/user_profiles/events``
  with `body`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from stream.mapping.fields import AUTO_CREATED_MARKER, Dropped, FieldKind
from stream.outcomes import SkipReason

__all__ = [
    "EnsureField",
    "EnsureMembership",
    "Operation",
    "OrgRef",
    "Plan",
    "RemoveMembership",
    "SendEvent",
    "Skip",
    "UpsertOrganization",
    "UpsertUser",
    "UserRef",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRef:
    """How to find a Zendesk user: by `external_id` first, then by `email`. At least one is set."""

    external_id: str | None = None
    email: str | None = field(default=None, repr=False)  # personal data: kept out of repr and logs

    def __post_init__(self) -> None:
        if self.external_id is None and self.email is None:
            raise ValueError("UserRef needs an external_id or an email")


@dataclass(frozen=True, slots=True, kw_only=True)
class OrgRef:
    """How to find a Zendesk organization: by `external_id` first, then by numeric Zendesk `id`."""

    external_id: str | None = None
    id: int | None = None

    def __post_init__(self) -> None:
        if self.external_id is None and self.id is None:
            raise ValueError("OrgRef needs an external_id or an id")


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsureField:
    """Create the custom field `key` with `type` unless Zendesk already has it."""

    kind: FieldKind
    key: str
    type: str
    title: str
    description: str = AUTO_CREATED_MARKER

    @property
    def path(self) -> str:
        return f"/api/v2/{self.kind.value}_fields"

    def body(self) -> dict[str, Any]:
        return {
            f"{self.kind.value}_field": {
                "key": self.key,
                "title": self.title,
                "type": self.type,
                "description": self.description,
            }
        }

    def summary(self) -> str:
        return f"ensure_field {self.kind.value}.{self.key}:{self.type}"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpsertUser:
    """``POST /api/v2/users/create_or_update`` with ``{"user": user}`` (matched by email or external_id)."""

    user: Mapping[str, Any] = field(repr=False)
    ref: UserRef  # the same identity, for operations that follow and need the user's Zendesk id

    path: ClassVar[str] = "/api/v2/users/create_or_update"

    def body(self) -> dict[str, Any]:
        return {"user": dict(self.user)}

    def summary(self) -> str:
        keys = sorted(k for k in self.user if k != "user_fields")
        fields = self.user.get("user_fields")
        count = len(fields) if isinstance(fields, Mapping) else 0
        return f"upsert_user [{','.join(keys)}] user_fields={count}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveMembership:
    """Remove `user` from `organization`. Not a member, or no such organization: success."""

    user: UserRef
    organization: OrgRef

    def summary(self) -> str:
        return "remove_membership"


@dataclass(frozen=True, slots=True, kw_only=True)
class UpsertOrganization:
    """``POST /api/v2/organizations/create_or_update`` with ``{"organization": organization}``."""

    organization: Mapping[str, Any] = field(repr=False)

    path: ClassVar[str] = "/api/v2/organizations/create_or_update"

    @property
    def ref(self) -> OrgRef:
        return OrgRef(external_id=str(self.organization["external_id"]))

    def body(self) -> dict[str, Any]:
        return {"organization": dict(self.organization)}

    def summary(self) -> str:
        keys = sorted(k for k in self.organization if k != "organization_fields")
        fields = self.organization.get("organization_fields")
        count = len(fields) if isinstance(fields, Mapping) else 0
        return f"upsert_organization [{','.join(keys)}] organization_fields={count}"


@dataclass(frozen=True, slots=True, kw_only=True)
class EnsureMembership:
    """Make `user` a member of `organization`. Already a member: success. User unknown: user_not_found."""

    user: UserRef
    organization: OrgRef

    def summary(self) -> str:
        return "ensure_membership"


@dataclass(frozen=True, slots=True, kw_only=True)
class SendEvent:
    """``POST /api/v2/user_profiles/events`` with `body`, once `user` is known to exist in Zendesk."""

    user: UserRef
    body: Mapping[str, Any] = field(repr=False)

    path: ClassVar[str] = "/api/v2/user_profiles/events"

    @property
    def event_type(self) -> str:
        event = self.body["event"]
        assert isinstance(event, Mapping)
        return str(event["type"])

    def summary(self) -> str:
        return f"send_event {self.event_type!r}"


Operation = EnsureField | UpsertUser | RemoveMembership | UpsertOrganization | EnsureMembership | SendEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What to do for one event: `operations` in order, and the traits left out (`dropped`)."""

    event_type: str
    operations: tuple[Operation, ...]
    dropped: tuple[Dropped, ...] = ()

    @property
    def summary(self) -> str:
        """One short line for logs: operation kinds and field keys, never values or bodies."""
        parts = [op.summary() for op in self.operations]
        if self.dropped:
            parts.append(f"dropped={len(self.dropped)}")
        return f"{self.event_type}: " + "; ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class Skip:
    """The event is deliberately not sent: committed and counted with `reason`, never dead-lettered."""

    reason: SkipReason
    detail: str
