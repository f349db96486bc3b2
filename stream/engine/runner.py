"""The run loop: records from the source into per-key lanes, outcomes into copies and commits.

This module only wires the parts, each of which keeps its own rules:
- `lanes`: which record may start (the order rules, numbered there);
- `commits`: what is committed and when (the commit rules, numbered there);
- `retry`: what becomes of a record after an attempt; `parking`: keys that wait in the retry path;
- `copies`: the retry and dead-letter copies; `breaker`: when to stop; `backpressure`: when to pause;
- `outage`: when nearly everything fails (Zendesk is down): pause and probe instead of retrying;
- `end`: when `--exit-at-end` has caught up; `stats`: the counters and the periodic summary;
- `ports`: the seams: Kafka (`stream.kafka` implements them; tests use in-memory ones) and the
  processor (`stream.delivery`); `options`: the names and knobs the engine is given.

The source feeds two kinds of partitions: input partitions from the consumer group, and the retry
partitions with the same numbers, assigned here by hand, so a key's retry records and its new events
are handled by the same process and "parked" is a local, consistent state (`on_assigned`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import random
import signal
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import structlog

from stream.engine.breaker import BreakerWindow
from stream.engine.commits import CommitGate, OffsetBook
from stream.engine.copies import Copies, DeadLettered, Written
from stream.engine.delivered import DONE, PENDING, DeliveredMemory
from stream.engine.end import EndTargets
from stream.engine.lanes import LaneId, Lanes
from stream.engine.options import EngineOptions, Topics
from stream.engine.outage import Change, OutageWatch, Verdict
from stream.engine.parking import ParkedKeys
from stream.engine.ports import (
    CommitOffsets,
    DurableProducer,
    NullObserver,
    Observer,
    Partition,
    Processor,
    RecordLabel,
    Source,
)
from stream.engine.records import (
    Failure,
    InboundRecord,
    not_before,
    previous_attempts,
    written_by_another_group,
)
from stream.engine.retry import (
    Attempts,
    Decision,
    Finish,
    RetryAt,
    ToDeadLetter,
    ToRetryTopic,
    parked_behind,
)
from stream.engine.stats import Stats
from stream.errors import CircuitOpen, FatalError, SourceFailed
from stream.handover import Interruptible, begin, interruptible
from stream.observability import bind_record
from stream.outcomes import DeadLetter, Delivered, Outcome, RetryReason, Skipped, SkipReason, Transient

log = structlog.get_logger("stream.engine")

EXIT_OK = 0
EXIT_FATAL = 1
CLOCK_SKEW_S = 300.0  # between our clock and Zendesk's, when looking for an event sent since a marker
INTERNAL_ERROR = "internal error: "  # the message of the Transient a bug in the processor becomes
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """What the engine holds now, for the metrics (taken on the loop; plain values only)."""

    in_flight: int  # records started and not yet committed (STREAM_MAX_IN_FLIGHT counts these)
    buffered: int  # records held beyond the committed point, running or waiting
    parked_keys: int
    breaker_open: bool
    committed: dict[Partition, int]  # of the partitions owned: the position committed (or started from)
    delivered_ids: int = 0  # tracks remembered as delivered (the dedup window's memory)


@dataclass
class _Head(Generic[P]):
    """The lane head's work (the head, and the followers it carries), its attempts so far and what they
    left for the next one."""

    records: tuple[InboundRecord, ...]
    attempts: Attempts
    resume: P | None = None


class Engine(Generic[P]):
    def __init__(
        self,
        *,
        source: Source,
        producer: DurableProducer,
        processor: Processor[P],
        topics: Topics,
        options: EngineOptions | None = None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        jitter: Callable[[], float] = random.random,
        on_progress: Callable[[Stats], None] | None = None,
        progress_interval_s: float = 0.5,
        observer: Observer | None = None,
        lag: Callable[[], int | None] | None = None,
    ) -> None:
        """`wall` is the wall clock (headers, not-before times); loop time drives everything else, so a
        virtual-time event loop drives the engine deterministically. `on_progress` is called with the
        counters every `progress_interval_s` while the engine runs, and once at the end. `observer` is
        told what happens (`ports.Observer`: the service's metrics and health); `lag`, the records of the
        owned partitions not yet committed as the service last measured them, for the progress line."""
        self._source = source
        self._producer = producer
        self._processor = processor
        self._topics = topics
        self._options = options or EngineOptions()
        self._wall = wall
        self._jitter = jitter
        self._on_progress = on_progress
        self._progress_interval_s = progress_interval_s
        self._observer: Observer = observer or NullObserver()
        self._observed = observer is not None
        self._lag = lag
        self._lanes = Lanes(max_in_flight=self._options.max_in_flight)
        self._book = OffsetBook()
        self._paused: set[Partition] = set()
        self._tasks: dict[LaneId, asyncio.Task[None]] = {}
        self._heads: dict[LaneId, _Head[P]] = {}
        self._interruptible: dict[LaneId, Interruptible] = {}  # of the running work (stream.handover)
        self._parked = ParkedKeys()
        self._delivered = DeliveredMemory(window_s=self._options.dedup_window_s)
        self._breaker = BreakerWindow()
        self._outage = OutageWatch(self._options.outage)
        self._outage_ended_at: datetime | None = None  # wall time the last outage ended
        self._turns: deque[LaneId] = deque()  # while down: the failed lanes, in the order of their turns
        self._copies = Copies(
            producer=producer, retry_topic=topics.retry, dlq_topic=topics.dlq, group=topics.group, wall=wall
        )
        self._end: EndTargets | None = None
        self._stopping = asyncio.Event()
        self._wakeup: asyncio.TimerHandle | None = None
        self._fatal: BaseException | None = None
        self._gate: CommitGate | None = None
        self.stats = Stats()

    # ------------------------------------------------------------------------------------ lifecycle

    async def run(self, *, exit_at_end: bool = False) -> int:
        loop = asyncio.get_running_loop()
        self._gate = CommitGate()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(signum, self.stop)
        self._source.start(self)
        committer = asyncio.create_task(self._commit_continuously(), name="committer")
        log.info("engine started", topic=self._topics.input, group=self._topics.group)
        try:
            if exit_at_end:
                self._end = EndTargets(ends=await self._end_offsets())
            await self._supervise()
        finally:
            self._observer.stopping(
                f"fatal error: {self._fatal}" if self._fatal is not None else "shutting down"
            )
            for signum in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
            await self._shut_down()
            self._report_progress()
        if self._fatal is not None:
            log.error("engine stopped", error=str(self._fatal), **self.summary())
            return EXIT_FATAL
        log.info("engine stopped", **self.summary())
        return EXIT_OK

    def stop(self) -> None:
        self._observer.stopping("stopped by a signal")
        self._stopping.set()

    @property
    def fatal(self) -> BaseException | None:
        """The error that stopped the engine, if one did."""
        return self._fatal

    def summary(self) -> dict[str, Any]:
        return self.stats.summary()

    def snapshot(self) -> EngineSnapshot:
        """The gauges' values now; call it on the loop."""
        committed = self._book.committed()
        return EngineSnapshot(
            in_flight=self._lanes.in_flight,
            buffered=sum(self._book.buffered().values()),
            parked_keys=len(self._parked),
            breaker_open=self._options.breaker.is_open(self._breaker),
            committed=committed,
            delivered_ids=len(self._delivered),
        )

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        asked_broker_at = reported_at = -1e9
        summarized_at, summarized = loop.time(), Stats()
        while not self._stopping.is_set():
            self._observer.heartbeat()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=0.1)
            if self._source.failure is not None and not self._stopping.is_set():
                self._fail(SourceFailed(f"a Kafka consumer stopped: {self._source.failure}"))
            if self._stopping.is_set():
                break
            if loop.time() - reported_at >= self._progress_interval_s:
                reported_at = loop.time()
                self._report_progress()
            if loop.time() - summarized_at >= self._options.summary_interval_s:
                self._log_summary(summarized, loop.time() - summarized_at)
                summarized_at, summarized = loop.time(), copy.deepcopy(self.stats)
            if self._end is not None:
                ask_broker = loop.time() - asked_broker_at >= 1.0  # others' progress: at most once a second
                asked_broker_at = loop.time() if ask_broker else asked_broker_at
                if await self._caught_up(self._end, ask_broker=ask_broker):
                    log.info("caught up with the end offsets seen at start-up")
                    break

    def _log_summary(self, before: Stats, seconds: float) -> None:
        """The periodic info line: what happened since the last one, and the rate."""
        log.info(
            "progress",
            **self.stats.since(before, seconds),
            in_flight=len(self._tasks),
            buffered=sum(self._book.buffered().values()),
            parked_keys=len(self._parked),
            lag=self._lag() if self._lag is not None else None,
        )

    def _report_progress(self) -> None:
        if self._on_progress is not None:
            self._on_progress(self.stats)

    async def _shut_down(self) -> None:
        self._lanes.hold(self._book.partitions)
        assert self._gate is not None
        self._gate.open()
        await self._finish_running(list(self._tasks.values()), self._options.shutdown_deadline_s)
        with contextlib.suppress(FatalError):
            await self._commit()
        await self._source.close()  # leaves the group: the last revocation commits what is finished
        await self._producer.close()

    def _fail(self, err: BaseException) -> None:
        if self._fatal is None:
            self._fatal = err
            log.error("fatal error, stopping", error=str(err), error_type=type(err).__name__)
            self._observer.stopping(f"fatal error: {err}")
        self._stopping.set()

    # ----------------------------------------------------------------------- partitions (rebalance)

    def _retry_partition(self, partition: Partition) -> Partition:
        return (self._topics.retry, partition[1])

    async def on_assigned(self, partitions: list[Partition]) -> None:
        """Input partitions arrive. Before any of their records may start, read which keys wait in the
        matching retry partitions (they are parked), then start reading those retry partitions."""
        retry_parts = [self._retry_partition(p) for p in partitions]
        self._lanes.hold(partitions)
        committed = await self._source.committed([*partitions, *retry_parts])
        for partition, position in committed.items():
            self._book.own(partition, position)
        waiting = await self._source.waiting_keys(
            {p: committed.get(p) for p in retry_parts}, writer_group=self._topics.group
        )
        for (_, number), keys in waiting.items():
            self._parked.add_all(number, keys)
        remembered = await self._recall_delivered([number for _, number in partitions])
        await self._source.assign(retry_parts)
        self._lanes.release(partitions)
        log.info(
            "partitions assigned",
            partitions=_names(partitions),
            parked_keys=sum(len(keys) for keys in waiting.values()),
            delivered_remembered=remembered,
        )
        self._observer.assigned(len(partitions))
        self._dispatch()

    async def _recall_delivered(self, numbers: list[int]) -> int:
        """Read the markers of these partitions' delivered events back into memory, before any of their
        records may start."""
        topic = self._topics.delivered
        if topic is None or not numbers:
            return 0
        markers = await self._source.delivered([(topic, n) for n in numbers])
        now_s = self._wall().timestamp()
        loaded = [self._delivered.load(n, markers.get((topic, n), []), now_s=now_s) for n in numbers]
        return sum(loaded)

    async def on_revoked(self, partitions: list[Partition]) -> CommitOffsets:
        """Stop dispatching, let in-flight work finish within the deadline, commit the retry side, and
        hand back the input positions to commit before the partitions are released (commit rule 5)."""
        owned = [p for p in partitions if p in self._book.partitions]
        retry_parts = [self._retry_partition(p) for p in owned]
        both = [*owned, *retry_parts]
        self._lanes.hold(both)
        assert self._gate is not None
        self._gate.open()
        running = {lane: task for lane, task in self._tasks.items() if lane.source in both}
        # Work only waiting (for a token, for a commit), or not begun (its task created while this
        # revocation was on its way to the loop), has sent nothing of its current step: hand it over at
        # once. The rest has a request out and finishes first, so its next owner repeats nothing.
        waiting = [lane for lane in running if self._sent_nothing(lane)]
        for lane in waiting:
            running[lane].cancel()
        if waiting:
            log.info("handing over work that was waiting", records=len(waiting))
        await self._finish_running(list(running.values()), self._options.revoke_deadline_s)
        offsets = self._book.candidates(owned)
        retry_offsets = self._book.candidates(retry_parts)
        if retry_offsets:
            await self._source.commit(retry_offsets)
        await self._source.unassign(retry_parts)
        self._forget(both)
        log.info("partitions revoked", partitions=_names(owned), committing=len(offsets))
        return offsets

    def _sent_nothing(self, lane: LaneId) -> bool:
        state = self._interruptible.get(lane)  # None: the task has not taken its first step
        return state is None or state.now

    async def on_lost(self, partitions: list[Partition]) -> None:
        """The group already gave these partitions away: abandon their work, commit nothing."""
        owned = [p for p in partitions if p in self._book.partitions]
        retry_parts = [self._retry_partition(p) for p in owned]
        both = [*owned, *retry_parts]
        self._lanes.hold(both)
        await self._finish_running([t for lane, t in self._tasks.items() if lane.source in both], 0)
        await self._source.unassign(retry_parts)
        self._forget(both)
        log.warning("partitions lost", partitions=_names(owned))

    def _forget(self, partitions: list[Partition]) -> None:
        self._lanes.drop(partitions)
        gone = set(partitions)
        for lane in [lane for lane in self._heads if lane.source in gone]:
            del self._heads[lane]
        inputs = [number for topic, number in partitions if topic == self._topics.input]
        self._parked.forget(inputs)
        self._delivered.forget(inputs)
        self._book.forget(partitions)
        self._paused.difference_update(partitions)

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
        # A task cancelled before its first step never ran `_attempt`'s finally: forget it here.
        for lane in [lane for lane, task in self._tasks.items() if task.done()]:
            del self._tasks[lane]
            self._interruptible.pop(lane, None)

    # -------------------------------------------------------------------------------------- records

    def on_records(self, records: list[InboundRecord]) -> None:
        """On the loop, in poll order: register every record (commit rule 1), then start what may."""
        loop_now, wall_now = asyncio.get_running_loop().time(), self._wall()
        consumed: dict[str, int] = {}
        for record in records:
            offsets = self._book.get((record.topic, record.partition))
            if offsets is None:  # fetched before a revocation we already handled
                continue
            self.stats.received += 1
            consumed[record.topic] = consumed.get(record.topic, 0) + 1
            in_retry_path = record.topic == self._topics.retry
            if offsets.register(record.offset):  # finished before a crash or a hand-over (commit rule 4)
                self.stats.already_done += 1
                self._outcome(record, "skipped", "already_done")
                self._finish_at_once(record, offsets, release=in_retry_path)
                continue
            if in_retry_path and written_by_another_group(record, self._topics.group):
                self._skip_foreign_retry(record)
                self._outcome(record, "skipped", "foreign_retry")
                self._finish_at_once(record, offsets, release=False)  # the scan did not count it
                continue
            due = 0.0
            wait_until = not_before(record) if in_retry_path else None
            if wait_until is not None and wait_until > wall_now and not self._released(record):
                due = loop_now + (wait_until - wall_now).total_seconds()
            self._lanes.add(LaneId.of(record, self._lane_key(record)), record, due=due)
        for topic, count in consumed.items():
            self._observer.consumed(topic, count)
        self._apply_back_pressure()
        self._dispatch()

    def _finish_at_once(self, record: InboundRecord, offsets: Any, *, release: bool) -> None:
        offsets.finish(record.offset)
        if release:
            key = self._lane_key(record)
            if key:
                self._release_parked(record.partition, key)
        assert self._gate is not None
        self._gate.want()

    def _lane_key(self, record: InboundRecord) -> str | None:
        """The processor's key for the record. A bug there must not lose the poll's batch (this runs in
        the loop's callback, where an exception would drop every record after it): the record then has
        no key, runs on its own, and its attempt meets the same bug and ends retried or dead-lettered."""
        try:
            return self._processor.lane_key(record)
        except Exception:
            log.exception("lane key raised", offset=record.offset, partition=record.partition)
            return None

    def _joins(self, work: list[InboundRecord], follower: InboundRecord) -> bool:
        try:
            return self._processor.joins(work, follower)
        except Exception:  # a bug must not wedge the lane: the follower then goes on its own
            log.exception("joins raised", offset=follower.offset, partition=follower.partition)
            return False

    def _skip_foreign_retry(self, record: InboundRecord) -> None:
        """Two deployments sharing a retry topic (set by hand) must not act on each other's retries."""
        self.stats.foreign_retries += 1
        log.warning(
            "skipped a retry record of another consumer group",
            partition=record.partition,
            offset=record.offset,
            written_by=(record.header("zs.group") or b"").decode("utf-8", "replace"),
            group=self._topics.group,
        )

    def _release_parked(self, number: int, key: str) -> None:
        if self._parked.release(number, key):
            log.info("key released from the retry path", partition=number)

    def _dispatch(self) -> None:
        if self._stopping.is_set():
            return
        loop = asyncio.get_running_loop()
        if self._outage.down:
            self._probe(loop.time())
        else:
            for lane, record in self._lanes.startable(loop.time()):
                self._start(lane, record)
        self.stats.max_in_flight_seen = max(self.stats.max_in_flight_seen, len(self._tasks))
        due = self._lanes.next_due()
        if self._outage.down:  # woken for the next probe only (the lanes' times wait for the outage's end)
            gate = self._outage.next_probe_at
            if gate > loop.time():
                due = gate
            elif self._lanes.in_flight >= self._outage.policy.probes:
                due = None  # the running probe's end dispatches again
        if due is not None and (self._wakeup is None or self._wakeup.when() > due):
            if self._wakeup is not None:
                self._wakeup.cancel()
            self._wakeup = loop.call_at(due, self._woken)

    def _start(self, lane: LaneId, record: InboundRecord) -> None:
        self._tasks[lane] = asyncio.create_task(self._attempt(lane, record), name=f"lane {lane}")

    def _probe(self, now: float) -> None:
        """While Zendesk is down only probes run: at their time, up to `probes` at once, each the lane
        that waited longest for its turn; a lane that never tried when no lane waits for one."""
        if now < self._outage.next_probe_at or self._lanes.in_flight >= self._outage.policy.probes:
            return
        while self._turns:
            lane = self._turns.popleft()
            record = self._lanes.take(lane)
            if record is not None:
                self._start(lane, record)
                return
        for lane, record in self._lanes.startable(now, limit=self._outage.policy.probes):
            self._start(lane, record)

    def _woken(self) -> None:
        self._wakeup = None
        self._dispatch()

    async def _attempt(self, lane: LaneId, record: InboundRecord) -> None:
        partition = (record.topic, record.partition)
        self._interruptible[lane] = begin()
        head = self._heads.get(lane)
        if head is None:
            head = self._heads[lane] = _Head(
                self._work(lane, record), Attempts(earlier=previous_attempts(record))
            )
        try:
            with bind_record(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=lane.key,
                message_id=self._label(record).message_id,
            ):
                retry_at = await self._try(lane, head)
            if retry_at is None and partition in self._book.partitions:
                offsets = self._book.partitions[partition]
                for finished in head.records:
                    offsets.finish(finished.offset)
                assert self._gate is not None
                self._gate.want()
                # The slot stays taken until a commit records the finish (commit rule 6). A partition
                # being revoked or shut down is committed by that step instead.
                if not self._lanes.is_held(partition):
                    with interruptible():
                        await self._gate.recorded()
        except asyncio.CancelledError:
            raise  # abandoned: not finished, not committed; the next owner reads it again
        except FatalError as err:  # commit rule 7
            self._fail(err)
            return
        finally:
            self._tasks.pop(lane, None)
            self._interruptible.pop(lane, None)
        if partition not in self._book.partitions:  # no longer ours
            return
        if retry_at is None:
            self._heads.pop(lane, None)
            self._lanes.finish(lane, len(head.records))
            self._apply_back_pressure()
        else:
            self._lanes.defer(lane, retry_at)
        self._dispatch()

    def _work(self, lane: LaneId, record: InboundRecord) -> tuple[InboundRecord, ...]:
        """The head and the followers it carries: only on the input path, where nothing waits for a time,
        and never for a parked key (its records take the retry path one by one)."""
        if (
            record.topic != self._topics.input
            or lane.key is None
            or self._parked.is_parked(record.partition, lane.key)
        ):
            return (record,)
        work = [record]
        loop_now = asyncio.get_running_loop().time()
        for follower in self._lanes.followers(lane, loop_now, self._options.max_carried):
            if not self._joins(work, follower):
                break
            work.append(follower)
        return tuple(work)

    async def _try(self, lane: LaneId, head: _Head[P]) -> float | None:
        """One attempt at the lane's head work: None when it is finished (commit rule 2), else when to try
        again. Carried records share the outcome: delivered together, or each copied to the retry or
        dead-letter topic, in order."""
        started = time.monotonic()
        record = head.records[0]
        in_retry_path = record.topic == self._topics.retry
        if not in_retry_path and lane.key is not None and self._parked.is_parked(record.partition, lane.key):
            decision: Decision = ToRetryTopic(parked_behind(head.attempts, self._wall()))
            outcome: Outcome | None = None
        else:
            outcome, head.resume = await self._deliver_once(head.records, head.resume)
            verdict = _verdict(outcome)
            self._watch(lane, verdict, outcome)
            now = asyncio.get_running_loop().time()
            if verdict is Verdict.FAILED and self._outage.down:
                # Zendesk's trouble, not the event's: not charged; the lane waits for its turn to probe
                decision = RetryAt(now + self._outage.policy.hold_s)
                self._turns.append(lane)
                self.stats.outage_waits += 1
            else:
                decision, head.attempts = self._options.retry.decide(
                    outcome,
                    head.attempts,
                    in_retry_path=in_retry_path,
                    now=now,
                    wall=self._wall(),
                    jitter=self._jitter(),
                )
        retry_at = None
        for carried in head.records:
            retry_at = await self._carry_out(
                decision, outcome=outcome, lane=lane, record=carried, attempts=head.attempts, started=started
            )
        if retry_at is None and in_retry_path and lane.key is not None:
            self._release_parked(record.partition, lane.key)
        return retry_at

    async def _carry_out(
        self,
        decision: Decision,
        *,
        outcome: Outcome | None,
        lane: LaneId,
        record: InboundRecord,
        attempts: Attempts,
        started: float,
    ) -> float | None:
        match decision:
            case Finish():
                self._finished(outcome, record, attempts, started)
                return None
            case RetryAt(at=at):
                if record.topic == self._topics.retry:
                    _log_outcome(
                        record, "retry_failed", started, attempts=attempts.count, error=_message(outcome)
                    )
                else:
                    self.stats.retried_in_place += 1
                return at
            case ToRetryTopic(failure=failure):
                await self._to_retry(lane, record, failure, started)
                return None
            case ToDeadLetter(failure=failure):
                await self._dead_letter(record, failure, started)
                return None

    def _finished(
        self, outcome: Outcome | None, record: InboundRecord, attempts: Attempts, started: float
    ) -> None:
        match outcome:
            case Delivered(operations=operations, summary=summary):
                self._observe(None)
                self.stats.delivered += 1
                self.stats.operations += operations
                self._outcome(record, "delivered", "none")
                _log_outcome(record, "delivered", started, summary=summary, attempts=attempts.count + 1)
            case Skipped(reason=reason, detail=detail):
                self.stats.skipped[reason.value] += 1
                self._outcome(record, "skipped", reason.value)
                _log_outcome(record, "skipped", started, reason=reason.value, detail=detail)

    async def _to_retry(self, lane: LaneId, record: InboundRecord, failure: Failure, started: float) -> None:
        written = await self._copies.to_retry(record, lane.key, failure)
        if isinstance(written, DeadLettered):  # too large for the retry topic
            self._dead_lettered(record, written.failure, started)
            return
        assert isinstance(written, Written)
        if self._end is not None:
            self._end.wrote(self._retry_partition((record.topic, record.partition)), written.offset)
        if lane.key is not None:
            self._parked.add(record.partition, lane.key)
        self.stats.sent_to_retry[failure.reason.value] += 1
        self._observer.produced("retry", failure.reason.value)
        parked = failure.reason is RetryReason.PARKED_BEHIND
        self._outcome(record, "parked" if parked else "retry_scheduled", failure.reason.value)
        if parked:
            _log_outcome(record, "parked_behind", started)
        else:
            _log_outcome(record, "sent_to_retry", started, attempts=failure.attempts, error=failure.message)

    async def _dead_letter(self, record: InboundRecord, failure: Failure, started: float) -> None:
        written = await self._copies.dead_letter(record, failure)
        self._dead_lettered(record, written.failure, started)

    def _dead_lettered(self, record: InboundRecord, failure: Failure, started: float) -> None:
        self.stats.dead_lettered[failure.reason.value] += 1
        self._observer.produced("dead_letter", failure.reason.value)
        self._outcome(record, "dead_lettered", failure.reason.value)
        _log_outcome(record, "dead_lettered", started, reason=failure.reason.value, attempts=failure.attempts)
        self._observe(failure)

    def _outcome(self, record: InboundRecord, outcome: str, reason: str) -> None:
        if self._observed:
            self._observer.outcome(self._label(record), outcome, reason)

    def _label(self, record: InboundRecord) -> RecordLabel:
        try:
            return self._processor.label(record)
        except Exception:  # a bug must not stop the lane: the record is then counted as unknown
            log.exception("label raised", offset=record.offset, partition=record.partition)
            return RecordLabel("unknown")

    def _observe(self, dead_letter: Failure | None) -> None:
        breaker = self._options.breaker
        self._breaker = breaker.observe(
            self._breaker, dead_letter=dead_letter.reason if dead_letter else None
        )
        if dead_letter is not None and breaker.is_open(self._breaker):
            self._fail(
                CircuitOpen(
                    f"circuit breaker open: {self._breaker.bad} of the last {breaker.window} events were "
                    f"dead-lettered by Zendesk or after retries (last: {dead_letter.reason.value}: "
                    f"{dead_letter.message[:200]}); stopping instead of emptying the topic into the "
                    "dead-letter topic"
                )
            )

    async def _deliver_once(
        self, records: tuple[InboundRecord, ...], resume: P | None
    ) -> tuple[Outcome, P | None]:
        """Process the work, unless Zendesk already holds its event (`stream.engine.delivered`): a track
        is announced before it is sent and settled after, each marker confirmed by the broker."""
        delivery_id = self._delivery_id(records)
        if delivery_id is None:
            return await self._process(records, resume)
        record, number = records[0], records[0].partition
        if self._delivered.has(number, delivery_id, now_s=self._wall().timestamp()):
            return Skipped(SkipReason.ALREADY_DELIVERED, "Zendesk acknowledged this event before"), resume
        since = self._delivered.pending_since(number, delivery_id)
        if since is not None:  # an attempt was cut off after it may have been sent
            held = await self._processor.was_delivered(record, since_s=since - CLOCK_SKEW_S)
            if not isinstance(held, bool):
                return held, resume
            log.info("checked an interrupted delivery in Zendesk", partition=number, found=held)
            if held:
                await self._mark(record, delivery_id, DONE)
                return Skipped(
                    SkipReason.ALREADY_DELIVERED, "found in Zendesk after a cut-off attempt"
                ), resume
        else:
            await self._mark(record, delivery_id, PENDING)
        outcome, resume = await self._process(records, resume)
        if isinstance(outcome, Delivered):
            await self._mark(record, delivery_id, DONE)
        elif _nothing_stored(outcome):
            await self._mark(record, delivery_id, None)
        return outcome, resume

    async def _mark(self, record: InboundRecord, delivery_id: bytes, value: bytes | None) -> None:
        """A marker, confirmed by the broker, before the work goes on. Work abandoned at a deadline still
        waits for it: its next owner reads it."""
        assert self._topics.delivered is not None
        send = asyncio.ensure_future(
            self._producer.send(
                self._topics.delivered, key=delivery_id, value=value, headers=(), partition=record.partition
            )
        )
        try:
            await asyncio.shield(send)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await send
            raise
        self._observer.produced(
            "delivered_marker", "done" if value == DONE else "pending" if value == PENDING else "tombstone"
        )
        number, now_s = record.partition, self._wall().timestamp()
        if value == DONE:
            self._delivered.remember(number, delivery_id, now_s=now_s)
        elif value == PENDING:
            self._delivered.begin(number, delivery_id, now_s=now_s)
        else:
            self._delivered.settle(number, delivery_id)

    def _delivery_id(self, records: tuple[InboundRecord, ...]) -> bytes | None:
        if self._topics.delivered is None or len(records) != 1:
            return None
        try:
            return self._processor.delivery_id(records[0])
        except Exception:  # a bug must not stop the lane; the event is then sent without the check
            log.exception("delivery id raised", offset=records[0].offset, partition=records[0].partition)
            return None

    async def _process(
        self, records: tuple[InboundRecord, ...], resume: P | None
    ) -> tuple[Outcome, P | None]:
        try:
            return await self._processor.process(records, resume)
        except FatalError:
            raise
        except Exception as err:  # a bug must not kill the lane: retry, then dead-letter
            log.exception("processing raised", offset=records[0].offset, partition=records[0].partition)
            return Transient(message=f"{INTERNAL_ERROR}{type(err).__name__}: {err}"), resume

    # ------------------------------------------------------------------------------ flow control

    def _apply_back_pressure(self) -> None:
        buffered = self._book.buffered()
        pause: list[Partition]
        resume: list[Partition]
        if self._outage.down and any(buffered.values()):
            # Fetch nothing more while Zendesk is down; with nothing left to probe with, fetch again.
            pause, resume = [p for p in buffered if p not in self._paused], []
        else:
            pause, resume = self._options.back_pressure.plan(buffered, self._paused)
        if pause:
            self._paused.update(pause)
            _in_background(self._source.pause(pause))
        if resume:
            self._paused.difference_update(resume)
            _in_background(self._source.resume(resume))

    # ------------------------------------------------------------------------------------ outages

    def _watch(self, lane: LaneId, verdict: Verdict, outcome: Outcome) -> None:
        """Feed the outage watch (`stream.engine.outage`) one attempt's verdict; act on a change."""
        loop_now = asyncio.get_running_loop().time()
        retry_after = outcome.retry_after_s if isinstance(outcome, Transient) else None
        down_since = self._outage.down_since
        match self._outage.attempted(loop_now, _watched(lane), verdict, retry_after):
            case Change.DECLARED:
                self.stats.outages += 1
                figures = self._outage.figures(loop_now)
                log.warning(
                    "zendesk outage declared: consumption paused, probing",
                    failures=figures.failures,
                    attempts=figures.attempts,
                    keys_failing=figures.keys_failing_again,
                    window_s=self._outage.policy.window_s,
                    waiting=sum(self._book.buffered().values()),
                    error=_message(outcome)[:200],
                )
                self._apply_back_pressure()
            case Change.ENDED:
                assert down_since is not None
                duration = loop_now - down_since
                self.stats.outage_s += duration
                self._outage_ended_at = self._wall()
                self._turns.clear()
                released = self._lanes.hasten()
                log.warning(
                    "zendesk outage over: consumption resumed",
                    duration_s=round(duration, 1),
                    waiting=sum(self._book.buffered().values()),
                    released=released,
                )
                self._apply_back_pressure()
                self._dispatch()

    def _released(self, record: InboundRecord) -> bool:
        """A retry record written before the last outage ended: its not-before is lifted (it waited
        because Zendesk was down, and Zendesk answers again)."""
        ended = self._outage_ended_at
        return (
            ended is not None
            and record.timestamp_ms is not None
            and (record.timestamp_ms <= ended.timestamp() * 1000)
        )

    # ------------------------------------------------------------------------------------- commits

    async def _commit_continuously(self) -> None:
        assert self._gate is not None
        try:
            await self._gate.run(self._commit, interval_s=self._options.commit_interval_s)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug: stop rather than let records wait forever
            self._fail(FatalError(f"committing offsets failed: {type(err).__name__}: {err}"))

    async def _commit(self) -> bool:
        """Commit every changed partition (commit rules 3-5); True when all of them were accepted."""
        candidates = self._book.candidates()
        if not candidates:
            return True
        if not await self._source.commit(candidates):
            return False
        self._book.recorded(candidates)
        return True

    # ------------------------------------------------------------------------------------ the end

    async def _end_offsets(self) -> dict[Partition, int]:
        """The end of every input partition holding records, and of every retry partition serving an
        input partition (same number) and holding records, as they are now."""
        inputs, retries = await asyncio.gather(
            self._source.watermarks(self._topics.input), self._source.watermarks(self._topics.retry)
        )
        targets = {(self._topics.input, n): high for n, (low, high) in inputs.items() if high > low}
        targets.update(
            {
                (self._topics.retry, n): high
                for n, (low, high) in retries.items()
                if high > low and n in inputs
            }
        )
        return targets

    async def _caught_up(self, end: EndTargets, *, ask_broker: bool) -> bool:
        """Nothing runs and every target is committed: ours by our own commits, at once; the others' by
        the group's committed positions, when `ask_broker`."""
        if self._tasks or any(o.in_flight for o in self._book.partitions.values()):
            return False
        if not await self._commit():
            return False
        remaining = end.remaining(
            self._book.partitions,
            skips_unread=lambda p: self._topics.starts_at_end and p[0] == self._topics.input,
        )
        if not remaining.owned_done:
            return False
        if not remaining.elsewhere:
            return True
        return ask_broker and end.reached(await self._source.committed(remaining.elsewhere))


def _in_background(command: Any) -> None:
    task = asyncio.ensure_future(command)
    task.add_done_callback(_log_command_failure)


def _nothing_stored(outcome: Outcome) -> bool:
    """Zendesk surely stored nothing: it refused, it answered with an error, or nothing was sent. A
    timeout or a dropped connection leaves the attempt pending: the event may have arrived."""
    match outcome:
        case Skipped() | DeadLetter():
            return True
        case Transient(http_status=status):
            return status is not None
    return False


def _watched(lane: LaneId) -> Hashable:
    """What the outage watch counts as one key: a key's input and retry lanes are the same key."""
    return (lane.partition, lane.key) if lane.key is not None else lane


def _verdict(outcome: Outcome) -> Verdict:
    """What an attempt tells of Zendesk's health (the table in `stream.engine.outage`)."""
    match outcome:
        case Delivered():
            return Verdict.ANSWERED
        case DeadLetter(http_status=status):
            return Verdict.ANSWERED if status is not None else Verdict.NEUTRAL
        case Transient(http_status=429):
            return Verdict.NEUTRAL
        case Transient(message=message) if message.startswith(INTERNAL_ERROR):
            return Verdict.NEUTRAL
        case Transient():
            return Verdict.FAILED
    return Verdict.NEUTRAL


def _message(outcome: Outcome | None) -> str:
    return outcome.message if isinstance(outcome, Transient | DeadLetter) else ""


def _names(partitions: list[Partition]) -> list[str]:
    return [f"{t}[{p}]" for t, p in partitions]


def _log_outcome(record: InboundRecord, outcome: str, started: float, **fields: Any) -> None:
    """One line per record with its outcome, at debug level (info carries a periodic summary)."""
    log.debug(
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
