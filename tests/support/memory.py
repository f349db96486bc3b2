"""In-memory implementations of the engine's ports, and a virtual-time event loop to drive them.

The real `Engine` runs over these in unit tests: fast, deterministic, no broker. Time is virtual: the
loop jumps to the next timer whenever nothing is ready, so a 30 s retry delay costs nothing and the
same test always takes the same path. A test that would wait forever fails at once (`Deadlock`).

Group semantics are those the engine relies on and no more: one member owns the partitions it was
given; `revoke` and `lose` move them away the way a rebalance does (revocation commits what the engine
hands back); committed positions are kept per group, the retry topic's under `<group>.retry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from stream.engine.delivered import Marker
from stream.engine.options import Topics
from stream.engine.ports import CommitOffsets, Partition, Position, RecordLabel, SourceHandler
from stream.engine.records import GROUP_HEADER, InboundRecord
from stream.errors import ProduceFailed, RecordTooLarge
from stream.handover import interruptible
from stream.outcomes import DeadLetter, Delivered, Outcome, Transient

T = TypeVar("T")
EPOCH = datetime(2026, 12, 1, tzinfo=UTC)


class Deadlock(RuntimeError):
    """Nothing is ready and no timer is set: the code under test waits for something that never comes."""


class _VirtualClockSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise Deadlock("the event loop has nothing to run and no timer set")
        self._loop.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(selector=_VirtualClockSelector(self))

    def time(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now)


def run_virtual(main: Callable[[VirtualTimeLoop], Coroutine[Any, Any, T]]) -> T:
    """Run `main(loop)` to its end on a fresh virtual-time loop."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(loop))
    finally:
        loop.close()


# ------------------------------------------------------------------------------------------ broker


@dataclass
class StoredRecord:
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int = 0


@dataclass
class MemoryBroker:
    topics: dict[str, list[list[StoredRecord]]] = field(default_factory=dict)
    committed: dict[tuple[str, Partition], Position] = field(default_factory=dict)  # (group, partition)
    commits: int = 0
    wall: Callable[[], datetime] | None = None  # stamps appended records; without it, a record's offset

    def create(self, topic: str, partitions: int = 1) -> None:
        self.topics[topic] = [[] for _ in range(partitions)]

    def append(
        self,
        topic: str,
        partition: int,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> int:
        log = self.topics[topic][partition]
        stamp = int(self.wall().timestamp() * 1000) if self.wall is not None else len(log)
        log.append(StoredRecord(key, value, tuple(headers), timestamp_ms=stamp))
        return len(log) - 1

    def produce(self, topic: str, key: str, value: bytes, *, partition: int | None = None) -> int:
        """A test's own produce: partitioned by the key's hash unless told."""
        number = partition if partition is not None else partition_of(key.encode(), len(self.topics[topic]))
        return self.append(topic, number, key=key.encode(), value=value)

    def record(self, topic: str, partition: int, offset: int) -> InboundRecord:
        stored = self.topics[topic][partition][offset]
        return InboundRecord(
            topic=topic,
            partition=partition,
            offset=offset,
            key=stored.key,
            value=stored.value,
            headers=stored.headers,
            timestamp_ms=stored.timestamp_ms,
        )

    def position(self, group: str, partition: Partition) -> Position | None:
        return self.committed.get((group, partition))


def partition_of(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


# ------------------------------------------------------------------------------------------ source


class MemorySource:
    """One group member: reads its input partitions and the retry partitions the engine assigns."""

    def __init__(
        self,
        *,
        broker: MemoryBroker,
        topics: Topics,
        partitions: Sequence[int] | None = None,
        poll_interval_s: float = 0.005,
        batch: int = 500,
    ) -> None:
        """`partitions`: the input partitions this member gets when it joins (default: all)."""
        self.broker = broker
        self._topics = topics
        self._joining = list(partitions) if partitions is not None else None
        self._poll_interval_s = poll_interval_s
        self._batch = batch
        self._handler: SourceHandler | None = None
        self._positions: dict[Partition, int] = {}  # assigned partitions -> next offset to deliver
        self.paused: set[Partition] = set()
        self.pauses: list[tuple[str, tuple[Partition, ...]]] = []  # ("pause"|"resume", partitions)
        self._poller: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None
        self.refuse_commits = False

    # the port

    def start(self, handler: SourceHandler) -> None:
        self._handler = handler
        self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def close(self) -> None:
        owned = [p for p in self._positions if p[0] == self._topics.input]
        if owned:
            await self.revoke(owned)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    async def assign(self, partitions: Sequence[Partition]) -> None:
        for partition in partitions:
            committed = self.broker.position(self._group_of(partition), partition)
            self._positions[partition] = committed.offset if committed is not None else 0

    async def unassign(self, partitions: Sequence[Partition]) -> None:
        for partition in partitions:
            self._positions.pop(partition, None)
            self.paused.discard(partition)

    async def pause(self, partitions: Sequence[Partition]) -> None:
        self.paused.update(partitions)
        self.pauses.append(("pause", tuple(partitions)))

    async def resume(self, partitions: Sequence[Partition]) -> None:
        self.paused.difference_update(partitions)
        self.pauses.append(("resume", tuple(partitions)))

    async def commit(self, offsets: CommitOffsets) -> bool:
        if self.refuse_commits:
            return False
        for partition, position in offsets.items():
            self.broker.committed[(self._group_of(partition), partition)] = position
        self.broker.commits += 1
        return True

    async def committed(self, partitions: Sequence[Partition]) -> dict[Partition, Position | None]:
        return {p: self.broker.position(self._group_of(p), p) for p in partitions}

    async def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        return {n: (0, len(log)) for n, log in enumerate(self.broker.topics[topic])}

    async def waiting_keys(
        self, starts: Mapping[Partition, Position | None], *, writer_group: str
    ) -> dict[Partition, Counter[str]]:
        found: dict[Partition, Counter[str]] = {}
        for (topic, number), start in starts.items():
            keys: Counter[str] = Counter()
            for stored in self.broker.topics[topic][number][start.offset if start else 0 :]:
                writer = dict(stored.headers).get(GROUP_HEADER)
                if stored.key and writer in (None, writer_group.encode()):
                    keys[stored.key.decode()] += 1
            found[(topic, number)] = keys
        return found

    async def delivered(self, partitions: Sequence[Partition]) -> dict[Partition, list[Marker]]:
        return {
            (topic, number): [
                (stored.key, stored.value, stored.timestamp_ms / 1000)
                for stored in self.broker.topics[topic][number]
                if stored.key is not None
            ]
            for topic, number in partitions
        }

    # the group, as a test moves it

    async def join(self) -> None:
        numbers = (
            self._joining if self._joining is not None else range(len(self.broker.topics[self._topics.input]))
        )
        partitions = [(self._topics.input, n) for n in numbers]
        for partition in partitions:
            committed = self.broker.position(self._topics.group, partition)
            if committed is not None:
                self._positions[partition] = committed.offset
            else:
                self._positions[partition] = (
                    len(self.broker.topics[partition[0]][partition[1]]) if (self._topics.starts_at_end) else 0
                )
        assert self._handler is not None
        await self._handler.on_assigned(partitions)

    async def revoke(self, partitions: Sequence[Partition]) -> None:
        """A rebalance takes these input partitions away: the engine finishes or abandons their work,
        then what it hands back is committed before they go."""
        assert self._handler is not None
        offsets = await self._handler.on_revoked(list(partitions))
        if offsets:
            await self.commit(offsets)
        for partition in partitions:
            self._positions.pop(partition, None)

    async def lose(self, partitions: Sequence[Partition]) -> None:
        assert self._handler is not None
        await self._handler.on_lost(list(partitions))
        for partition in partitions:
            self._positions.pop(partition, None)

    def crash(self) -> None:
        """Stop reading at once, as a SIGKILL would: nothing more is committed."""
        if self._poller is not None:
            self._poller.cancel()

    # internals

    def _group_of(self, partition: Partition) -> str:
        return self._topics.retry_group if partition[0] == self._topics.retry else self._topics.group

    async def _poll(self) -> None:
        await self.join()
        assert self._handler is not None
        while True:
            records: list[InboundRecord] = []
            for partition, position in list(self._positions.items()):
                if partition in self.paused:
                    continue
                log = self.broker.topics[partition[0]][partition[1]]
                end = min(len(log), position + self._batch)
                records.extend(
                    self.broker.record(partition[0], partition[1], o) for o in range(position, end)
                )
                self._positions[partition] = end
            if records:
                self._handler.on_records(records)
            await asyncio.sleep(self._poll_interval_s)


# ---------------------------------------------------------------------------------------- producer


class MemoryProducer:
    def __init__(self, *, broker: MemoryBroker, max_record_bytes: int | None = None) -> None:
        self.broker = broker
        self.max_record_bytes = max_record_bytes
        self.fail_with: ProduceFailed | None = None
        self.sent: list[tuple[str, int, int]] = []  # (topic, partition, offset)

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        partition: int | None = None,
    ) -> int:
        await asyncio.sleep(0.001)  # the broker's acknowledgement takes a moment
        if self.fail_with is not None:
            raise self.fail_with
        size = len(key or b"") + len(value or b"") + sum(len(k) + len(v) for k, v in headers)
        if self.max_record_bytes is not None and size > self.max_record_bytes:
            raise RecordTooLarge(f"{size} bytes > {self.max_record_bytes}")
        number = (
            partition if partition is not None else partition_of(key or b"", len(self.broker.topics[topic]))
        )
        offset = self.broker.append(topic, number, key=key, value=value, headers=headers)
        self.sent.append((topic, number, offset))
        return offset

    async def close(self) -> None:
        return None


async def eventually(condition: Callable[[], bool], *, within_s: float, step_s: float = 0.01) -> None:
    """Wait, in virtual time, until `condition` holds; fail at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"condition not met within {within_s}s of virtual time")
        await asyncio.sleep(step_s)


@dataclass
class Processed:
    at: float
    key: str | None
    topic: str
    offset: int
    value: bytes | None
    attempt: int


class ScriptedProcessor:
    """The engine's processor, scripted: `script(record, attempt)` says what an attempt comes to (default
    delivered), after `latency_s` of virtual time. Every attempt is recorded, in the order it ended."""

    def __init__(
        self,
        *,
        script: Callable[[InboundRecord, int], Outcome] | None = None,
        latency_s: float | Callable[[InboundRecord], float] = 0.01,
        token_wait_s: Callable[[InboundRecord], float] | None = None,
        joins: bool = False,
        delivery_ids: bool = False,
    ) -> None:
        """`latency_s`: the request on the wire; `token_wait_s`: a wait before it, for a rate-limit token,
        marked as one (`stream.handover`). With `delivery_ids`, a record whose value starts with `track:`
        has the rest of its value as its delivery id (`stream.engine.delivered`)."""
        self._script = script or (lambda _record, _attempt: Delivered(operations=1))
        self._latency_s = latency_s
        self._token_wait_s = token_wait_s
        self._joins = joins
        self._delivery_ids = delivery_ids
        self.held: set[bytes | None] = set()  # values Zendesk holds, as an earlier process left them
        self.asked: list[int] = []  # the offsets `was_delivered` was asked about
        self.attempts: list[Processed] = []
        self.works: list[tuple[int, ...]] = []  # the offsets of each attempt's work
        self.running: set[str | None] = set()
        self.most_running = 0

    def lane_key(self, record: InboundRecord) -> str | None:
        return record.key.decode() if record.key else None

    def label(self, record: InboundRecord) -> RecordLabel:
        return RecordLabel("track" if (record.value or b"").startswith(b"track:") else "identify")

    def joins(self, work: Sequence[InboundRecord], follower: InboundRecord) -> bool:
        """Records whose values start with `+` ride along with the record before them."""
        return self._joins and (follower.value or b"").startswith(b"+")

    def delivery_id(self, record: InboundRecord) -> bytes | None:
        value = record.value or b""
        return value.removeprefix(b"track:") if self._delivery_ids and value.startswith(b"track:") else None

    async def was_delivered(self, record: InboundRecord, *, since_s: float) -> bool | DeadLetter | Transient:
        """Zendesk holds what an attempt of this processor, or an earlier one (`held`), delivered."""
        self.asked.append(record.offset)
        return record.value in self.held or any(
            a.value == record.value and isinstance(self._script(record, a.attempt), Delivered)
            for a in self.attempts
        )

    async def process(
        self, records: Sequence[InboundRecord], resume: int | None
    ) -> tuple[Outcome, int | None]:
        record = records[0]
        self.works.append(tuple(r.offset for r in records))
        attempt = (resume or 0) + 1
        key = self.lane_key(record)
        assert key is None or key not in self.running, f"two records of key {key} ran at once"
        self.running.add(key)
        self.most_running = max(self.most_running, len(self.running))
        try:
            if self._token_wait_s is not None:
                with interruptible():
                    await asyncio.sleep(self._token_wait_s(record))
            latency = self._latency_s(record) if callable(self._latency_s) else self._latency_s
            await asyncio.sleep(latency)
        finally:
            self.running.discard(key)
        loop = asyncio.get_running_loop()
        self.attempts.append(Processed(loop.time(), key, record.topic, record.offset, record.value, attempt))
        return self._script(record, attempt), attempt

    def delivered_values(self, key: str) -> list[bytes | None]:
        """The values of `key`'s records, in the order their attempts ended (retries included)."""
        return [a.value for a in self.attempts if a.key == key]
