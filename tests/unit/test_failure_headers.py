from __future__ import annotations

from datetime import UTC, datetime

from stream.engine.records import Failure, InboundRecord, failure_headers
from stream.outcomes import DlqReason

NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)


def _record(headers: tuple[tuple[str, bytes], ...] = ()) -> InboundRecord:
    return InboundRecord(
        topic="segment.events",
        partition=3,
        offset=42,
        key=b"user-1",
        value=b"{}",
        headers=headers,
        timestamp_ms=1_700_000_000_000,
    )


def test_dead_letter_headers_follow_the_contract_and_keep_the_original_headers() -> None:
    failure = Failure(
        reason=DlqReason.ZENDESK_REJECTED, message="422 RecordInvalid", http_status=422, attempts=2
    )
    headers = dict(
        failure_headers(_record((("traceparent", b"00-abc"),)), failure, now=NOW, group="zendesk-stream")
    )
    assert headers == {
        "traceparent": b"00-abc",
        "zs.error.reason": b"zendesk_rejected",
        "zs.error.class": b"rejected",
        "zs.error.message": b"422 RecordInvalid",
        "zs.error.http_status": b"422",
        "zs.original.topic": b"segment.events",
        "zs.original.partition": b"3",
        "zs.original.offset": b"42",
        "zs.original.timestamp": b"1700000000000",
        "zs.attempts": b"2",
        "zs.first_failure_at": b"2026-11-29T10:00:00.000Z",
        "zs.group": b"zendesk-stream",
    }


def test_a_record_from_the_retry_path_keeps_its_first_origin_and_gets_fresh_error_headers() -> None:
    earlier = (
        ("zs.error.reason", b"retries_exhausted"),
        ("zs.original.topic", b"segment.events"),
        ("zs.original.partition", b"7"),
        ("zs.original.offset", b"9"),
        ("zs.original.timestamp", b"1"),
        ("zs.first_failure_at", b"2026-11-28T00:00:00.000Z"),
    )
    record = InboundRecord(
        topic="segment.events.retry", partition=0, offset=1, key=None, value=b"{}", headers=earlier
    )
    failure = Failure(reason=DlqReason.USER_NOT_FOUND, message="no such user")
    headers = failure_headers(record, failure, now=NOW, group="zendesk-stream")
    names = [name for name, _ in headers]
    assert names.count("zs.error.reason") == 1
    values = dict(headers)
    assert values["zs.error.reason"] == b"user_not_found"
    assert values["zs.original.topic"] == b"segment.events"
    assert values["zs.original.offset"] == b"9"
    assert values["zs.first_failure_at"] == b"2026-11-28T00:00:00.000Z"


def test_error_message_is_one_bounded_line() -> None:
    failure = Failure(reason=DlqReason.INVALID_PAYLOAD, message="line one\nline two " + "x" * 2000)
    message = dict(failure_headers(_record(), failure, now=NOW, group="zendesk-stream"))[
        "zs.error.message"
    ].decode()
    assert "\n" not in message
    assert len(message) <= 500
