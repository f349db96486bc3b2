"""The run loop: records from the consumers into per-key lanes, outcomes into commits.

Two consumers feed the lanes. The main one is a member of the group and owns input partitions. The
retry one is assigned by hand, under the group id `<group>.retry`, exactly the retry partitions whose
numbers match the input partitions we own: a key's retry records and its new events are handled by the
same process, so "parked" is a local, consistent state (see `_assigned`).

Commit rules (the only place they are enforced, with `offsets.PartitionOffsets`):
1. A record is registered with its partition's offsets when it arrives, before any work starts.
2. It is finished when delivered, deliberately skipped, or durably written to the retry or dead-letter
   topic (the producer confirmed it). A record waiting for its next attempt is not finished.
3. The committed offset of a partition is the end of its longest finished prefix, with the finished
   offsets beyond it in the commit metadata. Commits follow finished work continuously (at most every
   `commit_interval_s`), and happen when partitions are revoked (after their in-flight work finished
   or was abandoned) and at shutdown.
4. A fatal error (Zendesk refused our credentials, Kafka refused a dead letter, the circuit breaker)
   stops the engine: only finished work is ever committed, so nothing unfinished is.
5. A finished record keeps its in-flight slot until a commit has recorded it. So the records whose
   effects may have reached Zendesk without being committed are always at most `max_in_flight`:
   that bounds what a crash (SIGKILL) makes the next owner repeat.

Retry path, per key (order first):
- A transient failure retries in place, with exponential back-off and jitter: the lane waits without
  an in-flight slot, the other keys go on.
- Past the in-place budget, the record goes to the retry topic (same partition number) with a
  not-before time, and its key is parked: later events of the key follow it into the retry topic, in
  order, until every record of the key in the retry path is resolved.
- A retry record starts no earlier than its not-before; it gets `retry_rounds` attempts, spaced by
  growing delays; then it is dead-lettered as `retries_exhausted`, and its key is released.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import structlog
from confluent_kafka import Consumer, KafkaException, TopicPartition

from stream.engine.lanes import LaneId, Lanes
from stream.engine.offsets import PartitionOffsets, decode_finished, encode_finished
from stream.engine.records import (
    Failure,
    InboundRecord,
    failure_headers,
    not_before,
    previous_attempts,
    written_by_another_group,
)
from stream.errors import InvalidEvent, StreamError, ZendeskConfigError
from stream.events import decode_json, event_key
from stream.kafka.config import KafkaSettings
from stream.kafka.consumer import (
    CommitOffsets,
    ConsumerOptions,
    ConsumerThread,
    Partition,
    assign,
    commit_offsets,
    unassign,
)
from stream.kafka.producer import AsyncProducer, RecordTooLarge
from stream.kafka.scan import read_committed, scan_keys
from stream.outcomes import (
    DeadLetter,
    Delivered,
    DlqReason,
    ErrorClass,
    Outcome,
    RetryReason,
    Skipped,
    Transient,
)

log = structlog.get_logger("stream.engine")

EXIT_OK = 0
EXIT_FATAL = 1
NO_KEY = "\0"  # lane keys of records without any key start with it: they have no order to keep


class Processor(Protocol):
    """Turns one decoded event into Zendesk operations and sends them. `progress` survives the attempts
    of the same record, so an attempt resumes after the steps that already succeeded."""

    async def process(
        self, record: InboundRecord, payload: dict[str, Any], progress: dict[str, Any]
    ) -> Outcome: ...


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    max_in_flight: int = 64
    max_buffered_per_partition: int = 2_000
    max_buffered_total: int = 10_000
    commit_interval_s: float = 0.01
    retry_attempts: int = 5  # in place, for transient failures (the first try included)
    retry_base_s: float = 0.5
    retry_max_s: float = 8.0
    retry_rounds: int = 5  # attempts of a record in the retry path before it is dead-lettered
    retry_delay_s: float = 30.0  # before the first retry-path attempt; tripled for each next one
    retry_delay_max_s: float = 900.0
    breaker_window: int = 200  # recent outcomes the circuit breaker looks at
    breaker_threshold: float = 0.8  # share of them dead-lettered by Zendesk or by retries that trips it
    shutdown_deadline_s: float = 30.0
    revoke_deadline_s: float = 20.0
    max_record_bytes: int | None = None  # the largest record the retry and dead-letter topics accept
    consumer: ConsumerOptions = field(default_factory=ConsumerOptions)


@dataclass
class Stats:
    """Counters for the summary and the metrics endpoint."""

    received: int = 0
    delivered: int = 0
    operations: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    retried_in_place: int = 0
    already_done: int = 0  # finished by an earlier owner, read again after a crash or a hand-over
    sent_to_retry: Counter[str] = field(default_factory=Counter)
    foreign_retries: int = 0  # retry records another consumer group wrote: not ours to act on
    max_in_flight_seen: int = 0

    @property
    def settled(self) -> int:
        """Input records that reached an end: delivered, skipped or dead-lettered."""
        return self.delivered + self.skipped.total() + self.dead_lettered.total()


@dataclass
class Attempts:
    """What the attempts of one record (a lane's head) have left behind."""

    count: int = 0
    first_failure: datetime | None = None
    progress: dict[str, Any] = field(default_factory=dict)


class FatalError(StreamError):
    """The engine cannot go on; the message says why."""


class CircuitOpen(FatalError):
    """Most recent events were dead-lettered: stopping beats emptying the topic into the DLQ."""


Verdict = float | None  # None: the record is finished; a number: try again at that loop time


class Engine:
    _durable: asyncio.Future[None]  # resolved by the next commit: what finished records wait for

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        processor: Processor,
        options: EngineOptions | None = None,
        on_progress: Callable[[Stats], None] | None = None,
        progress_interval_s: float = 0.5,
    ) -> None:
        """`on_progress` is called with the counters every `progress_interval_s` while the engine runs,
        and once at the end."""
        self._on_progress = on_progress
        self._progress_interval_s = progress_interval_s
        self._settings = settings
        self._processor = processor
        self._options = options or EngineOptions()
        self._lanes = Lanes(max_in_flight=self._options.max_in_flight)
        self._offsets: dict[Partition, PartitionOffsets] = {}
        self._committed: dict[Partition, tuple[int, str]] = {}
        self._paused: set[Partition] = set()
        self._tasks: dict[LaneId, asyncio.Task[None]] = {}
        self._attempts: dict[LaneId, Attempts] = {}
        self._parked: Counter[tuple[int, str]] = Counter()  # (partition number, key) -> records in retry path
        self._retry_written: dict[Partition, int] = {}  # the last offset we wrote to each retry partition
        self._recent: deque[bool] = deque(maxlen=self._options.breaker_window)  # True: dead-lettered
        self._stopping = asyncio.Event()
        self._commit_wanted = asyncio.Event()
        self._wakeup: asyncio.TimerHandle | None = None
        self._fatal: BaseException | None = None
        self._main: ConsumerThread | None = None
        self._retry: ConsumerThread | None = None
        self._producer: AsyncProducer | None = None
        self.stats = Stats()

    # ------------------------------------------------------------------------------------ lifecycle

    async def run(self, *, exit_at_end: bool = False) -> int:
        loop = asyncio.get_running_loop()
        self._durable = loop.create_future()
        self._producer = AsyncProducer(
            settings=self._settings, max_record_bytes=self._options.max_record_bytes
        )
        self._main = ConsumerThread(
            settings=self._settings,
            topics=[self._settings.input_topic],
            options=self._options.consumer,
            loop=loop,
            on_records=self._accept,
            on_assigned=self._assigned,
            on_revoked=self._revoked,
            on_lost=self._lost,
        )
        self._retry = ConsumerThread(
            settings=self._settings,
            topics=None,
            options=self._options.consumer,
            loop=loop,
            on_records=self._accept,
            group_id=self.retry_group_id,
        )
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)
        self._retry.start()
        self._main.start()
        committer = asyncio.create_task(self._commit_continuously(), name="committer")
        log.info("engine started", topic=self._settings.input_topic, group=self._settings.group_id)
        try:
            end_offsets = await self._end_offsets() if exit_at_end else None
            await self._supervise(end_offsets)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
            committer.cancel()
            await self._shut_down()
            if self._on_progress is not None:
                self._on_progress(self.stats)
        if self._fatal is not None:
            log.error("engine stopped", error=str(self._fatal), **self.summary())
            return EXIT_FATAL
        log.info("engine stopped", **self.summary())
        return EXIT_OK

    @property
    def retry_group_id(self) -> str:
        return f"{self._settings.group_id}.retry"

    def stop(self) -> None:
        self._stopping.set()

    @property
    def fatal(self) -> BaseException | None:
        """The error that stopped the engine, if one did."""
        return self._fatal

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.stats.received,
            "delivered": self.stats.delivered,
            "operations": self.stats.operations,
            "skipped": dict(self.stats.skipped),
            "dead_lettered": dict(self.stats.dead_lettered),
            "retried_in_place": self.stats.retried_in_place,
            "already_done": self.stats.already_done,
            "sent_to_retry": dict(self.stats.sent_to_retry),
            "max_in_flight_seen": self.stats.max_in_flight_seen,
        }

    async def _supervise(self, end_offsets: Mapping[Partition, int] | None) -> None:
        assert self._main is not None and self._retry is not None
        asked_broker_at = reported_at = 0.0
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=0.1)
            if self._on_progress is not None and time.monotonic() - reported_at >= self._progress_interval_s:
                reported_at = time.monotonic()
                self._on_progress(self.stats)
            for consumer in (self._main, self._retry):
                if not consumer.alive and not self._stopping.is_set():
                    self._fail(FatalError(f"a Kafka consumer stopped: {consumer.failure}"))
            if self._stopping.is_set():
                break
            if end_offsets is None:
                continue
            now = time.monotonic()
            ask_broker = now - asked_broker_at >= 1.0  # others' progress: at most once a second
            asked_broker_at = now if ask_broker else asked_broker_at
            if await self._caught_up(end_offsets, ask_broker=ask_broker):
                log.info("caught up with the end offsets seen at start-up")
                break

    async def _shut_down(self) -> None:
        assert self._main is not None and self._retry is not None and self._producer is not None
        self._lanes.hold(self._offsets)
        self._release_durable_waiters()
        await self._finish_running(list(self._tasks.values()), self._options.shutdown_deadline_s)
        await self._commit()
        # The main consumer leaves the group first: its revocation callback still uses the retry one.
        self._main.stop()
        await self._main.wait_closed()
        self._retry.stop()
        await self._retry.wait_closed()
        await asyncio.to_thread(self._producer.close)

    # ----------------------------------------------------------------------- partitions (rebalance)

    async def _assigned(self, partitions: list[Partition]) -> None:
        """Input partitions arrive. Before any of their records may start, read which keys wait in the
        matching retry partitions (they are parked), then start reading those retry partitions."""
        assert self._retry is not None
        retry_parts = [self._retry_partition(p) for p in partitions]
        self._lanes.hold(partitions)
        input_committed = await asyncio.to_thread(
            read_committed, self._settings, group_id=self._settings.group_id, partitions=partitions
        )
        retry_committed = await asyncio.to_thread(
            read_committed, self._settings, group_id=self.retry_group_id, partitions=retry_parts
        )
        for partition, (start, metadata) in {**input_committed, **retry_committed}.items():
            done = decode_finished(start, metadata) if start is not None else set()
            self._offsets[partition] = PartitionOffsets(start=start, finished_beyond=done)
        waiting = await asyncio.to_thread(
            scan_keys,
            self._settings,
            group_id=self.retry_group_id,
            committed={p: start for p, (start, _) in retry_committed.items()},
            writer_group=self._settings.group_id,
        )
        for (_, number), keys in waiting.items():
            for key, count in keys.items():
                self._parked[(number, key)] += count
        await self._retry.call(assign(retry_parts))
        self._lanes.release(partitions)
        parked = sum(len(keys) for keys in waiting.values())
        log.info("partitions assigned", partitions=_names(partitions), parked_keys=parked)
        self._dispatch()

    async def _revoked(self, partitions: list[Partition]) -> CommitOffsets:
        """Stop dispatching, let in-flight work finish within the deadline, commit the retry side, and
        hand back the input offsets to commit before the partitions are released."""
        assert self._retry is not None
        owned = [p for p in partitions if p in self._offsets]
        retry_parts = [self._retry_partition(p) for p in owned]
        both = [*owned, *retry_parts]
        self._lanes.hold(both)
        self._release_durable_waiters()
        running = [task for lane, task in self._tasks.items() if lane[:2] in both]
        await self._finish_running(running, self._options.revoke_deadline_s)
        offsets = self._commit_candidates(owned)
        retry_offsets = self._commit_candidates(retry_parts)
        with contextlib.suppress(RuntimeError):  # the retry consumer already closed: nothing to hand over
            if retry_offsets:
                await self._retry.call(partial(commit_offsets, offsets=retry_offsets))
            await self._retry.call(unassign(retry_parts))
        self._forget(both)
        log.info("partitions revoked", partitions=_names(owned), committing=len(offsets))
        return offsets

    async def _lost(self, partitions: list[Partition]) -> None:
        """The group already gave these partitions away: abandon their work, commit nothing."""
        assert self._retry is not None
        owned = [p for p in partitions if p in self._offsets]
        retry_parts = [self._retry_partition(p) for p in owned]
        both = [*owned, *retry_parts]
        self._lanes.hold(both)
        await self._finish_running([t for lane, t in self._tasks.items() if lane[:2] in both], 0)
        with contextlib.suppress(RuntimeError):
            await self._retry.call(unassign(retry_parts))
        self._forget(both)
        log.warning("partitions lost", partitions=_names(owned))

    def _retry_partition(self, partition: Partition) -> Partition:
        return (self._settings.retry_topic, partition[1])

    def _forget(self, partitions: list[Partition]) -> None:
        self._lanes.drop(partitions)
        gone = set(partitions)
        for lane in [lane for lane in self._attempts if lane[:2] in gone]:
            del self._attempts[lane]
        numbers = {number for topic, number in partitions if topic == self._settings.input_topic}
        for parked in [k for k in self._parked if k[0] in numbers]:
            del self._parked[parked]
        for partition in partitions:
            self._offsets.pop(partition, None)
            self._committed.pop(partition, None)
            self._paused.discard(partition)

    async def _finish_running(self, tasks: list[asyncio.Task[None]], deadline_s: float) -> None:
        """Wait for running work up to the deadline, then cancel what is left and wait for that too:
        when this returns, none of it still runs."""
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=deadline_s) if deadline_s > 0 else (set(), set(tasks))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            log.warning("abandoned in-flight work at the deadline", records=len(pending))

    # -------------------------------------------------------------------------------------- records

    def _accept(self, records: list[InboundRecord]) -> None:
        """On the loop thread, in poll order: register every record, then start what may start."""
        loop_now, wall_now = asyncio.get_running_loop().time(), datetime.now(UTC)
        for record in records:
            offsets = self._offsets.get((record.topic, record.partition))
            if offsets is None:  # fetched before a revocation we already handled
                continue
            self.stats.received += 1
            if offsets.register(record.offset):  # finished before a crash or a hand-over (offsets rule 4)
                self._finish_done_record(record, offsets)
                continue
            if record.topic == self._settings.retry_topic and written_by_another_group(
                record, self._settings.group_id
            ):
                self._skip_foreign_retry(record, offsets)
                continue
            due = 0.0
            wait_until = not_before(record) if record.topic == self._settings.retry_topic else None
            if wait_until is not None and wait_until > wall_now:
                due = loop_now + (wait_until - wall_now).total_seconds()
            self._lanes.add(_lane_of(record), record, due=due)
        self._apply_back_pressure()
        self._dispatch()

    def _finish_done_record(self, record: InboundRecord, offsets: PartitionOffsets) -> None:
        offsets.finish(record.offset)
        self.stats.already_done += 1
        if record.topic == self._settings.retry_topic:
            lane = _lane_of(record)
            self._release_parked((record.partition, lane[2]))  # the assignment scan counted it
        self._commit_wanted.set()

    def _skip_foreign_retry(self, record: InboundRecord, offsets: PartitionOffsets) -> None:
        """Two deployments sharing a retry topic (set by hand) must not act on each other's retries."""
        offsets.finish(record.offset)
        self.stats.foreign_retries += 1
        writer = (record.header("zs.group") or b"").decode("utf-8", "replace")
        log.warning(
            "skipped a retry record of another consumer group",
            partition=record.partition,
            offset=record.offset,
            written_by=writer,
            group=self._settings.group_id,
        )
        self._commit_wanted.set()

    def _release_parked(self, parking: tuple[int, str]) -> None:
        if parking not in self._parked:
            return
        self._parked[parking] -= 1
        if self._parked[parking] <= 0:
            del self._parked[parking]
            log.info("key released from the retry path", partition=parking[0])

    def _dispatch(self) -> None:
        if self._stopping.is_set():
            return
        loop = asyncio.get_running_loop()
        for lane, record in self._lanes.startable(loop.time()):
            self._tasks[lane] = asyncio.create_task(self._attempt(lane, record), name=f"lane {lane}")
        self.stats.max_in_flight_seen = max(self.stats.max_in_flight_seen, len(self._tasks))
        due = self._lanes.next_due()
        if due is not None and (self._wakeup is None or self._wakeup.when() > due):
            if self._wakeup is not None:
                self._wakeup.cancel()
            self._wakeup = loop.call_at(due, self._woken)

    def _woken(self) -> None:
        self._wakeup = None
        self._dispatch()

    async def _attempt(self, lane: LaneId, record: InboundRecord) -> None:
        partition = (record.topic, record.partition)
        attempts = self._attempts.setdefault(lane, Attempts())
        try:
            verdict = await self._try(lane, record, attempts)
            if verdict is None and partition in self._offsets:
                self._offsets[partition].finish(record.offset)
                self._commit_wanted.set()
                # The slot stays taken until a commit records the finish (rule 5): what a crash can
                # repeat is then only ever what holds a slot, at most max_in_flight records. A partition
                # being revoked or shut down is committed by that step instead.
                if not self._lanes.is_held(partition):
                    await asyncio.shield(self._durable)
        except asyncio.CancelledError:
            raise  # abandoned: not finished, not committed; the next owner reads it again
        except Exception as err:  # fatal by design, see rule 4
            self._fail(err)
            return
        finally:
            self._tasks.pop(lane, None)
        if partition not in self._offsets:  # no longer ours
            return
        if verdict is None:
            self._attempts.pop(lane, None)
            self._lanes.finish(lane)
            self._apply_back_pressure()
        else:
            self._lanes.defer(lane, verdict)
        self._dispatch()

    async def _try(self, lane: LaneId, record: InboundRecord, attempts: Attempts) -> Verdict:
        """One attempt at a record. Returns None when it is finished (rule 2), else when to try again."""
        started = time.monotonic()
        in_retry_path = record.topic == self._settings.retry_topic
        parking = (record.partition, lane[2]) if not lane[2].startswith(NO_KEY) else None
        if not in_retry_path and parking is not None and self._parked[parking] > 0:
            await self._to_retry(
                record,
                lane,
                RetryReason.PARKED_BEHIND,
                "an earlier event of this key is in the retry path",
                attempts=0,
                delay_s=0.0,
            )
            _log_outcome(record, "parked_behind", started)
            return None
        try:
            payload = decode_json(record.value or b"")
        except InvalidEvent as err:
            outcome: Outcome = DeadLetter(reason=err.reason, message=err.message)
        else:
            outcome = await self._process(record, payload, attempts.progress)
        loop_now = asyncio.get_running_loop().time()
        match outcome:
            case Delivered(operations=operations, summary=summary):
                self._recent.append(False)
                self.stats.delivered += 1
                self.stats.operations += operations
                _log_outcome(record, "delivered", started, summary=summary, attempts=attempts.count + 1)
            case Skipped(reason=reason, detail=detail):
                self.stats.skipped[reason.value] += 1
                _log_outcome(record, "skipped", started, reason=reason.value, detail=detail)
            case DeadLetter(reason=reason, message=message, http_status=status):
                total = previous_attempts(record) + attempts.count + 1
                failure = Failure(reason=reason, message=message, http_status=status, attempts=total)
                await self._dead_letter(record, failure)
                _log_outcome(record, "dead_lettered", started, reason=reason.value, attempts=total)
            case Transient(message=message, http_status=status, retry_after_s=retry_after):
                attempts.count += 1
                attempts.first_failure = attempts.first_failure or datetime.now(UTC)
                if not in_retry_path and attempts.count < self._options.retry_attempts:
                    self.stats.retried_in_place += 1
                    return loop_now + self._backoff(attempts.count, retry_after)
                if not in_retry_path:
                    await self._to_retry(
                        record,
                        lane,
                        RetryReason.RETRY_SCHEDULED,
                        message,
                        attempts=attempts.count,
                        delay_s=self._retry_delay(1),
                        http_status=status,
                        first_failure=attempts.first_failure,
                    )
                    _log_outcome(record, "sent_to_retry", started, attempts=attempts.count, error=message)
                    return None
                if attempts.count < self._options.retry_rounds:
                    _log_outcome(record, "retry_failed", started, attempts=attempts.count, error=message)
                    return loop_now + max(self._retry_delay(attempts.count + 1), retry_after or 0.0)
                total = previous_attempts(record) + attempts.count
                failure = Failure(
                    reason=DlqReason.RETRIES_EXHAUSTED,
                    message=message,
                    http_status=status,
                    attempts=total,
                    first_failure_at=attempts.first_failure,
                )
                await self._dead_letter(record, failure)
                _log_outcome(record, "dead_lettered", started, reason="retries_exhausted", attempts=total)
        if in_retry_path and parking is not None:
            self._release_parked(parking)
        return None

    async def _process(
        self, record: InboundRecord, payload: dict[str, Any], progress: dict[str, Any]
    ) -> Outcome:
        try:
            return await self._processor.process(record, payload, progress)
        except ZendeskConfigError:
            raise
        except Exception as err:  # a bug must not kill the lane: retry, then dead-letter
            log.exception("processing raised", offset=record.offset, partition=record.partition)
            return Transient(message=f"internal error: {type(err).__name__}: {err}")

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """Exponential back-off with full jitter; a server's Retry-After is a floor."""
        ceiling = min(self._options.retry_max_s, self._options.retry_base_s * 2 ** (attempt - 1))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
        return max(delay, retry_after_s or 0.0)

    def _retry_delay(self, round_: int) -> float:
        delay: float = self._options.retry_delay_s * 3 ** (round_ - 1)
        return min(self._options.retry_delay_max_s, delay)

    async def _to_retry(
        self,
        record: InboundRecord,
        lane: LaneId,
        reason: RetryReason,
        message: str,
        *,
        attempts: int,
        delay_s: float,
        http_status: int | None = None,
        first_failure: datetime | None = None,
    ) -> None:
        """Write the record to the retry topic (same partition number) and park its key once confirmed."""
        assert self._producer is not None
        now = datetime.now(UTC)
        failure = Failure(
            reason=reason,
            message=message,
            http_status=http_status,
            attempts=previous_attempts(record) + attempts,
            first_failure_at=first_failure,
            not_before=now + timedelta(seconds=delay_s),
        )
        keyless = lane[2].startswith(NO_KEY)
        try:
            offset = await self._producer.send(
                self._settings.retry_topic,
                key=None if keyless else lane[2].encode(),
                value=record.value,
                headers=failure_headers(record, failure, now=now, group=self._settings.group_id),
                partition=record.partition,
            )
        except RecordTooLarge as err:
            await self._dead_letter(record, _too_large(failure, err, "retry"))
            return
        written = (self._settings.retry_topic, record.partition)
        self._retry_written[written] = max(offset, self._retry_written.get(written, -1))
        if not keyless:
            self._parked[(record.partition, lane[2])] += 1
        self.stats.sent_to_retry[reason.value] += 1

    async def _dead_letter(self, record: InboundRecord, failure: Failure) -> None:
        """Write the record's dead-letter copy. One too large for the topic goes without its value
        (`record_too_large`): its `zs.original.*` headers point at the input record, which replay reads
        while the input's retention holds."""
        assert self._producer is not None
        group, topic = self._settings.group_id, self._settings.dlq_topic
        headers = failure_headers(record, failure, now=datetime.now(UTC), group=group)
        try:
            await self._producer.send(topic, key=record.key, value=record.value, headers=headers)
        except RecordTooLarge as err:
            failure = _too_large(failure, err, "dead-letter")
            headers = failure_headers(record, failure, now=datetime.now(UTC), group=group)
            try:
                await self._producer.send(topic, key=record.key, value=None, headers=headers)
            except RecordTooLarge:  # the key alone is too large
                await self._producer.send(topic, key=None, value=None, headers=headers)
        self.stats.dead_lettered[failure.reason.value] += 1
        self._trip_breaker_if_needed(failure)

    def _trip_breaker_if_needed(self, failure: Failure) -> None:
        """Invalid events are the producer's problem and never trip it; Zendesk refusing most events,
        or most retries running out, means something on our side (a bad deploy, revoked rights)."""
        self._recent.append(failure.reason.error_class is not ErrorClass.INVALID)
        window = self._options.breaker_window
        bad = sum(self._recent)
        if len(self._recent) == window and bad >= self._options.breaker_threshold * window:
            self._fail(
                CircuitOpen(
                    f"circuit breaker open: {bad} of the last {window} events were dead-lettered by Zendesk "
                    f"or after retries (last: {failure.reason.value}: {failure.message[:200]}); "
                    "stopping instead of emptying the topic into the dead-letter topic"
                )
            )

    # ------------------------------------------------------------------------------ flow control

    def _apply_back_pressure(self) -> None:
        total = sum(o.in_flight for o in self._offsets.values())
        per_partition = self._options.max_buffered_per_partition
        over_total = total >= self._options.max_buffered_total
        to_pause = [
            p
            for p, o in self._offsets.items()
            if p not in self._paused and (o.in_flight >= per_partition or over_total)
        ]
        to_resume = [
            p
            for p in self._paused
            if p in self._offsets
            and self._offsets[p].in_flight <= per_partition // 2
            and total <= self._options.max_buffered_total // 2
        ]
        for partitions, action in ((to_pause, "pause"), (to_resume, "resume")):
            if not partitions:
                continue
            if action == "pause":
                self._paused.update(partitions)
            else:
                self._paused.difference_update(partitions)
            for consumer, parts in self._by_consumer(partitions):
                tps = [TopicPartition(t, p) for t, p in parts]
                command = (
                    (lambda c, tps=tps: c.pause(tps))
                    if action == "pause"
                    else (lambda c, tps=tps: c.resume(tps))
                )
                task = asyncio.ensure_future(consumer.call(command))
                task.add_done_callback(_log_command_failure)

    def _by_consumer(self, partitions: list[Partition]) -> list[tuple[ConsumerThread, list[Partition]]]:
        assert self._main is not None and self._retry is not None
        retry = [p for p in partitions if p[0] == self._settings.retry_topic]
        main = [p for p in partitions if p[0] != self._settings.retry_topic]
        return [(c, ps) for c, ps in ((self._main, main), (self._retry, retry)) if ps]

    # ------------------------------------------------------------------------------------- commits

    def _commit_candidates(
        self, partitions: list[Partition] | None = None
    ) -> dict[Partition, tuple[int, str]]:
        """What to commit: the end of each finished prefix (rule 3), with the finished offsets beyond
        it in the metadata (offsets rule 4); only what changed since the last commit."""
        chosen = partitions if partitions is not None else list(self._offsets)
        candidates = {}
        for partition in chosen:
            offsets = self._offsets.get(partition)
            if offsets is None or offsets.committable is None:
                continue
            wanted = (offsets.committable, encode_finished(offsets.committable, offsets.finished_beyond))
            if wanted != self._committed.get(partition):
                candidates[partition] = wanted
        return candidates

    async def _commit_continuously(self) -> None:
        """Commit finished work as it finishes (at most every commit_interval_s), then release the
        records that waited for it (rule 5). A failed commit is tried again; they wait for that one."""
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            waiting, self._durable = self._durable, asyncio.get_running_loop().create_future()
            try:
                committed = await self._commit()
            except asyncio.CancelledError:  # shutting down: it commits by itself, nobody may wait on us
                _resolve(waiting)
                raise
            except Exception as err:  # a bug: stop rather than let records wait forever
                self._fail(FatalError(f"committing offsets failed: {type(err).__name__}: {err}"))
                _resolve(waiting)
                return
            if committed:
                _resolve(waiting)
            else:
                self._durable.add_done_callback(partial(_resolve_after, waiting))
                self._commit_wanted.set()
            await asyncio.sleep(self._options.commit_interval_s)

    def _release_durable_waiters(self) -> None:
        """Revocation and shutdown commit by themselves (the group consumer is busy in its callback):
        records waiting for the continuous commit must not wait for it then."""
        waiting, self._durable = self._durable, asyncio.get_running_loop().create_future()
        _resolve(waiting)

    async def _commit(self) -> bool:
        """Synchronous commit of every changed partition; True when all of them were accepted."""
        candidates = self._commit_candidates()
        accepted = True
        for consumer, parts in self._by_consumer(list(candidates)):
            if not consumer.alive:
                accepted = False
                continue
            offsets = {p: candidates[p] for p in parts}
            try:
                if await consumer.call(partial(commit_offsets, offsets=offsets)):
                    self._committed.update(offsets)
                else:
                    accepted = False
            except RuntimeError:  # the consumer closed meanwhile
                accepted = False
        return accepted

    async def _end_offsets(self) -> dict[Partition, int]:
        """The end of every input partition holding records, and of every retry partition serving one
        (same number), as they are now: what `--exit-at-end` must see committed."""
        assert self._main is not None
        topics = (self._settings.input_topic, self._settings.retry_topic)

        def read(consumer: Consumer) -> dict[Partition, int]:
            ends = {}
            numbers: set[int] = set()
            for topic in topics:
                metadata = consumer.list_topics(topic, timeout=10)
                partitions = metadata.topics[topic].partitions
                numbers = numbers or set(partitions)
                for index in sorted(numbers & set(partitions)):
                    low, high = consumer.get_watermark_offsets(TopicPartition(topic, index), timeout=10)
                    if high > low:
                        ends[(topic, index)] = high
            return ends

        return await self._main.call(read)

    async def _caught_up(self, end_offsets: Mapping[Partition, int], *, ask_broker: bool) -> bool:
        """Nothing runs, and every record that existed at start-up, and every retry record we wrote
        since, is committed. Partitions we own are judged by our own commits, at once; the others
        (owned by other members) by the group's committed offsets, when `ask_broker`."""
        assert self._main is not None and self._retry is not None
        if self._tasks or any(o.in_flight for o in self._offsets.values()):
            return False
        if not await self._commit():
            return False
        targets = dict(end_offsets)
        for partition, offset in self._retry_written.items():
            targets[partition] = max(targets.get(partition, 0), offset + 1)
        starts_at_end = self._settings.chosen("auto.offset.reset") in {"latest", "largest", "end"}
        elsewhere = []
        for partition, end in targets.items():
            owned = self._offsets.get(partition)
            if owned is None:
                elsewhere.append(partition)
            elif owned.committable is None:
                # Nothing committed and nothing read: a new group told to start at the end
                # (KAFKA_AUTO_OFFSET_RESET=latest) skips what existed at start-up, by the user's choice.
                if not (starts_at_end and partition[0] == self._settings.input_topic):
                    return False
            elif owned.committable < end:
                return False
        if not elsewhere:
            return True
        if not ask_broker:
            return False
        try:
            committed: list[TopicPartition] = []
            for consumer, parts in self._by_consumer(elsewhere):
                committed += await consumer.call(
                    partial(_committed, [TopicPartition(t, p) for t, p in parts])
                )
        except KafkaException as err:  # e.g. the group coordinator moving: ask again on the next tick
            log.info("committed offsets not available yet", error=str(err))
            return False
        return all(tp.offset >= targets[(tp.topic, tp.partition)] for tp in committed)

    def _fail(self, err: BaseException) -> None:
        if self._fatal is None:
            self._fatal = err
            log.error("fatal error, stopping", error=str(err), error_type=type(err).__name__)
        self._stopping.set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve_after(waiting: asyncio.Future[None], _done: asyncio.Future[None]) -> None:
    _resolve(waiting)


def _too_large(failure: Failure, err: RecordTooLarge, copy: str) -> Failure:
    """The dead letter of a record whose `copy` does not fit: class invalid, no value, the first reason kept
    in the message."""
    if failure.reason is DlqReason.RECORD_TOO_LARGE:
        return failure
    return Failure(
        reason=DlqReason.RECORD_TOO_LARGE,
        message=f"its {copy} copy does not fit ({err}); value left out, read it from the original; "
        f"reason before: {failure.reason.value}: {failure.message}",
        http_status=failure.http_status,
        attempts=failure.attempts,
        first_failure_at=failure.first_failure_at,
    )


def _committed(partitions: list[TopicPartition], consumer: Consumer) -> list[TopicPartition]:
    return consumer.committed(partitions, timeout=10)


def _lane_of(record: InboundRecord) -> LaneId:
    if record.key:
        key: str | None = record.key.decode("utf-8", "replace")
    else:
        try:
            key = event_key(None, decode_json(record.value or b""))
        except InvalidEvent:
            key = None
    # A record with no key at all has no order to keep: it gets a lane of its own.
    return (record.topic, record.partition, key if key else f"{NO_KEY}offset:{record.offset}")


def _names(partitions: list[Partition]) -> list[str]:
    return [f"{t}[{p}]" for t, p in partitions]


def _log_outcome(record: InboundRecord, outcome: str, started: float, **fields: Any) -> None:
    log.info(
        "event",
        outcome=outcome,
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
        **fields,
    )


def _log_command_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("consumer command failed", error=str(task.exception()))
