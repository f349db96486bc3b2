"""Retry and dead-letter copies: the record as it leaves the main path, with the headers that say why.

A copy is written with the producer's confirmation (acks=all) before its record counts as finished
(commit rule 2). A copy too large for its topic cannot be written; it becomes a dead letter without its
value (`record_too_large`, class invalid), whose `zs.original.*` headers point at the input record,
which replay reads while the input's retention holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from stream.engine.ports import DurableProducer
from stream.engine.records import Failure, InboundRecord, failure_headers
from stream.errors import RecordTooLarge
from stream.outcomes import DlqReason


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """A retry copy that went to the retry topic, at `offset`."""

    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLettered:
    """A copy that went to the dead-letter topic, with the failure its headers carry (which may be
    `record_too_large` rather than the failure asked for)."""

    failure: Failure


class Copies:
    def __init__(
        self,
        *,
        producer: DurableProducer,
        retry_topic: str,
        dlq_topic: str,
        group: str,
        wall: Callable[[], datetime],
    ) -> None:
        self._producer = producer
        self._retry_topic = retry_topic
        self._dlq_topic = dlq_topic
        self._group = group
        self._wall = wall

    async def to_retry(
        self, record: InboundRecord, key: str | None, failure: Failure
    ) -> Written | DeadLettered:
        """The record into the retry partition with its input partition's number, keyed by its lane key
        (so a keyless Kafka record keeps the key we ordered it by)."""
        headers = failure_headers(record, failure, now=self._wall(), group=self._group)
        try:
            offset = await self._producer.send(
                self._retry_topic,
                key=key.encode() if key is not None else None,
                value=record.value,
                headers=headers,
                partition=record.partition,
            )
        except RecordTooLarge as err:
            return await self.dead_letter(record, _too_large(failure, err, "retry"))
        return Written(offset=offset)

    async def dead_letter(self, record: InboundRecord, failure: Failure) -> DeadLettered:
        """The record's dead-letter copy; too large, it goes without its value, then without its key."""
        error: RecordTooLarge | None = None
        for key, value in ((record.key, record.value), (record.key, None), (None, None)):
            if error is not None:
                failure = _too_large(failure, error, "dead-letter")
            headers = failure_headers(record, failure, now=self._wall(), group=self._group)
            try:
                await self._producer.send(self._dlq_topic, key=key, value=value, headers=headers)
            except RecordTooLarge as err:
                error = err
                continue
            return DeadLettered(failure=failure)
        raise error or AssertionError("unreachable")


def _too_large(failure: Failure, err: RecordTooLarge, copy: str) -> Failure:
    """The dead letter of a record whose `copy` does not fit: class invalid, no value, the first reason
    kept in the message."""
    if failure.reason is DlqReason.RECORD_TOO_LARGE:
        return failure
    return Failure(
        reason=DlqReason.RECORD_TOO_LARGE,
        message=f"its {copy} copy does not fit ({err}); value left out, read it from the original; "
        f"reason before: {failure.reason.value}: {failure.message}",
        http_status=failure.http_status,
        attempts=failure.attempts,
        first_failure_at=failure.first_failure_at,
    )
