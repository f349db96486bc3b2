"""The engine's seams, as small Protocols: where records come from and where copies go (Kafka), and
what turns records into Zendesk writes (the processor, `stream.delivery.Destination`).

`stream.kafka` implements them on confluent-kafka (`KafkaSource`, `AsyncProducer`); unit tests drive
the real engine over in-memory implementations (tests/support/memory.py) with a virtual clock.

A source serves two kinds of partitions. Input partitions come from the consumer group: the source
calls the handler's `on_assigned`, `on_revoked` and `on_lost` when the group moves them. Retry
partitions are assigned by hand, by the engine (`assign`/`unassign`), under the retry group: the retry
partition of each input partition it owns, so a key's retries and its new events meet in one process.

The observer (`Observer`) is told what happens (records consumed, outcomes, copies written, the supervise
loop's heartbeat, assignment and halt); the service turns that into metrics and health
(`stream.metrics`), so the engine knows nothing of Prometheus. `NullObserver` ignores it all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from stream.engine.delivered import Marker
from stream.engine.records import InboundRecord
from stream.outcomes import DeadLetter, Outcome, Transient

Partition = tuple[str, int]  # topic, partition number
P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Position:
    """A committed position: the next offset to read, with the commit's metadata (offsets rule 4)."""

    offset: int
    metadata: str = ""


CommitOffsets = Mapping[Partition, Position]


class SourceHandler(Protocol):
    """What the engine does when records and partitions arrive (the source calls it on the loop)."""

    def on_records(self, records: list[InboundRecord]) -> None: ...

    async def on_assigned(self, partitions: list[Partition]) -> None: ...

    async def on_revoked(self, partitions: list[Partition]) -> CommitOffsets:
        """Finish or abandon the partitions' work; the source commits the returned positions before it
        lets the partitions go."""
        ...

    async def on_lost(self, partitions: list[Partition]) -> None: ...


class Source(Protocol):
    def start(self, handler: SourceHandler) -> None: ...

    async def close(self) -> None:
        """Leave the group (a last revocation commits what is finished) and stop reading."""
        ...

    @property
    def failure(self) -> BaseException | None:
        """Why the source stopped on its own (a fatal Kafka error), if it did."""
        ...

    async def assign(self, partitions: Sequence[Partition]) -> None:
        """Start reading these retry partitions from the retry group's committed positions."""
        ...

    async def unassign(self, partitions: Sequence[Partition]) -> None: ...

    async def pause(self, partitions: Sequence[Partition]) -> None: ...

    async def resume(self, partitions: Sequence[Partition]) -> None: ...

    async def commit(self, offsets: CommitOffsets) -> bool:
        """Synchronous commit (input partitions for the group, retry ones for the retry group); False when
        it failed and should be tried again."""
        ...

    async def committed(self, partitions: Sequence[Partition]) -> dict[Partition, Position | None]:
        """The committed positions, readable inside a rebalance callback too."""
        ...

    async def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """Partition number → (low, high) offsets now, for every partition of the topic."""
        ...

    async def waiting_keys(
        self, starts: Mapping[Partition, Position | None], *, writer_group: str
    ) -> dict[Partition, Counter[str]]:
        """The keys (with record counts) of the records from each retry partition's position to its end
        now, counting only records `writer_group` wrote: the keys parked in the retry path."""
        ...

    async def delivered(self, partitions: Sequence[Partition]) -> dict[Partition, list[Marker]]:
        """The markers in each partition of the delivered topic, from its start to its end now, in order:
        (delivery id, value, when it was written in wall-clock seconds) (`stream.engine.delivered`)."""
        ...


class DurableProducer(Protocol):
    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes]],
        partition: int | None = None,
    ) -> int:
        """Returns the record's offset once the broker confirmed it (acks=all). Raises ProduceFailed, or
        RecordTooLarge when the topic cannot take it."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class RecordLabel:
    """What the processor tells about a record for logs and metrics: its event type, one of a bounded
    set (`identify`, `track`, `group`, `other` for types it does not deliver, `unknown` when it cannot
    be read), and its message id when it has one."""

    type: str
    message_id: str | None = None


class Processor(Protocol[P]):
    """Turns records into Zendesk operations and sends them. What an attempt leaves behind (`P`, e.g. the
    plan and the index of the next operation) comes back to the next attempt of the same work, so it
    resumes after the steps that already succeeded."""

    def lane_key(self, record: InboundRecord) -> str | None:
        """The record's ordering key (order rule 1)."""
        ...

    def joins(self, work: Sequence[InboundRecord], follower: InboundRecord) -> bool:
        """Whether `follower`, waiting right behind `work` (a head and what it carries so far) in its
        lane, is carried with it as one piece of work (consecutive identifies of one user: one upsert)."""
        ...

    def delivery_id(self, record: InboundRecord) -> bytes | None:
        """What identifies the record's event among everything Zendesk acknowledged, for events that
        must not be posted twice (tracks); None for the others (`stream.engine.delivered`)."""
        ...

    async def was_delivered(self, record: InboundRecord, *, since_s: float) -> bool | DeadLetter | Transient:
        """Whether Zendesk already holds the record's event, sent at or after `since_s` by an attempt
        that was cut off before it was settled; an outcome when Zendesk cannot tell now."""
        ...

    async def process(self, records: Sequence[InboundRecord], resume: P | None) -> tuple[Outcome, P | None]:
        """One attempt at a piece of work: a record, or a head with the followers it carries."""
        ...

    def label(self, record: InboundRecord) -> RecordLabel:
        """The record's event type (bounded) and message id, for logs and metrics; never raises."""
        ...


class Observer(Protocol):
    """Told, on the event loop, what the engine does: cheap calls that must not raise or block."""

    def consumed(self, topic: str, count: int) -> None:
        """`count` records of `topic` arrived (input or retry topic)."""
        ...

    def outcome(self, label: RecordLabel, outcome: str, reason: str) -> None:
        """A record reached an end: `delivered`, `skipped`, `dead_lettered`, `retry_scheduled` or
        `parked` (sent to the retry topic behind an earlier record of its key); `reason` is the skip,
        dead-letter or retry reason (`none` for delivered)."""
        ...

    def produced(self, kind: str, reason: str) -> None:
        """A copy was confirmed by the broker: `retry` or `dead_letter` with its reason, or a
        `delivered_marker` (`pending`, `done`, `tombstone`)."""
        ...

    def heartbeat(self) -> None:
        """The supervise loop came round (several times a second while the engine runs)."""
        ...

    def assigned(self, partitions: int) -> None:
        """The group handed this member partitions (after their parked keys and markers were read)."""
        ...

    def stopping(self, reason: str) -> None:
        """The engine stops taking work: a signal, the end (`--exit-at-end`), or a fatal error."""
        ...


class NullObserver:
    def consumed(self, topic: str, count: int) -> None:
        pass

    def outcome(self, label: RecordLabel, outcome: str, reason: str) -> None:
        pass

    def produced(self, kind: str, reason: str) -> None:
        pass

    def heartbeat(self) -> None:
        pass

    def assigned(self, partitions: int) -> None:
        pass

    def stopping(self, reason: str) -> None:
        pass
