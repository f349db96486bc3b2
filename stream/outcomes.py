"""Stable codes shared by the planner, the Zendesk client and the engine.

The values are part of the dead-letter header contract (`zs.error.reason`, `zs.error.class`,
docs/contracts.md §3) and the skip metric's `reason` label: never rename one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorClass(StrEnum):
    INVALID = "invalid"
    REJECTED = "rejected"
    TRANSIENT = "transient"


class DlqReason(StrEnum):
    INVALID_PAYLOAD = "invalid_payload"
    IDENTIFIER_TOO_LONG = "identifier_too_long"
    EVENT_NAME_TOO_LONG = "event_name_too_long"
    RECORD_TOO_LARGE = "record_too_large"  # its copy does not fit the retry or dead-letter topic
    USER_NOT_FOUND = "user_not_found"
    IDENTITY_CONFLICT = "identity_conflict"
    ZENDESK_REJECTED = "zendesk_rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"

    @property
    def error_class(self) -> ErrorClass:
        return _CLASS_OF[self]


_CLASS_OF: dict[DlqReason, ErrorClass] = {
    DlqReason.INVALID_PAYLOAD: ErrorClass.INVALID,
    DlqReason.IDENTIFIER_TOO_LONG: ErrorClass.INVALID,
    DlqReason.EVENT_NAME_TOO_LONG: ErrorClass.INVALID,
    DlqReason.RECORD_TOO_LARGE: ErrorClass.INVALID,
    DlqReason.USER_NOT_FOUND: ErrorClass.REJECTED,
    DlqReason.IDENTITY_CONFLICT: ErrorClass.REJECTED,
    DlqReason.ZENDESK_REJECTED: ErrorClass.REJECTED,
    DlqReason.RETRIES_EXHAUSTED: ErrorClass.TRANSIENT,
}


class RetryReason(StrEnum):
    """Why a record was written to the retry topic (`zs.error.reason` of retry records)."""

    RETRY_SCHEDULED = "retry_scheduled"  # its transient failure outlived the in-place budget
    PARKED_BEHIND = "parked_behind"  # an earlier event of its key is in the retry path: order first

    @property
    def error_class(self) -> ErrorClass:
        return ErrorClass.TRANSIENT


class SkipReason(StrEnum):
    """Why an event was deliberately not sent. Skips are committed and counted, never dead-lettered."""

    UNSUPPORTED_TYPE = "unsupported_type"
    NO_IDENTITY = "no_identity"
    MISSING_NAME = "missing_name"
    EVENT_NOT_ENABLED = "event_not_enabled"
    MISSING_USER_ID = "missing_user_id"
    UNCHANGED = "unchanged"  # every write was what this service last wrote (within the memory's TTL)
    ALREADY_DELIVERED = "already_delivered"  # Zendesk acknowledged this event before (dedup window)


# ------------------------------------------------------------------------------ what one event came to
# The delivery of one event ends in exactly one of these; the engine decides what happens next
# (commit, dead-letter, retry). Rate limits are not outcomes: the executor waits them out.


@dataclass(frozen=True, slots=True)
class Delivered:
    """Zendesk accepted every operation of the plan."""

    operations: int
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Skipped:
    """Deliberately not sent (docs/contracts.md §4): committed, counted, logged once."""

    reason: SkipReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Permanent: retrying cannot help. The record goes to the dead-letter topic with this reason."""

    reason: DlqReason
    message: str
    http_status: int | None = None


@dataclass(frozen=True, slots=True)
class Transient:
    """Might succeed later (5xx, timeouts, connection errors): retry, in place first."""

    message: str
    http_status: int | None = None
    retry_after_s: float | None = None


Outcome = Delivered | Skipped | DeadLetter | Transient
