"""Every Zendesk answer, classified by what the caller must do (docs/semantics.md, "Delivery rules").

    status / failure                     result
    ───────────────────────────────────  ─────────────────────────────────────────────────────────────
    2xx                                  Ok(status, json)         json is {} when empty or not an object
    3xx                                  AuthProblem              redirects are never followed: bad base URL
    401, 403                             AuthProblem              credentials or permissions: stop loudly
    404 that is not JSON,                AuthProblem              not the Zendesk API (base URL or proxy);
        or InvalidEndpoint                                        rejecting would dead-letter every event
    408                                  Unavailable(request_timeout)
    409                                  Unavailable(conflict)    concurrent update; Zendesk clients retry it
    429                                  RateLimited(retry_after_s, bucket)
    other 4xx                            Rejected(status, error_code, body_excerpt, message, field_errors)
    5xx                                  Unavailable(server_error, status, Retry-After when sent)
    timeouts, connect, network errors    Unavailable(timeout | connect_error | network_error)
    anything else (1xx, >= 600)          Unavailable(unexpected_status)

Pure functions: no I/O, no clock unless passed in (`now`, for a Retry-After given as an HTTP date).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import httpx

from stream.outcomes import DlqReason
from stream.zendesk.ratelimit import parse_rate_limit

DEFAULT_RETRY_AFTER_S: Final = 10.0  # Zendesk's Ruby client waits 10 s on a 429 without Retry-After
MAX_RETRY_AFTER_S: Final = 3600.0  # a guard against absurd values; the executor caps its waits further
EXCERPT_CHARS: Final = 500


class UnavailableReason(StrEnum):
    SERVER_ERROR = "server_error"
    REQUEST_TIMEOUT = "request_timeout"
    CONFLICT = "conflict"
    TIMEOUT = "timeout"
    CONNECT_ERROR = "connect_error"
    NETWORK_ERROR = "network_error"
    UNEXPECTED_STATUS = "unexpected_status"
    BAD_PAGINATION = "bad_pagination"


@dataclass(frozen=True, slots=True)
class Ok:
    status: int
    json: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RateLimited:
    """Not a failure: wait `retry_after_s`, then try again. `bucket` names the exhausted limit, if known."""

    retry_after_s: float
    bucket: str | None


@dataclass(frozen=True, slots=True)
class Unavailable:
    reason: UnavailableReason
    status: int | None = None
    retry_after_s: float | None = None
    detail: str = field(default="", compare=False)  # what happened, in words ("connection refused")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One item of a 422 `details` object: `{"email": [{"description": "…", "error": "DuplicateValue"}]}`."""

    field: str
    code: str | None
    description: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """Zendesk refused the request for good. `body_excerpt` is bounded and free of our secrets."""

    status: int
    error_code: str | None
    body_excerpt: str
    message: str | None = None
    field_errors: tuple[FieldError, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthProblem:
    """Zendesk cannot be used as configured (401/403, a redirect, not the Zendesk API)."""

    status: int
    message: str


Problem = RateLimited | Unavailable | Rejected
Result = Ok | Problem
Classified = Result | AuthProblem


@dataclass(frozen=True, slots=True)
class ErrorBody:
    code: str | None
    message: str | None
    field_errors: tuple[FieldError, ...]


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    secrets: Iterable[str] = (),
) -> Classified:
    """Classify one HTTP answer. `secrets` are redacted from any excerpt or message we keep."""
    h = {k.lower(): v for k, v in headers.items()}
    if 200 <= status < 300:
        parsed = _json_object(body)
        return Ok(status, parsed if parsed is not None else {})
    if 300 <= status < 400:
        target = urlsplit(h.get("location", ""))
        where = f" to {target.scheme}://{target.hostname}" if target.hostname else ""
        return AuthProblem(status, f"Zendesk answered with a redirect ({status}){where}; check the base URL")
    if status < 200 or status >= 600:
        return Unavailable(UnavailableReason.UNEXPECTED_STATUS, status)
    if status >= 500:
        return Unavailable(UnavailableReason.SERVER_ERROR, status, _retry_after(h, now))

    parsed = _json_object(body)
    error = parse_error_body(body)
    secrets = tuple(secrets)
    if status in (401, 403):
        message = _redact(error.message or error.code or f"HTTP {status}", secrets)
        return AuthProblem(status, _one_line(message, 200))
    if status == 404 and (parsed is None or error.code == "InvalidEndpoint"):
        return AuthProblem(status, "the URL is not a Zendesk API endpoint (404); check the base URL")
    if status == 408:
        return Unavailable(UnavailableReason.REQUEST_TIMEOUT, status, _retry_after(h, now))
    if status == 409:
        return Unavailable(UnavailableReason.CONFLICT, status, _retry_after(h, now))
    if status == 429:
        return _rate_limited(h, error, now)
    return Rejected(
        status=status,
        error_code=error.code,
        body_excerpt=excerpt(body, secrets),
        message=_redact(error.message, secrets) if error.message else None,
        field_errors=error.field_errors,
    )


def classify_exception(exc: httpx.HTTPError) -> Unavailable:
    """A request that got no answer. The transport (aiohttp) retried it once already if it was
    idempotent and went out on a kept-alive connection that turned out closed; the caller decides more.

    The transport maps every aiohttp connection error to an httpx timeout; its cause tells the truth."""
    cause = exc.__cause__
    detail = describe_exception(exc)
    if isinstance(cause, aiohttp.ClientConnectorError):
        return Unavailable(UnavailableReason.CONNECT_ERROR, detail=detail)
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
        return Unavailable(UnavailableReason.TIMEOUT, detail=detail)
    if isinstance(cause, aiohttp.ClientError):
        return Unavailable(UnavailableReason.NETWORK_ERROR, detail=detail)
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(UnavailableReason.TIMEOUT, detail=detail)
    if isinstance(exc, httpx.ConnectError):
        return Unavailable(UnavailableReason.CONNECT_ERROR, detail=detail)
    return Unavailable(UnavailableReason.NETWORK_ERROR, detail=detail)


def describe_exception(exc: BaseException) -> str:
    """What went wrong with a request that got no answer, in a few words: the real error, not the
    timeout the transport reports for every connection failure. Never includes the URL's query."""
    cause = exc.__cause__ or exc
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        return f"the host name did not resolve ({_os_text(cause.os_error)})"
    if isinstance(cause, aiohttp.ClientConnectorCertificateError):
        return "the server's TLS certificate was not accepted"
    if isinstance(cause, aiohttp.ClientConnectorError):
        os_error = cause.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        return f"cannot connect ({_os_text(os_error)})"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError) or isinstance(
        exc, httpx.TimeoutException
    ):
        return "no answer in time"
    return _one_line(f"{type(cause).__name__}: {cause}", 200)


def _os_text(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _rate_limited(h: Mapping[str, str], error: ErrorBody, now: datetime | None) -> RateLimited:
    exhausted = parse_rate_limit(h).exhausted_bucket()
    bucket = exhausted.name if exhausted is not None else None
    if bucket is None and error.code == "TooManyJobs":
        bucket = "inflight-jobs"
    wait = parse_retry_after(h.get("retry-after"), now=now)
    if wait is None and exhausted is not None and exhausted.resets_s is not None:
        wait = float(min(max(exhausted.resets_s, 0), MAX_RETRY_AFTER_S))
    return RateLimited(DEFAULT_RETRY_AFTER_S if wait is None else wait, bucket)


def _retry_after(h: Mapping[str, str], now: datetime | None) -> float | None:
    return parse_retry_after(h.get("retry-after"), now=now)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds to wait: delay-seconds or an HTTP date. None when absent or unreadable.
    The result is clamped to [0, MAX_RETRY_AFTER_S]."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def parse_error_body(body: bytes) -> ErrorBody:
    """Read Zendesk's error shapes (docs/zendesk-api.md §1.4, §8.1):

    {"error": "RecordInvalid", "description": "...", "details": {"email": [{"description", "error"}]}}
    {"error": {"title": "Invalid attribute", "message": "..."}}
    {"errors": [{"code": "TooManyRequests", "title": "..."}]}
    {"error": "invalid_token", "error_description": "..."}
    {"error": "Couldn't authenticate you"}               (a message, not a code)
    text/html or text/plain                              (no code; the excerpt tells)
    """
    obj = _json_object(body)
    if obj is None:
        return ErrorBody(None, None, ())
    code: str | None = None
    message: str | None = None
    error = obj.get("error")
    if isinstance(error, str):
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", error):
            code = error
        else:
            message = error
    elif isinstance(error, dict):
        code = _str(error.get("title")) or _str(error.get("code"))
        message = _str(error.get("message"))
    errors = obj.get("errors")
    if isinstance(errors, list):
        items = [e for e in errors if isinstance(e, dict)]
        if items:
            code = code or _str(items[0].get("code"))
            titles = [t for t in (_str(e.get("title")) or _str(e.get("detail")) for e in items) if t]
            message = message or ("; ".join(titles) if titles else None)
    message = message or _str(obj.get("description")) or _str(obj.get("error_description"))
    details = obj.get("details")
    if isinstance(details, str):
        message = message or details
    return ErrorBody(code, message, _field_errors(details))


def _field_errors(details: object) -> tuple[FieldError, ...]:
    if not isinstance(details, dict):
        return ()
    found: list[FieldError] = []
    for name, items in details.items():
        for item in items if isinstance(items, list) else [items]:
            if isinstance(item, dict):
                description = _str(item.get("description")) or ""
                found.append(FieldError(str(name), _str(item.get("error")), description))
            elif isinstance(item, str):
                found.append(FieldError(str(name), None, item))
    return tuple(found)


def excerpt(body: bytes, secrets: Iterable[str] = (), limit: int = EXCERPT_CHARS) -> str:
    """The start of a body as one line of at most `limit` characters, secrets and credentials blanked."""
    text = body[: limit * 8].decode("utf-8", errors="replace")
    return _one_line(_redact(text, tuple(secrets)), limit)


_CREDENTIALS: Final = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")


def _redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _CREDENTIALS.sub(r"\1 ***", text)


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_object(body: bytes) -> dict[str, Any] | None:
    if not body.strip():
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- Recognising the rejections the executor handles specially ---------------------------------


def _has_field_error(r: Rejected, field: str, code: str, phrase: str) -> bool:
    return any(
        fe.field == field and (fe.code == code or (fe.code is None and phrase in fe.description.lower()))
        for fe in r.field_errors
    )


def is_duplicate_email(r: Rejected) -> bool:
    """422 "Email: x is already being used by another user" (→ identity_conflict)."""
    return r.status == 422 and _has_field_error(r, "email", "DuplicateValue", "already being used")


def is_duplicate_organization_name(r: Rejected) -> bool:
    """422 "Name: X has already been taken" on an organization."""
    return r.status == 422 and _has_field_error(r, "name", "DuplicateValue", "already been taken")


def is_duplicate_field_key(r: Rejected) -> bool:
    """422 on creating a user/organization field whose key exists (another replica won the race)."""
    return r.status == 422 and _has_field_error(r, "key", "DuplicateValue", "already been taken")


def is_already_member(r: Rejected) -> bool:
    """422 on creating a membership that exists. The exact body is undocumented (docs/zendesk-api.md
    §6.2, §13): any DuplicateValue detail, or a message saying "already"/"taken". A missing
    organization (BlankValue) is not this."""
    if r.status != 422:
        return False
    if any(fe.code == "DuplicateValue" for fe in r.field_errors):
        return True
    texts = [fe.description for fe in r.field_errors if fe.code is None]
    if not r.field_errors and r.message:
        texts.append(r.message)
    return any("already" in t.lower() or "taken" in t.lower() for t in texts)


def is_invalid_time_zone(r: Rejected) -> bool:
    """Zendesk refused `time_zone` (422 detail on time_zone, or a 400 "invalid value for user.time_zone")."""
    if r.status not in (400, 422):
        return False
    return any(fe.field == "time_zone" for fe in r.field_errors) or "time_zone" in (r.message or "")


def is_record_not_found(r: Rejected) -> bool:
    return r.status == 404 and r.error_code == "RecordNotFound"


def dlq_reason(r: Rejected) -> DlqReason:
    """The dead-letter reason for a rejection that is not handled otherwise (docs/semantics.md)."""
    if is_duplicate_email(r) or is_duplicate_organization_name(r):
        return DlqReason.IDENTITY_CONFLICT
    return DlqReason.ZENDESK_REJECTED


# --- Items of a finished bulk job ---------------------------------------------------------------------

_ITEM_LABELS: Final = {  # the "Label:" a failed item's details start with -> the attribute it names
    "email": "email",
    "name": "name",
    "time zone": "time_zone",
    "external id": "external_id",
    "organization": "organization",
    "phone": "phone",
}


def classify_job_item(item: Mapping[str, Any]) -> Ok | Rejected:
    """One entry of a finished job's `results`, as the single request's answer would have been, so the
    event's outcome is the same on either path (docs/zendesk-api.md §7.1):

        {"id": 7, "status": "Created"|"Updated", "success": true, ...}   Ok(201 | 200, {"id": 7})
        {"index": 3, "id": null, "error": "DuplicateValue",
         "details": "Email: a@b.c is already being used by another user"}  Rejected(422, with the field
                                                                           error the single path gives)
    """
    error = item.get("error")
    if not error and item.get("success", True) is not False:
        created = str(item.get("status", "")).lower() == "created" or item.get("action") == "create"
        return Ok(201 if created else 200, {k: v for k, v in item.items() if k in ("id", "status", "action")})
    code = _str(error) or "JobItemFailed"
    details = _str(item.get("details")) or _str(item.get("description")) or ""
    label, sep, _ = details.partition(":")
    field_name = _ITEM_LABELS.get(label.strip().lower()) if sep else None
    errors = (FieldError(field_name, code, details),) if field_name else ()
    return Rejected(
        status=422,
        error_code=code,
        body_excerpt=_one_line(f"{code}: {details}", EXCERPT_CHARS),
        message=details or None,
        field_errors=errors,
    )
