"""Logging: structlog key-value lines on stderr, JSON when not on a terminal (or `STREAM_LOG_FORMAT=json`).

librdkafka's own log lines are routed through the standard `logging` module into the same stream.

Every line, ours and the libraries', passes one redaction processor (`Redactor`) just before it is
rendered, so no token, secret or raw email is ever written:

    what                                                      becomes
    ────────────────────────────────────────────────────────  ─────────────────────────────────────────
    the value of a key that looks secret (token, secret,       "[redacted]" (numbers, booleans and None
      password, authorization, api_key, credential, cookie)     stay: a count of tokens is no secret)
    "Bearer …" / "Basic …" inside any text                     "Bearer [redacted]"
    a value registered with `register_secrets` inside any text "[redacted]"
    an email address inside any text                           "sha256:<first 12 hex of its sha256>"
    the value of a personal key (key, user_key, email, …)      its hash, the same form
    (the last two unless STREAM_LOG_PII=true)

The hash is stable, so one user's lines can still be followed without their address being written.
`bind_record` binds the context of one Kafka record (topic, partition, offset, key, messageId) with
structlog's contextvars, so every line logged while that record is handled carries it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any, Final, TextIO

import structlog

from stream.environment import parse_flag
from stream.errors import ConfigError

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

REDACTED: Final = "[redacted]"
_SECRET_KEY: Final = re.compile(
    r"token|secret|passw|authorization|api[_-]?key|credential|cookie|private[_-]?key", re.IGNORECASE
)
_PERSONAL_KEYS: Final = frozenset(
    {"key", "user_key", "email", "emails", "external_id", "user_id_external", "userid", "anonymousid"}
)
_EMAIL: Final = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+"
)
# A credential after its scheme: at least 8 characters, one of them a digit or a symbol (not a word).
_AUTH_SCHEME: Final = re.compile(r"\b(Bearer|Basic)\s+(?=[A-Za-z._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}")
_MIN_SECRET_CHARS: Final = 6  # shorter registered values would blank ordinary words
_KNOWN_SECRETS: set[str] = set()


def pii_hash(value: str) -> str:
    """A stable stand-in for a personal value: `sha256:` and the first 12 hex digits of its SHA-256."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def register_secrets(values: Iterable[str]) -> None:
    """Values (configured credentials) blanked wherever they appear in a line, whatever its key."""
    _KNOWN_SECRETS.update(v for v in values if len(v) >= _MIN_SECRET_CHARS)


class Redactor:
    """The redaction processor (a structlog processor: a plain callable of the event dict)."""

    def __init__(self, *, pii: bool = False, secrets: Iterable[str] | None = None) -> None:
        """`pii`: keep emails and personal keys as they are. `secrets`: values to blank wherever they
        appear; by default the ones `register_secrets` collected (read at each line)."""
        self._pii = pii
        self._secrets = (
            None if secrets is None else frozenset(s for s in secrets if len(s) >= _MIN_SECRET_CHARS)
        )

    def __call__(self, _logger: object, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        for key in list(event_dict):
            event_dict[key] = self._field(key, event_dict[key])
        return event_dict

    def _field(self, key: str, value: Any) -> Any:
        if isinstance(value, bool | int | float) or value is None:
            return value
        if key != "event" and _SECRET_KEY.search(key):
            return REDACTED
        if not self._pii and key.lower() in _PERSONAL_KEYS and isinstance(value, str | bytes):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            return text if text.startswith("sha256:") else pii_hash(text)
        return self._value(value)

    def _value(self, value: Any) -> Any:
        match value:
            case str():
                return self.text(value)
            case bytes() | bytearray():
                return self.text(bytes(value).decode("utf-8", "replace"))
            case Mapping():
                return {str(k): self._field(str(k), v) for k, v in value.items()}
            case list() | tuple() | set() | frozenset():
                return [self._value(v) for v in value]
            case bool() | int() | float() | None:
                return value
        return self.text(str(value))

    def text(self, text: str) -> str:
        """Free text with its secrets blanked and (unless `pii`) its emails hashed."""
        secrets = _KNOWN_SECRETS if self._secrets is None else self._secrets
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if "Bearer" in text or "Basic" in text:
            text = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        if not self._pii and "@" in text:
            text = _EMAIL.sub(lambda m: pii_hash(m.group(0)), text)
        return text


@contextmanager
def bind_record(
    *, topic: str, partition: int, offset: int, key: str | None, message_id: str | None
) -> Iterator[None]:
    """Every line logged inside carries the record's context (the key is hashed unless
    STREAM_LOG_PII=true: the redaction processor treats `key` as personal)."""
    fields: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset}
    if key is not None:
        fields["key"] = key
    if message_id is not None:
        fields["messageId"] = message_id
    with structlog.contextvars.bound_contextvars(**fields):
        yield


def configure_logging(env: Mapping[str, str], *, destination: TextIO | None = None) -> None:
    """Logs go to stderr, or to `destination` (the demo writes them to a file and keeps the terminal
    for its progress line); JSON unless stderr is a terminal or STREAM_LOG_FORMAT says otherwise."""
    level_name = env.get("STREAM_LOG_LEVEL", "info").lower()
    if level_name not in _LEVELS:
        raise ConfigError(f"STREAM_LOG_LEVEL: {level_name!r} is not one of {', '.join(_LEVELS)}")
    target = destination or sys.stderr
    log_format = env.get("STREAM_LOG_FORMAT", "console" if target.isatty() else "json").lower()
    if log_format not in {"console", "json"}:
        raise ConfigError(f"STREAM_LOG_FORMAT: {log_format!r} is not 'console' or 'json'")
    pii = parse_flag(env, "STREAM_LOG_PII", default=False)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    # JSON: the traceback becomes text first, so that the redaction sees it too (the console renderer
    # formats its own, from the exception, whose message the redaction cannot reach).
    tracebacks: list[structlog.typing.Processor] = (
        [structlog.processors.format_exc_info] if log_format == "json" else []
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level_name]),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(target)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tracebacks,
                Redactor(pii=pii),
                renderer,
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level_name])
    # Connection chatter from librdkafka is noise at info level; its warnings and errors are not. At
    # debug level everything it says comes through (with KAFKA_DEBUG=cgrp,… it says a lot).
    level = _LEVELS[level_name]
    logging.getLogger("librdkafka").setLevel(level if level == logging.DEBUG else max(logging.WARNING, level))
    logging.getLogger("httpx").setLevel(logging.WARNING)
