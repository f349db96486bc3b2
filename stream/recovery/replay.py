"""`zendesk-stream replay`: dead letters of this group back into its retry path, where `run` delivers
them under the same rate governor, in order per key.

- Which records: this group's dead letters (`zs.group`) that match every filter given: `--reason`
  (any of them), `--since`/`--until` (when the record was dead-lettered: its append time), `--key`
  (any of them), `--partition` (of the dead-letter topic) and `--offset` (from there on). Records
  dead-lettered after the replay started are not read, so a replayed record that fails again is not
  replayed twice in one run. A record dead-lettered without its value (`record_too_large`) cannot be
  re-sent and is counted apart.
- Where to: the retry partition with the number of the input partition the event came from
  (`zs.original.partition`), so its key parks behind it exactly as a retry does. The original key,
  value and headers go along; the retry headers are renewed (`zs.retry.not_before` now, `zs.attempts`
  from zero, `zs.group`) and `zs.replay.id` names the replay.
- Progress: the dead-letter offsets read so far are committed in the group `<group>.replay`, with the
  filters' fingerprint as metadata, after the broker confirmed the copies. A replay with the same
  filters resumes where the last one stopped (and a finished one finds nothing left); one with other
  filters reads the topic from the start. A replay killed between a checkpoint's copies and its commit
  copies those records (at most 500, or one second's worth) again when resumed: identifies and groups
  are idempotent, a track may post twice until the service remembers delivered events.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from stream.durations import duration_s
from stream.engine.records import GROUP_HEADER, NOT_BEFORE_HEADER, REASON_HEADER
from stream.errors import ConfigError, SourceFailed
from stream.kafka.config import KafkaSettings
from stream.kafka.scan import Scanned

REPLAY_HEADER = "zs.replay.id"
STATUS_HEADER = "zs.error.http_status"
_RENEWED = frozenset({NOT_BEFORE_HEADER, "zs.attempts", GROUP_HEADER, REPLAY_HEADER})


def parse_when(text: str, *, now: datetime, option: str) -> datetime:
    """An ISO-8601 time (UTC when it names no offset) or a duration back from `now` (`90s`, `30m`,
    `2h`, `7d`)."""
    raw = text.strip()
    if (seconds := duration_s(raw)) is not None:
        return now - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"{option}: expected an ISO-8601 time (2026-12-01T14:00:00Z) or a duration (90s, 30m, 2h, 7d), "
            f"got {text!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ReplayFilter:
    reasons: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None
    keys: frozenset[str] = frozenset()
    partition: int | None = None
    offset: int | None = None

    def matches(
        self, *, partition: int, offset: int, key: str | None, reason: str | None, at_ms: int | None
    ) -> bool:
        if self.partition is not None and partition != self.partition:
            return False
        if self.offset is not None and offset < self.offset:
            return False
        if self.reasons and reason not in self.reasons:
            return False
        if self.keys and key not in self.keys:
            return False
        if self.since is not None or self.until is not None:
            if at_ms is None:
                return False
            moment = datetime.fromtimestamp(at_ms / 1000, UTC)
            if self.since is not None and moment < self.since:
                return False
            if self.until is not None and moment >= self.until:
                return False
        return True

    def fingerprint(self) -> str:
        """The same filters give the same text: a replay resumes only a replay of the same records."""
        document = {
            "reasons": sorted(self.reasons),
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "keys": sorted(self.keys),
            "partition": self.partition,
            "offset": self.offset,
        }
        digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]
        return f"zs-replay1:{digest}"


def replay_headers(
    headers: Iterable[tuple[str, bytes]], *, group: str, replay_id: str, now: datetime
) -> list[tuple[str, bytes]]:
    """The dead letter's headers with the retry ones renewed: due now, a fresh attempt budget, ours."""
    kept = [(name, value) for name, value in headers if name not in _RENEWED]
    stamp = now.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return [
        *kept,
        (NOT_BEFORE_HEADER, stamp.encode()),
        ("zs.attempts", b"0"),
        (GROUP_HEADER, group.encode()),
        (REPLAY_HEADER, replay_id.encode()),
    ]


def target_partition(headers: Mapping[str, str], *, input_topic: str, retry_partitions: int) -> int | None:
    """The retry partition a dead letter goes back to: its input partition's number, when it came from
    our input topic and that partition exists."""
    if headers.get("zs.original.topic") != input_topic:
        return None
    raw = headers.get("zs.original.partition", "")
    if not raw.isdigit() or int(raw) >= retry_partitions:
        return None
    return int(raw)


@dataclass
class ReplaySummary:
    """What a replay found, by what it did with each dead letter it read."""

    read: int = 0
    matched: int = 0
    replayed: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    without_value: int = 0  # record_too_large: nothing to re-send
    other_group: int = 0
    not_from_input: int = 0  # not from this input topic (or its partition is gone)
    sample: list[dict[str, object]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "read": self.read,
            "matched": self.matched,
            "replayed": self.replayed,
            "by_reason": dict(self.by_reason),
            "by_status": dict(self.by_status),
            "without_value": self.without_value,
            "other_group": self.other_group,
            "not_from_input": self.not_from_input,
            "sample": self.sample,
        }


# ------------------------------------------------------------------------------------- the run (Kafka)

SAMPLE_SIZE = 5
CHECKPOINT_RECORDS = 500
CHECKPOINT_S = 1.0


@dataclass(frozen=True)
class ReplayProgress:
    read: int
    total: int
    replayed: int
    elapsed_s: float


def run_replay(
    settings: KafkaSettings,
    selection: ReplayFilter,
    *,
    dry_run: bool,
    now: datetime,
    replay_id: str,
    on_progress: Callable[[ReplayProgress], None] | None = None,
    timeout_s: float = 60.0,
) -> ReplaySummary:
    """Read this group's dead letters (from where a replay with the same filters stopped) up to their
    end now; count them, and unless `dry_run` copy the matching ones into the retry path."""
    from stream.kafka.scan import scan_records  # noqa: PLC0415

    replay = _Replay(settings, selection, dry_run=dry_run, now=now, replay_id=replay_id, timeout_s=timeout_s)
    replay.on_progress = on_progress
    starts = replay.starts()
    for record in scan_records(
        settings, group_id=f"{replay.progress_group}.reader", starts=starts, timeout_s=timeout_s, values=True
    ):
        replay.take(record)
    replay.checkpoint()
    return replay.summary


class _Replay:
    """One replay run: where to start, what to do with each dead letter, and the checkpoints (copies
    confirmed by the broker, then the progress committed)."""

    def __init__(
        self,
        settings: KafkaSettings,
        selection: ReplayFilter,
        *,
        dry_run: bool,
        now: datetime,
        replay_id: str,
        timeout_s: float,
    ) -> None:
        from confluent_kafka import Producer  # noqa: PLC0415

        self.settings, self.selection, self.now, self.replay_id = settings, selection, now, replay_id
        self.timeout_s = timeout_s
        self.progress_group = f"{settings.group_id}.replay"
        self.fingerprint = selection.fingerprint()
        self.summary = ReplaySummary()
        self.total = 0
        self.on_progress: Callable[[ReplayProgress], None] | None = None
        self.producer = (
            None
            if dry_run
            else Producer(
                {
                    **settings.client_config("producer"),
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 20,
                }
            )
        )
        self.errors: list[str] = []
        self.pending: dict[tuple[str, int], int] = {}  # next offset to read, per partition, once safe
        self.started = self.last_checkpoint = time.monotonic()
        self.since_checkpoint = 0
        self.retry_partitions = 0

    def starts(self) -> dict[tuple[str, int], int | None]:
        from stream.kafka.scan import read_committed, read_watermarks  # noqa: PLC0415

        settings, timeout_s = self.settings, self.timeout_s
        marks = read_watermarks(settings, settings.dlq_topic, timeout_s)
        self.retry_partitions = len(read_watermarks(settings, settings.retry_topic, timeout_s))
        partitions = [(settings.dlq_topic, n) for n in marks if self.selection.partition in (None, n)]
        committed = read_committed(
            settings, group_id=self.progress_group, partitions=partitions, timeout_s=timeout_s
        )
        starts: dict[tuple[str, int], int | None] = {}
        for part in partitions:
            offset, metadata = committed.get(part, (None, None))
            starts[part] = offset if metadata == self.fingerprint else None  # other filters: from the start
            low, high = marks[part[1]]
            self.total += high - max(starts[part] or low, low)
        return starts

    def take(self, record: Scanned) -> None:
        summary = self.summary
        summary.read += 1
        self.pending[record.partition] = record.offset + 1
        self.since_checkpoint += 1
        headers = {name: value.decode("utf-8", "replace") for name, value in record.headers}
        key = record.key.decode("utf-8", "replace") if record.key is not None else None
        reason = headers.get(REASON_HEADER)
        if not record.written_by(self.settings.group_id):
            summary.other_group += 1
        elif self.selection.matches(
            partition=record.partition[1],
            offset=record.offset,
            key=key,
            reason=reason,
            at_ms=record.timestamp_ms,
        ):
            self._matched(record, headers, key, reason)
        if (
            self.since_checkpoint >= CHECKPOINT_RECORDS
            or time.monotonic() - self.last_checkpoint >= CHECKPOINT_S
        ):
            self.checkpoint()

    def _matched(
        self, record: Scanned, headers: Mapping[str, str], key: str | None, reason: str | None
    ) -> None:
        summary = self.summary
        summary.matched += 1
        summary.by_reason[reason or "unknown"] += 1
        summary.by_status[headers.get(STATUS_HEADER, "none")] += 1
        target = target_partition(
            headers, input_topic=self.settings.input_topic, retry_partitions=self.retry_partitions
        )
        if record.value is None:
            summary.without_value += 1
            return
        if target is None:
            summary.not_from_input += 1
            return
        if len(summary.sample) < SAMPLE_SIZE:
            summary.sample.append(_sample(record.partition[1], record.offset, key, headers, target))
        summary.replayed += 1
        if self.producer is None:
            return
        copy_headers: list[tuple[str, str | bytes | None]] = [
            *replay_headers(
                record.headers, group=self.settings.group_id, replay_id=self.replay_id, now=self.now
            )
        ]
        self.producer.produce(
            self.settings.retry_topic,
            key=record.key,
            value=record.value,
            partition=target,
            headers=copy_headers,
            on_delivery=self._delivered,
        )
        self.producer.poll(0)

    def _delivered(self, err: object, _message: object) -> None:
        if err is not None:
            self.errors.append(str(err))

    def checkpoint(self) -> None:
        """The copies so far are confirmed, then the offsets read so far are committed as progress."""
        if self.producer is not None:
            if self.producer.flush(self.timeout_s) != 0 or self.errors:
                raise SourceFailed(
                    f"copying dead letters to {self.settings.retry_topic} failed: {self.errors[:1]}"
                )
            if self.pending:
                offsets = {p: (o, self.fingerprint) for p, o in self.pending.items()}
                _commit(self.settings, self.progress_group, offsets, self.timeout_s)
        self.pending.clear()
        self.since_checkpoint, self.last_checkpoint = 0, time.monotonic()
        if self.on_progress is not None:
            elapsed = time.monotonic() - self.started
            self.on_progress(ReplayProgress(self.summary.read, self.total, self.summary.replayed, elapsed))


def _sample(
    partition: int, offset: int, key: str | None, headers: Mapping[str, str], target: int
) -> dict[str, object]:
    return {
        "dlq": f"{partition}:{offset}",
        "key": key,
        "reason": headers.get(REASON_HEADER),
        "http_status": headers.get(STATUS_HEADER),
        "original": f"{headers.get('zs.original.topic')}[{headers.get('zs.original.partition')}]@"
        f"{headers.get('zs.original.offset')}",
        "first_failure_at": headers.get("zs.first_failure_at"),
        "message": headers.get("zs.error.message"),
        "to_retry_partition": target,
    }


def _commit(
    settings: KafkaSettings, group: str, offsets: Mapping[tuple[str, int], tuple[int, str]], timeout_s: float
) -> None:
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

    consumer = Consumer(
        {**settings.client_config("consumer"), "group.id": group, "enable.auto.commit": False}
    )
    try:
        consumer.commit(
            offsets=[TopicPartition(t, p, o, metadata=m) for (t, p), (o, m) in offsets.items()],
            asynchronous=False,
        )
    finally:
        consumer.close()
