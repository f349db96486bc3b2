"""Delivery of one event: plan it, then carry the plan out against Zendesk, in order.

    decode → validate → plan (pure) → execute each operation through the Zendesk client

Resuming: the plan and the index of the next operation live in `progress`, which the engine keeps
across in-place retries of the same record. A retry resumes at the operation that failed, so a
membership already deleted is not deleted again and an event already accepted is not sent again.

Each operation ends in success or in an outcome for the engine (`Transient`, `DeadLetter`). Rate limits
are not outcomes: the operation waits for Retry-After and tries again (only this key waits), unless the
wait would pass `max_rate_limit_wait_s`: then it is `Transient` at once, with the server's Retry-After.

Re-planning: when a field this plan creates turns out to exist already (422 "key taken": another replica
won the race), the field list is refreshed and the event planned again, since values are coerced to the
type of the field that exists. Only `EnsureField`s, which come first and are idempotent, have run by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import structlog

from stream.engine.records import InboundRecord
from stream.errors import InvalidEvent
from stream.events import validate
from stream.mapping.fields import FieldKind, Known, KnownField
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
from stream.mapping.plan import plan as plan_event
from stream.mapping.settings import DestinationSettings
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, Skipped, Transient
from stream.zendesk import ZendeskClient
from stream.zendesk.classify import (
    Ok,
    RateLimited,
    Rejected,
    Result,
    dlq_reason,
    is_already_member,
    is_duplicate_field_key,
    is_invalid_time_zone,
    is_record_not_found,
)
from stream.zendesk.classify import Transient as ZendeskTransient

log = structlog.get_logger("stream.delivery")

# An operation's failure, for the engine; None means the operation succeeded.
StepOutcome = DeadLetter | Transient | None


class _Replan:
    """Another replica created a field this plan meant to create: plan again (its type may differ)."""


_REPLAN: Final = _Replan()
_MAX_PLANS: Final = 3


@dataclass
class Counters:
    """What delivery did besides its outcome: for the summary and the metrics."""

    calls: int = 0
    rate_limited_waits: int = 0
    fields_created: int = 0
    time_zone_dropped: int = 0
    traits_dropped: dict[str, int] = field(default_factory=dict)


class Destination:
    """The engine's `Processor`: Segment events in, Zendesk writes out."""

    def __init__(
        self,
        *,
        client: ZendeskClient,
        settings: DestinationSettings,
        max_rate_limit_wait_s: float = 300.0,
    ) -> None:
        self._client = client
        self._settings = settings
        self._max_rate_limit_wait_s = max_rate_limit_wait_s
        self._known: Known | None = None
        self._known_lock = asyncio.Lock()
        self._creating: dict[tuple[FieldKind, str], asyncio.Future[StepOutcome | _Replan]] = {}
        self.counters = Counters()

    async def process(
        self, record: InboundRecord, payload: dict[str, Any], progress: dict[str, Any]
    ) -> Outcome:
        """Plan (once per record) and execute from where the last attempt stopped."""
        try:
            for _ in range(_MAX_PLANS):
                if "plan" not in progress:
                    planned = await self.plan(payload)
                    if isinstance(planned, Skip):
                        return Skipped(reason=planned.reason, detail=planned.detail)
                    progress["plan"] = planned
                    progress["next"] = 0
                    for dropped in planned.dropped:
                        reason = dropped.reason.value
                        self.counters.traits_dropped[reason] = self.counters.traits_dropped.get(reason, 0) + 1
                plan: Plan = progress["plan"]
                failure = await self._execute_from(plan, progress)
                if isinstance(failure, _Replan):
                    del progress["plan"]  # only idempotent EnsureFields ran: planning again is safe
                    continue
                if failure is not None:
                    return failure
                return Delivered(operations=len(plan.operations), summary=plan.summary)
        except InvalidEvent as err:  # from planning, or a body JSON cannot carry
            return DeadLetter(reason=err.reason, message=err.message)
        except FieldsUnavailable as err:
            return err.outcome
        return Transient(message="custom fields kept changing while this event was planned")

    async def _execute_from(self, plan: Plan, progress: dict[str, Any]) -> StepOutcome | _Replan:
        while progress["next"] < len(plan.operations):
            failure = await self._execute(plan.operations[progress["next"]])
            if failure is not None:
                return failure
            progress["next"] += 1
        return None

    async def plan(self, payload: Mapping[str, Any]) -> Plan | Skip:
        """The pure plan for an event, with what Zendesk is known to hold. Raises InvalidEvent."""
        event = validate(payload)
        known = await self.known() if event.type in {"identify", "group"} else Known()
        return plan_event(event, self._settings, known)

    async def known(self, *, refresh: bool = False) -> Known:
        """Custom field definitions (all pages), listed once and refreshed when a race is detected."""
        async with self._known_lock:
            if self._known is None or refresh:
                users = await self._call(self._client.list_user_fields)
                orgs = await self._call(self._client.list_organization_fields)
                if not isinstance(users, Ok):
                    raise FieldsUnavailable(self._failure(users))
                if not isinstance(orgs, Ok):
                    raise FieldsUnavailable(self._failure(orgs))
                self._known = Known.from_zendesk(
                    user_fields=users.json.get("user_fields", []),
                    organization_fields=orgs.json.get("organization_fields", []),
                )
            return self._known

    # --------------------------------------------------------------------------------- operations

    async def _execute(self, op: Operation) -> StepOutcome | _Replan:
        match op:
            case EnsureField():
                return await self._ensure_field(op)
            case UpsertUser():
                return await self._upsert_user(op)
            case RemoveMembership():
                return await self._remove_membership(op)
            case UpsertOrganization():
                result = await self._call(lambda: self._client.create_or_update_organization(op.organization))
                return None if isinstance(result, Ok) else self._failure(result)
            case EnsureMembership():
                return await self._ensure_membership(op)
            case SendEvent():
                return await self._send_event(op)

    async def _ensure_field(self, op: EnsureField) -> StepOutcome | _Replan:
        """Create a missing field once: concurrent events that need the same field share one request."""
        if op.key in (await self.known()).fields(op.kind):
            return None
        slot = (op.kind, op.key)
        creating = self._creating.get(slot)
        if creating is None:
            creating = self._creating[slot] = asyncio.ensure_future(self._create_field(op))
            creating.add_done_callback(lambda _: self._creating.pop(slot, None))
        return await asyncio.shield(creating)

    async def _create_field(self, op: EnsureField) -> StepOutcome | _Replan:
        create = (
            self._client.create_user_field
            if op.kind is FieldKind.USER
            else self._client.create_organization_field
        )
        result = await self._call(lambda: create(op.key, op.type, op.title, op.description))
        if isinstance(result, Ok):
            self.counters.fields_created += 1
            created = result.json.get(f"{op.kind.value}_field")
            if isinstance(created, Mapping) and self._known is not None:
                self._known = self._known.with_field(op.kind, KnownField.from_zendesk(created))
                return None
            await self.known(refresh=True)
            return None
        if isinstance(result, Rejected) and is_duplicate_field_key(result):
            await self.known(refresh=True)  # another replica created it first: fine, with its type
            return _REPLAN
        return self._failure(result)

    async def _upsert_user(self, op: UpsertUser) -> StepOutcome:
        result = await self._call(lambda: self._client.create_or_update_user(op.user))
        if isinstance(result, Rejected) and is_invalid_time_zone(result) and "time_zone" in op.user:
            # Prefer the rest of the user over losing the event (SEMANTICS.md).
            self.counters.time_zone_dropped += 1
            log.info("time zone refused, resending without it", status=result.status)
            without = {k: v for k, v in op.user.items() if k != "time_zone"}
            result = await self._call(lambda: self._client.create_or_update_user(without))
        return None if isinstance(result, Ok) else self._failure(result)

    async def _remove_membership(self, op: RemoveMembership) -> StepOutcome:
        user_id = await self._user_id(op.user)
        if not isinstance(user_id, int):
            return user_id if user_id is not None else None  # no such user: nothing to remove
        org_id = await self._organization_id(op.organization)
        if not isinstance(org_id, int):
            if org_id is None:
                log.info("organization to leave not found: nothing to remove")
            return org_id
        listed = await self._call(lambda: self._client.list_user_memberships(user_id))
        if not isinstance(listed, Ok):
            return self._failure(listed)
        memberships = listed.json.get("organization_memberships", [])
        matching = [m for m in memberships if isinstance(m, Mapping) and m.get("organization_id") == org_id]
        for membership in matching:
            membership_id = membership.get("id")
            if not isinstance(membership_id, int):
                continue
            deleted = await self._call(partial(self._client.delete_membership, user_id, membership_id))
            if isinstance(deleted, Rejected) and is_record_not_found(deleted):
                continue  # already gone
            if not isinstance(deleted, Ok):
                return self._failure(deleted)
        return None

    async def _ensure_membership(self, op: EnsureMembership) -> StepOutcome:
        user_id = await self._user_id(op.user)
        if user_id is None:
            return DeadLetter(
                reason=DlqReason.USER_NOT_FOUND,
                message="the group's user is not in Zendesk; replay once the user exists",
            )
        if not isinstance(user_id, int):
            return user_id
        org_id = await self._organization_id(op.organization)
        if org_id is None:
            return DeadLetter(
                reason=DlqReason.ZENDESK_REJECTED,
                message="the organization was upserted but Zendesk cannot find it by external_id",
            )
        if not isinstance(org_id, int):
            return org_id
        result = await self._call(lambda: self._client.create_membership(user_id, org_id))
        if isinstance(result, Ok) or (isinstance(result, Rejected) and is_already_member(result)):
            return None
        return self._failure(result)

    async def _send_event(self, op: SendEvent) -> StepOutcome:
        user_id = await self._user_id(op.user)
        if user_id is None:
            return DeadLetter(
                reason=DlqReason.USER_NOT_FOUND,
                message="no Zendesk user has this userId as external_id (nor the event's email); "
                "replay once the user exists",
            )
        if not isinstance(user_id, int):
            return user_id
        result = await self._call(lambda: self._client.send_event(op.body))
        return None if isinstance(result, Ok) else self._failure(result)

    # ----------------------------------------------------------------------------------- lookups

    async def _user_id(self, ref: UserRef) -> int | DeadLetter | Transient | None:
        """The Zendesk id of a user: by external_id first, then by email. None when nobody matches."""
        cache = self._client.cache
        if ref.external_id is not None:
            cached = cache.user_id_by_external_id(ref.external_id)
            if cached is not None:
                return cached
            found = await self._single(
                lambda: self._client.find_users_by_external_id(ref.external_id or ""), "users"
            )
            if found is not None:
                return found
        if ref.email is not None:
            cached = cache.user_id_by_email(ref.email)
            if cached is not None:
                return cached
            return await self._single(lambda: self._client.search_users_by_email(ref.email or ""), "users")
        return None

    async def _organization_id(self, ref: OrgRef) -> int | DeadLetter | Transient | None:
        if ref.external_id is not None:
            cached = self._client.cache.organization_id_by_external_id(ref.external_id)
            if cached is not None:
                return cached
            found = await self._single(
                lambda: self._client.search_organizations_by_external_id(ref.external_id or ""),
                "organizations",
            )
            if found is not None:
                return found
        if ref.id is not None:
            org_id = ref.id
            result = await self._call(lambda: self._client.show_organization(org_id))
            if isinstance(result, Ok):
                return org_id
            if isinstance(result, Rejected) and is_record_not_found(result):
                return None
            return self._failure(result)
        return None

    async def _single(
        self, lookup: Callable[[], Awaitable[Result]], envelope: str
    ) -> int | DeadLetter | Transient | None:
        """The id of the only record a lookup found; None when none; identity_conflict when several."""
        result = await self._call(lookup)
        if not isinstance(result, Ok):
            return self._failure(result)
        found = [r for r in result.json.get(envelope, []) if isinstance(r, Mapping) and r.get("active", True)]
        if not found:
            return None
        if len(found) > 1:
            return DeadLetter(
                reason=DlqReason.IDENTITY_CONFLICT,
                message=f"{len(found)} Zendesk {envelope} match this identity; nothing was written",
            )
        record_id = found[0].get("id")
        return record_id if isinstance(record_id, int) else None

    # ----------------------------------------------------------------------------------- plumbing

    async def _call(self, request: Callable[[], Awaitable[Result]]) -> Result:
        """One request; a rate limit is waited out (not a failure, not an attempt), up to a bound."""
        waited = 0.0
        while True:
            self.counters.calls += 1
            result = await request()
            if (
                not isinstance(result, RateLimited)
                or waited + result.retry_after_s > self._max_rate_limit_wait_s
            ):
                return result  # a rate limit that outlasts the bound becomes a transient failure
            self.counters.rate_limited_waits += 1
            log.info("rate limited, waiting", retry_after_s=result.retry_after_s, bucket=result.bucket)
            await asyncio.sleep(result.retry_after_s)
            waited += result.retry_after_s

    @staticmethod
    def _failure(result: Result) -> DeadLetter | Transient:
        match result:
            case Rejected():
                detail = result.message or result.error_code or "rejected"
                return DeadLetter(
                    reason=dlq_reason(result),
                    message=f"Zendesk answered {result.status}: {detail}; body: {result.body_excerpt}",
                    http_status=result.status,
                )
            case ZendeskTransient():
                return Transient(
                    message=f"Zendesk {result.reason.value}"
                    + (f" ({result.status})" if result.status else "")
                    + (f": {result.detail}" if result.detail else ""),
                    http_status=result.status,
                    retry_after_s=result.retry_after_s,
                )
            case RateLimited():
                return Transient(
                    message="still rate limited after waiting the longest allowed time",
                    http_status=429,
                    retry_after_s=result.retry_after_s,
                )
            case Ok():
                raise AssertionError("not a failure")


class FieldsUnavailable(Exception):
    """Zendesk did not list the custom fields (transient or rejected); `outcome` says what to do."""

    def __init__(self, outcome: DeadLetter | Transient) -> None:
        super().__init__(str(outcome))
        self.outcome = outcome
