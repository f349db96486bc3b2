"""The pure parts of `replay`: times and durations, the filters, the renewed headers, where a dead
letter goes back to, and what the summary says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from stream.errors import ConfigError
from stream.recovery.replay import (
    ReplayFilter,
    ReplayProgress,
    ReplaySummary,
    parse_when,
    replay_headers,
    target_partition,
)
from stream.recovery.replay_report import describe, report

NOW = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
MS = int(NOW.timestamp() * 1000)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-30T10:00:00Z", datetime(2026, 11, 30, 10, tzinfo=UTC)),
        ("2026-11-30T10:00:00+01:00", datetime(2026, 11, 30, 9, tzinfo=UTC)),
        ("2026-11-30T10:00:00", datetime(2026, 11, 30, 10, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_times_are_iso_8601_or_a_duration_back_from_now(text: str, expected: datetime) -> None:
    assert parse_when(text, now=NOW, option="--since") == expected


def test_a_time_that_is_neither_names_the_option_and_the_forms() -> None:
    with pytest.raises(ConfigError, match=r"--until: expected an ISO-8601 time .* or a duration"):
        parse_when("yesterday", now=NOW, option="--until")


def matches(selection: ReplayFilter, **record: object) -> bool:
    facts: dict[str, object] = {"partition": 0, "offset": 10, "key": "u1", "reason": "retries_exhausted"}
    facts["at_ms"] = MS
    facts.update(record)
    return selection.matches(**facts)  # type: ignore[arg-type]


def test_no_filter_matches_everything_and_every_filter_must_hold() -> None:
    assert matches(ReplayFilter())
    both = ReplayFilter(reasons=frozenset({"retries_exhausted", "zendesk_rejected"}), keys=frozenset({"u1"}))
    assert matches(both)
    assert not matches(both, key="u2")
    assert not matches(both, reason="invalid_payload")


def test_time_filters_take_the_dead_letter_time_since_inclusive_until_exclusive() -> None:
    window = ReplayFilter(since=NOW - timedelta(hours=1), until=NOW)
    assert matches(window, at_ms=MS - 3_600_000)
    assert not matches(window, at_ms=MS)
    assert not matches(window, at_ms=MS - 3_600_001)
    assert not matches(window, at_ms=None)


def test_partition_and_offset_select_from_a_point_of_the_dead_letter_topic() -> None:
    selection = ReplayFilter(partition=1, offset=5)
    assert matches(selection, partition=1, offset=5)
    assert not matches(selection, partition=1, offset=4)
    assert not matches(selection, partition=0, offset=9)


def test_the_same_filters_give_the_same_fingerprint_and_others_another() -> None:
    one = ReplayFilter(reasons=frozenset({"a", "b"}))
    assert one.fingerprint() == ReplayFilter(reasons=frozenset({"b", "a"})).fingerprint()
    assert one.fingerprint() != ReplayFilter(reasons=frozenset({"a"})).fingerprint()
    assert len(one.fingerprint()) < 64  # commit metadata


def test_the_retry_headers_are_renewed_and_the_rest_kept() -> None:
    headers = [
        ("traceparent", b"00-abc"),
        ("zs.error.reason", b"retries_exhausted"),
        ("zs.original.partition", b"1"),
        ("zs.attempts", b"5"),
        ("zs.retry.not_before", b"2026-11-30T00:00:00.000Z"),
        ("zs.group", b"old"),
    ]
    renewed = dict(replay_headers(headers, group="g", replay_id="replay-1", now=NOW))
    assert renewed["traceparent"] == b"00-abc"
    assert renewed["zs.error.reason"] == b"retries_exhausted"  # why it was dead-lettered, kept to read
    assert renewed["zs.original.partition"] == b"1"
    assert renewed["zs.attempts"] == b"0"
    assert renewed["zs.retry.not_before"] == b"2026-12-01T14:00:00.000Z"
    assert renewed["zs.group"] == b"g"
    assert renewed["zs.replay.id"] == b"replay-1"
    assert len(renewed) == len(headers) + 1


def test_a_dead_letter_goes_back_to_the_retry_partition_of_its_input_partition() -> None:
    ours = {"zs.original.topic": "in", "zs.original.partition": "2"}
    assert target_partition(ours, input_topic="in", retry_partitions=3) == 2
    assert target_partition(ours, input_topic="in", retry_partitions=2) is None  # that partition is gone
    assert (
        target_partition({**ours, "zs.original.topic": "other"}, input_topic="in", retry_partitions=3) is None
    )
    assert target_partition({"zs.original.topic": "in"}, input_topic="in", retry_partitions=3) is None


def test_progress_shows_count_rate_and_eta() -> None:
    assert describe(ReplayProgress(read=500, total=2_000, replayed=400, elapsed_s=2.0)) == (
        "replay: 500 of 2,000 dead letters read, 400 to the retry path, 250/s, ETA 6 s"
    )


def test_the_dry_run_summary_says_nothing_changed_and_counts_by_reason_and_status() -> None:
    summary = ReplaySummary(read=4, matched=3, replayed=2, without_value=1)
    summary.by_reason.update({"retries_exhausted": 2, "record_too_large": 1})
    summary.by_status.update({"503": 2, "none": 1})
    text = report(summary, dry_run=True, retry_topic="in.g.retry")
    assert text.startswith(
        "read 4 dead letters; 3 match; 2 would go to in.g.retry (dry run: nothing changed)"
    )
    assert "retries_exhausted 2, record_too_large 1" in text
    assert "by Zendesk status: 503 2, none 1" in text
    assert "1 cannot be re-sent" in text
