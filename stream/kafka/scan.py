"""Read the keys still waiting in the retry path, without joining a group or committing anything.

The parked state of a key is derived from the retry topic itself: a key is parked while a record of it
sits in a retry partition at or after that partition's committed offset. Reading those keys when an input
partition is assigned makes the state survive restarts and move between replicas with the partition.
Finished records above the committed offset are counted too: that can only park a key a little longer
(its later events take the retry path, in order), never release one too early.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.engine.delivered import Marker
from stream.engine.records import GROUP_HEADER
from stream.errors import SourceFailed
from stream.kafka.config import KafkaSettings
from stream.kafka.consumer import message_headers

Partition = tuple[str, int]
T = TypeVar("T")


def read_committed(
    settings: KafkaSettings, *, group_id: str, partitions: list[Partition], timeout_s: float = 30.0
) -> dict[Partition, tuple[int | None, str | None]]:
    """Each partition's committed offset and metadata for `group_id` (None when nothing is committed).

    A separate consumer that joins no group: the engine calls this while its group consumer waits in
    the assignment callback."""
    if not partitions:
        return {}
    consumer = _reader(settings, group_id)
    try:
        wanted = [TopicPartition(t, p) for t, p in partitions]
        committed = while_coordinator_loads(
            lambda: consumer.committed(wanted, timeout=timeout_s), timeout_s=timeout_s
        )
    finally:
        consumer.close()
    return {
        (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None, tp.metadata) for tp in committed
    }


COORDINATOR_NOT_READY = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


def while_coordinator_loads(call: Callable[[], T], *, timeout_s: float) -> T:
    """`call()`, tried again while the group coordinator is not ready: a broker that never hosted a group
    answers NOT_COORDINATOR (or "loading") for its first seconds. Any other error, or the deadline,
    passes the error on."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except KafkaException as err:
            code = err.args[0].code() if err.args and isinstance(err.args[0], KafkaError) else None
            if code not in COORDINATOR_NOT_READY or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def read_watermarks(
    settings: KafkaSettings, topic: str, timeout_s: float = 30.0
) -> dict[int, tuple[int, int]]:
    """Partition number -> (low, high) offsets of every partition of `topic`, read by a reader of its own
    (not the group member's thread, whose polling a slow answer would hold up)."""
    consumer = _reader(settings, f"{settings.group_id}.watermarks")
    try:
        metadata = consumer.list_topics(topic, timeout=timeout_s)
        marks = {}
        for number in sorted(metadata.topics[topic].partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, number), timeout=timeout_s)
            marks[number] = (int(low), int(high))
        return marks
    finally:
        consumer.close()


class EndOffsets:
    """The end (high watermark) of partitions, asked of the broker by one long-lived reader of its own
    that joins no group: for the lag metrics, every few seconds, off the event loop (`read` blocks)."""

    def __init__(self, settings: KafkaSettings, *, timeout_s: float = 5.0) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        self._consumer: Consumer | None = None

    def read(self, partitions: Sequence[Partition]) -> dict[Partition, int]:
        """The ends of those partitions the broker answered for in time (the others are left out)."""
        if self._consumer is None:
            self._consumer = _reader(self._settings, f"{self._settings.group_id}.watermarks")
        ends = {}
        for topic, number in partitions:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(topic, number), timeout=self._timeout_s
                )
            except KafkaException:
                continue
            ends[(topic, number)] = int(high)
        return ends

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _reader(settings: KafkaSettings, group_id: str) -> Consumer:
    return Consumer(
        {
            **settings.client_config("consumer"),
            "group.id": group_id,
            "client.id": f"zendesk-stream-scan-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        },
        logger=logging.getLogger("librdkafka"),
    )


@dataclass(frozen=True, slots=True)
class Scanned:
    """One record read by `scan_records`: where it is, its key, headers and append time."""

    partition: Partition
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp_ms: int | None
    value: bytes | None = None  # kept only when asked for (`values=True`)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", "replace")
        return None

    def written_by(self, group: str) -> bool:
        """Written by `group`'s service (records without `zs.group` predate it and count as ours)."""
        return self.header(GROUP_HEADER) in (None, group)


def scan_records(
    settings: KafkaSettings,
    *,
    group_id: str,
    starts: Mapping[Partition, int | None],
    timeout_s: float = 60.0,
    values: bool = False,
) -> Iterator[Scanned]:
    """Every record of each partition from its start (None: from the beginning) up to its end now, read
    by a consumer that joins no group and commits nothing. Values are kept only with `values`.
    `timeout_s` bounds the wait for new records, not the whole scan, which may be long."""
    if not starts:
        return
    consumer = _reader(settings, group_id)
    try:
        assigned: list[TopicPartition] = []
        ends: dict[Partition, int] = {}
        for (name, number), offset in starts.items():
            low, high = consumer.get_watermark_offsets(TopicPartition(name, number), timeout=timeout_s)
            start = max(offset, low) if offset is not None else low
            if start < high:
                assigned.append(TopicPartition(name, number, start))
                ends[(name, number)] = high
        if not assigned:
            return
        consumer.assign(assigned)
        last_progress = time.monotonic()
        while ends:
            if time.monotonic() - last_progress > timeout_s:
                raise SourceFailed(f"reading {sorted(ends)}: no record for {timeout_s:.0f}s")
            for message in consumer.consume(500, 0.2):
                last_progress = time.monotonic()
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                if topic is None or partition is None:
                    continue
                part = (topic, partition)
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        ends.pop(part, None)  # read to the end (the last offsets may be control records)
                    continue
                if offset is None or part not in ends or offset >= ends[part]:
                    continue
                kind, stamp = message.timestamp()
                value = message.value() if values else None
                yield Scanned(
                    part, offset, message.key(), message_headers(message), stamp if kind else None, value
                )
                if offset + 1 >= ends[part]:
                    del ends[part]
    finally:
        consumer.close()


def scan_keys(
    settings: KafkaSettings,
    *,
    group_id: str,
    committed: Mapping[Partition, int | None],
    writer_group: str,
    timeout_s: float = 60.0,
) -> dict[Partition, Counter[str]]:
    """Keys (with their record counts) from each partition's committed offset (as `read_committed`
    gave it; None: from the start) up to its end now. Records another group wrote (`zs.group`) are
    not ours to act on and park nothing."""
    found: dict[Partition, Counter[str]] = {p: Counter() for p in committed}
    for record in scan_records(settings, group_id=group_id, starts=committed, timeout_s=timeout_s):
        if record.key and record.written_by(writer_group):
            found[record.partition][record.key.decode("utf-8", "replace")] += 1
    return found


def read_markers(
    settings: KafkaSettings, *, group_id: str, partitions: Sequence[Partition], timeout_s: float = 60.0
) -> dict[Partition, list[Marker]]:
    """The keyed records of each partition from its start to its end now, in order, with their values
    and append times in seconds: the markers of delivered events (`stream.engine.delivered`)."""
    found: dict[Partition, list[Marker]] = {p: [] for p in partitions}
    starts: dict[Partition, int | None] = dict.fromkeys(partitions)
    for record in scan_records(settings, group_id=group_id, starts=starts, timeout_s=timeout_s, values=True):
        if record.key is not None and record.timestamp_ms is not None:
            found[record.partition].append((record.key, record.value, record.timestamp_ms / 1000))
    return found
