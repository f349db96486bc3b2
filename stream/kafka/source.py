"""The engine's source (`stream.engine.ports.Source`) on confluent-kafka.

Two consumers, each owned by its own thread (`ConsumerThread`): the group member, which reads the input
topic as a member of the consumer group, and the retry consumer, which reads by hand the retry
partitions the engine assigns, committing under `<group>.retry`. Every command is routed by topic to
the consumer that owns the partition. Committed positions and the retry path's keys are read by a
short-lived reader that joins no group (`stream.kafka.scan`), so they can be read while the group
member is inside a rebalance callback.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from confluent_kafka import Consumer, TopicPartition

from stream.engine.delivered import Marker
from stream.engine.ports import CommitOffsets, Partition, Position, SourceHandler
from stream.kafka.config import KafkaSettings
from stream.kafka.consumer import ConsumerOptions, ConsumerThread, assign, commit_offsets, unassign
from stream.kafka.scan import read_committed, read_markers, read_watermarks, scan_keys

T = TypeVar("T")


class KafkaSource:
    def __init__(self, *, settings: KafkaSettings, options: ConsumerOptions | None = None) -> None:
        self._settings = settings
        self._options = options or ConsumerOptions()
        self._main: ConsumerThread | None = None
        self._retry: ConsumerThread | None = None

    @property
    def retry_group(self) -> str:
        return f"{self._settings.group_id}.retry"

    def start(self, handler: SourceHandler) -> None:
        loop = asyncio.get_running_loop()
        self._main = ConsumerThread(
            settings=self._settings,
            topics=[self._settings.input_topic],
            options=self._options,
            loop=loop,
            on_records=handler.on_records,
            on_assigned=handler.on_assigned,
            on_revoked=handler.on_revoked,
            on_lost=handler.on_lost,
        )
        self._retry = ConsumerThread(
            settings=self._settings,
            topics=None,
            options=self._options,
            loop=loop,
            on_records=handler.on_records,
            group_id=self.retry_group,
        )
        self._retry.start()
        self._main.start()

    async def close(self) -> None:
        # The group member leaves first: its revocation callback still uses the retry consumer.
        for consumer in (self._main, self._retry):
            if consumer is not None:
                consumer.stop()
                await consumer.wait_closed()

    @property
    def failure(self) -> BaseException | None:
        for consumer in (self._main, self._retry):
            if consumer is not None and not consumer.alive:
                return consumer.failure or RuntimeError("the consumer thread ended")
        return None

    async def assign(self, partitions: Sequence[Partition]) -> None:
        await self._command(self._retry_consumer, assign(list(partitions)), tolerate_closed=False)

    async def unassign(self, partitions: Sequence[Partition]) -> None:
        await self._command(self._retry_consumer, unassign(list(partitions)), tolerate_closed=True)

    async def pause(self, partitions: Sequence[Partition]) -> None:
        for consumer, parts in self._by_consumer(partitions):
            await self._command(consumer, partial(_pause, _tps(parts)), tolerate_closed=True)

    async def resume(self, partitions: Sequence[Partition]) -> None:
        for consumer, parts in self._by_consumer(partitions):
            await self._command(consumer, partial(_resume, _tps(parts)), tolerate_closed=True)

    async def commit(self, offsets: CommitOffsets) -> bool:
        accepted = True
        for consumer, parts in self._by_consumer(list(offsets)):
            chosen = {p: offsets[p] for p in parts}
            done = await self._command(
                consumer, partial(commit_offsets, offsets=chosen), tolerate_closed=True
            )
            accepted = accepted and bool(done)
        return accepted

    async def committed(self, partitions: Sequence[Partition]) -> dict[Partition, Position | None]:
        found: dict[Partition, Position | None] = {}
        for group, parts in self._by_group(partitions):
            read = await asyncio.to_thread(read_committed, self._settings, group_id=group, partitions=parts)
            for partition, (offset, metadata) in read.items():
                found[partition] = None if offset is None else Position(offset, metadata or "")
        return found

    async def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        return await asyncio.to_thread(read_watermarks, self._settings, topic)

    async def waiting_keys(
        self, starts: Mapping[Partition, Position | None], *, writer_group: str
    ) -> dict[Partition, Counter[str]]:
        committed = {p: (None if pos is None else pos.offset) for p, pos in starts.items()}
        return await asyncio.to_thread(
            scan_keys,
            self._settings,
            group_id=self.retry_group,
            committed=committed,
            writer_group=writer_group,
        )

    async def delivered(self, partitions: Sequence[Partition]) -> dict[Partition, list[Marker]]:
        return await asyncio.to_thread(
            read_markers,
            self._settings,
            group_id=f"{self._settings.group_id}.delivered",
            partitions=partitions,
        )

    # ------------------------------------------------------------------------------------ routing

    @property
    def _retry_consumer(self) -> ConsumerThread:
        assert self._retry is not None
        return self._retry

    def _by_consumer(self, partitions: Sequence[Partition]) -> list[tuple[ConsumerThread, list[Partition]]]:
        assert self._main is not None and self._retry is not None
        retry = [p for p in partitions if p[0] == self._settings.retry_topic]
        main = [p for p in partitions if p[0] != self._settings.retry_topic]
        return [(c, ps) for c, ps in ((self._main, main), (self._retry, retry)) if ps]

    def _by_group(self, partitions: Sequence[Partition]) -> list[tuple[str, list[Partition]]]:
        retry = [p for p in partitions if p[0] == self._settings.retry_topic]
        main = [p for p in partitions if p[0] != self._settings.retry_topic]
        return [(g, ps) for g, ps in ((self._settings.group_id, main), (self.retry_group, retry)) if ps]

    @staticmethod
    async def _command(
        consumer: ConsumerThread, command: Callable[[Consumer], T], *, tolerate_closed: bool
    ) -> T | None:
        """Run a command on the consumer's thread. A consumer that closed meanwhile has nothing left to
        do: commands that only matter while it runs (commit, pause, unassign) then return None."""
        try:
            return await consumer.call(command)
        except RuntimeError:
            if tolerate_closed:
                return None
            raise


def _tps(partitions: list[Partition]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in partitions]


def _pause(partitions: list[TopicPartition], consumer: Consumer) -> None:
    consumer.pause(partitions)


def _resume(partitions: list[TopicPartition], consumer: Consumer) -> None:
    consumer.resume(partitions)
