"""Injected failures: one-shot rules for the next N matching requests, outage windows, a random error rate."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Literal

FaultAction = Literal["status", "drop", "drop_after"]


@dataclass(frozen=True, slots=True)
class Failure:
    """What to do instead of (or, for ``drop_after``, after) serving a request."""

    action: FaultAction
    status: int = 503
    retry_after: int | None = None
    error: str | None = None  # replaces the "error" of the status's generic JSON body
    description: str | None = None  # replaces its "description"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "status": self.status,
            "retry_after": self.retry_after,
            "error": self.error,
            "description": self.description,
        }


@dataclass(slots=True)
class FaultRule:
    id: int
    method: str | None  # None matches any method
    path: re.Pattern[str]
    remaining: int
    failure: Failure

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path.pattern,
            "remaining": self.remaining,
            **self.failure.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Outage:
    starts_at: float
    ends_at: float
    failure: Failure

    def to_json(self) -> dict[str, Any]:
        return {
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            **self.failure.to_json(),
        }


def parse_failure(spec: dict[str, Any]) -> Failure:
    """``{"action": "status"|"drop"|"drop_after", "status": 429|500|503, "retry_after": seconds,
    "error": "RecordNotFound", "description": "Not found"}``. ``error``/``description`` (action ``status``
    only) make the answer the JSON body ``{"error": ..., "description": ...}`` Zendesk sends, in place of
    the generic body of that status."""
    action = spec.get("action", "status")
    if action not in ("status", "drop", "drop_after"):
        raise ValueError("action must be 'status', 'drop' or 'drop_after'")
    status = spec.get("status", 503)
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError("status must be an HTTP error status (400-599)")
    retry_after = spec.get("retry_after")
    if retry_after is not None and (not isinstance(retry_after, int) or retry_after < 0):
        raise ValueError("retry_after must be a non-negative integer")
    error, description = spec.get("error"), spec.get("description")
    for name, text in (("error", error), ("description", description)):
        if text is not None and not isinstance(text, str):
            raise ValueError(f"{name} must be a string")
    if (error is not None or description is not None) and action != "status":
        raise ValueError("error and description need action 'status' (a dropped connection has no body)")
    return Failure(
        action=action, status=status, retry_after=retry_after, error=error, description=description
    )


class FaultPlan:
    def __init__(self, *, seed: int) -> None:
        self.rules: list[FaultRule] = []
        self.outages: list[Outage] = []
        self._next_rule_id = 0
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not security

    def add_rule(self, spec: dict[str, Any]) -> FaultRule:
        count = spec.get("count", 1)
        if not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        path = spec.get("path", "")
        if not isinstance(path, str):
            raise ValueError("path must be a regular expression string")
        try:
            pattern = re.compile(path)
        except re.error as error:
            raise ValueError(f"path is not a valid regular expression: {error}") from error
        method = spec.get("method")
        self._next_rule_id += 1
        rule = FaultRule(
            id=self._next_rule_id,
            method=method.upper() if isinstance(method, str) else None,
            path=pattern,
            remaining=count,
            failure=parse_failure(spec),
        )
        self.rules.append(rule)
        return rule

    def add_outage(self, spec: dict[str, Any], now: float) -> Outage:
        start_in = spec.get("start_in_seconds", 0)
        duration = spec.get("duration_seconds")
        if not isinstance(duration, (int, float)) or duration <= 0:
            raise ValueError("duration_seconds must be a positive number")
        if not isinstance(start_in, (int, float)) or start_in < 0:
            raise ValueError("start_in_seconds must be a non-negative number")
        failure = parse_failure({"status": 503, "retry_after": max(int(duration), 1)} | spec)
        outage = Outage(starts_at=now + start_in, ends_at=now + start_in + duration, failure=failure)
        self.outages.append(outage)
        return outage

    def clear(self) -> None:
        self.rules.clear()
        self.outages.clear()

    def failure_for(
        self,
        method: str,
        path: str,
        now: float,
        *,
        error_rate: float,
        error_status: int,
        error_retry_after: int,
    ) -> Failure | None:
        for outage in self.outages:
            if outage.starts_at <= now < outage.ends_at:
                return outage.failure
        for rule in self.rules:
            if rule.matches(method, path):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self.rules.remove(rule)
                return rule.failure
        if error_rate > 0 and self._rng.random() < error_rate:
            return Failure(action="status", status=error_status, retry_after=error_retry_after)
        return None
