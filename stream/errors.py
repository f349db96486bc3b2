"""The error tree, drawn once.

    StreamError                      anything this package raises on purpose
    ├── ConfigError                  a bad setting: start-up stops with one line naming it (exit 2)
    ├── InvalidEvent                 the event itself is unusable: dead-letter it (class `invalid`)
    ├── FieldsUnavailable            Zendesk did not list the custom fields; `outcome` says what to do
    ├── SchemaUnavailable            the schema registry cannot be asked now: the event is retried (transient)
    └── FatalError                   the engine cannot go on: it stops, having committed only finished work
        ├── ZendeskConfigError       401/403 from Zendesk: stop loudly, dead-letter nothing (exit 2)
        ├── SchemaRegistryRefused    401/403 from the schema registry: stop, dead-letter nothing
        ├── CircuitOpen              most recent events were dead-lettered: stopping beats emptying the topic
        ├── SourceFailed             a Kafka consumer stopped, or the retry path could not be read
        └── ProduceFailed            Kafka did not confirm a retry or dead-letter copy
            └── RecordTooLarge       the copy is larger than the topic takes (handled: `record_too_large`)

Outcomes that are not errors (skips, rejections, transient failures, rate limits) are values, not
exceptions: see `stream.outcomes`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stream.outcomes import DlqReason

if TYPE_CHECKING:
    from stream.outcomes import DeadLetter, Transient


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


class FieldsUnavailable(StreamError):
    """Zendesk did not list the custom field definitions (no answer, or a refusal): `outcome` is what
    the event that needed them comes to."""

    def __init__(self, outcome: DeadLetter | Transient) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class SchemaUnavailable(StreamError):
    """The schema registry did not answer, or answered with a server error: the record's schema cannot be
    had now, which says nothing about the record (`stream.schemas`)."""


class FatalError(StreamError):
    """The engine cannot go on; the message says why."""


class ZendeskConfigError(FatalError):
    """Zendesk refused our credentials or permissions (401/403): nothing will succeed until fixed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class SchemaRegistryRefused(FatalError):
    """The schema registry refused our credentials (401/403): no Avro record can be read until fixed."""


class CircuitOpen(FatalError):
    """Most recent events were dead-lettered: stopping beats emptying the topic into the DLQ."""


class SourceFailed(FatalError):
    """A Kafka consumer stopped, or the keys parked in the retry path could not be read."""


class ProduceFailed(FatalError):
    """The broker did not confirm a record within the producer's delivery timeout."""


class RecordTooLarge(ProduceFailed):
    """The record is larger than the producer or the topic accepts (`max.message.bytes`)."""
