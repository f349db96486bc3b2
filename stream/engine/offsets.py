"""Which offset of a partition may be committed.

Rules, enforced here and nowhere else:
1. Every record handed to a lane is registered here, in offset order, before it starts.
2. A record is finished when it was delivered, deliberately skipped, or durably written to the retry
   or dead-letter topic (the producer confirmed it).
3. The committable offset is one past the end of the longest prefix of finished records: a record
   that is not finished holds back every later offset of its partition, whatever their state.
"""

from __future__ import annotations

from collections import deque


class PartitionOffsets:
    """Offsets of one partition in flight, in arrival order. Amortised O(1) per record."""

    __slots__ = ("_finished", "_next_commit", "_pending")

    def __init__(self, *, start: int | None = None) -> None:
        self._pending: deque[int] = deque()  # registered, in offset order
        self._finished: set[int] = set()  # finished but not yet at the head of _pending
        self._next_commit = start  # offset to commit next: one past the finished prefix

    def register(self, offset: int) -> None:
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} registered out of order after {self._pending[-1]}")
        if self._next_commit is None:
            self._next_commit = offset
        self._pending.append(offset)

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            done = self._pending.popleft()
            self._finished.discard(done)
            self._next_commit = done + 1

    @property
    def committable(self) -> int | None:
        """The offset to commit (Kafka's convention: the next record to read), or None if nothing yet."""
        return self._next_commit

    @property
    def in_flight(self) -> int:
        """Records registered and not yet inside the finished prefix (buffered, running or finished early)."""
        return len(self._pending)
