"""Clocks: the real one, and a manual one tests move forward explicitly (rate limits, jobs, search lag)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

# 2026-01-01T00:00:00Z: a fixed, readable start for the manual clock.
MANUAL_CLOCK_START = 1_767_225_600.0


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    def __init__(self, *, start: float = MANUAL_CLOCK_START) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._now += seconds


def iso_timestamp(epoch_seconds: float) -> str:
    """Zendesk's timestamp form, e.g. ``2026-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(int(epoch_seconds), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
