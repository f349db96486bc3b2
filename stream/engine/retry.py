"""The retry decision, as a pure function: what becomes of a record after one attempt.

    outcome      where the record is      attempts so far          decision
    ───────────  ───────────────────────  ───────────────────────  ───────────────────────────────────
    Delivered    anywhere                 any                      Finish
    Skipped      anywhere                 any                      Finish
    DeadLetter   anywhere                 any                      ToDeadLetter(its reason)
    Transient    input topic              < retry_attempts         RetryAt(now + back-off with jitter)
    Transient    input topic              = retry_attempts         ToRetryTopic(retry_scheduled, first delay)
    Transient    retry topic              < retry_rounds           RetryAt(now + the round's delay)
    Transient    retry topic              = retry_rounds           ToDeadLetter(retries_exhausted)

A server's Retry-After is a floor for any wait. Back-off is exponential with full jitter; the jitter
comes in as a number in [0, 1), so the function stays pure. Attempt counts on dead letters include
the attempts an earlier owner or an earlier round made (`zs.attempts` of a retry record).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from stream.engine.records import Failure
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, RetryReason, Skipped, Transient


@dataclass(frozen=True, slots=True)
class Attempts:
    """What the attempts at one record (a lane's head) left behind."""

    count: int = 0
    first_failure: datetime | None = None
    earlier: int = 0  # attempts made before this record reached us (its zs.attempts header)


@dataclass(frozen=True, slots=True)
class Finish:
    """Delivered or skipped: the record is finished (commits rule 2)."""


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Try the record again, in its lane, at loop time `at`; it waits without an in-flight slot."""

    at: float


@dataclass(frozen=True, slots=True)
class ToRetryTopic:
    failure: Failure


@dataclass(frozen=True, slots=True)
class ToDeadLetter:
    failure: Failure


Decision = Finish | RetryAt | ToRetryTopic | ToDeadLetter


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    attempts: int = 5  # in place, for transient failures (the first try included)
    base_s: float = 0.5
    max_s: float = 8.0
    rounds: int = 5  # attempts of a record in the retry path before it is dead-lettered
    delay_s: float = 30.0  # before the first retry-path attempt; tripled for each next one
    delay_max_s: float = 900.0

    def decide(
        self,
        outcome: Outcome,
        attempts: Attempts,
        *,
        in_retry_path: bool,
        now: float,
        wall: datetime,
        jitter: float,
    ) -> tuple[Decision, Attempts]:
        """The decision for `outcome` and the attempts that follow it. `now` is loop time (for RetryAt),
        `wall` the wall clock (for headers), `jitter` a number in [0, 1)."""
        match outcome:
            case Delivered() | Skipped():
                return Finish(), attempts
            case DeadLetter(reason=reason, message=message, http_status=status):
                total = attempts.earlier + attempts.count + 1
                failure = Failure(reason=reason, message=message, http_status=status, attempts=total)
                return ToDeadLetter(failure), replace(attempts, count=attempts.count + 1)
            case Transient(message=message, http_status=status, retry_after_s=retry_after):
                first = attempts.first_failure or wall
                after = replace(attempts, count=attempts.count + 1, first_failure=first)
                floor = retry_after or 0.0
                if not in_retry_path:
                    if after.count < self.attempts:
                        return RetryAt(now + max(self.backoff(after.count, jitter), floor)), after
                    delay = self.round_delay(1)
                    failure = Failure(
                        reason=RetryReason.RETRY_SCHEDULED,
                        message=message,
                        http_status=status,
                        attempts=after.earlier + after.count,
                        first_failure_at=after.first_failure,
                        not_before=wall + timedelta(seconds=delay),
                    )
                    return ToRetryTopic(failure), after
                if after.count < self.rounds:
                    return RetryAt(now + max(self.round_delay(after.count + 1), floor)), after
                failure = Failure(
                    reason=DlqReason.RETRIES_EXHAUSTED,
                    message=message,
                    http_status=status,
                    attempts=after.earlier + after.count,
                    first_failure_at=after.first_failure,
                )
                return ToDeadLetter(failure), after

    def backoff(self, attempt: int, jitter: float) -> float:
        """Exponential back-off with full jitter, for in-place attempt number `attempt` (1-based)."""
        ceiling: float = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return jitter * ceiling

    def round_delay(self, round_: int) -> float:
        """The wait before retry-path attempt number `round_` (1-based): tripled each round, capped."""
        delay: float = self.delay_s * 3 ** (round_ - 1)
        return min(self.delay_max_s, delay)


def parked_behind(attempts: Attempts, wall: datetime) -> Failure:
    """The retry-topic copy of an event whose key already waits in the retry path (order first)."""
    return Failure(
        reason=RetryReason.PARKED_BEHIND,
        message="an earlier event of this key is in the retry path",
        attempts=attempts.earlier,
        not_before=wall,
    )
