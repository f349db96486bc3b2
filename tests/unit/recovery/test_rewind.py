"""The rewind plan (pure): the asked position, moved back to an event still waiting in the retry path,
and the retry partition moved to its end so that nothing is processed twice by the two paths."""

from __future__ import annotations

from stream.recovery.rewind import PartitionMove, plan_rewind, render_plan


def plan(asked: int, *, waiting_from: int | None = None, low: int = 0, high: int = 100) -> PartitionMove:
    (move,) = plan_rewind(
        asked={0: asked},
        committed={0: 90},
        marks={0: (low, high)},
        retry_committed={0: 5},
        retry_ends={0: 8},
        waiting_from={} if waiting_from is None else {0: waiting_from},
    )
    return move


def test_with_nothing_waiting_the_group_moves_where_asked_and_the_retry_path_to_its_end() -> None:
    move = plan(40)
    assert (move.new, move.reprocessed, move.retry_current, move.retry_new) == (40, 50, 5, 8)


def test_an_event_waiting_from_before_the_asked_offset_moves_the_group_back_to_it() -> None:
    move = plan(40, waiting_from=25)
    assert (move.asked, move.new, move.retry_new) == (40, 25, 8)
    assert "holds an event from that offset" in move.note


def test_events_waiting_from_after_the_asked_offset_come_again_from_the_input() -> None:
    move = plan(40, waiting_from=60)
    assert (move.new, move.retry_new) == (40, 8)
    assert "come again from the input" in move.note


def test_an_event_the_input_no_longer_holds_stays_in_the_retry_path() -> None:
    move = plan(40, waiting_from=10, low=20)
    assert (move.new, move.retry_new) == (40, None)
    assert "before the input's log start" in move.note


def test_the_asked_offset_stays_within_the_log() -> None:
    assert plan(-5, low=3).new == 3
    assert plan(500).new == 100


def test_the_plan_shows_each_partition_and_what_is_processed_again() -> None:
    text = render_plan([plan(40, waiting_from=25)], group="g", topic="in", execute=False)
    assert "(plan only: --execute moves the offsets)" in text
    assert "        0         90         25           65  5 -> 8" in text
    assert text.endswith("65 events will be processed again")
