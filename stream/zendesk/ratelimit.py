"""Zendesk's rate-limit headers, parsed into values (docs/zendesk-api.md §9.3).

    x-rate-limit: 700, x-rate-limit-remaining: 699               account limit per minute (every answer)
    ratelimit-limit, ratelimit-remaining, ratelimit-reset        the same, plus seconds until the reset
    zendesk-ratelimit-<bucket>: total=N; remaining=N; resets=S   an endpoint bucket (create-update-user)

`RateLimitState` keeps the latest values seen, per bucket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

_BUCKET_PREFIX: Final = "zendesk-ratelimit-"
_PAIR: Final = re.compile(r"\s*([A-Za-z_-]+)\s*=\s*(-?\d+)\s*")
ACCOUNT: Final = "account"


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit: the account-wide one (name `account`) or an endpoint bucket such as `create-update-user`."""

    name: str
    total: int | None
    remaining: int | None
    resets_s: int | None  # seconds until the window resets, when Zendesk says

    @property
    def exhausted(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """The rate-limit headers of one response."""

    account: Bucket | None
    buckets: tuple[Bucket, ...] = ()

    def bucket(self, name: str) -> Bucket | None:
        if name == ACCOUNT:
            return self.account
        return next((b for b in self.buckets if b.name == name), None)

    def exhausted_bucket(self) -> Bucket | None:
        """The bucket that ran out: an endpoint bucket first (more specific), else the account."""
        for b in self.buckets:
            if b.exhausted:
                return b
        if self.account is not None and self.account.exhausted:
            return self.account
        return None


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo:
    """Read the rate-limit headers; absent or malformed values become None (never an error)."""
    h = {k.lower(): v for k, v in headers.items()}
    limit = _int(h.get("ratelimit-limit")) if "ratelimit-limit" in h else _int(h.get("x-rate-limit"))
    remaining = _int(h.get("ratelimit-remaining"))
    if remaining is None:
        remaining = _int(h.get("x-rate-limit-remaining"))
    reset = _int(h.get("ratelimit-reset"))
    account = None
    if limit is not None or remaining is not None or reset is not None:
        account = Bucket(ACCOUNT, limit, remaining, reset)
    buckets = tuple(
        _bucket(name.removeprefix(_BUCKET_PREFIX), value)
        for name, value in sorted(h.items())
        if name.startswith(_BUCKET_PREFIX) and len(name) > len(_BUCKET_PREFIX)
    )
    return RateLimitInfo(account=account, buckets=buckets)


def _bucket(name: str, value: str) -> Bucket:
    fields: dict[str, int] = {}
    for part in re.split(r"[;,]", value):
        m = _PAIR.fullmatch(part)
        if m:
            fields[m.group(1).lower()] = int(m.group(2))
    return Bucket(name, fields.get("total"), fields.get("remaining"), fields.get("resets"))


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Observed:
    bucket: Bucket
    at: float  # the client's clock (monotonic seconds) when the response arrived


class RateLimitState:
    """The latest value seen for every bucket. Endpoint buckets appear only on their endpoints' answers,
    so each bucket keeps its own last observation."""

    def __init__(self) -> None:
        self._latest: dict[str, Observed] = {}

    def observe(self, info: RateLimitInfo, *, at: float) -> None:
        for b in (info.account, *info.buckets):
            if b is not None:
                self._latest[b.name] = Observed(b, at)

    def latest(self, name: str = ACCOUNT) -> Observed | None:
        return self._latest.get(name)

    def snapshot(self) -> dict[str, Observed]:
        return dict(self._latest)
