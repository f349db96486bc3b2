"""`zendesk-stream rewind`: move the service's consumer group to an earlier point, and its retry path
with it, so that what follows is processed again exactly once by the path it takes.

The plan, per input partition (pure: `plan_rewind`):
1. The asked position: the earliest offset, the first offset at or after a time, or a given offset;
   never before the log start nor past the end.
2. Events still waiting in the retry path (at or after the retry group's committed offset, written by
   this group) came from the input. Rewinding past them would process them twice, from both paths;
   rewinding short of them would leave some waiting in the retry path while later events of the same
   key come again from the input, out of order. So the new position is the asked one or, when the retry
   path holds an event from before it, that event's offset; and the retry partition moves to its end:
   everything it held is read again from the input, in order.
3. Nothing moves without `--execute`, and nothing while the group has active members.

The commit metadata of the new positions is empty: nothing after them counts as finished.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from stream.errors import ConfigError
from stream.kafka.config import KafkaSettings


@dataclass(frozen=True, slots=True)
class PartitionMove:
    partition: int
    current: int | None  # the group's committed offset now (None: never committed)
    asked: int
    new: int
    retry_current: int | None
    retry_new: int | None  # None: the retry partition is left as it is
    note: str = ""

    @property
    def reprocessed(self) -> int:
        """Events read again from the input (negative: skipped)."""
        return (self.current if self.current is not None else self.new) - self.new


def plan_rewind(
    *,
    asked: Mapping[int, int],
    committed: Mapping[int, int | None],
    marks: Mapping[int, tuple[int, int]],
    retry_committed: Mapping[int, int | None],
    retry_ends: Mapping[int, int],
    waiting_from: Mapping[int, int | None],
) -> list[PartitionMove]:
    """The moves for the partitions in `asked` (partition → asked offset). `waiting_from`: per partition,
    the lowest input offset of an event still waiting in the retry path (None: none waits)."""
    moves = []
    for number in sorted(asked):
        low, high = marks[number]
        wanted = min(max(asked[number], low), high)
        earliest = waiting_from.get(number)
        retry_now, retry_end = retry_committed.get(number), retry_ends.get(number)
        moved_retry = retry_end if retry_end is not None and retry_end > (retry_now or 0) else None
        new, note = wanted, ""
        if earliest is not None and earliest < low:
            # The input no longer holds it: the retry path must deliver it, so it stays as it is.
            moved_retry = None
            note = (
                f"the retry path holds events from before the input's log start ({earliest:,} < {low:,}): "
                "they stay there and are delivered from it"
            )
        elif earliest is not None and earliest < wanted:
            new = earliest
            note = f"from {new:,}, not {wanted:,}: the retry path holds an event from that offset"
        elif earliest is not None:
            note = "the events waiting in the retry path come again from the input"
        moves.append(PartitionMove(number, committed.get(number), wanted, new, retry_now, moved_retry, note))
    return moves


def render_plan(moves: list[PartitionMove], *, group: str, topic: str, execute: bool) -> str:
    lines = [
        f"rewind of group {group} on {topic}"
        + ("" if execute else " (plan only: --execute moves the offsets)"),
        "",
        "partition    current        new  reprocessed  retry path",
    ]
    for move in moves:
        current = "-" if move.current is None else f"{move.current:,}"
        retry = (
            "unchanged" if move.retry_new is None else f"{move.retry_current or 0:,} -> {move.retry_new:,}"
        )
        lines.append(f"{move.partition:>9}  {current:>9}  {move.new:>9,}  {move.reprocessed:>11,}  {retry}")
        if move.note:
            lines.append(f"{'':>11}{move.note}")
    total = sum(m.reprocessed for m in moves)
    lines += ["", f"{total:,} events will be processed again" if total >= 0 else f"{-total:,} events skipped"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- Kafka


@dataclass(frozen=True)
class Target:
    """Where to: the earliest offsets, a time, or offsets by partition number."""

    earliest: bool = False
    at: datetime | None = None
    offsets: Mapping[int, int] | None = None


def read_plan(
    settings: KafkaSettings, target: Target, *, partitions: set[int] | None, timeout_s: float = 60.0
) -> list[PartitionMove]:
    """The moves `target` asks for, from the group's positions and its retry path as they are now."""
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

    from stream.kafka.scan import read_committed, read_watermarks, scan_records  # noqa: PLC0415

    group, topic = settings.group_id, settings.input_topic
    marks = read_watermarks(settings, topic, timeout_s)
    chosen = sorted(n for n in marks if partitions is None or n in partitions)
    unknown = sorted((partitions or set()) - set(marks)) + sorted(set(target.offsets or {}) - set(marks))
    if unknown:
        raise ConfigError(f"{topic} has no partition {', '.join(map(str, sorted(set(unknown))))}")
    if target.offsets is not None:
        chosen = [n for n in chosen if n in target.offsets]
    asked: dict[int, int] = {}
    if target.earliest:
        asked = {n: marks[n][0] for n in chosen}
    elif target.offsets is not None:
        asked = {n: target.offsets[n] for n in chosen}
    elif target.at is not None:
        stamp = int(target.at.timestamp() * 1000)
        reader = Consumer({**settings.client_config("consumer"), "group.id": f"{group}.rewind"})
        try:
            found = reader.offsets_for_times(
                [TopicPartition(topic, n, stamp) for n in chosen], timeout=timeout_s
            )
        finally:
            reader.close()
        asked = {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}
    inputs = [(topic, n) for n in chosen]
    committed = read_committed(settings, group_id=group, partitions=inputs, timeout_s=timeout_s)
    retries = [(settings.retry_topic, n) for n in chosen]
    retry_marks = read_watermarks(settings, settings.retry_topic, timeout_s)
    retry_committed = read_committed(
        settings, group_id=f"{group}.retry", partitions=retries, timeout_s=timeout_s
    )
    waiting_from: dict[int, int] = {}
    starts = {p: retry_committed.get(p, (None, None))[0] for p in retries if p[1] in retry_marks}
    for record in scan_records(settings, group_id=f"{group}.rewind", starts=starts, timeout_s=timeout_s):
        if not record.written_by(group) or record.header("zs.original.topic") != topic:
            continue
        original = record.header("zs.original.offset") or ""
        if original.isdigit():
            number = record.partition[1]
            waiting_from[number] = min(int(original), waiting_from.get(number, int(original)))
    return plan_rewind(
        asked=asked,
        committed={n: committed.get((topic, n), (None, None))[0] for n in chosen},
        marks=marks,
        retry_committed={n: retry_committed.get((settings.retry_topic, n), (None, None))[0] for n in chosen},
        retry_ends={n: retry_marks[n][1] for n in chosen if n in retry_marks},
        waiting_from=waiting_from,
    )


def execute(settings: KafkaSettings, moves: list[PartitionMove], *, timeout_s: float = 60.0) -> None:
    """Commit the new positions: the group's input partitions, then its retry partitions."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition  # noqa: PLC0415
    from confluent_kafka.admin import AdminClient  # noqa: PLC0415

    admin = AdminClient(settings.client_config("admin"))
    requests = [
        (settings.group_id, [TopicPartition(settings.input_topic, m.partition, m.new) for m in moves]),
        (
            f"{settings.group_id}.retry",
            [
                TopicPartition(settings.retry_topic, m.partition, m.retry_new)
                for m in moves
                if m.retry_new is not None
            ],
        ),
    ]
    for group, offsets in requests:
        if not offsets:
            continue
        futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)])
        for future in futures.values():
            future.result(timeout=timeout_s)
