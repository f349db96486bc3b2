"""Zendesk's rate limits as fixed windows, and the headers that report them (docs/zendesk-api.md §9).

Each bucket counts requests in a window that opens with the first request after the previous window ended.
[I] Zendesk does not document whether its windows are fixed or sliding; a fixed window matches the
``resets=<seconds>`` it reports. A request refused by one bucket still counts against the account bucket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from stream.simulator.options import PLANS, SimulatorOptions


@dataclass(slots=True)
class Window:
    limit: int
    period: float
    count: int = 0
    opened_at: float = -math.inf

    def _roll(self, now: float) -> None:
        if now >= self.opened_at + self.period:
            self.opened_at = now
            self.count = 0

    def try_take(self, now: float) -> bool:
        self._roll(now)
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def remaining(self, now: float) -> int:
        self._roll(now)
        return max(self.limit - self.count, 0)

    def resets_in(self, now: float) -> int:
        """Whole seconds until the window ends (at least 1, as Retry-After needs)."""
        self._roll(now)
        return max(math.ceil(self.opened_at + self.period - now), 1)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was refused with 429."""

    retry_after: int
    body: Mapping[str, object] | str
    headers: list[tuple[str, str]]


TOO_MANY_REQUESTS_HTML = (
    "<html><body><h1>429 Too Many Requests</h1>You have sent too many requests.</body></html>"
)
TOO_MANY_UPDATES = {"errors": [{"code": "TooManyRequests", "title": "Too many requests to update"}]}


def _scaled(limit: int, scale: float) -> int:
    return max(int(limit * scale), 1)


def bucket_header(name: str, window: Window, now: float) -> tuple[str, str]:
    return (
        f"zendesk-ratelimit-{name}",
        f"total={window.limit}; remaining={window.remaining(now)}; resets={window.resets_in(now)}",
    )


class RateLimiter:
    def __init__(self, *, options: SimulatorOptions) -> None:
        self.enabled = options.rate_limits
        plan = PLANS[options.plan]
        scale = options.limit_scale
        self.support = Window(_scaled(plan.support_rpm, scale), 60.0) if plan.support_rpm else None
        self.events = Window(_scaled(plan.events_rpm, scale), 60.0) if plan.events_rpm else None
        self.create_update_user_account = Window(_scaled(options.create_update_user_per_second, scale), 1.0)
        self._per_user_limit = _scaled(options.create_update_user_per_user_per_minute, scale)
        self._per_org_limit = _scaled(options.org_update_per_minute, scale)
        self.per_user: dict[str, Window] = {}
        self.per_org: dict[int, Window] = {}

    def account_window(self, *, events_api: bool) -> Window | None:
        return self.events if events_api else self.support

    def take_account(self, now: float, *, events_api: bool) -> Refusal | None:
        window = self.account_window(events_api=events_api)
        if not self.enabled or window is None or window.try_take(now):
            return None
        retry_after = window.resets_in(now)
        return Refusal(retry_after=retry_after, body=TOO_MANY_REQUESTS_HTML, headers=[])

    def account_headers(self, now: float, *, events_api: bool) -> list[tuple[str, str]]:
        window = self.account_window(events_api=events_api)
        if window is None or not self.enabled:
            return []
        limit, remaining, reset = str(window.limit), str(window.remaining(now)), str(window.resets_in(now))
        return [
            ("x-rate-limit", limit),
            ("x-rate-limit-remaining", remaining),
            ("ratelimit-limit", limit),
            ("ratelimit-remaining", remaining),
            ("ratelimit-reset", reset),
        ]

    def take_create_update_user(self, now: float, *, user_key: str) -> tuple[Refusal | None, tuple[str, str]]:
        """Both create_or_update user buckets (1/s per account, 5/min per user), and the bucket header."""
        per_user = self.per_user.get(user_key)
        if per_user is None:
            per_user = self.per_user[user_key] = Window(self._per_user_limit, 60.0)
        account = self.create_update_user_account
        if not self.enabled:
            return None, bucket_header("create-update-user", per_user, now)
        if not account.try_take(now):
            return self._endpoint_refusal("create-update-user", account, now), bucket_header(
                "create-update-user", account, now
            )
        if not per_user.try_take(now):
            return self._endpoint_refusal("create-update-user", per_user, now), bucket_header(
                "create-update-user", per_user, now
            )
        return None, bucket_header("create-update-user", per_user, now)

    def alias_user(self, key: str, user_key: str) -> None:
        """A new user was counted under the identifier that created it; later requests name it by id."""
        if key != user_key and key in self.per_user:
            self.per_user[user_key] = self.per_user.pop(key)

    def take_org_update(self, now: float, *, organization_id: int) -> Refusal | None:
        window = self.per_org.get(organization_id)
        if window is None:
            window = self.per_org[organization_id] = Window(self._per_org_limit, 60.0)
        if not self.enabled or window.try_take(now):
            return None
        return self._endpoint_refusal("update-organization", window, now)

    @staticmethod
    def _endpoint_refusal(name: str, window: Window, now: float) -> Refusal:
        return Refusal(
            retry_after=window.resets_in(now),
            body=TOO_MANY_UPDATES,
            headers=[bucket_header(name, window, now)],
        )
