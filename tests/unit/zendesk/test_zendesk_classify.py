from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest

from stream.outcomes import DlqReason
from stream.zendesk import (
    AuthProblem,
    Classified,
    FieldError,
    Ok,
    RateLimited,
    Rejected,
    Unavailable,
    UnavailableReason,
    classify,
    classify_exception,
    dlq_reason,
    is_already_member,
    is_duplicate_email,
    is_duplicate_field_key,
    is_duplicate_organization_name,
    is_invalid_time_zone,
    is_record_not_found,
    parse_error_body,
    parse_retry_after,
)
from stream.zendesk.classify import DEFAULT_RETRY_AFTER_S, EXCERPT_CHARS, MAX_RETRY_AFTER_S

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
JSON = {"content-type": "application/json; charset=utf-8"}

# Bodies as recorded in docs/zendesk-api.md §1.4, §5, §8.
DUPLICATE_EMAIL = {
    "error": "RecordInvalid",
    "description": "Record validation errors",
    "details": {
        "email": [
            {
                "description": "Email: test@example.org is already being used by another user",
                "error": "DuplicateValue",
            }
        ]
    },
}
NAME_TAKEN = {
    "error": "RecordInvalid",
    "description": "Record validation errors",
    "details": {
        "name": [{"description": "Name: Lorem Ipsum has already been taken", "error": "DuplicateValue"}]
    },
}
KEY_TAKEN = {
    "error": "RecordInvalid",
    "description": "Record validation errors",
    "details": {"key": [{"description": "Key: plan_name has already been taken", "error": "DuplicateValue"}]},
}
BLANK_NAME_2013 = {
    "error": "RecordInvalid",
    "description": "Record validation errors",
    "details": {"name": [{"description": "Name: is too short (minimum is 1 characters)"}]},
}
MISSING_ORG = {
    "error": "RecordInvalid",
    "description": "Record validation errors",
    "details": {"organization": [{"description": "Organization cannot be blank", "error": "BlankValue"}]},
}
INVALID_ATTRIBUTE = {
    "error": {
        "title": "Invalid attribute",
        "message": "You passed an invalid value for the user.tags attribute. "
        "Invalid parameter: user.tags must be an array from api/v2/users/update",
    }
}
EVENTS_400 = {
    "errors": [{"code": "StartTimestampNotValid", "id": "5f1c-uuid", "title": "Start timestamp invalid"}]
}
ORG_UPDATE_429 = {"errors": [{"code": "TooManyRequests", "title": "Too many requests to update"}]}
TOO_MANY_JOBS = {
    "error": "TooManyJobs",
    "description": "Too many UserBulkUpdateJobV2 jobs are currently queued or running. Try again later.",
    "current_job_ids": ["V3-abc"],
}
TOO_MANY_VALUES = {"error": "TooManyValues", "description": "Maximum 100 users may be created per call"}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
INVALID_ENDPOINT = {"error": "InvalidEndpoint", "description": "Not found"}
BAD_CREDENTIALS = {"error": "Couldn't authenticate you"}
BAD_OAUTH = {
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed or invalid "
    "for other reasons.",
}
FORBIDDEN = {
    "error": "Forbidden",
    "description": "You do not have access to this page. "
    "Please contact the account owner of this help desk for further help.",
}
HTML_429 = b"<html><body><h1>429 Too Many Requests</h1>You have sent too many requests.</body></html>\n"


def b(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def run(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Classified:
    return classify(status, headers or JSON, body, now=NOW)


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (200, JSON, b'{"user":{"id":1}}', Ok(200, {"user": {"id": 1}})),
        (201, JSON, b'{"user":{"id":1}}', Ok(201, {"user": {"id": 1}})),
        (202, JSON, b'{"profile_id":"01E1","status":"received","user_id":"123456"}',
         Ok(202, {"profile_id": "01E1", "status": "received", "user_id": "123456"})),
        (204, {}, b"", Ok(204, {})),
        (200, {"content-type": "text/html"}, b"<html>ok</html>", Ok(200, {})),
        (200, JSON, b"[1,2]", Ok(200, {})),
        (301, {"location": "https://other.zendesk.com/api/v2/users"}, b"", None),
        (401, {**JSON, "www-authenticate": 'Basic realm="Web Password"'}, b(BAD_CREDENTIALS),
         AuthProblem(401, "Couldn't authenticate you")),
        (401, JSON, b(BAD_OAUTH), AuthProblem(401, BAD_OAUTH["error_description"])),
        (403, JSON, b(FORBIDDEN), AuthProblem(403, FORBIDDEN["description"])),
        (403, {}, b"", AuthProblem(403, "HTTP 403")),
        (404, {"content-type": "text/html"}, b"<html>Help Center Closed</html>", None),
        (404, JSON, b(INVALID_ENDPOINT), None),
        (408, {}, b"", Unavailable(UnavailableReason.REQUEST_TIMEOUT, 408)),
        (409, JSON, b'{"error":"Conflict"}', Unavailable(UnavailableReason.CONFLICT, 409)),
        (429, {"content-type": "text/html", "retry-after": "93"}, HTML_429, RateLimited(93.0, None)),
        (429, JSON, b(ORG_UPDATE_429), RateLimited(DEFAULT_RETRY_AFTER_S, None)),
        (429, {**JSON, "retry-after": "30"}, b(TOO_MANY_JOBS), RateLimited(30.0, "inflight-jobs")),
        (429, {"retry-after": "7", "x-rate-limit": "700", "x-rate-limit-remaining": "0"}, b"",
         RateLimited(7.0, "account")),
        (429, {"zendesk-ratelimit-create-update-user": "total=5; remaining=0; resets=42",
               "x-rate-limit-remaining": "600"}, b"", RateLimited(42.0, "create-update-user")),
        (500, JSON, b'{"error":"InternalError"}', Unavailable(UnavailableReason.SERVER_ERROR, 500)),
        (502, {"content-type": "text/html"}, b"<html>Bad gateway</html>",
         Unavailable(UnavailableReason.SERVER_ERROR, 502)),
        (503, {"retry-after": "120"}, b"Maintenance",
         Unavailable(UnavailableReason.SERVER_ERROR, 503, 120.0)),
        (504, {}, b"", Unavailable(UnavailableReason.SERVER_ERROR, 504)),
        (100, {}, b"", Unavailable(UnavailableReason.UNEXPECTED_STATUS, 100)),
        (600, {}, b"", Unavailable(UnavailableReason.UNEXPECTED_STATUS, 600)),
    ],
)  # fmt: skip
def test_classification_table(
    status: int, headers: dict[str, str], body: bytes, expected: Classified | None
) -> None:
    result = classify(status, headers, body, now=NOW)
    if expected is None:  # config problems whose message is checked loosely
        assert isinstance(result, AuthProblem) and result.status == status
        assert "base URL" in result.message
    else:
        assert result == expected


def test_redirect_message_names_only_the_target_origin() -> None:
    result = run(302, headers={"location": "https://other.zendesk.com/api/v2/users?token=abc"})
    assert isinstance(result, AuthProblem)
    assert "https://other.zendesk.com" in result.message and "token" not in result.message


@pytest.mark.parametrize(
    ("status", "body", "code", "message", "field_errors"),
    [
        (422, DUPLICATE_EMAIL, "RecordInvalid", "Record validation errors",
         (FieldError("email", "DuplicateValue",
                     "Email: test@example.org is already being used by another user"),)),
        (422, BLANK_NAME_2013, "RecordInvalid", "Record validation errors",
         (FieldError("name", None, "Name: is too short (minimum is 1 characters)"),)),
        (400, INVALID_ATTRIBUTE, "Invalid attribute", INVALID_ATTRIBUTE["error"]["message"], ()),
        (400, EVENTS_400, "StartTimestampNotValid", "Start timestamp invalid", ()),
        (400, TOO_MANY_VALUES, "TooManyValues", "Maximum 100 users may be created per call", ()),
        (404, NOT_FOUND, "RecordNotFound", "Not found", ()),
        (413, {"error": "RecordInvalid", "details": "too big"}, "RecordInvalid", "too big", ()),
    ],
)  # fmt: skip
def test_rejections_parse_zendesk_error_shapes(
    status: int, body: dict[str, Any], code: str, message: str, field_errors: tuple[FieldError, ...]
) -> None:
    result = run(status, b(body))
    assert isinstance(result, Rejected)
    assert (result.status, result.error_code, result.message, result.field_errors) == (
        status,
        code,
        message,
        field_errors,
    )
    assert result.body_excerpt == json.dumps(body)[:EXCERPT_CHARS]


def test_text_rejection_keeps_an_excerpt() -> None:
    result = run(400, b"Bad request:\n  something\twent wrong", {"content-type": "text/plain"})
    assert result == Rejected(400, None, "Bad request: something went wrong")


def test_excerpt_is_bounded_and_one_line() -> None:
    result = run(422, b'{"error":"X","description":"' + b"a\n" * 5000 + b'"}')
    assert isinstance(result, Rejected)
    assert len(result.body_excerpt) == EXCERPT_CHARS and result.body_excerpt.endswith("…")
    assert "\n" not in result.body_excerpt


def test_excerpt_and_messages_are_redacted() -> None:
    body = (
        b'{"error":"Bad","description":"echo sekrit-tok and Authorization: Bearer abc.def'
        b' and Basic Zm9vOmJhcg=="}'
    )
    result = classify(400, JSON, body, now=NOW, secrets=("sekrit-tok",))
    assert isinstance(result, Rejected)
    for text in (result.body_excerpt, result.message or ""):
        assert "sekrit-tok" not in text and "abc.def" not in text and "Zm9vOmJhcg" not in text
        assert "Bearer ***" in text and "Basic ***" in text
    auth = classify(401, JSON, b'{"error":"bad token sekrit-tok"}', now=NOW, secrets=("sekrit-tok",))
    assert isinstance(auth, AuthProblem) and "sekrit-tok" not in auth.message


def test_invalid_utf8_body_does_not_break_classification() -> None:
    result = run(400, b"\xff\xfe broken", {"content-type": "text/plain"})
    assert isinstance(result, Rejected) and "broken" in result.body_excerpt


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("93", 93.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("99999999", MAX_RETRY_AFTER_S),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Fri, 02 Jan 2026 03:05:05 GMT", 60.0),
        ("Fri, 02 Jan 2026 03:00:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_429_with_http_date_retry_after() -> None:
    result = run(429, headers={"retry-after": "Fri, 02 Jan 2026 03:04:35 GMT"})
    assert result == RateLimited(30.0, None)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectTimeout("t"), UnavailableReason.TIMEOUT),
        (httpx.ReadTimeout("t"), UnavailableReason.TIMEOUT),
        (httpx.PoolTimeout("t"), UnavailableReason.TIMEOUT),
        (httpx.ConnectError("refused"), UnavailableReason.CONNECT_ERROR),
        (httpx.ReadError("reset"), UnavailableReason.NETWORK_ERROR),
        (httpx.RemoteProtocolError("eof"), UnavailableReason.NETWORK_ERROR),
        (httpx.DecodingError("gzip"), UnavailableReason.NETWORK_ERROR),
    ],
)
def test_transport_errors_are_transient(exc: httpx.HTTPError, reason: UnavailableReason) -> None:
    assert classify_exception(exc) == Unavailable(reason)


def rejected(status: int, body: dict[str, Any]) -> Rejected:
    result = run(status, b(body))
    assert isinstance(result, Rejected)
    return result


def test_recognisers() -> None:
    dup_email = rejected(422, DUPLICATE_EMAIL)
    name_taken = rejected(422, NAME_TAKEN)
    key_taken = rejected(422, KEY_TAKEN)
    missing_org = rejected(422, MISSING_ORG)
    not_found = rejected(404, NOT_FOUND)

    assert is_duplicate_email(dup_email) and not is_duplicate_email(name_taken)
    assert is_duplicate_organization_name(name_taken) and not is_duplicate_organization_name(dup_email)
    assert is_duplicate_field_key(key_taken) and not is_duplicate_field_key(name_taken)
    assert is_record_not_found(not_found) and not is_record_not_found(dup_email)
    assert not is_already_member(missing_org)
    assert not is_duplicate_organization_name(rejected(422, BLANK_NAME_2013))

    assert dlq_reason(dup_email) is DlqReason.IDENTITY_CONFLICT
    assert dlq_reason(name_taken) is DlqReason.IDENTITY_CONFLICT
    assert dlq_reason(missing_org) is DlqReason.ZENDESK_REJECTED


def test_recognisers_accept_old_bodies_without_error_codes() -> None:
    old = {
        "error": "RecordInvalid",
        "details": {"email": [{"description": "Email: a@b.c is already being used"}]},
    }
    assert is_duplicate_email(rejected(422, old))


@pytest.mark.parametrize(
    "body",
    [
        {"error": "RecordInvalid", "details": {"user_id": [{"description": "User has already been taken",
                                                            "error": "DuplicateValue"}]}},
        {"error": "RecordInvalid", "details": {"organization_id": [{"description": "is already a member"}]}},
        {"error": "RecordInvalid", "description": "User is already a member of this organization"},
    ],
)  # fmt: skip
def test_already_member_shapes(body: dict[str, Any]) -> None:
    assert is_already_member(rejected(422, body))


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (422, {"error": "RecordInvalid", "details": {"time_zone": [{"description": "Time zone: is invalid",
                                                                    "error": "InvalidValue"}]}}),
        (400, {"error": {"title": "Invalid attribute",
                         "message": "You passed an invalid value for the user.time_zone attribute."}}),
    ],
)  # fmt: skip
def test_invalid_time_zone(status: int, body: dict[str, Any]) -> None:
    assert is_invalid_time_zone(rejected(status, body))
    assert not is_invalid_time_zone(rejected(422, DUPLICATE_EMAIL))


def test_parse_error_body_on_garbage() -> None:
    for body in (b"", b"null", b"[]", b"<html>", b'{"error": 5}'):
        parsed = parse_error_body(body)
        assert parsed.code is None and parsed.field_errors == ()


def _chained(exc: httpx.HTTPError, cause: BaseException) -> httpx.HTTPError:
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (
            _chained(httpx.ConnectTimeout("x"), aiohttp.ServerDisconnectedError()),
            UnavailableReason.NETWORK_ERROR,
        ),
        (_chained(httpx.ReadTimeout("x"), aiohttp.SocketTimeoutError()), UnavailableReason.TIMEOUT),
        (_chained(httpx.ConnectTimeout("x"), aiohttp.ServerTimeoutError()), UnavailableReason.TIMEOUT),
    ],
)
def test_the_aiohttp_cause_of_a_transport_error_names_what_happened(
    exc: httpx.HTTPError, reason: UnavailableReason
) -> None:
    assert classify_exception(exc).reason is reason
