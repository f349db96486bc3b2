"""The real engine over in-memory ports, in virtual time: commits, revocation, crashes, parked keys,
back-pressure and the end of `--exit-at-end`, each deterministic and without a broker."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

from stream.engine.backpressure import BackPressure
from stream.engine.offsets import decode_finished
from stream.engine.options import EngineOptions, Topics
from stream.engine.records import InboundRecord
from stream.engine.retry import RetryPolicy
from stream.engine.runner import Engine
from stream.outcomes import Delivered, Outcome, Transient
from tests.support.memory import (
    MemoryBroker,
    MemoryProducer,
    MemorySource,
    ScriptedProcessor,
    VirtualTimeLoop,
    eventually,
    run_virtual,
)

TOPICS = Topics(input="in", retry="in.g.retry", dlq="in.g.dlq", group="g")
IN0 = ("in", 0)


def new_broker(partitions: int = 1) -> MemoryBroker:
    broker = MemoryBroker()
    broker.create(TOPICS.input, partitions)
    broker.create(TOPICS.retry, partitions)
    broker.create(TOPICS.dlq, 1)
    return broker


def make_engine(
    loop: VirtualTimeLoop,
    broker: MemoryBroker,
    processor: ScriptedProcessor,
    **options: object,
) -> tuple[Engine[int], MemorySource, MemoryProducer]:
    source = MemorySource(broker=broker, topics=TOPICS)
    producer = MemoryProducer(broker=broker)
    engine: Engine[int] = Engine(
        source=source,
        producer=producer,
        processor=processor,
        topics=TOPICS,
        options=EngineOptions(**options),  # type: ignore[arg-type]
        wall=loop.wall,
        jitter=lambda: 0.5,
    )
    return engine, source, producer


def produce(broker: MemoryBroker, records: list[tuple[str, str]], *, partition: int = 0) -> None:
    for key, value in records:
        broker.produce(TOPICS.input, key, value.encode(), partition=partition)


def test_the_committed_offset_is_the_end_of_the_finished_prefix_with_the_rest_in_metadata() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        produce(broker, [(key, f"v{i}") for i, key in enumerate("abcde")])
        processor = ScriptedProcessor(latency_s=lambda r: 1.0 if r.key == b"a" else 0.01)
        engine, _, _ = make_engine(loop, broker, processor)
        run = loop.create_task(engine.run())

        await eventually(lambda: len(processor.attempts) == 4, within_s=0.5)
        await asyncio.sleep(0.1)  # the commits that follow the four fast ones
        position = broker.position(TOPICS.group, IN0)
        assert position is not None and position.offset == 0  # key a holds offset 0 back
        assert decode_finished(0, position.metadata) == {1, 2, 3, 4}

        await eventually(lambda: (broker.position(TOPICS.group, IN0) or position).offset == 5, within_s=2)
        engine.stop()
        assert await run == 0

    run_virtual(main)


def test_revocation_waits_for_work_in_flight_then_commits_it() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        produce(broker, [("a", "slow"), ("b", "fast")])
        processor = ScriptedProcessor(latency_s=lambda r: 5.0 if r.value == b"slow" else 0.01)
        engine, source, _ = make_engine(loop, broker, processor, revoke_deadline_s=20.0)
        run = loop.create_task(engine.run())
        await eventually(lambda: len(processor.attempts) == 1, within_s=1)

        await source.revoke([IN0])

        assert [a.value for a in processor.attempts] == [b"fast", b"slow"]  # it finished the slow one
        assert broker.position(TOPICS.group, IN0).offset == 2  # type: ignore[union-attr]
        engine.stop()
        await run

    run_virtual(main)


def test_revocation_hands_over_at_once_the_work_that_only_waits_for_a_token() -> None:
    """`a` has its request out: it finishes first. `b` waits for a rate-limit token, so nothing of it was
    sent: it is handed over at once, not after the deadline, and its next owner repeats nothing."""

    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        produce(broker, [("a", "on the wire"), ("b", "waiting")])
        processor = ScriptedProcessor(
            latency_s=lambda r: 2.0 if r.value == b"on the wire" else 0.01,
            token_wait_s=lambda r: 60.0 if r.value == b"waiting" else 0.0,
        )
        engine, source, _ = make_engine(loop, broker, processor, revoke_deadline_s=20.0)
        run = loop.create_task(engine.run())
        await eventually(lambda: len(processor.running) == 2, within_s=1)

        started = loop.time()
        await source.revoke([IN0])

        assert loop.time() - started < 2.5  # a's two seconds, not b's minute nor the 20 s deadline
        assert [a.value for a in processor.attempts] == [b"on the wire"]
        assert broker.position(TOPICS.group, IN0).offset == 1  # type: ignore[union-attr]
        engine.stop()
        await run

    run_virtual(main)


def test_a_revocation_that_comes_between_a_task_s_creation_and_its_first_step_hands_it_over() -> None:
    """The consumer thread schedules the revocation on the loop; before its first step runs, a record
    arrives and its lane's task is created, not yet started. That work has sent nothing: it is handed
    over with the rest, and the revocation neither fails (it once raised KeyError, which killed the
    consumer thread in the rebalance storm) nor waits for it."""

    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        produce(broker, [("a", "on the wire")])
        processor = ScriptedProcessor(latency_s=lambda r: 2.0)
        engine, _, _ = make_engine(loop, broker, processor, revoke_deadline_s=20.0)
        run = loop.create_task(engine.run())
        await eventually(lambda: len(processor.running) == 1, within_s=1)

        revocation = asyncio.ensure_future(engine.on_revoked([IN0]))
        late = InboundRecord(topic="in", partition=0, offset=1, key=b"b", value=b"late", headers=(),
                             timestamp_ms=None)  # fmt: skip
        engine.on_records([late])
        offsets = await revocation

        assert [a.value for a in processor.attempts] == [b"on the wire"]  # b was never sent
        assert all(o.offset <= 1 for o in offsets.values())  # b not finished: not committed
        assert broker.position(TOPICS.group, IN0).offset == 1  # type: ignore[union-attr]
        assert engine.snapshot().in_flight == 0
        engine.stop()
        await asyncio.wait_for(run, timeout=30)

    run_virtual(main)


def test_revocation_past_its_deadline_abandons_the_work_and_commits_only_what_finished() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        produce(broker, [("a", "fast"), ("b", "stuck")])
        processor = ScriptedProcessor(latency_s=lambda r: 60.0 if r.value == b"stuck" else 0.01)
        engine, source, _ = make_engine(loop, broker, processor, revoke_deadline_s=1.0)
        run = loop.create_task(engine.run())
        await eventually(lambda: len(processor.attempts) == 1, within_s=1)

        await source.revoke([IN0])

        assert [a.value for a in processor.attempts] == [b"fast"]  # the stuck one was cancelled
        assert broker.position(TOPICS.group, IN0).offset == 1  # type: ignore[union-attr]
        engine.stop()
        await run

    run_virtual(main)


def test_a_crash_repeats_at_most_the_in_flight_limit_and_loses_nothing() -> None:
    max_in_flight = 8
    rng = random.Random(5)
    keys = [f"k{i}" for i in range(40)]
    records = [(rng.choice(keys), f"v{i}") for i in range(400)]

    async def main(loop: VirtualTimeLoop) -> tuple[list[int], list[int]]:
        broker = new_broker()
        produce(broker, records)
        latency = {i: rng.uniform(0.001, 0.05) for i in range(len(records))}
        first = ScriptedProcessor(latency_s=lambda r: latency[r.offset])
        engine, source, _ = make_engine(
            loop, broker, first, max_in_flight=max_in_flight, shutdown_deadline_s=0.0
        )
        run = loop.create_task(engine.run())
        await eventually(lambda: len(first.attempts) >= 150, within_s=30)
        source.refuse_commits = True  # SIGKILL: nothing more reaches the broker
        source.crash()
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)

        second = ScriptedProcessor(latency_s=lambda r: latency[r.offset])
        engine2, _, _ = make_engine(loop, broker, second, max_in_flight=max_in_flight)
        run2 = loop.create_task(engine2.run(exit_at_end=True))
        assert await run2 == 0
        return [a.offset for a in first.attempts], [a.offset for a in second.attempts]

    before, after = run_virtual(main)
    assert sorted(set(before) | set(after)) == list(range(len(records)))  # nothing lost
    repeated = set(before) & set(after)
    assert 0 < len(before) < len(records)
    assert len(repeated) <= max_in_flight, sorted(repeated)


def test_a_key_with_a_record_in_the_retry_path_is_parked_and_its_order_kept() -> None:
    """a0 outlives the in-place budget and goes to the retry topic; a1 follows it there (parked_behind)
    instead of overtaking; b is not held up. After the retry delay a0, then a1, are delivered."""

    def script(record: InboundRecord, attempt: int) -> Outcome:
        if record.value == b"a0" and record.topic == TOPICS.input:
            return Transient(message="503")
        return Delivered(operations=1)

    async def main(loop: VirtualTimeLoop) -> ScriptedProcessor:
        broker = new_broker()
        produce(broker, [("a", "a0"), ("a", "a1"), ("b", "b0")])
        processor = ScriptedProcessor(script=script)
        policy = RetryPolicy(attempts=3, base_s=0.1, delay_s=30.0)
        engine, _, _ = make_engine(loop, broker, processor, retry=policy)
        assert await engine.run(exit_at_end=True) == 0
        retried = [broker.record(TOPICS.retry, 0, o) for o in range(len(broker.topics[TOPICS.retry][0]))]
        assert [(r.value, r.header("zs.error.reason")) for r in retried] == [
            (b"a0", b"retry_scheduled"),
            (b"a1", b"parked_behind"),
        ]
        assert loop.time() >= 30.0  # a0 waited its not-before
        assert engine.stats.sent_to_retry == {"retry_scheduled": 1, "parked_behind": 1}
        return processor

    processor = run_virtual(main)
    assert [(a.topic, a.value) for a in processor.attempts if a.key == "a"] == [
        ("in", b"a0"),
        ("in", b"a0"),
        ("in", b"a0"),
        ("in.g.retry", b"a0"),
        ("in.g.retry", b"a1"),
    ]
    values = [a.value for a in processor.attempts]
    assert values.index(b"b0") < 2  # b was not held up by a's back-off


def test_back_pressure_pauses_a_full_partition_and_resumes_it_when_it_drains() -> None:
    async def main(loop: VirtualTimeLoop) -> MemorySource:
        broker = new_broker()
        produce(broker, [(f"k{i % 5}", f"v{i}") for i in range(100)])
        processor = ScriptedProcessor(latency_s=0.05)
        pressure = BackPressure(per_partition=20, total=1_000)
        engine, source, _ = make_engine(loop, broker, processor, back_pressure=pressure, max_in_flight=5)
        assert await engine.run(exit_at_end=True) == 0
        return source

    source = run_virtual(main)
    actions = [action for action, _ in source.pauses]
    assert actions[:2] == ["pause", "resume"] and actions.count("pause") == actions.count("resume")


def test_exit_at_end_ends_right_after_the_last_commit_and_not_before() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[float, float]:
        broker = new_broker(partitions=3)
        for number in range(3):
            produce(broker, [(f"k{number}", "v")], partition=number)
        processor = ScriptedProcessor(latency_s=lambda r: 2.0 if r.partition == 2 else 0.01)
        engine, _, _ = make_engine(loop, broker, processor)
        assert await engine.run(exit_at_end=True) == 0
        last_commit_needed = max(a.at for a in processor.attempts)
        assert all(broker.position(TOPICS.group, ("in", n)).offset == 1 for n in range(3))  # type: ignore[union-attr]
        return last_commit_needed, loop.time()

    finished, ended = run_virtual(main)
    assert finished >= 1.99
    assert ended - finished < 0.5  # within a few polls of the last commit


def test_a_second_owner_does_not_rerun_what_the_commit_metadata_says_is_finished() -> None:
    async def main(loop: VirtualTimeLoop) -> list[int]:
        broker = new_broker()
        produce(broker, [("a", "slow"), *[(f"k{i}", "fast") for i in range(5)]])
        first = ScriptedProcessor(latency_s=lambda r: 50.0 if r.value == b"slow" else 0.01)
        engine, source, _ = make_engine(loop, broker, first, revoke_deadline_s=0.5)
        run = loop.create_task(engine.run())
        await eventually(lambda: len(first.attempts) == 5, within_s=1)
        await source.revoke([IN0])  # the slow one is abandoned, the five fast ones travel in metadata
        engine.stop()
        await run
        second = ScriptedProcessor(latency_s=0.01)
        engine2, _, _ = make_engine(loop, broker, second)
        assert await engine2.run(exit_at_end=True) == 0
        assert engine2.stats.already_done == 5
        return [a.offset for a in second.attempts]

    assert run_virtual(main) == [0]


def test_a_head_carries_the_followers_that_join_it_and_they_finish_together() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[ScriptedProcessor, Engine[int]]:
        broker = new_broker()
        produce(broker, [("a", "a0"), ("a", "+a1"), ("a", "+a2"), ("a", "a3"), ("b", "+b0")])
        processor = ScriptedProcessor(joins=True, latency_s=0.5)
        engine, _, _ = make_engine(loop, broker, processor)
        run = loop.create_task(engine.run(exit_at_end=True))
        assert await run == 0
        assert broker.position(TOPICS.group, IN0).offset == 5  # type: ignore[union-attr]
        return processor, engine

    processor, engine = run_virtual(main)
    assert sorted(processor.works) == [(0, 1, 2), (3,), (4,)]  # one piece of work for a0..a2
    assert engine.stats.delivered == 5


def test_carried_records_that_outlive_the_budget_go_to_the_retry_topic_one_by_one_in_order() -> None:
    def script(record: InboundRecord, attempt: int) -> Outcome:
        return Transient(message="503") if record.topic == TOPICS.input else Delivered(operations=1)

    async def main(loop: VirtualTimeLoop) -> tuple[list[bytes | None], ScriptedProcessor]:
        broker = new_broker()
        produce(broker, [("a", "a0"), ("a", "+a1"), ("a", "+a2")])
        processor = ScriptedProcessor(script=script, joins=True)
        engine, _, _ = make_engine(loop, broker, processor, retry=RetryPolicy(attempts=2, delay_s=5.0))
        assert await engine.run(exit_at_end=True) == 0
        copied = [broker.record(TOPICS.retry, 0, o).value for o in range(len(broker.topics[TOPICS.retry][0]))]
        return copied, processor

    copied, processor = run_virtual(main)
    assert copied == [b"a0", b"+a1", b"+a2"]
    assert processor.works[-3:] == [(0,), (1,), (2,)]  # the retry path takes them one at a time


def test_a_processor_bug_in_lane_key_or_joins_loses_no_record_of_the_batch() -> None:
    """Found by the fuzz scenario's deliberate break: an exception in `lane_key`, called in the poll's
    callback, dropped the rest of the batch and the service waited forever. Now the record runs on its
    own (no key) and the others go on."""

    class Buggy(ScriptedProcessor):
        def lane_key(self, record: InboundRecord) -> str | None:
            if record.value == b"bug":
                raise RuntimeError("lane_key bug")
            return super().lane_key(record)

        def joins(self, work: Sequence[InboundRecord], follower: InboundRecord) -> bool:
            raise RuntimeError("joins bug")

    async def main(loop: VirtualTimeLoop) -> tuple[ScriptedProcessor, MemoryBroker]:
        broker = new_broker()
        produce(broker, [("a", "v0"), ("b", "bug"), ("a", "+v2"), ("c", "v3")])
        processor = Buggy(joins=True)
        policy = RetryPolicy(attempts=2, base_s=0.1, rounds=1, delay_s=1.0)
        engine, _, _ = make_engine(loop, broker, processor, retry=policy)
        assert await engine.run(exit_at_end=True) == 0
        return processor, broker

    processor, broker = run_virtual(main)
    assert sorted(a.offset for a in processor.attempts) == [0, 2, 3]  # `bug` fails in process too
    dead = [broker.record(TOPICS.dlq, 0, o) for o in range(len(broker.topics[TOPICS.dlq][0]))]
    assert [(r.value, r.header("zs.error.reason")) for r in dead] == [(b"bug", b"retries_exhausted")]
