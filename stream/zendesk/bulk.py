"""Bulk requests: many events' writes or lookups in one request, each event awaiting its own item.

    UserUpserts     users/create_or_update_many       jobs of up to 100 users
    Memberships     organization_memberships/create_many   jobs of up to 100 (user, organization) pairs
    UserLookups     users/show_many?external_ids=      lookups of up to 100 users by external_id
    JobPoller       job_statuses/show_many             every job in flight, polled together with back-off

A batch goes out when it is full (100 items, or a user job at `MAX_JOB_BYTES` of JSON) or `linger_s` after
its first item. The single request goes instead when
the budget favours it (`single_path_favoured`): requests of this kind arrive more slowly than the single
path's narrowest bucket refills and than one per linger (so a batch would carry one item anyway),
nothing is queued, and the request would go out at once. Light traffic keeps its latency and spends
tokens that would otherwise go unused; heavy traffic and backlogs fill jobs, where one request carries a
hundred. A job takes one of Zendesk's 30 job slots from the governor until
it ends.

Each item's result goes back to the event that asked for it, as the single request's answer would have
been (`classify.classify_job_item`), so an event's outcome is the same on either path. A job that fails
as a whole, or whose POST got no answer, gives every one of its items that answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar

import orjson
import structlog

from stream.errors import ZendeskConfigError
from stream.jsontypes import json_chars
from stream.zendesk.classify import (
    Ok,
    RateLimited,
    Result,
    Unavailable,
    UnavailableReason,
    classify_job_item,
)
from stream.zendesk.client import ZendeskClient
from stream.zendesk.governor import Need, need_for

log = structlog.get_logger("stream.zendesk.bulk")

MAX_ITEMS: Final = 100
# A job's body stays under this (docs/zendesk-api.md §12.4: Zendesk documents no limit but answers 413 to
# large bodies; 1 MiB is the ceiling we propose). Ordinary users are a few hundred bytes: only records with
# large custom field values ever split a job early.
MAX_JOB_BYTES: Final = 1 << 20
TERMINAL: Final = frozenset({"completed", "failed", "killed"})
MIN_ROUND_S: Final = 0.1
MAX_ROUND_S: Final = 1.0
T = TypeVar("T")


@dataclass
class BulkStats:
    jobs: int = 0
    items: int = 0
    single: int = 0  # requests the single path carried because it had budget
    polls: int = 0
    lookups: int = 0
    job_seconds: list[float] = field(default_factory=list)  # the last jobs' durations, for metrics


# ------------------------------------------------------------------------------------- path choice

ARRIVALS_TAU_S: Final = 10.0


def single_path_favoured(
    *, arrivals_per_s: float, capacity_per_s: float, queued: int, goes_now: bool
) -> bool:
    """Whether one request for this item spends the budget better than a place in a batch: the single
    path can keep up with the arrivals (they come more slowly than its narrowest bucket refills), no
    batch is gathering, and its tokens are there now."""
    return queued == 0 and goes_now and arrivals_per_s < capacity_per_s


class Arrivals:
    """Requests per second of one kind, an exponentially weighted average over about `tau_s`."""

    def __init__(self, tau_s: float = ARRIVALS_TAU_S) -> None:
        self._tau_s = tau_s
        self._rate = 0.0
        self._stamp: float | None = None

    def arrived(self, now: float) -> float:
        """Count one arrival at `now`; the rate including it."""
        if self._stamp is not None:
            self._rate *= math.exp(-max(0.0, now - self._stamp) / self._tau_s)
        self._stamp = now
        self._rate += 1.0 / self._tau_s
        return self._rate


class _PathChoice:
    """For one kind of request: whether the next goes as a request of its own (`single_path_favoured`)."""

    def __init__(self, client: ZendeskClient, linger_s: float) -> None:
        self._governor = client.governor
        self._arrivals = Arrivals()
        self._per_linger = 1.0 / max(linger_s, 1e-3)

    def single(self, need: Need, queued: int) -> bool:
        return single_path_favoured(
            arrivals_per_s=self._arrivals.arrived(asyncio.get_running_loop().time()),
            capacity_per_s=min(self._governor.capacity_per_s(need), self._per_linger),
            queued=queued,
            goes_now=self._governor.can_go_now(need),
        )


# ---------------------------------------------------------------------------------------- job polling


@dataclass
class _Job:
    id: str
    done: asyncio.Future[Result]  # Ok({"results": [...]}) or the failure
    started: float
    next_poll: float
    interval: float


class JobPoller:
    """Polls the jobs in flight with one `show_many` request per round, each job on its own back-off.

    A round comes when some job is due, at least `round_s` after the last, and asks about every job in
    flight (up to 100): many jobs cost about one request per round, not one per job, and a job is seen
    done at most a round after it ends, however long it ran. By
    default a round comes at most every second, and less often than a tenth of the account's budget
    would allow (so at least 0.1 s apart where the budget is large)."""

    def __init__(
        self,
        *,
        client: ZendeskClient,
        stats: BulkStats,
        first_poll_s: float = 0.3,
        max_interval_s: float = 5.0,
        round_s: float | None = None,
        on_job_done: Callable[[float], None] | None = None,
    ) -> None:
        self._client = client
        self._stats = stats
        self._on_job_done = on_job_done
        self._first_poll_s = first_poll_s
        self._max_interval_s = max_interval_s
        self._round_s = round_s
        self._poll_need = need_for("GET", "/api/v2/job_statuses/show_many")
        self._last_round = -math.inf
        self._jobs: dict[str, _Job] = {}
        self._added = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def _round(self) -> float:
        if self._round_s is not None:
            return self._round_s
        share = 10.0 / self._client.governor.capacity_per_s(self._poll_need)
        return min(MAX_ROUND_S, max(MIN_ROUND_S, share))

    @property
    def in_flight(self) -> int:
        """Jobs posted and not yet seen to end."""
        return len(self._jobs)

    def watch(self, job_id: str) -> asyncio.Future[Result]:
        """The job's final answer: `Ok({"results": [...]})`, or the failure every item gets."""
        loop = asyncio.get_running_loop()
        job = _Job(
            job_id, loop.create_future(), loop.time(), loop.time() + self._first_poll_s, self._first_poll_s
        )
        self._jobs[job_id] = job
        if self._task is None or self._task.done():
            # A context of its own: the poller serves every job, not the work that happened to start it.
            self._task = loop.create_task(self._poll(), name="job-poller", context=contextvars.Context())
        self._added.set()
        return job.done

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._jobs.values():
            if not job.done.done():
                job.done.cancel()

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._jobs:
                self._added.clear()
                await self._added.wait()
                continue
            soonest = max(min(job.next_poll for job in self._jobs.values()), self._last_round + self._round())
            if soonest > loop.time():
                self._added.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._added.wait(), timeout=soonest - loop.time())
                continue
            # A round asks about every job in flight, not only those due: one more id in the request
            # costs nothing, and a slow job is then seen done within a round, not within its back-off.
            jobs = sorted(self._jobs.values(), key=lambda j: j.next_poll)
            self._last_round = loop.time()
            await self._poll_once(jobs[:MAX_ITEMS])

    async def _poll_once(self, due: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        self._stats.polls += 1
        answer = await self._client.show_many_job_statuses([job.id for job in due])
        statuses = answer.json.get("job_statuses", []) if isinstance(answer, Ok) else []
        by_id = {s.get("id"): s for s in statuses if isinstance(s, Mapping)}
        for job in due:
            status = by_id.get(job.id)
            state = status.get("status") if status is not None else None
            if state in TERMINAL and status is not None:
                self._finish(job, status)
                continue
            if job.next_poll <= loop.time():  # asked when due: back off; asked along with others: keep
                job.interval = min(self._max_interval_s, job.interval * 1.5)
                job.next_poll = loop.time() + job.interval

    def _finish(self, job: _Job, status: Mapping[str, Any]) -> None:
        del self._jobs[job.id]
        self._client.governor.job_done()
        elapsed = asyncio.get_running_loop().time() - job.started
        self._stats.job_seconds = [*self._stats.job_seconds[-99:], elapsed]
        if self._on_job_done is not None:
            self._on_job_done(elapsed)
        if job.done.done():
            return
        results = status.get("results")
        if status.get("status") == "completed" and isinstance(results, list):
            job.done.set_result(Ok(200, {"results": results}))
        else:
            job.done.set_result(
                Unavailable(UnavailableReason.SERVER_ERROR, None, detail=f"job {status.get('status')}")
            )


# -------------------------------------------------------------------------------------------- batching


@dataclass
class _Item(Generic[T]):
    payload: T
    answer: asyncio.Future[Result]


def json_size_bound(value: object) -> int:
    """An upper bound of `value`'s size as JSON, in bytes: exact for large values, cheap for small ones."""
    estimate = json_chars(value)
    if estimate * 6 <= 4096:  # 6 bytes a character at worst (a \u escape)
        return estimate * 6
    return len(orjson.dumps(value))


class _Batcher(Generic[T]):
    """Collects items into batches that go out full (`MAX_ITEMS`, or `max_bytes` by `size_of`) or
    `linger_s` after their first item."""

    def __init__(
        self,
        *,
        linger_s: float,
        send: Callable[[list[_Item[T]]], Awaitable[None]],
        size_of: Callable[[T], int] | None = None,
        max_bytes: int = MAX_JOB_BYTES,
    ) -> None:
        self._linger_s = linger_s
        self._send = send
        self._size_of = size_of
        self._max_bytes = max_bytes
        self._open_bytes = 0
        self._open: list[_Item[T]] = []
        self._timer: asyncio.Handle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        return len(self._open)

    async def submit(self, payload: T) -> Result:
        loop = asyncio.get_running_loop()
        item = _Item(payload, loop.create_future())
        if self._size_of is not None:
            size = self._size_of(payload)
            if self._open and self._open_bytes + size > self._max_bytes:
                self._flush()
            self._open_bytes += size
        self._open.append(item)
        if len(self._open) >= MAX_ITEMS or (
            self._size_of is not None and self._open_bytes >= self._max_bytes
        ):
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._linger_s, self._flush)
        return await item.answer

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # Every submit flushes at the limits, so the open batch is never more than one batch.
        batch, self._open, self._open_bytes = self._open, [], 0
        if batch:
            # A context of its own: the batch belongs to all its items, not to the first one's work.
            task = asyncio.get_running_loop().create_task(self._deliver(batch), context=contextvars.Context())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(self, batch: list[_Item[T]]) -> None:
        try:
            await self._send(batch)
        except BaseException as err:  # a fatal answer (401/403) or cancellation: every item hears it
            for item in batch:
                if not item.answer.done():
                    item.answer.set_exception(err)
            if not isinstance(err, Exception):
                raise

    async def close(self) -> None:
        for task in list(self._sending):
            task.cancel()
        for item in self._open:
            item.answer.cancel()


async def _job(client: ZendeskClient, poller: JobPoller, post: Callable[[], Awaitable[Result]]) -> Result:
    """Post a job (again while Zendesk says too many are running) and wait for its end."""
    while True:
        posted = await post()
        if isinstance(posted, Ok):
            job = posted.json.get("job_status")
            job_id = job.get("id") if isinstance(job, Mapping) else None
            if not isinstance(job_id, str):
                client.governor.job_done()
                return Unavailable(UnavailableReason.UNEXPECTED_STATUS, posted.status, detail="no job id")
            return await poller.watch(job_id)
        client.governor.job_done()  # the slot it took was not used
        if not isinstance(posted, RateLimited):  # too many jobs: the governor holds the next try
            return posted


def _items_of(results: Sequence[Any], count: int) -> list[Result]:
    """Each item's answer, by the result's `index` when it has one, else by position."""
    answers: list[Result] = [
        Unavailable(UnavailableReason.UNEXPECTED_STATUS, None, detail="no result for this item")
        for _ in range(count)
    ]
    for position, entry in enumerate(results):
        if not isinstance(entry, Mapping):
            continue
        index = entry.get("index", position)
        if isinstance(index, int) and 0 <= index < count:
            answers[index] = classify_job_item(entry)
    return answers


class _JobPath(Generic[T]):
    """What the two job paths share: a batcher of `T` sending jobs, the path choice, and the counters.
    A subclass sends one batch (`_send`) and says whether this request goes single (`_single`)."""

    def __init__(
        self,
        *,
        client: ZendeskClient,
        poller: JobPoller,
        stats: BulkStats,
        linger_s: float = 0.25,
        always: bool = False,
        size_of: Callable[[T], int] | None = None,
    ) -> None:
        self._always = always
        self._client = client
        self._poller = poller
        self._stats = stats
        self._batcher: _Batcher[T] = _Batcher(linger_s=linger_s, send=self._send, size_of=size_of)
        self._choice = _PathChoice(client, linger_s)

    def _single(self, need: Need) -> bool:
        """The single request is favoured for this one (and is then counted)."""
        if self._always or not self._choice.single(need, self._batcher.queued):
            return False
        self._stats.single += 1
        return True

    async def _send(self, batch: list[_Item[T]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self._batcher.close()


class UserUpserts(_JobPath[Mapping[str, Any]]):
    """`create_or_update` of users, through jobs of up to 100 unless the single path is favoured."""

    def __init__(
        self,
        *,
        client: ZendeskClient,
        poller: JobPoller,
        stats: BulkStats,
        linger_s: float = 0.25,
        always: bool = False,
    ) -> None:
        super().__init__(
            client=client,
            poller=poller,
            stats=stats,
            linger_s=linger_s,
            always=always,
            size_of=json_size_bound,
        )
        self._bulk_refused = False

    async def upsert(self, user: Mapping[str, Any]) -> Result:
        key = user.get("external_id") or user.get("email")
        single = need_for(
            "POST", "/api/v2/users/create_or_update", user_key=key if isinstance(key, str) else None
        )
        if self._bulk_refused:
            self._stats.single += 1
            return await self._client.create_or_update_user(user)
        if self._single(single):
            return await self._client.create_or_update_user(user)
        return await self._batcher.submit(user)

    async def _send(self, batch: list[_Item[Mapping[str, Any]]]) -> None:
        users = [item.payload for item in batch]
        self._stats.jobs += 1
        self._stats.items += len(users)
        try:
            finished = await _job(
                self._client, self._poller, lambda: self._client.create_or_update_many_users(users)
            )
        except ZendeskConfigError as err:
            if err.status != 403:
                raise
            # Bulk import is not enabled on every account (docs/zendesk-api.md §2.3): one at a time then.
            log.warning("Zendesk refused bulk user import (403); upserting users one at a time")
            self._bulk_refused = True
            for item in batch:
                item.answer.set_result(await self._client.create_or_update_user(item.payload))
            return
        answers = _items_of(finished.json["results"], len(batch)) if isinstance(finished, Ok) else None
        for position, item in enumerate(batch):
            answer = answers[position] if answers is not None else finished
            if isinstance(answer, Ok) and isinstance(answer.json.get("id"), int):
                self._client.cache.remember_user_id(
                    answer.json["id"],
                    external_id=item.payload.get("external_id"),
                    email=item.payload.get("email"),
                )
                answer = Ok(answer.status, {"user": {"id": answer.json["id"]}})
            if not item.answer.done():
                item.answer.set_result(answer)


class Memberships(_JobPath[tuple[int, int]]):
    """Organization memberships, created through jobs of up to 100 unless the single path is favoured."""

    async def create(self, user_id: int, organization_id: int) -> Result:
        if self._single(need_for("POST", "/api/v2/organization_memberships")):
            return await self._client.create_membership(user_id, organization_id)
        return await self._batcher.submit((user_id, organization_id))

    async def _send(self, batch: list[_Item[tuple[int, int]]]) -> None:
        pairs = [item.payload for item in batch]
        self._stats.jobs += 1
        self._stats.items += len(pairs)
        finished = await _job(self._client, self._poller, lambda: self._client.create_many_memberships(pairs))
        answers = _items_of(finished.json["results"], len(batch)) if isinstance(finished, Ok) else None
        for position, item in enumerate(batch):
            if not item.answer.done():
                item.answer.set_result(answers[position] if answers is not None else finished)


class UserLookups:
    """Users looked up by external_id, many per `show_many` request when several are waiting."""

    def __init__(
        self, *, client: ZendeskClient, stats: BulkStats, linger_s: float = 0.05, always: bool = False
    ) -> None:
        self._always = always
        self._client = client
        self._stats = stats
        self._batcher: _Batcher[str] = _Batcher(linger_s=linger_s, send=self._send)
        self._choice = _PathChoice(client, linger_s)

    async def find(self, external_id: str) -> Result:
        """`Ok({"users": [...]})` with the user whose external_id it is (or none), like users/search."""
        if "," in external_id:  # show_many's list is comma-separated: ask this one alone
            return await self._client.find_users_by_external_id(external_id)
        single = need_for("GET", "/api/v2/users/search")
        if not self._always and self._choice.single(single, self._batcher.queued):
            self._stats.single += 1
            return await self._client.find_users_by_external_id(external_id)
        return await self._batcher.submit(external_id)

    async def _send(self, batch: list[_Item[str]]) -> None:
        self._stats.lookups += 1
        ids = list(dict.fromkeys(item.payload for item in batch))
        answer = await self._client.show_many_users_by_external_id(ids)
        found: dict[str, list[Any]] = {}
        if isinstance(answer, Ok):
            for user in answer.json.get("users", []):
                external = user.get("external_id") if isinstance(user, Mapping) else None
                if isinstance(external, str):
                    found.setdefault(external.lower(), []).append(user)
        for item in batch:
            if item.answer.done():
                continue
            if isinstance(answer, Ok):
                item.answer.set_result(Ok(200, {"users": found.get(item.payload.lower(), [])}))
            else:
                item.answer.set_result(answer)

    async def close(self) -> None:
        await self._batcher.close()


class Bulk:
    """The bulk paths of one client, sharing one job poller. `always`: batch even when the single path
    has budget (`STREAM_BULK=always`)."""

    def __init__(
        self,
        *,
        client: ZendeskClient,
        linger_s: float = 0.25,
        always: bool = False,
        on_job_done: Callable[[float], None] | None = None,
    ) -> None:
        """`on_job_done` (the metrics) is told each job's duration, from its post to the poll that saw
        it end, in seconds."""
        self.stats = BulkStats()
        self.poller = JobPoller(client=client, stats=self.stats, on_job_done=on_job_done)
        stats, poller = self.stats, self.poller
        self.users = UserUpserts(client=client, poller=poller, stats=stats, linger_s=linger_s, always=always)
        self.memberships = Memberships(
            client=client, poller=poller, stats=stats, linger_s=linger_s, always=always
        )
        self.lookups = UserLookups(client=client, stats=stats, always=always)

    async def close(self) -> None:
        for part in (self.users, self.memberships, self.lookups):
            await part.close()
        await self.poller.close()
