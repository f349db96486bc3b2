"""The rate governor: every request waits for a token of each Zendesk limit it counts against; none is
fired to bounce off a 429.

    limit (docs/zendesk-api.md §9)              bucket               refills at                 burst
    ──────────────────────────────────────────  ───────────────────  ─────────────────────────  ─────
    account, Support API (700/min Enterprise)    account              budget x limit / 60 s      3 s
    Events API (700/min Enterprise)              events               budget x limit / 60 s      3 s
    create_or_update user, per account (1/s)     create-update-user   0.95 / s                   1
    create_or_update user, per user (5/min)      user:<id>            4.8 / 60 s                 1
    organization update, per org (5/min)         organization:<id>    4.8 / 60 s                 1
    queued or running bulk jobs (30)             a slot, not a rate   released when the job ends

The limits are the plan's (`ZENDESK_PLAN`), learned from `X-Rate-Limit` once Zendesk answers. Zendesk's
headers correct what we believe: `x-rate-limit-remaining` / `ratelimit-remaining` (with
`ratelimit-reset`) and the endpoint buckets `zendesk-ratelimit-<name>` tell what is left of the window
account-wide, so several replicas on one account, each following them, converge on the shared budget
without talking to each other. A 429 pauses its bucket for the whole process for Retry-After plus
jitter. `ZENDESK_RATE_BUDGET` caps our share of the account and events limits (`0.6`, or `400rpm`) so
the account's other integrations keep theirs.

Per-key buckets refill with a margin below the documented 5/min and burst 1, so that no fixed minute
window Zendesk might count ever sees more than five of a user's writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from stream.errors import ConfigError
from stream.zendesk.ratelimit import RateLimitInfo

ACCOUNT: Final = "account"
EVENTS: Final = "events"
CREATE_UPDATE_USER: Final = "create-update-user"
INFLIGHT_JOBS: Final = "inflight-jobs"

# Requests per minute, Support API and Events API (docs/zendesk-api.md §9.1, §8.2).
PLANS: Final[dict[str, tuple[int, int]]] = {
    "team": (200, 250),
    "growth": (400, 250),
    "professional": (400, 500),
    "enterprise": (700, 700),
    "enterprise_plus": (2500, 1000),
    "high_volume": (2500, 1000),
    "unlimited": (1_000_000, 1_000_000),  # the simulator with its limits off; never a real account
}
DEFAULT_PLAN: Final = "enterprise"
BURST_S: Final = 3.0
PER_KEY_RPM: Final = 4.8  # below Zendesk's 5 per minute per user / per organization
ACCOUNT_CREATE_UPDATE_PER_S: Final = 0.95  # below 1 per second
MAX_JOBS: Final = 30
MAX_KEYED_BUCKETS: Final = 50_000
PAUSE_JITTER_S: Final = 1.0
_EPSILON: Final = 1e-9  # below this, a fraction of a token (or of a second) is rounding, not a wait


@dataclass(frozen=True, slots=True)
class Budget:
    """Our share of the account's limits: a fraction of them, or a fixed number of requests per minute."""

    share: float = 1.0
    rpm: int | None = None

    @classmethod
    def parse(cls, raw: str) -> Budget:
        text = raw.strip().lower()
        if not text:
            return cls()
        if match := re.fullmatch(r"(\d+)\s*rpm", text):
            rpm = int(match.group(1))
            if rpm < 1:
                raise ConfigError("ZENDESK_RATE_BUDGET: requests per minute must be at least 1")
            return cls(rpm=rpm)
        try:
            share = float(text)
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise ConfigError(
                f"ZENDESK_RATE_BUDGET: expected a share of the account's limit (0 < x <= 1, e.g. 0.6) or "
                f"requests per minute (e.g. 400rpm), got {raw!r}"
            )
        return cls(share=share)

    def rpm_of(self, limit: float) -> float:
        return min(float(self.rpm), limit) if self.rpm is not None else limit * self.share


@dataclass
class Bucket:
    """Tokens refill at `rate` per second up to `burst`; Zendesk's count of what is left in its window
    caps them; a 429 pauses the bucket."""

    name: str
    rate: float
    burst: float
    tokens: float
    stamp: float
    paused_until: float = 0.0
    window_left: float | None = None  # Zendesk's remaining count, less what we sent since
    window_ends: float = 0.0
    in_flight: int = 0  # taken and not yet answered

    def _refill(self, now: float) -> None:
        if now > self.stamp:  # a bucket made a moment after `now` was read has nothing to refill
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.window_left is not None and now >= self.window_ends:
            self.window_left = None  # the window Zendesk spoke of is over

    def wait_s(self, now: float) -> float:
        """Seconds until a token can be taken (0: now)."""
        self._refill(now)
        waits = [self.paused_until - now]
        if self.tokens < 1 - _EPSILON:
            waits.append((1 - self.tokens) / self.rate)
        if self.window_left is not None and self.window_left < 1 - _EPSILON:
            waits.append(self.window_ends - now)
        wait = max(waits)
        return wait if wait > _EPSILON else 0.0

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1
        self.in_flight += 1
        if self.window_left is not None:
            self.window_left -= 1

    def answered(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)

    def observe(self, remaining: int | None, resets_s: int | None, now: float) -> None:
        """Zendesk said `remaining` requests are left, for `resets_s` seconds. Requests of ours still in
        flight were not counted yet."""
        if remaining is None or resets_s is None:
            return
        self.window_left = remaining - self.in_flight
        self.window_ends = now + max(resets_s, 0)

    def set_limit_per_minute(self, rpm: float) -> None:
        self.rate = max(rpm, 1.0) / 60.0
        self.burst = max(1.0, self.rate * BURST_S)
        self.tokens = min(self.tokens, self.burst)


@dataclass(frozen=True, slots=True)
class Need:
    """What one request counts against: bucket names (keyed ones as `user:<key>`), and a job slot."""

    buckets: tuple[str, ...]
    job_slot: bool = False


def need_for(method: str, template: str, *, user_key: str | None = None, org_key: str | None = None) -> Need:
    """The limits a request counts against (docs/zendesk-api.md §9.2)."""
    if template.startswith("/api/v2/user_profiles/") or template.endswith("/events"):
        return Need((EVENTS,))
    buckets = [ACCOUNT]
    if method == "POST" and template == "/api/v2/users/create_or_update":
        buckets.append(CREATE_UPDATE_USER)
        if user_key:
            buckets.append(f"user:{user_key.lower()}")
    elif method == "POST" and template == "/api/v2/organizations/create_or_update" and org_key:
        buckets.append(f"organization:{org_key.lower()}")
    job = template.endswith(("/create_or_update_many", "/create_many", "/update_many", "/destroy_many"))
    return Need(tuple(buckets), job_slot=job)


@dataclass
class _Waiter:
    need: Need
    granted: asyncio.Future[None]


@dataclass
class GovernorStats:
    waits: dict[str, int] = field(default_factory=dict)  # requests that had to wait, by bucket
    rate_limited: dict[str, int] = field(default_factory=dict)  # 429s, by bucket
    waited_s: float = 0.0


@dataclass(frozen=True, slots=True)
class GovernorSnapshot:
    tokens: dict[str, float]
    window_left: dict[str, float]
    job_slots_free: int
    job_slots: int
    waits: dict[str, int]
    rate_limited: dict[str, int]


class Governor:
    """Owns time for Zendesk requests: `acquire` before a request, `answered` after its answer."""

    def __init__(
        self,
        *,
        plan: str = DEFAULT_PLAN,
        budget: Budget | None = None,
        clock: Callable[[], float] | None = None,
        jitter: Callable[[], float] = random.random,
        enabled: bool = True,
    ) -> None:
        if plan not in PLANS:
            raise ConfigError(f"ZENDESK_PLAN: {plan!r} is not one of {', '.join(PLANS)}")
        self._budget = budget or Budget()
        self._clock = clock
        self._jitter = jitter
        self.enabled = enabled
        # The simulator with its limits off: nothing is paced, but a 429 still pauses its bucket.
        unlimited = plan == "unlimited"
        self._per_key_rpm = 1e9 if unlimited else PER_KEY_RPM
        support, events = PLANS[plan]
        self._buckets: dict[str, Bucket] = {}
        self._keyed: OrderedDict[str, Bucket] = OrderedDict()
        self._make(ACCOUNT, self._budget.rpm_of(support))
        self._make(EVENTS, self._budget.rpm_of(events))
        self._make(CREATE_UPDATE_USER, 1e9 if unlimited else ACCOUNT_CREATE_UPDATE_PER_S * 60, burst=1.0)
        self._jobs_free = MAX_JOBS
        self._jobs_total = MAX_JOBS
        self._jobs_paused_until = 0.0  # TooManyJobs: someone's jobs fill the account's 30
        self._waiters: deque[_Waiter] = deque()
        self._shared_waited: Counter[str] = Counter()  # waiters per shared bucket (and the job slots)
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self.stats = GovernorStats()

    # --- the interface ---------------------------------------------------------------------------------

    async def acquire(self, need: Need) -> None:
        """Wait until every bucket of `need` has a token (and a job slot, if it needs one), then take
        them. Waiters are served in order, except that one blocked by its own key's bucket does not hold
        up the others."""
        if not self.enabled:
            return
        if not self._waiters and self._grant(need, self._now()):
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(need, loop.create_future())
        self._waiters.append(waiter)
        for name in _shared(need):
            self._shared_waited[name] += 1
        for name in need.buckets:
            self.stats.waits[_family(name)] = self.stats.waits.get(_family(name), 0) + 1
        if need.job_slot and self._job_slot_wait(self._now()) > 0:
            self.stats.waits[INFLIGHT_JOBS] = self.stats.waits.get(INFLIGHT_JOBS, 0) + 1
        self._ensure_dispatcher()
        self._wake.set()
        started = self._now()
        try:
            await waiter.granted
        finally:
            self.stats.waited_s += self._now() - started
            if not waiter.granted.done() and waiter in self._waiters:
                self._remove(waiter)

    def answered(
        self,
        need: Need,
        info: RateLimitInfo,
        *,
        status: int | None,
        retry_after_s: float | None = None,
        bucket: str | None = None,
    ) -> None:
        """The request's answer came back. Its headers correct the buckets; a 429 (`status`) pauses the
        bucket Zendesk named (`bucket`), or the request's own main bucket, for `retry_after_s`."""
        if not self.enabled:
            return
        now = self._now()
        for name in need.buckets:
            self._bucket(name).answered()
        main = self._bucket(need.buckets[0]) if need.buckets else None
        if info.account is not None and main is not None:
            if info.account.total is not None:
                main.set_limit_per_minute(self._budget.rpm_of(float(info.account.total)))
            main.observe(info.account.remaining, info.account.resets_s, now)
        for reported in info.buckets:
            if reported.name == INFLIGHT_JOBS:
                if reported.total is not None:
                    self._jobs_total = reported.total
                if reported.remaining is not None:
                    self._jobs_free = min(self._jobs_free, reported.remaining)
                continue
            target = self._endpoint_bucket(reported.name, reported.total, need)
            if target is not None:
                target.observe(reported.remaining, reported.resets_s, now)
        if status == 429 and bucket == INFLIGHT_JOBS:
            wait = retry_after_s if retry_after_s is not None else 10.0
            self._jobs_paused_until = max(
                self._jobs_paused_until, now + wait + self._jitter() * PAUSE_JITTER_S
            )
            self.stats.rate_limited[INFLIGHT_JOBS] = self.stats.rate_limited.get(INFLIGHT_JOBS, 0) + 1
        elif status == 429:
            named = info.bucket(bucket) if bucket is not None else None
            if bucket is None or bucket == ACCOUNT:
                target = main
            else:
                target = self._endpoint_bucket(bucket, named.total if named else None, need)
            target = target or main
            if target is not None:
                family = _family(target.name)
                self.stats.rate_limited[family] = self.stats.rate_limited.get(family, 0) + 1
                self.pause(target.name, retry_after_s if retry_after_s is not None else 10.0)
        self._wake.set()

    def pause(self, bucket: str, for_s: float) -> None:
        """Hold every request that counts against `bucket` for `for_s` seconds (plus jitter)."""
        if not self.enabled:
            return
        target = self._bucket(bucket)
        target.paused_until = max(target.paused_until, self._now() + for_s + self._jitter() * PAUSE_JITTER_S)
        self._wake.set()

    def job_done(self) -> None:
        """A bulk job reached an end: its slot is free again."""
        self._jobs_free = min(self._jobs_total, self._jobs_free + 1)
        self._wake.set()

    def can_go_now(self, need: Need) -> bool:
        """Whether a request with `need` would get its tokens without waiting (nothing queued either)."""
        if not self.enabled:
            return True
        now = self._now()
        return not self._waiters and all(self._bucket(n).wait_s(now) == 0 for n in need.buckets)

    def capacity_per_s(self, need: Need) -> float:
        """The steady rate, requests per second, at which requests with `need` can go: the slowest of its
        shared buckets (a key's own bucket limits that key, not the path)."""
        if not self.enabled:
            return float("inf")
        shared = [self._bucket(n).rate for n in need.buckets if not n.startswith(("user:", "organization:"))]
        return min(shared, default=float("inf"))

    def remaining(self) -> dict[str, float]:
        """Each shared bucket's tokens now (for metrics)."""
        now = self._now()
        for bucket in self._buckets.values():
            bucket.wait_s(now)  # refills
        return {name: bucket.tokens for name, bucket in self._buckets.items()}

    def budget(self) -> GovernorSnapshot:
        """What the metrics show, taken on the loop: each shared bucket's tokens now and what Zendesk
        said is left of its window (less what we sent since; absent when it did not say, or the window
        is over), the job slots, and the waits and 429s so far (copies)."""
        now = self._now()
        window: dict[str, float] = {}
        for name, bucket in self._buckets.items():
            bucket.wait_s(now)  # refills, and forgets a window that is over
            if bucket.window_left is not None:
                window[name] = max(0.0, bucket.window_left)
        return GovernorSnapshot(
            tokens={name: max(0.0, bucket.tokens) for name, bucket in self._buckets.items()},
            window_left=window,
            job_slots_free=max(0, self._jobs_free),
            job_slots=self._jobs_total,
            waits=dict(self.stats.waits),
            rate_limited=dict(self.stats.rate_limited),
        )

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher

    # --- the dispatcher ----------------------------------------------------------------------------------

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name="rate-governor")

    async def _dispatch(self) -> None:
        while True:
            now = self._now()
            soonest: float | None = None
            blocked: set[str] = set()
            for waiter in list(self._waiters):
                if waiter.granted.done():  # cancelled meanwhile
                    self._remove(waiter)
                    continue
                if blocked and blocked >= self._shared_waited.keys():
                    break  # every waiter needs a bucket that is empty: no one further on can go
                if any(name in blocked for name in waiter.need.buckets):
                    continue
                delays = {name: self._bucket(name).wait_s(now) for name in waiter.need.buckets}
                slot_free = not waiter.need.job_slot or self._job_slot_wait(now) == 0
                if waiter.need.job_slot and self._jobs_free > 0 and not slot_free:
                    pause = self._jobs_paused_until - now
                    soonest = pause if soonest is None else min(soonest, pause)
                if waiter.need.job_slot and not slot_free:
                    blocked.add(INFLIGHT_JOBS)
                if slot_free and all(d == 0 for d in delays.values()):
                    self._take(waiter.need, now)
                    self._remove(waiter)
                    waiter.granted.set_result(None)
                    continue
                for name, delay in delays.items():
                    if delay > 0:
                        if not name.startswith(("user:", "organization:")):
                            blocked.add(name)  # order kept: nobody overtakes on a shared bucket
                        soonest = delay if soonest is None else min(soonest, delay)
            if not self._waiters:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=soonest)

    def _remove(self, waiter: _Waiter) -> None:
        self._waiters.remove(waiter)
        for name in _shared(waiter.need):
            self._shared_waited[name] -= 1
            if not self._shared_waited[name]:
                del self._shared_waited[name]

    def _job_slot_wait(self, now: float) -> float:
        """0 when a job slot is free now; else how long a pause lasts (inf: until a job of ours ends)."""
        if self._jobs_free <= 0:
            return float("inf")
        return max(0.0, self._jobs_paused_until - now)

    def _grant(self, need: Need, now: float) -> bool:
        if need.job_slot and self._job_slot_wait(now) > 0:
            return False
        if any(self._bucket(name).wait_s(now) > 0 for name in need.buckets):
            return False
        self._take(need, now)
        return True

    def _take(self, need: Need, now: float) -> None:
        for name in need.buckets:
            self._bucket(name).take(now)
        if need.job_slot:
            self._jobs_free -= 1

    # --- buckets -----------------------------------------------------------------------------------------

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _make(self, name: str, rpm: float, *, burst: float | None = None) -> Bucket:
        rate = max(rpm, 0.01) / 60.0
        bucket = Bucket(name, rate, burst or max(1.0, rate * BURST_S), burst or max(1.0, rate * BURST_S), 0.0)
        bucket.stamp = self._now_or_zero()
        self._buckets[name] = bucket
        return bucket

    def _now_or_zero(self) -> float:
        try:
            return self._now()
        except RuntimeError:  # built outside a running loop: the first refill fills it anyway
            return 0.0

    def _bucket(self, name: str) -> Bucket:
        found = self._buckets.get(name)
        if found is not None:
            return found
        keyed = self._keyed.get(name)
        if keyed is None:
            rate = self._per_key_rpm / 60.0
            keyed = self._keyed[name] = Bucket(name, rate, 1.0, 1.0, self._now())
            while len(self._keyed) > MAX_KEYED_BUCKETS:
                self._keyed.popitem(last=False)
        else:
            self._keyed.move_to_end(name)
        return keyed

    def _endpoint_bucket(self, reported: str, total: int | None, need: Need) -> Bucket | None:
        """Our bucket for an endpoint header. `create-update-user` reports the per-user window (total
        5) or the per-account one (total 1); the organization update bucket is per organization."""
        keyed_prefix = None
        if reported == CREATE_UPDATE_USER:
            if total is None or total > 1:
                keyed_prefix = "user:"
            else:
                return self._bucket(CREATE_UPDATE_USER)
        elif reported.startswith("update-organization"):
            keyed_prefix = "organization:"
        if keyed_prefix is None:
            return None
        keyed = [n for n in need.buckets if n.startswith(keyed_prefix)]
        return self._bucket(keyed[0]) if keyed else None


def _shared(need: Need) -> list[str]:
    """The buckets of `need` that other requests share (its key's own bucket is not one), and the job
    slots when it needs one."""
    shared = [name for name in need.buckets if not name.startswith(("user:", "organization:"))]
    return [*shared, INFLIGHT_JOBS] if need.job_slot else shared


def _family(name: str) -> str:
    return name.split(":", 1)[0]
