"""What the engine is given: the topic and group names it works with, and its knobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from stream.engine.backpressure import BackPressure
from stream.engine.breaker import CircuitBreaker
from stream.engine.delivered import DEFAULT_WINDOW_S
from stream.engine.outage import OutagePolicy
from stream.engine.retry import RetryPolicy


@dataclass(frozen=True, kw_only=True)
class Topics:
    """The names the engine works with; the source and producer know how to reach them."""

    input: str
    retry: str
    dlq: str
    group: str
    delivered: str | None = None  # the markers of delivered events (`stream.engine.delivered`); None: off
    starts_at_end: bool = False  # auto.offset.reset=latest: a new group skips what exists at start-up

    @property
    def retry_group(self) -> str:
        return f"{self.group}.retry"


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    # Work started and not yet committed, across keys: enough to fill all 30 job slots Zendesk allows
    # with jobs of 100 (slow jobs need them all); it also bounds what a crash makes the next owner
    # repeat (commit rule 6).
    max_in_flight: int = 3_000
    max_carried: int = 100  # followers a lane head may carry (`Processor.joins`)
    commit_interval_s: float = 0.01
    shutdown_deadline_s: float = 30.0
    revoke_deadline_s: float = 20.0
    summary_interval_s: float = 30.0  # the periodic info line
    dedup_window_s: float = DEFAULT_WINDOW_S  # how long a delivered event is remembered
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    back_pressure: BackPressure = field(default_factory=BackPressure)
    outage: OutagePolicy = field(default_factory=OutagePolicy)  # pause, not retry, when Zendesk is down
