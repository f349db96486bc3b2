"""The simulator's moving parts in one place, so reset and option changes swap them consistently."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from stream.simulator.clock import Clock, ManualClock, SystemClock, iso_timestamp
from stream.simulator.faults import FaultPlan
from stream.simulator.jobs import JobQueue
from stream.simulator.oauth import OAuthServer
from stream.simulator.options import CREDENTIALS, SimulatorOptions
from stream.simulator.ratelimit import RateLimiter
from stream.simulator.state import ZendeskState

# Options whose change needs fresh rate-limit buckets.
RATE_LIMIT_OPTIONS = frozenset(
    {
        "plan",
        "rate_limits",
        "limit_scale",
        "create_update_user_per_second",
        "create_update_user_per_user_per_minute",
        "org_update_per_minute",
    }
)


@dataclass(slots=True)
class LogEntry:
    seq: int
    at: float
    method: str
    path: str
    query: str
    status: int
    user_id: int | None
    user_key: str | None
    change: dict[str, Any] | None
    auth: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": iso_timestamp(self.at),
            "at": self.at,
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "status": self.status,
            "user_id": self.user_id,
            "user_key": self.user_key,
            "change": self.change,
            "auth": self.auth,
        }


class RequestLog:
    """Zendesk requests in arrival order (control API calls excluded); job items are logged as ``JOB``."""

    def __init__(self, *, limit: int) -> None:
        self.entries: deque[LogEntry] = deque(maxlen=limit)
        self._seq = 0

    def append(
        self,
        *,
        at: float,
        method: str,
        path: str,
        query: str,
        status: int,
        user_id: int | None = None,
        user_key: str | None = None,
        change: dict[str, Any] | None = None,
        auth: str | None = None,
    ) -> None:
        self._seq += 1
        self.entries.append(
            LogEntry(self._seq, at, method, path, query, status, user_id, user_key, change, auth)
        )


class Simulator:
    def __init__(self, *, options: SimulatorOptions) -> None:
        options.validate()
        self.launch_options = options
        self.options = options
        self.clock: Clock = SystemClock()
        self.state = ZendeskState(options=options)
        self.limiter = RateLimiter(options=options)
        self.jobs = JobQueue(options=options)
        self.oauth = OAuthServer(options=options)
        self.faults = FaultPlan(seed=options.random_seed)
        self.log = RequestLog(limit=options.request_log_limit)
        self.reset()

    def reset(self, changes: dict[str, Any] | None = None) -> None:
        """Empty account, launch options plus ``changes``, fresh buckets, faults, log and clock."""
        _refuse_credential_changes(changes or {})
        options = self.launch_options.updated(changes or {})
        self.options = options
        self.clock = ManualClock() if options.manual_clock else SystemClock()
        self.state = ZendeskState(options=options)
        self.limiter = RateLimiter(options=options)
        self.jobs = JobQueue(options=options)
        self.oauth = OAuthServer(options=options)  # clients back to the launch ones, no tokens issued
        self.faults = FaultPlan(seed=options.random_seed)
        self.log = RequestLog(limit=options.request_log_limit)

    def change_options(self, changes: dict[str, Any]) -> None:
        """Runtime change; credentials stay as launched. Raises ValueError on a bad option."""
        _refuse_credential_changes(changes)
        options = self.options.updated(changes)
        self.options = options
        self.state.options = options
        self.jobs.options = options
        self.oauth.options = options
        clock_switched = isinstance(self.clock, ManualClock) != options.manual_clock
        if clock_switched:
            # A runtime switch keeps time continuous; only a reset starts the manual clock at its fixed epoch.
            self.clock = ManualClock(start=self.clock.now()) if options.manual_clock else SystemClock()
        if clock_switched or RATE_LIMIT_OPTIONS & changes.keys():
            self.limiter = RateLimiter(options=options)
        if "request_log_limit" in changes:
            self.log.entries = deque(self.log.entries, maxlen=options.request_log_limit)

    def now(self) -> float:
        return self.clock.now()


def _refuse_credential_changes(changes: dict[str, Any]) -> None:
    """The static credentials are fixed at launch; OAuth clients and codes may change."""
    if CREDENTIALS & changes.keys():
        raise ValueError("credentials cannot change at runtime; restart the simulator")
