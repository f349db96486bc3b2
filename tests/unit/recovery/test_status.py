"""The pure parts of `status`: the lag, and the text a terminal shows."""

from __future__ import annotations

from stream.recovery.status import Member, ParkedPartition, PartitionLag, Status, lag_of, render


def test_lag_counts_the_records_after_the_groups_position() -> None:
    assert lag_of(4, 0, 10) == 6
    assert lag_of(None, 0, 5) == 5  # never committed: everything retained
    assert lag_of(3, 7, 10) == 3  # the position fell behind retention: from the log start
    assert lag_of(10, 0, 10) == 0


def test_the_text_names_each_partition_the_parked_keys_the_reasons_and_the_members() -> None:
    status = Status(
        group="g",
        input_topic="in",
        retry_topic="in.g.retry",
        dlq_topic="in.g.dlq",
        group_state="stable",
        partitions=[PartitionLag(0, 4, 10, 6), PartitionLag(1, None, 5, 5)],
        parked=[ParkedPartition(0, 2, 3, "2026-12-01T14:00:00.000Z", 1)],
        retry_reasons={"retry_scheduled": 2, "parked_behind": 1},
        dlq_reasons={"invalid_payload": 2, "identity_conflict": 1},
        members=[Member("m-1", "zendesk-stream", "/10.0.0.1", ["in[0]", "in[1]"])],
    )
    text = render(status)
    assert "group g (stable), input in" in text
    assert "    total                               11" in text
    assert "2 parked keys" in text and "oldest 2026-12-01T14:00:00.000Z (offset 1)" in text
    assert "invalid_payload 2, identity_conflict 1" in text
    assert "zendesk-stream on /10.0.0.1: in[0], in[1]" in text
    document = status.to_json()
    assert (document["lag"], document["parked_keys"], document["dlq_records"]) == (11, 2, 3)
