"""The engine's pure policies, by table: retry decisions, the breaker, back-pressure, end detection,
and the commit gate's waiting rule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.engine.backpressure import BackPressure
from stream.engine.breaker import BreakerWindow, CircuitBreaker
from stream.engine.commits import CommitGate, OffsetBook
from stream.engine.end import EndTargets
from stream.engine.offsets import PartitionOffsets
from stream.engine.ports import Position
from stream.engine.retry import Attempts, Finish, RetryAt, RetryPolicy, ToDeadLetter, ToRetryTopic
from stream.outcomes import (
    DeadLetter,
    Delivered,
    DlqReason,
    Outcome,
    RetryReason,
    Skipped,
    SkipReason,
    Transient,
)

WALL = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = RetryPolicy(attempts=3, base_s=1.0, max_s=8.0, rounds=2, delay_s=30.0, delay_max_s=900.0)


def decide(outcome: Outcome, attempts: Attempts, *, retry_path: bool = False, jitter: float = 0.5) -> object:
    decision, _ = POLICY.decide(
        outcome, attempts, in_retry_path=retry_path, now=100.0, wall=WALL, jitter=jitter
    )
    return decision


@pytest.mark.parametrize("outcome", [Delivered(operations=2), Skipped(reason=SkipReason.MISSING_NAME)])
@pytest.mark.parametrize("retry_path", [False, True])
def test_delivered_and_skipped_finish_wherever_the_record_is(outcome: Outcome, retry_path: bool) -> None:
    assert decide(outcome, Attempts(count=4), retry_path=retry_path) == Finish()


def test_a_dead_letter_counts_every_attempt_including_earlier_owners() -> None:
    decision = decide(
        DeadLetter(reason=DlqReason.USER_NOT_FOUND, message="m", http_status=404),
        Attempts(count=1, earlier=2),
    )
    assert isinstance(decision, ToDeadLetter)
    assert (decision.failure.reason, decision.failure.attempts, decision.failure.http_status) == (
        DlqReason.USER_NOT_FOUND,
        4,
        404,
    )


@pytest.mark.parametrize(
    ("count", "jitter", "retry_after", "expected_at"),
    [
        (0, 0.5, None, 100.5),  # attempt 1 failed: up to base_s, half of it
        (1, 0.5, None, 101.0),  # attempt 2 failed: up to 2 s
        (0, 0.0, 7.0, 107.0),  # Retry-After is a floor
    ],
)
def test_transient_failures_retry_in_place_with_jittered_backoff(
    count: int, jitter: float, retry_after: float | None, expected_at: float
) -> None:
    decision = decide(
        Transient(message="503", retry_after_s=retry_after), Attempts(count=count), jitter=jitter
    )
    assert decision == RetryAt(expected_at)


def test_past_the_in_place_budget_the_record_goes_to_the_retry_topic_with_a_not_before() -> None:
    decision = decide(Transient(message="503", http_status=503), Attempts(count=2, first_failure=WALL))
    assert isinstance(decision, ToRetryTopic)
    failure = decision.failure
    assert (failure.reason, failure.attempts, failure.http_status) == (RetryReason.RETRY_SCHEDULED, 3, 503)
    assert failure.not_before == WALL + timedelta(seconds=30) and failure.first_failure_at == WALL


def test_in_the_retry_path_rounds_are_spaced_by_tripling_delays_then_retries_run_out() -> None:
    first = decide(Transient(message="503"), Attempts(count=0), retry_path=True)
    assert first == RetryAt(100.0 + 90.0)  # round 2 waits delay_s * 3
    exhausted = decide(Transient(message="503"), Attempts(count=1, earlier=3), retry_path=True)
    assert isinstance(exhausted, ToDeadLetter)
    assert (exhausted.failure.reason, exhausted.failure.attempts) == (DlqReason.RETRIES_EXHAUSTED, 5)


@given(st.integers(min_value=1, max_value=20), st.floats(min_value=0, max_value=0.999))
def test_backoff_never_exceeds_its_ceiling(attempt: int, jitter: float) -> None:
    assert 0 <= POLICY.backoff(attempt, jitter) <= POLICY.max_s


def test_round_delays_are_capped() -> None:
    assert [POLICY.round_delay(n) for n in (1, 2, 3, 4, 5, 6)] == [30, 90, 270, 810, 900, 900]


# ------------------------------------------------------------------------------------------ breaker


def run_breaker(breaker: CircuitBreaker, reasons: list[DlqReason | None]) -> BreakerWindow:
    window = BreakerWindow()
    for reason in reasons:
        window = breaker.observe(window, dead_letter=reason)
    return window


def test_the_breaker_opens_when_most_of_a_full_window_was_rejected() -> None:
    breaker = CircuitBreaker(window=10, threshold=0.8)
    assert not breaker.is_open(run_breaker(breaker, [DlqReason.ZENDESK_REJECTED] * 9))  # window not full
    assert breaker.is_open(run_breaker(breaker, [None, None] + [DlqReason.ZENDESK_REJECTED] * 8))
    assert not breaker.is_open(run_breaker(breaker, [None] * 3 + [DlqReason.RETRIES_EXHAUSTED] * 7))


def test_invalid_events_never_open_the_breaker() -> None:
    breaker = CircuitBreaker(window=10, threshold=0.5)
    assert not breaker.is_open(run_breaker(breaker, [DlqReason.INVALID_PAYLOAD] * 50))


def test_the_window_keeps_only_the_most_recent_outcomes() -> None:
    breaker = CircuitBreaker(window=4, threshold=1.0)
    window = run_breaker(breaker, [DlqReason.USER_NOT_FOUND] * 10 + [None])
    assert window.recent == (True, True, True, False)


# ------------------------------------------------------------------------------------- back-pressure


@pytest.mark.parametrize(
    ("buffered", "paused", "expected"),
    [
        ({("t", 0): 10, ("t", 1): 3}, set(), ([("t", 0)], [])),  # at its bound
        ({("t", 0): 6, ("t", 1): 3}, {("t", 0)}, ([], [])),  # above half: stays paused
        ({("t", 0): 5, ("t", 1): 3}, {("t", 0)}, ([], [("t", 0)])),  # down to half: resumes
        ({("t", 0): 8, ("t", 1): 8}, set(), ([("t", 0), ("t", 1)], [])),  # the total bound
    ],
)
def test_back_pressure_pauses_at_the_bound_and_resumes_at_half(
    buffered: dict[tuple[str, int], int], paused: set[tuple[str, int]], expected: object
) -> None:
    assert BackPressure(per_partition=10, total=16).plan(buffered, paused) == expected


# ------------------------------------------------------------------------------------ end detection


def offsets_at(committable: int | None) -> PartitionOffsets:
    offsets = PartitionOffsets(start=committable)
    return offsets


def test_end_targets_include_the_retry_records_written_since_start_up() -> None:
    end = EndTargets(ends={("in", 0): 5})
    end.wrote(("r", 0), 3)
    assert (
        end.remaining(
            {("in", 0): offsets_at(5), ("r", 0): offsets_at(3)}, skips_unread=lambda _: False
        ).owned_done
        is False
    )
    done = end.remaining({("in", 0): offsets_at(5), ("r", 0): offsets_at(4)}, skips_unread=lambda _: False)
    assert done.owned_done and done.elsewhere == ()


def test_partitions_owned_elsewhere_are_judged_by_the_group_commits() -> None:
    end = EndTargets(ends={("in", 0): 5, ("in", 1): 7})
    remaining = end.remaining({("in", 0): offsets_at(5)}, skips_unread=lambda _: False)
    assert remaining.owned_done and remaining.elsewhere == (("in", 1),)
    assert not end.reached({("in", 1): Position(6)})
    assert end.reached({("in", 1): Position(7)})


def test_an_unread_partition_counts_as_done_only_when_the_group_starts_at_the_end() -> None:
    end = EndTargets(ends={("in", 0): 5})
    unread = {("in", 0): offsets_at(None)}
    assert not end.remaining(unread, skips_unread=lambda _: False).owned_done
    assert end.remaining(unread, skips_unread=lambda _: True).owned_done


# -------------------------------------------------------------------------------------- commit gate


def test_the_offset_book_commits_only_what_changed() -> None:
    book = OffsetBook()
    book.own(("in", 0), None)
    offsets = book.get(("in", 0))
    assert offsets is not None
    for offset in range(3):
        offsets.register(offset)
    offsets.finish(0)
    offsets.finish(2)
    first = book.candidates()
    assert first[("in", 0)].offset == 1 and first[("in", 0)].metadata.startswith("zs1:")
    book.recorded(first)
    assert book.candidates() == {}


def test_a_finished_record_waits_for_the_commit_that_starts_after_it_and_a_failed_one_is_retried() -> None:
    async def main() -> list[str]:
        gate = CommitGate()
        answers = iter([False, True])
        events: list[str] = []

        async def commit() -> bool:
            accepted = next(answers)
            events.append(f"commit {'ok' if accepted else 'refused'}")
            return accepted

        runner = asyncio.create_task(gate.run(commit, interval_s=0.001))
        gate.want()
        waiter = asyncio.create_task(gate.recorded())
        await asyncio.wait_for(waiter, timeout=1)
        events.append("released")
        runner.cancel()
        return events

    assert asyncio.run(main()) == ["commit refused", "commit ok", "released"]


def test_opening_the_gate_releases_the_waiters_without_a_commit() -> None:
    async def main() -> bool:
        gate = CommitGate()
        waiter = asyncio.create_task(gate.recorded())
        await asyncio.sleep(0)
        gate.open()
        await asyncio.wait_for(waiter, timeout=1)
        return waiter.done()

    assert asyncio.run(main())
