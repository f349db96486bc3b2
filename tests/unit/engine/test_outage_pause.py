"""A Zendesk outage pauses consumption instead of moving the backlog into the retry topic
(`stream.engine.outage`): the policy by table, then the real engine over in-memory ports in virtual time.

The outage script: attempts that end in [OUTAGE_START, OUTAGE_END) fail, first with a 503 and its
Retry-After, then as dropped connections (no status, no Retry-After); before and after, they succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from stream.engine.outage import Change, OutagePolicy, OutageWatch, Verdict, WindowFigures
from stream.engine.records import InboundRecord
from stream.engine.retry import RetryPolicy
from stream.engine.runner import Engine
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, Transient
from tests.support.memory import MemoryBroker, ScriptedProcessor, VirtualTimeLoop, eventually, run_virtual
from tests.unit.engine.test_engine_memory import TOPICS, make_engine, new_broker

POLICY = OutagePolicy(window_s=10.0, min_failures=20, failure_ratio=0.9, min_keys=10)

# --------------------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    ("attempts", "failures", "keys_again", "outage"),
    [
        (20, 20, 10, True),  # every bound just met
        (200, 200, 150, True),
        (22, 20, 10, True),  # 91% failing
        (23, 20, 10, False),  # 87%: some requests succeed, Zendesk is not down
        (19, 19, 19, False),  # too few failures to tell
        (500, 500, 9, False),  # few keys failing again: their own trouble (or one bad key)
        (400, 400, 1, False),  # one bad key, retried in place over and over
        (1000, 1000, 0, False),  # each key failed once (a late Avro schema, a 409): one retry cures it
    ],
)
def test_an_outage_is_many_keys_failing_again_with_nearly_nothing_succeeding(
    attempts: int, failures: int, keys_again: int, outage: bool
) -> None:
    assert POLICY.is_outage(WindowFigures(attempts, failures, keys_again)) is outage


def test_a_disabled_policy_never_declares_one() -> None:
    off = OutagePolicy(enabled=False)
    assert not off.is_outage(WindowFigures(1000, 1000, 1000))


@pytest.mark.parametrize(
    ("failed_probes", "retry_after", "delay"),
    [
        *[(0, None, 1.0), (1, None, 1.0), (2, None, 2.0), (3, None, 4.0), (4, None, 5.0), (500, None, 5.0)],
        *[(0, 15.0, 15.0), (3, 2.0, 4.0), (9, 30.0, 30.0)],
    ],
)
def test_probes_back_off_to_a_cap_and_honour_retry_after(
    failed_probes: int, retry_after: float | None, delay: float
) -> None:
    assert POLICY.probe_delay(failed_probes, retry_after) == delay


def test_the_watch_declares_on_the_failure_that_meets_the_bounds_and_ends_on_the_first_answer() -> None:
    watch = OutageWatch(POLICY)
    changes = [watch.attempted(0.0, f"k{i}", Verdict.FAILED) for i in range(10)]
    changes += [watch.attempted(0.5, f"k{i}", Verdict.FAILED) for i in range(9)]
    assert changes == [None] * 19 and not watch.down
    assert watch.attempted(0.5, "k9", Verdict.FAILED, retry_after_s=3.0) is Change.DECLARED
    assert watch.down and watch.down_since == 0.5 and watch.next_probe_at == 3.5
    assert watch.attempted(4.0, "k0", Verdict.FAILED) is None  # a failed probe
    assert watch.next_probe_at == 5.0
    assert watch.attempted(6.0, "k1", Verdict.NEUTRAL) is None and watch.down
    assert watch.attempted(6.0, "k1", Verdict.ANSWERED) is Change.ENDED
    assert not watch.down and watch.figures(6.0) == WindowFigures(0, 0, 0)


def test_failures_older_than_the_window_do_not_count() -> None:
    watch = OutageWatch(POLICY)
    for i in range(10):
        watch.attempted(0.0, f"k{i}", Verdict.FAILED)
    changes = [watch.attempted(10.5, f"k{i}", Verdict.FAILED) for i in range(10)]
    assert changes == [None] * 10  # each key's first failure has left the window
    assert watch.figures(10.5) == WindowFigures(10, 10, 0)


def test_successes_before_the_first_failure_do_not_count_those_after_it_do() -> None:
    watch = OutageWatch(POLICY)
    for i in range(500):  # a busy second before the outage: it must not hide the outage for a window
        watch.attempted(0.0, f"before{i}", Verdict.ANSWERED)
    watch.attempted(0.05, "k0", Verdict.FAILED)
    for i in range(5):
        watch.attempted(0.05, f"ok{i}", Verdict.ANSWERED)
    changes = [watch.attempted(0.1 * n, f"k{i}", Verdict.FAILED) for n in (1, 2) for i in range(20)]
    changes += [watch.attempted(0.3, f"k{i}", Verdict.FAILED) for i in range(3)]
    assert changes == [None] * 43  # 44 of the 49 attempts since the first failure failed: 89.8%
    assert watch.attempted(0.3, "k3", Verdict.FAILED) is Change.DECLARED  # 45 of 50


# --------------------------------------------------------------------------------------- the engine

OUTAGE_START, DROPS_FROM, OUTAGE_END = 3.0, 33.0, 63.0


def outage_script(
    loop: VirtualTimeLoop, *, bad_key: str | None = None
) -> Callable[[InboundRecord, int], Outcome]:
    def script(record: InboundRecord, attempt: int) -> Outcome:
        now = loop.time()
        if record.key is not None and record.key.decode() == bad_key:
            return Transient(message="Zendesk server_error (500)", http_status=500)
        if OUTAGE_START <= now < DROPS_FROM:
            return Transient(message="Zendesk server_error (503)", http_status=503, retry_after_s=2.0)
        if DROPS_FROM <= now < OUTAGE_END:
            return Transient(message="Zendesk network_error: the server closed the connection")
        return Delivered(operations=1)

    return script


def backlog(broker: MemoryBroker, *, keys: int, per_key: int) -> dict[str, list[bytes]]:
    """`keys * per_key` records, keys interleaved, spread over the input partitions by key."""
    expected: dict[str, list[bytes]] = {}
    for n in range(per_key):
        for k in range(keys):
            key, value = f"k{k:03d}", f"k{k:03d}-{n}".encode()
            broker.produce(TOPICS.input, key, value)
            expected.setdefault(key, []).append(value)
    return expected


@dataclass
class Run:
    exit_code: int
    engine: Engine[int]
    processor: ScriptedProcessor
    broker: MemoryBroker
    pauses: list[tuple[str, tuple[tuple[str, int], ...]]]

    def topic_size(self, topic: str) -> int:
        return sum(len(log) for log in self.broker.topics[topic])

    def delivered(self) -> list[tuple[float, str | None, bytes | None]]:
        script_ok = [a for a in self.processor.attempts if not (OUTAGE_START <= a.at < OUTAGE_END)]
        return [(a.at, a.key, a.value) for a in script_ok]


def run_outage(
    *,
    keys: int = 40,
    per_key: int = 50,
    outage: OutagePolicy | None = None,
    bad_key: str | None = None,
    **options: object,
) -> tuple[Run, dict[str, list[bytes]]]:
    async def main(loop: VirtualTimeLoop) -> tuple[Run, dict[str, list[bytes]]]:
        broker = new_broker(partitions=4)
        expected = backlog(broker, keys=keys, per_key=per_key)
        processor = ScriptedProcessor(script=outage_script(loop, bad_key=bad_key), latency_s=0.05)
        engine, source, _ = make_engine(
            loop,
            broker,
            processor,
            max_in_flight=20,
            outage=outage or OutagePolicy(),
            **options,
        )
        code = await engine.run(exit_at_end=True)
        return Run(code, engine, processor, broker, source.pauses), expected

    return run_virtual(main)


def test_an_outage_sends_nothing_to_the_retry_topic_and_the_backlog_drains_soon_after_recovery() -> None:
    run, expected = run_outage()

    assert run.exit_code == 0
    assert run.topic_size(TOPICS.retry) == 0 and run.topic_size(TOPICS.dlq) == 0
    stats = run.engine.stats
    assert stats.outages == 1 and stats.sent_to_retry.total() == 0 and stats.dead_lettered.total() == 0
    assert stats.delivered == 40 * 50
    assert OUTAGE_END - OUTAGE_START - 1 <= stats.outage_s <= OUTAGE_END - OUTAGE_START + 10
    delivered = run.delivered()
    for key, values in expected.items():  # each once, in order
        assert [v for _, k, v in delivered if k == key] == values, key
    after = [at for at, _, _ in delivered if at >= OUTAGE_END]
    assert after and min(after) - OUTAGE_END <= 10.0
    assert ("pause", ()) not in run.pauses and [a for a, _ in run.pauses][:2] == ["pause", "resume"]
    assert not run.engine.snapshot().breaker_open
    during = [a for a in run.processor.attempts if OUTAGE_START + 10 <= a.at < OUTAGE_END]
    assert len(during) <= 60 / 1.0  # probing, one lane at a time, not the backlog hammering Zendesk


def test_without_the_pause_the_same_outage_moves_the_backlog_into_the_retry_topic() -> None:
    """The property above, broken on purpose: with the outage policy off (the engine as it was), the
        same run sends the backlog through the retry topic, and nothing is delivered for a minute after
    recovery (the next retry round)."""
    run, _ = run_outage(outage=OutagePolicy(enabled=False))

    assert run.engine.stats.outages == 0
    assert run.engine.stats.sent_to_retry.total() >= 400  # half of the 800 waiting when it began
    assert run.topic_size(TOPICS.retry) >= 400
    after = [at for at, _, _ in run.delivered() if at >= OUTAGE_END]
    assert min(after) - OUTAGE_END > 10.0  # idle after recovery, waiting for the next retry round


def test_one_bad_key_still_goes_to_the_retry_topic_while_the_others_are_delivered() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[Engine[int], MemoryBroker]:
        broker = new_broker()
        for n in range(20):
            for key in ("bad", *(f"k{i}" for i in range(30))):
                broker.produce(TOPICS.input, key, f"{key}-{n}".encode(), partition=0)

        def script(record: InboundRecord, attempt: int) -> Outcome:
            if record.key == b"bad":
                return Transient(message="Zendesk server_error (503)", http_status=503)
            return Delivered(operations=1)

        engine, _, _ = make_engine(
            loop, broker, ScriptedProcessor(script=script), retry=RetryPolicy(delay_s=1.0, rounds=3)
        )
        assert await engine.run(exit_at_end=True) == 0
        return engine, broker

    engine, _ = run_virtual(main)
    assert engine.stats.outages == 0
    assert engine.stats.sent_to_retry == {"retry_scheduled": 1, "parked_behind": 19}
    assert engine.stats.dead_lettered == {"retries_exhausted": 20}
    assert engine.stats.delivered == 30 * 20


def test_a_few_bad_keys_are_not_an_outage() -> None:
    """Nine keys failing every time, all the others down too small a share: below `min_keys`."""
    bad = {f"k{i:03d}" for i in range(9)}

    async def main(loop: VirtualTimeLoop) -> Engine[int]:
        broker = new_broker()
        for key in sorted(bad):
            broker.produce(TOPICS.input, key, b"v", partition=0)

        def script(record: InboundRecord, attempt: int) -> Outcome:
            return Transient(message="Zendesk network_error")

        engine, _, _ = make_engine(
            loop, broker, ScriptedProcessor(script=script), retry=RetryPolicy(delay_s=1.0, rounds=2)
        )
        assert await engine.run(exit_at_end=True) == 0
        return engine

    engine = run_virtual(main)
    assert engine.stats.outages == 0
    assert engine.stats.sent_to_retry == {"retry_scheduled": 9}
    assert engine.stats.dead_lettered == {"retries_exhausted": 9}


def test_work_parked_in_the_retry_path_before_the_outage_was_declared_is_released_at_recovery() -> None:
    """Two in-place attempts: the first keys to fail twice go to the retry topic (not-before 300 s)
    before the tenth key's second failure declares the outage. At recovery they go at once, in order."""

    async def main(loop: VirtualTimeLoop) -> tuple[Engine[int], MemoryBroker, ScriptedProcessor]:
        broker = new_broker()
        for n in range(2):
            for i in range(30):
                broker.produce(TOPICS.input, f"k{i:02d}", f"k{i:02d}-{n}".encode(), partition=0)

        def script(record: InboundRecord, attempt: int) -> Outcome:
            if loop.time() < 20.0:
                return Transient(message="Zendesk network_error")
            return Delivered(operations=1)

        processor = ScriptedProcessor(script=script, latency_s=lambda r: 0.01 * (1 + r.offset % 30))
        retry = RetryPolicy(attempts=2, base_s=0.1, delay_s=300.0)
        engine, _, _ = make_engine(loop, broker, processor, retry=retry)
        assert await engine.run(exit_at_end=True) == 0
        assert loop.time() < 30.0  # not the 300 s not-before
        return engine, broker, processor

    engine, _, processor = run_virtual(main)
    stats = engine.stats
    assert stats.outages == 1 and stats.dead_lettered.total() == 0
    assert 0 < stats.sent_to_retry["retry_scheduled"] < 10  # only the keys that failed twice first
    assert stats.delivered == 60
    for i in range(30):
        key = f"k{i:02d}"
        ok = [a.value for a in processor.attempts if a.key == key and a.at >= 20.0]
        assert ok == [f"{key}-0".encode(), f"{key}-1".encode()], key


def test_a_stop_during_an_outage_ends_within_its_deadline_and_commits_nothing_unfinished() -> None:
    async def main(loop: VirtualTimeLoop) -> None:
        broker = new_broker()
        for i in range(40):
            broker.produce(TOPICS.input, f"k{i}", f"v{i}".encode(), partition=0)

        def script(record: InboundRecord, attempt: int) -> Outcome:
            return Transient(message="Zendesk server_error (503)", http_status=503, retry_after_s=1.0)

        engine, _, _ = make_engine(loop, broker, ScriptedProcessor(script=script), shutdown_deadline_s=5.0)
        run = loop.create_task(engine.run())
        await eventually(lambda: engine.stats.outages == 1, within_s=30)
        await asyncio.sleep(20)
        stopped = loop.time()
        engine.stop()
        assert await run == 0
        assert loop.time() - stopped <= 5.5
        position = broker.position(TOPICS.group, ("in", 0))
        assert position is None or position.offset == 0
        assert engine.stats.sent_to_retry.total() == 0 and engine.stats.dead_lettered.total() == 0

    run_virtual(main)


def test_a_bug_raising_everywhere_is_not_an_outage() -> None:
    """An internal error is the runner's own Transient: it takes the retry path as before, so the bug
    ends in dead letters and the breaker, not in a silent pause."""

    async def main(loop: VirtualTimeLoop) -> Engine[int]:
        broker = new_broker()
        for i in range(30):
            broker.produce(TOPICS.input, f"k{i}", b"v", partition=0)

        class Buggy(ScriptedProcessor):
            async def process(self, records, resume):  # type: ignore[no-untyped-def]
                raise ValueError("bug")

        engine, _, _ = make_engine(loop, broker, Buggy(), retry=RetryPolicy(delay_s=1.0, rounds=2))
        assert await engine.run(exit_at_end=True) == 0
        return engine

    engine = run_virtual(main)
    assert engine.stats.outages == 0
    assert engine.stats.dead_lettered == {"retries_exhausted": 30}


def test_zendesk_answering_with_rejections_ends_an_outage() -> None:
    watch = OutageWatch(POLICY)
    for n in (0.0, 0.1):
        for i in range(10):
            watch.attempted(n, f"k{i}", Verdict.FAILED)
    assert watch.down
    from stream.engine.runner import _verdict  # noqa: PLC0415

    rejected = DeadLetter(reason=DlqReason.USER_NOT_FOUND, message="404", http_status=404)
    assert _verdict(rejected) is Verdict.ANSWERED
    assert _verdict(DeadLetter(reason=DlqReason.INVALID_PAYLOAD, message="bad")) is Verdict.NEUTRAL
    assert _verdict(Transient(message="limited", http_status=429)) is Verdict.NEUTRAL
    assert _verdict(Transient(message="Zendesk timeout")) is Verdict.FAILED
    assert watch.attempted(1.0, "k0", _verdict(rejected)) is Change.ENDED
