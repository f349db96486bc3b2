"""Records as the engine sees them, and the dead-letter/retry headers of docs/contracts.md §3."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from stream.outcomes import DlqReason, RetryReason

HEADER_PREFIX = "zs."
MAX_MESSAGE_CHARS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """Why a record leaves the main path: the facts the headers carry."""

    reason: DlqReason | RetryReason
    message: str
    http_status: int | None = None
    attempts: int = 1
    first_failure_at: datetime | None = None
    not_before: datetime | None = None  # retry records only


NOT_BEFORE_HEADER = "zs.retry.not_before"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


GROUP_HEADER = "zs.group"
REASON_HEADER = "zs.error.reason"


def failure_headers(
    record: InboundRecord, failure: Failure, *, now: datetime, group: str
) -> list[tuple[str, bytes]]:
    """The original headers, then ours. A record that already went through the retry path keeps its
    first origin (`zs.original.*`, `zs.first_failure_at`); its other `zs.*` headers are replaced.
    `group` is the consumer group writing it: a retry record is acted on by that group only."""
    kept = [(k, v) for k, v in record.headers if not k.startswith(HEADER_PREFIX)]
    original = {
        "zs.original.topic": record.topic.encode(),
        "zs.original.partition": str(record.partition).encode(),
        "zs.original.offset": str(record.offset).encode(),
        "zs.original.timestamp": str(record.timestamp_ms if record.timestamp_ms is not None else "").encode(),
    }
    for name in list(original):
        earlier = record.header(name)
        if earlier is not None:
            original[name] = earlier
    first = record.header("zs.first_failure_at") or _iso(failure.first_failure_at or now).encode()
    ours = {
        REASON_HEADER: failure.reason.value.encode(),
        "zs.error.class": failure.reason.error_class.value.encode(),
        "zs.error.message": _one_line(failure.message).encode(),
        **({"zs.error.http_status": str(failure.http_status).encode()} if failure.http_status else {}),
        **original,
        "zs.attempts": str(failure.attempts).encode(),
        "zs.first_failure_at": first,
        GROUP_HEADER: group.encode(),
        **({NOT_BEFORE_HEADER: _iso(failure.not_before).encode()} if failure.not_before else {}),
    }
    return kept + list(ours.items())


def _one_line(message: str) -> str:
    flat = " ".join(message.split())
    return flat if len(flat) <= MAX_MESSAGE_CHARS else flat[: MAX_MESSAGE_CHARS - 1] + "…"


def not_before(record: InboundRecord) -> datetime | None:
    """The time before which a retry record must not be processed (None: no constraint)."""
    raw = record.header(NOT_BEFORE_HEADER)
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw.decode().replace("Z", "+00:00"))
    except ValueError:
        return None


def written_by_another_group(record: InboundRecord, group: str) -> bool:
    """A retry record that names a group other than `group` (records without the header predate it)."""
    writer = record.header(GROUP_HEADER)
    return writer is not None and writer.decode("utf-8", "replace") != group


def previous_attempts(record: InboundRecord) -> int:
    raw = record.header("zs.attempts")
    return int(raw) if raw is not None and raw.isdigit() else 0
