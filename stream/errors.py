"""The error tree, drawn once.

    StreamError                      anything this package raises on purpose
    ├── ConfigError                  a bad setting: start-up stops with one line naming it (exit 2)
    ├── InvalidEvent                 the event itself is unusable: dead-letter it (class `invalid`)
    └── ZendeskConfigError           401/403 from Zendesk: stop the consumer loudly, dead-letter nothing

Outcomes that are not errors (skips, rejections, transient failures, rate limits) are values, not
exceptions: see `stream.outcomes`.
"""

from __future__ import annotations

from stream.outcomes import DlqReason


class StreamError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(StreamError):
    """A setting is missing or wrong. The message is one line and names the setting."""


class InvalidEvent(StreamError):
    """The event cannot be processed as it is; it goes to the dead-letter topic with `reason`."""

    def __init__(self, reason: DlqReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class ZendeskConfigError(StreamError):
    """Zendesk refused our credentials or permissions (401/403): nothing will succeed until fixed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
