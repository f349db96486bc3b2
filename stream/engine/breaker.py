"""The circuit breaker, as a frozen policy over an immutable window of recent outcomes.

The window holds the last `window` deliveries and dead letters (skips and retry-path hand-offs do not
enter it). It opens when at least `threshold` of them were dead-lettered by Zendesk or after retries: a
bad deploy or revoked rights, where stopping beats emptying the topic into the dead-letter topic.
Invalid events are the producer's problem and count as fine.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.outcomes import DlqReason, ErrorClass, RetryReason


@dataclass(frozen=True, slots=True)
class BreakerWindow:
    """The most recent outcomes, oldest first: True where the event was dead-lettered for a reason that
    is not the event's own fault."""

    recent: tuple[bool, ...] = ()

    @property
    def bad(self) -> int:
        return sum(self.recent)


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreaker:
    window: int = 200
    threshold: float = 0.8

    def observe(self, state: BreakerWindow, *, dead_letter: DlqReason | RetryReason | None) -> BreakerWindow:
        """The window after one more delivery (`dead_letter` None) or dead letter (its reason)."""
        bad = dead_letter is not None and dead_letter.error_class is not ErrorClass.INVALID
        return BreakerWindow((*state.recent, bad)[-self.window :])

    def is_open(self, state: BreakerWindow) -> bool:
        return len(state.recent) == self.window and state.bad >= self.threshold * self.window
