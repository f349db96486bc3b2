"""Liveness (`/healthz`) and readiness (`/readyz`), decided here from what the engine reports.

    /healthz  200 while starting up (start-up has deadlines of its own and ends in exit 2) and while the
              engine's supervise loop comes round (it beats several times a second); 503 once its last
              beat is older than `WEDGED_AFTER_S` (the event loop is blocked or the loop is stuck), and
              whenever a Kafka consumer thread has died. While stopping it stays 200: the stop has its
              own deadline (STREAM_SHUTDOWN_DEADLINE_S).
    /readyz   200 once the consumer group assigned this member its partitions (an empty assignment
              counts: a member with nothing to read is a healthy member) and until the engine stops
              (a signal, the end of --exit-at-end, the circuit breaker, a fatal error); 503 otherwise.

Written from the event loop, read from the metrics server's thread: each field is one reference,
replaced whole, so a reader sees either the old value or the new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

WEDGED_AFTER_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    status: str  # ok, starting, stopping, wedged, consumer_failed, not_assigned, halted
    detail: str = ""


class Health:
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wedged_after_s: float = WEDGED_AFTER_S,
        consumer_failure: Callable[[], str | None] = lambda: None,
    ) -> None:
        """`consumer_failure` tells why a Kafka consumer thread died, or None while they run (it is
        asked at each check, from the server's thread)."""
        self._clock = clock
        self.wedged_after_s = wedged_after_s
        self.consumer_failure = consumer_failure
        self._beat: float | None = None
        self._assigned = False
        self._stopping: str | None = None

    def beat(self) -> None:
        self._beat = self._clock()

    def assigned(self) -> None:
        self._assigned = True

    def stopping(self, reason: str) -> None:
        if self._stopping is None or reason.startswith("fatal"):
            self._stopping = reason

    def heartbeat_age_s(self) -> float | None:
        beat = self._beat
        return None if beat is None else max(0.0, self._clock() - beat)

    def live(self) -> Verdict:
        failure = self.consumer_failure()
        if failure is not None:
            return Verdict(False, "consumer_failed", failure)
        if self._stopping is not None:
            return Verdict(True, "stopping", self._stopping)
        age = self.heartbeat_age_s()
        if age is None:
            return Verdict(True, "starting")
        if age > self.wedged_after_s:
            return Verdict(
                False,
                "wedged",
                f"the engine's loop last came round {age:.1f}s ago (limit {self.wedged_after_s:g}s)",
            )
        return Verdict(True, "ok")

    def ready(self) -> Verdict:
        if self._stopping is not None:
            return Verdict(False, "halted", self._stopping)
        if not self._assigned:
            return Verdict(False, "not_assigned", "waiting for the consumer group to assign partitions")
        live = self.live()
        return live if not live.ok else Verdict(True, "ok")
