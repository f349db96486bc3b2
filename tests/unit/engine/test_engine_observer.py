"""The engine tells its observer (the metrics' port) every record it reads and the one end each reaches,
in virtual time over in-memory ports: consumed = the sum of the outcomes, once everything is committed."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

import structlog

from stream.engine.breaker import CircuitBreaker
from stream.engine.options import EngineOptions
from stream.engine.ports import RecordLabel
from stream.engine.records import InboundRecord
from stream.engine.retry import RetryPolicy
from stream.engine.runner import Engine
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, Skipped, SkipReason, Transient
from tests.support.memory import MemoryProducer, MemorySource, ScriptedProcessor, VirtualTimeLoop, run_virtual
from tests.unit.engine.test_engine_memory import TOPICS, new_broker, produce


class RecordingObserver:
    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str, str]] = Counter()
        self.copies: Counter[tuple[str, str]] = Counter()
        self.beats = 0
        self.assignments: list[int] = []
        self.stops: list[str] = []

    def consumed(self, topic: str, count: int) -> None:
        self.reads[topic] += count

    def outcome(self, label: RecordLabel, outcome: str, reason: str) -> None:
        self.outcomes[(label.type, outcome, reason)] += 1

    def produced(self, kind: str, reason: str) -> None:
        self.copies[(kind, reason)] += 1

    def heartbeat(self) -> None:
        self.beats += 1

    def assigned(self, partitions: int) -> None:
        self.assignments.append(partitions)

    def stopping(self, reason: str) -> None:
        self.stops.append(reason)


def script(record: InboundRecord, attempt: int) -> Outcome:
    value = (record.value or b"").decode()
    if value.startswith("skip"):
        return Skipped(SkipReason.UNSUPPORTED_TYPE, "page")
    if value.startswith("bad"):
        return DeadLetter(reason=DlqReason.USER_NOT_FOUND, message="no such user: peter@example.com")
    if value.startswith("flaky") and record.topic == TOPICS.input:
        return Transient(message="503")
    return Delivered(operations=1)


def test_every_record_read_reaches_one_outcome_and_the_observer_hears_each() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[RecordingObserver, Engine[int]]:
        broker = new_broker()
        # a: delivered; b: skipped; c: dead-lettered; d: fails in place, goes to the retry topic, and d's
        # next record is parked behind it; both are delivered from the retry path.
        produce(broker, [("a", "ok"), ("b", "skip"), ("c", "bad"), ("d", "flaky"), ("d", "ok later")])
        observer = RecordingObserver()
        engine: Engine[int] = Engine(
            source=MemorySource(broker=broker, topics=TOPICS),
            producer=MemoryProducer(broker=broker),
            processor=ScriptedProcessor(script=script),
            topics=TOPICS,
            options=EngineOptions(retry=RetryPolicy(attempts=2, base_s=0.1, delay_s=1.0)),
            wall=loop.wall,
            jitter=lambda: 0.5,
            observer=observer,
        )
        assert await engine.run(exit_at_end=True) == 0
        return observer, engine

    observer, engine = run_virtual(main)

    assert observer.reads == {TOPICS.input: 5, TOPICS.retry: 2}
    assert observer.outcomes == {
        ("identify", "delivered", "none"): 3,  # a, then d and d's second record from the retry path
        ("identify", "skipped", "unsupported_type"): 1,
        ("identify", "dead_lettered", "user_not_found"): 1,
        ("identify", "retry_scheduled", "retry_scheduled"): 1,
        ("identify", "parked", "parked_behind"): 1,
    }
    assert sum(observer.outcomes.values()) == observer.reads.total() == engine.stats.received
    assert observer.copies == {
        ("dead_letter", "user_not_found"): 1,
        ("retry", "retry_scheduled"): 1,
        ("retry", "parked_behind"): 1,
    }
    assert observer.beats > 10  # the supervise loop beats several times a second
    assert observer.assignments == [1]
    assert observer.stops == ["shutting down"]
    snapshot = engine.snapshot()
    assert snapshot.in_flight == 0 and snapshot.parked_keys == 0 and not snapshot.breaker_open


def test_a_fatal_error_tells_the_observer_at_once_with_the_reason() -> None:
    async def main(loop: VirtualTimeLoop) -> RecordingObserver:
        broker = new_broker()
        produce(broker, [(f"k{i}", "bad") for i in range(5)])
        observer = RecordingObserver()
        engine: Engine[int] = Engine(
            source=MemorySource(broker=broker, topics=TOPICS),
            producer=MemoryProducer(broker=broker),
            processor=ScriptedProcessor(script=script),
            topics=TOPICS,
            options=EngineOptions(breaker=CircuitBreaker(window=3, threshold=0.6)),
            wall=loop.wall,
            jitter=lambda: 0.5,
            observer=observer,
        )
        assert await engine.run() == 1
        return observer

    observer = run_virtual(main)
    assert observer.stops[0].startswith("fatal error: circuit breaker open")


def test_every_line_logged_while_a_record_is_handled_carries_its_context() -> None:
    seen: list[dict[str, object]] = []

    def processing(record: InboundRecord, attempt: int) -> Outcome:
        structlog.get_logger("test").info("inside")
        return Delivered(operations=1)

    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        produce(broker, [("peter@example.com", "ok")])
        engine: Engine[int] = Engine(
            source=MemorySource(broker=broker, topics=TOPICS),
            producer=MemoryProducer(broker=broker),
            processor=ScriptedProcessor(script=processing),
            topics=TOPICS,
            wall=loop.wall,
        )
        assert await engine.run(exit_at_end=True) == 0

    def capture(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if event.get("event") == "inside":
            seen.append(dict(event))
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        run_virtual(main)
    finally:
        structlog.reset_defaults()
    assert seen == [
        {"event": "inside", "topic": "in", "partition": 0, "offset": 0, "key": "peter@example.com"}
    ]


def test_the_periodic_progress_line_carries_the_rate_the_lag_and_the_outcomes_since_the_last_line() -> None:
    lines: list[dict[str, object]] = []

    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        produce(broker, [("a", "ok"), ("b", "skip"), ("c", "bad")])
        engine: Engine[int] = Engine(
            source=MemorySource(broker=broker, topics=TOPICS),
            producer=MemoryProducer(broker=broker),
            processor=ScriptedProcessor(script=script),
            topics=TOPICS,
            options=EngineOptions(summary_interval_s=1.0),
            wall=loop.wall,
            lag=lambda: 7,
        )
        run = loop.create_task(engine.run())
        await asyncio.sleep(2.5)
        engine.stop()
        assert await run == 0

    def capture(_logger: object, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if event.get("event") == "progress":
            lines.append(dict(event))
        raise structlog.DropEvent

    structlog.configure(processors=[capture])
    try:
        run_virtual(main)
    finally:
        structlog.reset_defaults()
    assert len(lines) == 2
    first, second = lines
    assert first["lag"] == 7 and isinstance(first["events_per_s"], float) and first["events_per_s"] > 0
    assert (first["delivered"], first["skipped"], first["dead_lettered"]) == (
        1,
        {"unsupported_type": 1},
        {"user_not_found": 1},
    )
    assert (second["delivered"], second["events_per_s"]) == (0, 0.0)  # since the last line only
