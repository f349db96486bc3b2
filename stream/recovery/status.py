"""`zendesk-stream status`: where the service's consumer group stands, read from Kafka without joining it.

- Per input partition: the committed offset, the end offset and the lag (records after the commit; some
  of them may have finished out of order and be recorded in the commit's metadata).
- The retry path: per retry partition, the keys parked there (records at or after the retry group's
  committed offset, written by this group), how many records wait, and the oldest one's append time;
  those records' reasons.
- The dead-letter topic: its records written by this group, by reason.
- The group: its state and members, with the partitions each holds.

Reading the dead-letter topic means reading it whole, which takes a while for a large one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import KafkaException

from stream.engine.records import REASON_HEADER
from stream.errors import SourceFailed
from stream.kafka.config import KafkaSettings
from stream.kafka.scan import while_coordinator_loads


@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    committed: int | None  # the next offset the group reads; None when it never committed
    end: int
    lag: int


@dataclass(frozen=True, slots=True)
class ParkedPartition:
    partition: int
    keys: int
    records: int
    oldest_at: str | None  # ISO-8601 append time of the oldest waiting record
    oldest_offset: int | None


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: list[str]


@dataclass
class Status:
    group: str
    input_topic: str
    retry_topic: str
    dlq_topic: str
    group_state: str
    partitions: list[PartitionLag] = field(default_factory=list)
    parked: list[ParkedPartition] = field(default_factory=list)
    retry_reasons: dict[str, int] = field(default_factory=dict)
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def parked_keys(self) -> int:
        return sum(p.keys for p in self.parked)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["lag"] = self.lag
        document["parked_keys"] = self.parked_keys
        document["dlq_records"] = sum(self.dlq_reasons.values())
        document["retry_records"] = sum(self.retry_reasons.values())
        return document


def lag_of(committed: int | None, low: int, high: int) -> int:
    """Records after the group's position; a position before the log start counts from the start."""
    return high - max(committed if committed is not None else low, low)


def render(status: Status) -> str:
    """The status as text for a terminal."""
    lines = [
        f"group {status.group} ({status.group_state}), input {status.input_topic}",
        "",
        "partition  committed        end        lag",
    ]
    for p in status.partitions:
        committed = "-" if p.committed is None else f"{p.committed:,}"
        lines.append(f"{p.partition:>9}  {committed:>9}  {p.end:>9,}  {p.lag:>9,}")
    lines.append(f"{'total':>9}  {'':>9}  {'':>9}  {status.lag:>9,}")
    lines += ["", f"retry path ({status.retry_topic}): {status.parked_keys:,} parked keys"]
    for parked in status.parked:
        if parked.records:
            lines.append(
                f"  partition {parked.partition}: {parked.keys:,} keys, {parked.records:,} records, oldest "
                f"{parked.oldest_at or '?'} (offset {parked.oldest_offset})"
            )
    if status.retry_reasons:
        lines.append("  by reason: " + _counts(status.retry_reasons))
    dead = sum(status.dlq_reasons.values())
    lines += ["", f"dead letters ({status.dlq_topic}): {dead:,}"]
    if status.dlq_reasons:
        lines.append("  by reason: " + _counts(status.dlq_reasons))
    lines += ["", f"members: {len(status.members)}"]
    for member in status.members:
        held = ", ".join(member.partitions) or "nothing"
        lines.append(f"  {member.client_id} on {member.host}: {held}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in sorted(counts.items(), key=lambda kv: -kv[1]))


def _iso_ms(stamp_ms: int) -> str:
    return (
        datetime.fromtimestamp(stamp_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def read_status(settings: KafkaSettings, *, timeout_s: float = 60.0) -> Status:
    """Everything `render` shows, read from the brokers now."""
    from stream.kafka.scan import read_committed, read_watermarks, scan_records  # noqa: PLC0415

    group = settings.group_id
    state, members = describe_group(settings, timeout_s=timeout_s)
    status = Status(
        group=group,
        input_topic=settings.input_topic,
        retry_topic=settings.retry_topic,
        dlq_topic=settings.dlq_topic,
        group_state=state,
        members=members,
    )
    marks = read_watermarks(settings, settings.input_topic, timeout_s)
    inputs = [(settings.input_topic, n) for n in marks]
    committed = read_committed(settings, group_id=group, partitions=inputs, timeout_s=timeout_s)
    for number, (low, high) in marks.items():
        position = committed.get((settings.input_topic, number), (None, None))[0]
        status.partitions.append(PartitionLag(number, position, high, lag_of(position, low, high)))

    retry_marks = read_watermarks(settings, settings.retry_topic, timeout_s)
    retries = [(settings.retry_topic, n) for n in retry_marks]
    retry_committed = read_committed(
        settings, group_id=f"{group}.retry", partitions=retries, timeout_s=timeout_s
    )
    keys: dict[int, set[bytes]] = {n: set() for n in retry_marks}
    records: Counter[int] = Counter()
    oldest: dict[int, tuple[int | None, int]] = {}
    reasons: Counter[str] = Counter()
    starts = {p: retry_committed.get(p, (None, None))[0] for p in retries}
    for record in scan_records(settings, group_id=f"{group}.status", starts=starts, timeout_s=timeout_s):
        if not record.written_by(group):
            continue  # another deployment's retry: not parked here
        number = record.partition[1]
        records[number] += 1
        if record.key:
            keys[number].add(record.key)
        oldest.setdefault(number, (record.timestamp_ms, record.offset))
        reasons[record.header(REASON_HEADER) or "unknown"] += 1
    for number in retry_marks:
        stamp, offset = oldest.get(number, (None, None))
        status.parked.append(
            ParkedPartition(
                number, len(keys[number]), records[number], _iso_ms(stamp) if stamp else None, offset
            )
        )
    status.retry_reasons = dict(reasons)

    dlq_marks = read_watermarks(settings, settings.dlq_topic, timeout_s)
    dead: Counter[str] = Counter()
    dlq_starts: dict[tuple[str, int], int | None] = {(settings.dlq_topic, n): None for n in dlq_marks}
    for record in scan_records(settings, group_id=f"{group}.status", starts=dlq_starts, timeout_s=timeout_s):
        if record.written_by(group):
            dead[record.header(REASON_HEADER) or "unknown"] += 1
    status.dlq_reasons = dict(dead)
    return status


def describe_group(settings: KafkaSettings, *, timeout_s: float = 60.0) -> tuple[str, list[Member]]:
    """The service's consumer group: its state and its members."""
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    admin = AdminClient(settings.client_config("admin"))
    try:
        description = while_coordinator_loads(
            lambda: admin.describe_consumer_groups([settings.group_id], request_timeout=timeout_s)[
                settings.group_id
            ].result(timeout=timeout_s),
            timeout_s=timeout_s,
        )
    except KafkaException as err:
        raise SourceFailed(f"describing consumer group {settings.group_id}: {err}") from None
    members = []
    for member in description.members:
        assignment = member.assignment.topic_partitions if member.assignment else []
        members.append(
            Member(
                member_id=member.member_id,
                client_id=member.client_id,
                host=member.host,
                partitions=sorted(f"{tp.topic}[{tp.partition}]" for tp in assignment),
            )
        )
    state = description.state
    return str(getattr(state, "name", state)).lower(), members
