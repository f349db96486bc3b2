"""Logging: structlog key-value lines on stderr, JSON when not on a terminal (or `STREAM_LOG_FORMAT=json`).

librdkafka's own log lines are routed through the standard `logging` module into the same stream.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TextIO

import structlog

from stream.errors import ConfigError

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


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
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if log_format == "console"
        else structlog.processors.JSONRenderer()
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
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
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
