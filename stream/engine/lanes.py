"""Per-key lanes: which record may start now.

Order rules, enforced here and in the runner's parked-key check, and nowhere else:
1. Within a partition, the records of one key run strictly one at a time, in offset order. The key is
   the Kafka record key, else the event's userId, else its anonymousId.
2. A record with no key at all has no order to keep: it gets a lane of its own.
3. Different keys run concurrently, up to the in-flight limit; the lane whose waiting record has the
   lowest offset starts first, which keeps the committed point close behind the work.
4. A lane's head may carry a time before which it must not start (a retry's back-off, a retry record's
   not-before): the lane waits without holding an in-flight slot, and the other keys go on.
5. While a key has a record in the retry path, its later events follow it into the retry topic, in
   order (`parking.ParkedKeys`; the runner checks it before an attempt).

Pure bookkeeping, no I/O and no clock of its own: the runner passes `now`, starts the work and reports
its end.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stream.engine.ports import Partition
from stream.engine.records import InboundRecord


@dataclass(frozen=True, slots=True)
class LaneId:
    topic: str
    partition: int
    key: str | None  # None: a record without any key (rule 2), told apart by its offset
    keyless_offset: int | None = None

    @classmethod
    def of(cls, record: InboundRecord, key: str | None) -> LaneId:
        if key:
            return cls(record.topic, record.partition, key)
        return cls(record.topic, record.partition, None, record.offset)

    @property
    def source(self) -> Partition:
        return (self.topic, self.partition)


class Lanes:
    def __init__(self, *, max_in_flight: int) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._max_in_flight = max_in_flight
        self._queues: dict[LaneId, deque[tuple[InboundRecord, float]]] = {}
        self._running: set[LaneId] = set()
        self._ready: list[tuple[int, int, LaneId]] = []  # heap (head offset, tie, lane): due, no slot yet
        self._timed: list[tuple[float, int, LaneId]] = []  # (due, tie-break, lane): head not yet due
        self._waiting_until: dict[LaneId, float] = {}
        self._tie = itertools.count()
        self._held: set[Partition] = set()  # partitions that may not start new work

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def add(self, lane: LaneId, record: InboundRecord, *, due: float = 0.0) -> None:
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = deque()
        queue.append((record, due))
        if len(queue) == 1 and lane not in self._running:
            self._enqueue_head(lane, due)

    def startable(self, now: float, *, limit: int | None = None) -> Iterator[tuple[LaneId, InboundRecord]]:
        """Lanes to start now (each marked running); stops at the in-flight limit, or at `limit` lanes
        running when that is lower (a Zendesk outage: only its probes run)."""
        most = self._max_in_flight if limit is None else min(limit, self._max_in_flight)
        while self._timed and self._timed[0][0] <= now:
            due, _, lane = heapq.heappop(self._timed)
            if self._waiting_until.get(lane) == due:  # else a stale entry of a dropped or re-timed lane
                del self._waiting_until[lane]
                self._make_ready(lane)
        skipped: list[tuple[int, int, LaneId]] = []
        while self._ready and len(self._running) < most:
            entry = heapq.heappop(self._ready)
            lane = entry[2]
            if lane.source in self._held:
                skipped.append(entry)
                continue
            self._running.add(lane)
            yield lane, self._queues[lane][0][0]
        for entry in skipped:
            heapq.heappush(self._ready, entry)

    def next_due(self) -> float | None:
        """When the earliest waiting lane becomes due, if any lane waits for a time."""
        while self._timed and self._waiting_until.get(self._timed[0][2]) != self._timed[0][0]:
            heapq.heappop(self._timed)  # stale entry of a lane dropped or re-timed
        return self._timed[0][0] if self._timed else None

    def followers(self, lane: LaneId, now: float, limit: int) -> list[InboundRecord]:
        """Up to `limit` records waiting behind the running head of `lane`, in order, that are due."""
        queue = self._queues[lane]
        found = []
        for record, due in itertools.islice(queue, 1, limit + 1):
            if due > now:
                break
            found.append(record)
        return found

    def finish(self, lane: LaneId, count: int = 1) -> None:
        """The head record of `lane` (and the `count - 1` carried with it) is finished: the lane's next
        record becomes its head."""
        self._running.discard(lane)
        queue = self._queues[lane]
        for _ in range(count):
            queue.popleft()
        if queue:
            self._enqueue_head(lane, queue[0][1])
        else:
            del self._queues[lane]

    def defer(self, lane: LaneId, until: float) -> None:
        """The head record stays at the head, to start again at `until` (its slot is released now)."""
        self._running.discard(lane)
        self._enqueue_head(lane, until)

    def take(self, lane: LaneId) -> InboundRecord | None:
        """Start `lane` out of turn (marked running) if its head waits for a time: a Zendesk outage's
        probe. None when it does not wait (dropped, running, ready), its partition is held or the
        in-flight limit is reached."""
        if lane not in self._waiting_until or lane.source in self._held:
            return None
        if len(self._running) >= self._max_in_flight:
            return None
        del self._waiting_until[lane]  # its entry in the timed heap is stale from now on
        self._running.add(lane)
        return self._queues[lane][0][0]

    def hasten(self) -> int:
        """Every record waiting for a time (a back-off, a retry record's not-before) is due now: a Zendesk
        outage is over and what it made wait goes first. Returns how many heads were waiting."""
        waiting = list(self._waiting_until)
        self._waiting_until.clear()
        self._timed.clear()
        for lane, queue in self._queues.items():
            if any(due > 0.0 for _, due in queue):
                self._queues[lane] = deque((record, 0.0) for record, _ in queue)
        for lane in waiting:
            self._make_ready(lane)
        return len(waiting)

    def _enqueue_head(self, lane: LaneId, due: float) -> None:
        if due > 0.0:
            self._waiting_until[lane] = due
            heapq.heappush(self._timed, (due, next(self._tie), lane))
        else:
            self._make_ready(lane)

    def _make_ready(self, lane: LaneId) -> None:
        heapq.heappush(self._ready, (self._queues[lane][0][0].offset, next(self._tie), lane))

    def hold(self, partitions: Iterable[Partition]) -> None:
        """Start nothing more from these partitions (revocation, shutdown)."""
        self._held.update(partitions)

    def is_held(self, partition: Partition) -> bool:
        return partition in self._held

    def release(self, partitions: Iterable[Partition]) -> None:
        self._held.difference_update(partitions)

    def drop(self, partitions: Iterable[Partition]) -> int:
        """Forget every waiting record of these partitions (their running work must be over).
        Returns how many records were dropped; they are not committed, so their next owner reads them."""
        gone = set(partitions)
        dropped = 0
        for lane in [lane for lane in self._queues if lane.source in gone]:
            dropped += len(self._queues.pop(lane))
            self._running.discard(lane)
            self._waiting_until.pop(lane, None)
        self._ready = [entry for entry in self._ready if entry[2].source not in gone]
        heapq.heapify(self._ready)
        self._held -= gone
        return dropped
