"""Zendesk outages: when nearly every request fails, across many keys, stop consuming and wait.

The retry topic is for one event's trouble, not Zendesk's: moving a backlog there during an outage only
delays it by the retry rounds after Zendesk is back. So the engine watches the outcomes of its attempts
(`OutageWatch`) and, when the last `window_s` look like an outage (`OutagePolicy.is_outage`), declares
one. While it lasts:
- no new work starts, and every owned partition (input and retry) is paused;
- one lane at a time (`probes`) tries its head again, at `probe_delay` intervals (Retry-After a floor);
- a transient failure is not charged to the record: it neither goes to the retry topic nor uses up a
  retry round, it waits for the next probe in its lane.
The first attempt Zendesk answers ends it: dispatching and fetching resume, and every head waiting for a
time (back-off, a retry record's not-before) is released at once; the Zendesk client's rate governor
paces what follows.

What an attempt tells (`Verdict`):

    outcome                                         verdict
    ──────────────────────────────────────────────  ─────────────────────────────────────────
    Delivered                                       ANSWERED
    DeadLetter with an HTTP status (Zendesk said)   ANSWERED
    DeadLetter without one (the event's own fault)  NEUTRAL: no request was needed
    Skipped                                         NEUTRAL: often no request at all
    Transient 429 (rate limited past the bound)     NEUTRAL: Zendesk answers, the governor paces
    Transient from a bug in our code                NEUTRAL: pausing would hide it (the runner tells)
    any other Transient (5xx, 408, 409, no answer)  FAILED

When it is an outage, in the last `window_s` (all must hold):

    failed attempts                                  ≥ min_failures
    failed share of the attempts since the first     ≥ failure_ratio
      failure in the window (with a verdict)
    keys that failed at least twice                  ≥ min_keys

"At least twice" tells an outage from blips that one retry cures (a late Avro schema, a 409): a key
whose in-place retry failed as well. Many keys tell it from one bad key, whose records go to the retry
topic as before. The share starts at the first failure so that the successes before an outage began
do not hide it for a whole window, while the in-place budget runs out.

While an outage lasts, the lanes that failed wait in a queue of turns (the runner's): each probe takes
the one that has waited longest, so a key failing for its own reasons cannot keep the probe.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass


class Verdict(enum.Enum):
    ANSWERED = "answered"
    FAILED = "failed"
    NEUTRAL = "neutral"


class Change(enum.Enum):
    DECLARED = "declared"
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class WindowFigures:
    """The last `window_s` of attempts with a verdict."""

    attempts: int  # since the first failure in the window
    failures: int
    keys_failing_again: int  # distinct lanes with at least two failures


@dataclass(frozen=True, slots=True, kw_only=True)
class OutagePolicy:
    enabled: bool = True
    window_s: float = 10.0
    min_failures: int = 20
    failure_ratio: float = 0.9
    min_keys: int = 10
    probes: int = 1  # lanes that may try while an outage lasts
    probe_base_s: float = 1.0  # the wait after the first failed probe; doubled for each next one
    probe_max_s: float = 5.0  # and capped: recovery is seen within this (plus a request) of its start
    hold_s: float = 86_400.0  # how far a failed lane is put off while down: it waits for its turn

    def is_outage(self, figures: WindowFigures) -> bool:
        return (
            self.enabled
            and figures.failures >= self.min_failures
            and figures.failures >= self.failure_ratio * figures.attempts
            and figures.keys_failing_again >= self.min_keys
        )

    def probe_delay(self, failed_probes: int, retry_after_s: float | None) -> float:
        """The wait before the next probe, after `failed_probes` failed ones (0: just declared)."""
        delay: float = min(self.probe_max_s, self.probe_base_s * 2 ** min(max(failed_probes - 1, 0), 16))
        return max(delay, retry_after_s or 0.0)


class OutageWatch:
    """The sliding window of attempt verdicts, and whether an outage is declared now. No clock of its
    own: the runner passes loop time."""

    def __init__(self, policy: OutagePolicy) -> None:
        self.policy = policy
        self._recent: deque[tuple[float, Hashable, bool]] = deque()  # (at, lane, failed)
        self._failures_of: Counter[Hashable] = Counter()
        self._failures = 0
        self._again = 0  # keys with at least two failures in the window
        self._leading_ok = 0  # answered attempts in the window before its first failure
        self.down_since: float | None = None
        self.next_probe_at = 0.0
        self.failed_probes = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def figures(self, now: float) -> WindowFigures:
        self._expire(now)
        return WindowFigures(
            attempts=len(self._recent) - self._leading_ok,
            failures=self._failures,
            keys_failing_again=self._again,
        )

    def attempted(
        self, now: float, lane: Hashable, verdict: Verdict, retry_after_s: float | None = None
    ) -> Change | None:
        """One attempt ended with `verdict`; the change of state it makes, if any."""
        if verdict is Verdict.NEUTRAL:
            return None
        failed = verdict is Verdict.FAILED
        if self.down_since is not None:
            if not failed:
                self._clear()
                self.down_since = None
                return Change.ENDED
            self.failed_probes += 1
            self.next_probe_at = now + self.policy.probe_delay(self.failed_probes, retry_after_s)
            return None
        self._expire(now)
        self._recent.append((now, lane, failed))
        if not failed and self._failures == 0:
            self._leading_ok += 1
        if failed:
            self._failures += 1
            self._failures_of[lane] += 1
            self._again += self._failures_of[lane] == 2
        if failed and self.policy.is_outage(self.figures(now)):
            self.down_since = now
            self.failed_probes = 0
            self.next_probe_at = now + self.policy.probe_delay(0, retry_after_s)
            return Change.DECLARED
        return None

    def _expire(self, now: float) -> None:
        horizon = now - self.policy.window_s
        while self._recent and self._recent[0][0] < horizon:
            _, lane, failed = self._recent.popleft()
            if not failed:
                self._leading_ok = max(self._leading_ok - 1, 0)
            else:
                self._failures -= 1
                self._failures_of[lane] -= 1
                self._again -= self._failures_of[lane] == 1
                if self._failures_of[lane] <= 0:
                    del self._failures_of[lane]
                self._leading_ok = self._count_leading_ok()

    def _count_leading_ok(self) -> int:
        count = 0
        for _, _, failed in self._recent:
            if failed:
                break
            count += 1
        return count

    def _clear(self) -> None:
        self._recent.clear()
        self._failures_of.clear()
        self._failures = 0
        self._again = 0
        self._leading_ok = 0
