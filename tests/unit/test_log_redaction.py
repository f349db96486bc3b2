"""The redaction processor as a pure function, and the configured logging end to end: no token, secret
or raw email is ever written; emails and record keys are hashed unless STREAM_LOG_PII=true."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from stream.errors import ConfigError
from stream.observability import REDACTED, Redactor, bind_record, configure_logging, pii_hash

EMAIL = "peter.gibbons@initech.example"


def redact(pii: bool = False, secrets: tuple[str, ...] = (), **fields: object) -> dict[str, object]:
    result: dict[str, object] = Redactor(pii=pii, secrets=secrets)(None, "info", dict(fields))
    return result


def test_values_of_keys_that_look_secret_are_replaced_and_numbers_stay() -> None:
    cleaned = redact(
        event="x",
        token="abc123",
        client_secret="s3cr3t",
        Authorization="Basic dXNlcjpwYXNz",
        password="hunter2",
        api_key="k-123",
        refresh_token_file="/run/secrets/refresh",
        nested={"access_token": "t0ken", "ok": "fine"},
        tokens=3.5,
        token_expired=False,
    )
    assert cleaned == {
        "event": "x",
        "token": REDACTED,
        "client_secret": REDACTED,
        "Authorization": REDACTED,
        "password": REDACTED,
        "api_key": REDACTED,
        "refresh_token_file": REDACTED,
        "nested": {"access_token": REDACTED, "ok": "fine"},
        "tokens": 3.5,
        "token_expired": False,
    }


def test_emails_anywhere_in_a_line_are_hashed_unless_pii_is_on() -> None:
    cleaned = redact(
        event=f"Email: {EMAIL} is already being used by another user",
        error=[f"<{EMAIL}>", b"bytes " + EMAIL.encode()],
        detail={"who": EMAIL},
    )
    digest = pii_hash(EMAIL)
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 12
    assert cleaned == {
        "event": f"Email: {digest} is already being used by another user",
        "error": [f"<{digest}>", f"bytes {digest}"],
        "detail": {"who": digest},
    }
    assert redact(pii=True, event=f"to {EMAIL}") == {"event": f"to {EMAIL}"}


def test_personal_keys_are_hashed_whole_unless_pii_is_on() -> None:
    assert redact(key="user-97980cfea0067", user_key="97980") == {
        "key": pii_hash("user-97980cfea0067"),
        "user_key": pii_hash("97980"),
    }
    assert redact(key=pii_hash("k")) == {"key": pii_hash("k")}  # hashed once only
    assert redact(pii=True, key="user-97980cfea0067") == {"key": "user-97980cfea0067"}


def test_credentials_inside_text_are_blanked() -> None:
    cleaned = redact(
        secrets=("very-secret-client-value",),
        event="sent Authorization: Bearer eyJhbGciOi.J9x-y_z and Basic cGV0ZXI6dG9rZW4=",
        error="the client very-secret-client-value was refused",
        note="a Basic plan, a Bearer of news",
    )
    assert cleaned == {
        "event": f"sent Authorization: Bearer {REDACTED} and Basic {REDACTED}",
        "error": f"the client {REDACTED} was refused",
        "note": "a Basic plan, a Bearer of news",
    }


def configured(env: dict[str, str]) -> io.StringIO:
    out = io.StringIO()
    configure_logging({"STREAM_LOG_FORMAT": "json", **env}, destination=out)
    return out


@pytest.fixture(autouse=True)
def _reset_logging() -> object:
    yield
    structlog.reset_defaults()
    logging.getLogger().handlers[:] = []


def test_configured_logging_redacts_our_lines_and_the_libraries_with_the_record_context() -> None:
    out = configured({})
    with bind_record(topic="in", partition=3, offset=42, key=EMAIL, message_id="m-1"):
        structlog.get_logger("t").info("upsert refused", error=f"{EMAIL} taken", token="abc123")
    logging.getLogger("librdkafka").warning("SASL password=%s for %s", "x", EMAIL)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert EMAIL not in out.getvalue() and "abc123" not in out.getvalue()
    assert lines[0]["key"] == pii_hash(EMAIL)
    assert (lines[0]["topic"], lines[0]["partition"], lines[0]["offset"], lines[0]["messageId"]) == (
        "in",
        3,
        42,
        "m-1",
    )
    assert lines[0]["token"] == REDACTED
    assert lines[1]["event"] == f"SASL password=x for {pii_hash(EMAIL)}"


def test_exceptions_are_rendered_then_redacted_in_json() -> None:
    out = configured({})
    try:
        raise ValueError(f"bad user {EMAIL}")
    except ValueError:
        structlog.get_logger("t").exception("processing raised")
    line = json.loads(out.getvalue())
    assert pii_hash(EMAIL) in line["exception"] and EMAIL not in out.getvalue()


def test_stream_log_pii_true_keeps_emails_and_keys_and_a_bad_value_is_one_line() -> None:
    out = configured({"STREAM_LOG_PII": "true"})
    with bind_record(topic="in", partition=0, offset=1, key=EMAIL, message_id=None):
        structlog.get_logger("t").info("hello", to=EMAIL, secret="s3cret")
    line = json.loads(out.getvalue())
    assert (line["key"], line["to"], line["secret"]) == (EMAIL, EMAIL, REDACTED)
    with pytest.raises(ConfigError, match="STREAM_LOG_PII: expected true or false, got 'maybe'"):
        configured({"STREAM_LOG_PII": "maybe"})
