"""Delivery of one event: plan it, then carry the plan out against Zendesk, in order.

    decode → validate → plan (pure) → execute each operation through the Zendesk client

Decoding follows the input format (`stream.decoding`). An Avro record whose writer schema is not at hand
has it loaded from the registry in `process` (and `was_delivered`), off the synchronous paths: `lane_key`
of an Avro record is its Kafka key only, `joins` does not carry a record whose schema is not loaded yet,
and a track whose schema was not loaded when the engine asked for its `delivery_id` is tried again once
the schema is in, so the delivery check sees it (`Transient`, one short in-place retry per such record).
A registry that cannot be asked is `Transient` too; a schema id it does not know is `invalid_payload`.

Resuming: the plan and the index of the next operation live in a `Progress`, which the engine hands
back to the next in-place attempt of the same record. A retry resumes at the operation that failed, so a
membership already deleted is not deleted again and an event already accepted is not sent again.

Each operation ends in success or in an outcome for the engine (`Transient`, `DeadLetter`). Rate limits
are not outcomes: the operation tries again, and the governor holds it until its bucket has a token
(only requests that count against that bucket wait), unless the wait would pass
`max_rate_limit_wait_s`: then it is `Transient` at once, with the server's Retry-After.

Re-planning: when a field this plan creates turns out to exist already (422 "key taken": another replica
won the race), the field list is refreshed and the event planned again, since values are coerced to the
type of the field that exists. Only `EnsureField`s, which come first and are idempotent, have run by then.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

import structlog

from stream.decoding import Decoder, SchemaNotLoaded
from stream.engine.ports import RecordLabel
from stream.engine.records import InboundRecord
from stream.errors import FieldsUnavailable, InvalidEvent, SchemaUnavailable
from stream.events import SegmentEvent, decode_json, delivery_id, event_key, iso_timestamp, validate
from stream.mapping.coalesce import can_join, merge
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
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, Skipped, SkipReason, Transient
from stream.zendesk.api import ZendeskApi
from stream.zendesk.bulk import Bulk
from stream.zendesk.cache import LruCache, WriteMemory, body_digest
from stream.zendesk.classify import (
    Ok,
    RateLimited,
    Rejected,
    Result,
    Unavailable,
    dlq_reason,
    is_already_member,
    is_duplicate_field_key,
    is_invalid_time_zone,
    is_record_not_found,
)

log = structlog.get_logger("stream.delivery")

# An operation's failure, for the engine; None means the operation succeeded.
StepOutcome = DeadLetter | Transient | None


@dataclass(slots=True)
class Progress:
    """Where the attempts at one record stand: its plan, the index of the next operation to run, and
    whether any operation so far wrote to Zendesk (none did: the event is skipped as `unchanged`)."""

    plan: Plan
    next: int = 0
    wrote: bool = False


@dataclass(frozen=True, slots=True)
class Found:
    """A lookup found exactly one Zendesk record: its id."""

    id: int


@dataclass(frozen=True, slots=True)
class Missing:
    """A lookup found no Zendesk record."""


Resolved = Found | Missing | DeadLetter | Transient  # a lookup's result, or the event's outcome


class _Replan:
    """Another replica created a field this plan meant to create: plan again (its type may differ)."""


class _Unchanged:
    """The operation had nothing to write: the field exists, or the write is what we last wrote."""


_REPLAN: Final = _Replan()
_UNCHANGED: Final = _Unchanged()
_MAX_PLANS: Final = 3
_MAX_EVENT_PAGES: Final = 20  # of 100 events: the user's events of one type at one instant, or since


_TYPE_LABELS: Final = frozenset({"identify", "track", "group"})
_MAX_MESSAGE_ID_CHARS: Final = 200


def _raw_label(value: bytes | None) -> RecordLabel:
    """The label of a record that is not a valid event: its type is `unknown`, its messageId (for the
    logs) whatever the JSON carries, if it is JSON."""
    try:
        raw = decode_json(value or b"")
    except InvalidEvent:
        return RecordLabel("unknown")
    message_id = raw.get("messageId")
    return RecordLabel("unknown", message_id[:_MAX_MESSAGE_ID_CHARS] if isinstance(message_id, str) else None)


def _same_event(found: Any, sent: Mapping[str, Any]) -> bool:
    if not isinstance(found, Mapping):
        return False
    same = (found.get(k) == sent.get(k) for k in ("source", "type", "properties"))
    if not all(same):
        return False
    created = sent.get("created_at")
    return created is None or _instant(found.get("created_at")) == _instant(created)


def _instant(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass(frozen=True, kw_only=True)
class DeliveryOptions:
    """How economically events are delivered (README lists the settings)."""

    bulk: str = "auto"  # auto: jobs and batched lookups when the single path has no budget; always; off
    bulk_linger_s: float = 0.25  # the longest a batch waits to fill
    coalesce: bool = True  # consecutive identifies of one user, waiting in its lane, sent as one
    unchanged_ttl_s: float = 3600.0  # how long a write is remembered, to skip one that changes nothing


@dataclass
class Counters:
    """What delivery did besides its outcome: for the summary and the metrics."""

    calls: int = 0
    rate_limited_waits: int = 0
    unchanged: int = 0  # events whose every write was what this service last wrote
    fields_created: int = 0
    time_zone_dropped: int = 0
    traits_dropped: dict[str, int] = field(default_factory=dict)


class Destination:
    """The engine's `Processor`: Segment events in, Zendesk writes out."""

    def __init__(
        self,
        *,
        client: ZendeskApi,
        settings: DestinationSettings,
        max_rate_limit_wait_s: float = 300.0,
        bulk: Bulk | None = None,
        coalesce: bool = True,
        unchanged_ttl_s: float = 3600.0,
        decoder: Decoder | None = None,
    ) -> None:
        """`bulk`: the bulk paths (jobs of upserts and memberships, batched lookups); without it every
        write and lookup is a request of its own. `decoder`: the input format (default JSON)."""
        self._client = client
        self._decoder = decoder or Decoder()
        # Tracks whose delivery id could not be told (their schema was not loaded yet), by position.
        self._unidentified: LruCache[tuple[str, int, int], bool] = LruCache(10_000)
        self._bulk = bulk
        self._coalesce = coalesce
        self._memory = WriteMemory(ttl_s=unchanged_ttl_s, clock=time.monotonic)
        self._events: LruCache[tuple[str, int, int], tuple[bytes | None, SegmentEvent]] = LruCache(2_000)
        self._settings = settings
        self._max_rate_limit_wait_s = max_rate_limit_wait_s
        self._known: Known | None = None
        self._known_lock = asyncio.Lock()
        self._creating: dict[tuple[FieldKind, str], asyncio.Future[StepOutcome | _Replan]] = {}
        self._writing: dict[tuple[str, str], asyncio.Future[StepOutcome]] = {}
        self.counters = Counters()

    def cache_sizes(self) -> dict[str, int]:
        """Entries held per cache, for the metrics (each is bounded; see docs/operations.md)."""
        return {
            **self._client.cache.sizes(),
            "unchanged_writes": len(self._memory),
            "decoded_events": len(self._events),
            "unidentified_tracks": len(self._unidentified),
        }

    def lane_key(self, record: InboundRecord) -> str | None:
        """The ordering key: the Kafka key, else userId, else anonymousId (order rule 1). An Avro record
        has its Kafka key only: its schema may not be loaded yet, and a key must not change with that."""
        if record.key:
            return record.key.decode("utf-8", "replace")
        if self._decoder.is_avro(record.value):
            return None
        try:
            return event_key(None, self._decoder.decode(record.value))
        except InvalidEvent:
            return None

    def joins(self, work: Sequence[InboundRecord], follower: InboundRecord) -> bool:
        """Whether `follower`, next in the lane, is carried with `work` as one upsert (coalescing)."""
        if not self._coalesce:
            return False
        try:
            return can_join([self._event(record) for record in work], self._event(follower))
        except (InvalidEvent, SchemaNotLoaded):
            return False

    def delivery_id(self, record: InboundRecord) -> bytes | None:
        """Tracks become Sunshine events, which Zendesk would store twice: they are remembered once
        delivered. Identifies and groups are upserts, safe to repeat."""
        try:
            event = self._event(record)
        except InvalidEvent:
            return None
        except SchemaNotLoaded:
            self._unidentified.put(_where(record), True)
            return None
        return delivery_id(event) if event.type == "track" else None

    async def was_delivered(self, record: InboundRecord, *, since_s: float) -> bool | DeadLetter | Transient:
        """Whether Zendesk already holds the record's Sunshine event: asked when an attempt may have
        been cut off between Zendesk's answer and our marker (`stream.engine.delivered`). The user's
        events of that source and type are searched for one with the same properties (and the same
        `created_at`, when the event carried a timestamp; else one created since `since_s`)."""
        failed = await self._load_schemas([record])
        if failed is not None:
            return failed
        try:
            planned = plan_event(self._event(record), self._settings, Known())
        except InvalidEvent:
            return False
        sends = (
            [op for op in planned.operations if isinstance(op, SendEvent)]
            if isinstance(planned, Plan)
            else []
        )
        if not sends:
            return False
        user = await self._user(sends[0].user)
        if not isinstance(user, Found):
            return False if isinstance(user, Missing) else user
        sent = sends[0].body["event"]
        created = sent.get("created_at")
        start, end = (
            (created, created) if created else (iso_timestamp(datetime.fromtimestamp(since_s, UTC)), None)
        )
        params = {"filter[source]": sent["source"], "filter[type]": sent["type"], "page[size]": "100"}
        params["filter[start_time]"] = start
        if end is not None:
            params["filter[end_time]"] = end
        user_id = user.id
        for _ in range(_MAX_EVENT_PAGES):
            page = dict(params)
            result = await self._call(partial(self._client.list_user_events, user_id, page))
            if not isinstance(result, Ok):
                return self._failure(result)
            if any(_same_event(found, sent) for found in result.json.get("events", [])):
                return True
            meta = result.json.get("meta") or {}
            if not meta.get("has_more") or not meta.get("after_cursor"):
                return False
            params["page[after]"] = str(meta["after_cursor"])
        log.warning("gave up looking for an interrupted event in Zendesk; sending it", pages=_MAX_EVENT_PAGES)
        return False

    def label(self, record: InboundRecord) -> RecordLabel:
        """The event's type among identify, track, group, `other` (a type we skip: page, screen, …) and
        `unknown` (not a valid event), and its messageId: for logs and metrics (a bounded label)."""
        try:
            event = self._event(record)
        except (InvalidEvent, SchemaNotLoaded, SchemaUnavailable):
            return _raw_label(record.value)
        kind = event.type if event.type in _TYPE_LABELS else "other"
        return RecordLabel(kind, event.message_id)

    def _event(self, record: InboundRecord) -> SegmentEvent:
        """The record's validated event; the last few are remembered, for coalescing looks ahead (the
        same record, not just the same position: a value read again is decoded again)."""
        where = _where(record)
        cached = self._events.get(where)
        if cached is not None and cached[0] is record.value:
            return cached[1]
        event = validate(self._decoder.decode(record.value))
        self._events.put(where, (record.value, event))
        return event

    async def process(
        self, records: Sequence[InboundRecord], resume: Progress | None
    ) -> tuple[Outcome, Progress | None]:
        """Plan (once per piece of work) and execute from where the last attempt stopped. Several records
        are consecutive identifies of one user (`joins`): merged, planned and sent once."""
        failed = await self._load_schemas(records)
        if failed is not None:
            return failed, resume
        try:
            events = [self._event(record) for record in records]
        except InvalidEvent as err:
            return DeadLetter(reason=err.reason, message=err.message), None
        if len(records) == 1 and self._unidentified.pop(_where(records[0])) and events[0].type == "track":
            return Transient(
                message="its Avro schema was loaded after the engine asked for its delivery id: tried "
                "again, so that the check against tracks already delivered sees it",
                retry_after_s=0.0,
            ), None
        return await self.deliver(merge(events), resume)

    async def _load_schemas(self, records: Sequence[InboundRecord]) -> DeadLetter | Transient | None:
        """Load the Avro writer schemas the records need and are not at hand (`stream.schemas`)."""
        for record in records:
            schema_id = self._decoder.missing(record.value)
            if schema_id is None:
                continue
            try:
                await self._decoder.load(schema_id)
            except InvalidEvent as err:
                return DeadLetter(reason=err.reason, message=err.message)
            except SchemaUnavailable as err:
                return Transient(message=str(err))
        return None

    async def deliver(
        self, payload: Mapping[str, Any] | SegmentEvent, progress: Progress | None = None
    ) -> tuple[Outcome, Progress | None]:
        """One decoded event, resuming at `progress`; returns its outcome and where it stands."""
        try:
            for _ in range(_MAX_PLANS):
                if progress is None:
                    planned = await self.plan(payload)
                    if isinstance(planned, Skip):
                        return Skipped(reason=planned.reason, detail=planned.detail), None
                    progress = Progress(plan=planned)
                    for dropped in planned.dropped:
                        reason = dropped.reason.value
                        self.counters.traits_dropped[reason] = self.counters.traits_dropped.get(reason, 0) + 1
                failure = await self._execute_from(progress)
                if isinstance(failure, _Replan):
                    progress = None  # only idempotent EnsureFields ran: planning again is safe
                    continue
                if failure is not None:
                    return failure, progress
                plan = progress.plan
                if not progress.wrote and not any(isinstance(op, SendEvent) for op in plan.operations):
                    self.counters.unchanged += 1
                    return Skipped(SkipReason.UNCHANGED, "this service last wrote exactly this"), progress
                return Delivered(operations=len(plan.operations), summary=plan.summary), progress
        except InvalidEvent as err:  # from planning, or a body JSON cannot carry
            return DeadLetter(reason=err.reason, message=err.message), progress
        except FieldsUnavailable as err:
            return err.outcome, progress
        return Transient(message="custom fields kept changing while this event was planned"), progress

    async def _execute_from(self, progress: Progress) -> StepOutcome | _Replan:
        operations = progress.plan.operations
        while progress.next < len(operations):
            done = await self._execute(operations[progress.next])
            if isinstance(done, _Unchanged):
                progress.next += 1
                continue
            if done is not None:
                return done
            progress.wrote = True
            progress.next += 1
        return None

    async def plan(self, payload: Mapping[str, Any] | SegmentEvent) -> Plan | Skip:
        """The pure plan for an event, with what Zendesk is known to hold. Raises InvalidEvent."""
        event = payload if isinstance(payload, SegmentEvent) else validate(payload)
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

    async def _execute(self, op: Operation) -> StepOutcome | _Replan | _Unchanged:
        match op:
            case EnsureField():
                return await self._ensure_field(op)
            case UpsertUser():
                return await self._upsert_user(op)
            case RemoveMembership():
                return await self._remove_membership(op)
            case UpsertOrganization():
                return await self._upsert_organization(op)
            case EnsureMembership():
                return await self._ensure_membership(op)
            case SendEvent():
                return await self._send_event(op)

    async def _remembered(
        self,
        key: str,
        body: Mapping[str, Any],
        write: Callable[[], Awaitable[StepOutcome]],
        *,
        shared: bool = False,
    ) -> StepOutcome | _Unchanged:
        """A write skipped when it is what this service last wrote under `key`; remembered when it
        succeeds, forgotten when it fails (when in doubt, write). `shared`: events of other lanes may
        make the same write at the same moment (an organization), so one write serves them all."""
        if self._memory.unchanged(key, body):
            return _UNCHANGED
        if not self._memory.enabled:
            return await write()
        if not shared:
            failure = await write()
            if failure is None:
                self._memory.wrote(key, body)
            else:
                self._memory.forget(key)
            return failure
        # The same write already under way for another event (say, many users joining one new
        # organization at once): wait for its answer instead of sending it again.
        slot = (key, body_digest(body))
        writing = self._writing.get(slot)
        if writing is not None:
            failure = await asyncio.shield(writing)
            return _UNCHANGED if failure is None else failure

        async def write_and_remember() -> StepOutcome:
            failure = await write()
            if failure is None:  # remembered before the slot is freed: no gap for a second write
                self._memory.wrote(key, body)
            else:
                self._memory.forget(key)
            return failure

        writing = self._writing[slot] = asyncio.ensure_future(write_and_remember())
        writing.add_done_callback(lambda _: self._writing.pop(slot, None))
        return await asyncio.shield(writing)

    async def _upsert_organization(self, op: UpsertOrganization) -> StepOutcome | _Unchanged:
        async def write() -> StepOutcome:
            result = await self._call(lambda: self._client.create_or_update_organization(op.organization))
            return None if isinstance(result, Ok) else self._failure(result)

        key = f"organization:{str(op.organization.get('external_id', '')).lower()}"
        return await self._remembered(key, op.organization, write, shared=True)

    async def _ensure_field(self, op: EnsureField) -> StepOutcome | _Replan | _Unchanged:
        """Create a missing field once: concurrent events that need the same field share one request."""
        if op.key in (await self.known()).fields(op.kind):
            return _UNCHANGED
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

    async def _upsert_user(self, op: UpsertUser) -> StepOutcome | _Unchanged:
        async def write() -> StepOutcome:
            result = await self._call(lambda: self._upsert(op.user))
            if isinstance(result, Rejected) and is_invalid_time_zone(result) and "time_zone" in op.user:
                # Prefer the rest of the user over losing the event (docs/semantics.md).
                self.counters.time_zone_dropped += 1
                log.info("time zone refused, resending without it", status=result.status)
                without = {k: v for k, v in op.user.items() if k != "time_zone"}
                result = await self._call(lambda: self._upsert(without))
            return None if isinstance(result, Ok) else self._failure(result)

        return await self._remembered(_user_memory_key(op.ref), op.user, write)

    async def _remove_membership(self, op: RemoveMembership) -> StepOutcome:
        user = await self._user(op.user)
        if isinstance(user, Missing):
            return None  # no such user: nothing to remove
        if not isinstance(user, Found):
            return user
        org = await self._organization(op.organization)
        if isinstance(org, Missing):
            log.info("organization to leave not found: nothing to remove")
            return None
        if not isinstance(org, Found):
            return org
        listed = await self._call(lambda: self._client.list_user_memberships(user.id))
        if not isinstance(listed, Ok):
            return self._failure(listed)
        memberships = listed.json.get("organization_memberships", [])
        matching = [m for m in memberships if isinstance(m, Mapping) and m.get("organization_id") == org.id]
        for membership in matching:
            membership_id = membership.get("id")
            if not isinstance(membership_id, int):
                continue
            self._memory.forget(f"member:{user.id}:{org.id}")
            deleted = await self._call(partial(self._client.delete_membership, user.id, membership_id))
            if isinstance(deleted, Rejected) and is_record_not_found(deleted):
                continue  # already gone
            if not isinstance(deleted, Ok):
                return self._failure(deleted)
        return None

    async def _ensure_membership(self, op: EnsureMembership) -> StepOutcome | _Unchanged:
        user = await self._user(op.user)
        if isinstance(user, Missing):
            return DeadLetter(
                reason=DlqReason.USER_NOT_FOUND,
                message="the group's user is not in Zendesk; replay once the user exists",
            )
        if not isinstance(user, Found):
            return user
        org = await self._organization(op.organization)
        if isinstance(org, Missing):
            return DeadLetter(
                reason=DlqReason.ZENDESK_REJECTED,
                message="the organization was upserted but Zendesk cannot find it by external_id",
            )
        if not isinstance(org, Found):
            return org
        key = f"member:{user.id}:{org.id}"
        if self._memory.unchanged(key, _MEMBER):
            return _UNCHANGED
        create = self._bulk.memberships.create if self._bulk else self._client.create_membership
        result = await self._call(lambda: create(user.id, org.id))
        if isinstance(result, Ok) or (isinstance(result, Rejected) and is_already_member(result)):
            self._memory.wrote(key, _MEMBER)
            return None
        self._memory.forget(key)
        return self._failure(result)

    async def _send_event(self, op: SendEvent) -> StepOutcome:
        user = await self._user(op.user)
        if isinstance(user, Missing):
            return DeadLetter(
                reason=DlqReason.USER_NOT_FOUND,
                message="no Zendesk user has this userId as external_id (nor the event's email); "
                "replay once the user exists",
            )
        if not isinstance(user, Found):
            return user
        result = await self._call(lambda: self._client.send_event(op.body))
        return None if isinstance(result, Ok) else self._failure(result)

    def _upsert(self, user: Mapping[str, Any]) -> Awaitable[Result]:
        return self._bulk.users.upsert(user) if self._bulk else self._client.create_or_update_user(user)

    # ----------------------------------------------------------------------------------- lookups

    async def _user(self, ref: UserRef) -> Resolved:
        """The Zendesk user: by external_id first, then by email."""
        cache = self._client.cache
        if ref.external_id is not None:
            cached = cache.user_id_by_external_id(ref.external_id)
            if cached is not None:
                return Found(cached)
            external_id = ref.external_id
            find = self._bulk.lookups.find if self._bulk else self._client.find_users_by_external_id
            found = await self._single(lambda: find(external_id), "users")
            if not isinstance(found, Missing):
                return found
        if ref.email is not None:
            cached = cache.user_id_by_email(ref.email)
            if cached is not None:
                return Found(cached)
            email = ref.email
            return await self._single(lambda: self._client.search_users_by_email(email), "users")
        return Missing()

    async def _organization(self, ref: OrgRef) -> Resolved:
        """The Zendesk organization: by external_id first, then by its Zendesk id."""
        if ref.external_id is not None:
            cached = self._client.cache.organization_id_by_external_id(ref.external_id)
            if cached is not None:
                return Found(cached)
            external_id = ref.external_id
            found = await self._single(
                lambda: self._client.search_organizations_by_external_id(external_id), "organizations"
            )
            if not isinstance(found, Missing):
                return found
        if ref.id is not None:
            org_id = ref.id
            result = await self._call(lambda: self._client.show_organization(org_id))
            if isinstance(result, Ok):
                return Found(org_id)
            if isinstance(result, Rejected) and is_record_not_found(result):
                return Missing()
            return self._failure(result)
        return Missing()

    async def _single(self, lookup: Callable[[], Awaitable[Result]], envelope: str) -> Resolved:
        """The only record a lookup found; Missing when none; identity_conflict when several."""
        result = await self._call(lookup)
        if not isinstance(result, Ok):
            return self._failure(result)
        found = [r for r in result.json.get(envelope, []) if isinstance(r, Mapping) and r.get("active", True)]
        if not found:
            return Missing()
        if len(found) > 1:
            return DeadLetter(
                reason=DlqReason.IDENTITY_CONFLICT,
                message=f"{len(found)} Zendesk {envelope} match this identity; nothing was written",
            )
        record_id = found[0].get("id")
        return Found(record_id) if isinstance(record_id, int) else Missing()

    # ----------------------------------------------------------------------------------- plumbing

    async def _call(self, request: Callable[[], Awaitable[Result]]) -> Result:
        """One request; a rate limit is waited out (not a failure, not an attempt), up to a bound. The
        governor paused the bucket on the 429, so the next try waits for it."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            self.counters.calls += 1
            result = await request()
            if not isinstance(result, RateLimited):
                return result
            if loop.time() - started + result.retry_after_s > self._max_rate_limit_wait_s:
                return result  # a rate limit that outlasts the bound becomes a transient failure
            self.counters.rate_limited_waits += 1
            log.info("rate limited, waiting", retry_after_s=result.retry_after_s, bucket=result.bucket)

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
            case Unavailable():
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


_MEMBER: Final[Mapping[str, Any]] = {"member": True}


def _where(record: InboundRecord) -> tuple[str, int, int]:
    return (record.topic, record.partition, record.offset)


def _user_memory_key(ref: UserRef) -> str:
    if ref.external_id is not None:
        return f"user:{ref.external_id.lower()}"
    return f"user-email:{(ref.email or '').lower()}"
