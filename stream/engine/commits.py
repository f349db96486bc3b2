"""Commits: which offsets are committed, when, and what a finished record waits for.

Commit rules, enforced here and in `offsets.PartitionOffsets`, and nowhere else:
1. A record is registered with its partition's offsets when it arrives, in offset order, before any
   work on it starts.
2. A record is finished when it was delivered, deliberately skipped, or durably written to the retry
   or dead-letter topic (the producer confirmed it). A record waiting for its next attempt is not.
3. The committed offset of a partition is one past the end of its longest finished prefix: a record
   that is not finished holds back every later offset of its partition.
4. Records finished beyond that point travel in the commit's metadata. A new owner of the partition
   treats them as finished when it reads them again, so a crash repeats only the work that was in
   flight, not everything past the slowest key.
5. Commits follow finished work continuously (at most every `commit_interval_s`), and also happen when
   partitions are revoked (after their in-flight work finished or was abandoned) and at shutdown. A
   commit that fails is tried again.
6. A finished record keeps its in-flight slot until a commit has recorded it (`CommitGate`). So the
   records whose effects may have reached Zendesk without being committed are at most
   `max_in_flight`: that bounds what a crash (SIGKILL) makes the next owner repeat.
7. A fatal error stops the engine. Only finished work is ever committed, so nothing unfinished is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

from stream.engine.offsets import PartitionOffsets, decode_finished, encode_finished
from stream.engine.ports import CommitOffsets, Partition, Position


class OffsetBook:
    """The offsets of every partition we own (rules 1-4) and what was last committed of each."""

    def __init__(self) -> None:
        self.partitions: dict[Partition, PartitionOffsets] = {}
        self._committed: dict[Partition, Position] = {}
        self._encoded: dict[Partition, tuple[int, Position]] = {}  # by PartitionOffsets.version

    def own(self, partition: Partition, committed: Position | None) -> None:
        """Start tracking a partition from its committed position (None: nothing committed yet)."""
        self._encoded.pop(partition, None)
        if committed is None:
            self.partitions[partition] = PartitionOffsets()
            return
        done = decode_finished(committed.offset, committed.metadata)
        self.partitions[partition] = PartitionOffsets(start=committed.offset, finished_beyond=done)

    def forget(self, partitions: Iterable[Partition]) -> None:
        for partition in partitions:
            self.partitions.pop(partition, None)
            self._committed.pop(partition, None)
            self._encoded.pop(partition, None)

    def get(self, partition: Partition) -> PartitionOffsets | None:
        return self.partitions.get(partition)

    def candidates(self, partitions: Iterable[Partition] | None = None) -> dict[Partition, Position]:
        """What to commit (rules 3, 4): each partition's finished prefix with the finished offsets beyond
        it in the metadata; only what changed since the last commit."""
        chosen = self.partitions if partitions is None else partitions
        found = {}
        for partition in chosen:
            offsets = self.partitions.get(partition)
            if offsets is None or offsets.committable is None:
                continue
            encoded = self._encoded.get(partition)
            if encoded is not None and encoded[0] == offsets.version:
                wanted = encoded[1]  # unchanged since: no need to encode it again
            else:
                wanted = Position(
                    offsets.committable, encode_finished(offsets.committable, offsets.finished_beyond)
                )
                self._encoded[partition] = (offsets.version, wanted)
            if wanted != self._committed.get(partition):
                found[partition] = wanted
        return found

    def recorded(self, offsets: CommitOffsets) -> None:
        """These positions are committed now."""
        for partition, position in offsets.items():
            if partition in self.partitions:
                self._committed[partition] = position

    def committed(self) -> dict[Partition, int]:
        """Of every partition owned: the offset last committed, else the one its work started from
        (what the group had committed when the partition came), if known."""
        found = {p: pos.offset for p, pos in self._committed.items() if p in self.partitions}
        for partition, offsets in self.partitions.items():
            if partition not in found and offsets.start is not None:
                found[partition] = offsets.start
        return found

    def buffered(self) -> dict[Partition, int]:
        """Records held beyond the committed point, per partition: what back-pressure looks at."""
        return {p: o.in_flight for p, o in self.partitions.items()}


class CommitGate:
    """Rule 6: a finished record waits, holding its slot, until a commit that started after it finished
    succeeded. `run` is the continuous committer (rule 5)."""

    def __init__(self) -> None:
        self._wanted = asyncio.Event()
        self._next: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def want(self) -> None:
        """Something finished: commit soon."""
        self._wanted.set()

    async def recorded(self) -> None:
        """Until the next successful commit has recorded what finished so far."""
        await asyncio.shield(self._next)

    def open(self) -> None:
        """Revocation and shutdown commit by themselves (the group consumer is busy in its callback):
        what waits for the continuous commit must not wait for it then."""
        waiting, self._next = self._next, asyncio.get_running_loop().create_future()
        _resolve(waiting)

    async def run(self, commit: Callable[[], Awaitable[bool]], *, interval_s: float) -> None:
        """Commit when something finished, at most every `interval_s`; release the records that waited
        for it. A failed commit is tried again and they wait for that one. Exceptions from `commit`
        end the loop (the caller treats them as fatal) after releasing the waiters."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            waiting, self._next = self._next, loop.create_future()
            try:
                accepted = await commit()
            except BaseException:
                _resolve(waiting)
                raise
            if accepted:
                _resolve(waiting)
            else:
                self._next.add_done_callback(partial(_resolve_after, waiting))
                self._wanted.set()
            await asyncio.sleep(interval_s)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve_after(waiting: asyncio.Future[None], _done: asyncio.Future[None]) -> None:
    _resolve(waiting)
