"""Commit only after success: SIGKILL the consumer mid-run, restart it, and count what Zendesk received.

One scenario per module (it is the expensive part), several properties checked on its outcome:
2,000 events over 200 keys and 2 partitions, the simulator adding 5..25 ms per request; the first
process is killed with SIGKILL once a third of the events reached Zendesk; a second process runs to the
end (`--exit-at-end`).
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.simulator.testing import run_simulator
from tests.support.engine import (
    Effect,
    EffectLog,
    Sequencer,
    create_side_topics,
    missing,
    order_violations,
    produce_in_order,
    repeats,
    seed_users,
    settings_for,
    user_keys,
)
from tests.support.kafka import create_topics, unique_topic
from tests.support.service import run_to_end, service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

EVENTS, KEYS, PARTITIONS = 2_000, 200, 2
MAX_IN_FLIGHT = 16
KILL_AFTER = EVENTS // 3


@dataclass(frozen=True)
class KillRun:
    expected: dict[str, int]
    effects: list[Effect]
    delivered_before_kill: int
    killed_by: int


@pytest.fixture(scope="module")
def kill_run(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillRun]:
    topic = unique_topic("t-engine-kill")
    create_topics(kafka_bootstrap, [topic], partitions=PARTITIONS)
    create_side_topics(kafka_bootstrap, topic, partitions=PARTITIONS)
    log_path: Path = tmp_path_factory.mktemp("kill") / "first.log"
    with run_simulator(
        extra_args=["--no-rate-limits", "--latency-ms", "5", "--jitter-ms", "20"]
    ) as simulator:
        keys = user_keys(KEYS)
        seed_users(simulator, keys)
        sequencer = Sequencer()
        produce_in_order(kafka_bootstrap, topic, sequencer.events(keys, EVENTS, rng=random.Random(3)))
        env = service_env(
            kafka_bootstrap, topic, simulator, settings_for("solo"), STREAM_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT)
        )
        log = EffectLog(simulator)

        first = start_service(env, log_path)
        try:
            wait_for(
                lambda: log.distinct() >= KILL_AFTER,
                timeout_s=120,
                what=f"{KILL_AFTER} events in Zendesk before the kill",
                interval_s=0.02,
            )
            first.send_signal(signal.SIGKILL)
            status = first.wait(timeout=30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(timeout=30)
        before_kill = log.distinct()

        second = run_to_end(env, timeout_s=240)

        assert second.returncode == 0, second.stderr[-3000:]
        yield KillRun(
            expected=dict(sequencer.counts),
            effects=list(log.refresh()),
            delivered_before_kill=before_kill,
            killed_by=-status,
        )


def test_the_kill_happened_mid_run(kill_run: KillRun) -> None:
    assert kill_run.killed_by == signal.SIGKILL
    assert KILL_AFTER <= kill_run.delivered_before_kill < EVENTS


def test_after_sigkill_and_restart_every_event_reached_zendesk_in_order(kill_run: KillRun) -> None:
    assert missing(kill_run.effects, kill_run.expected) == []
    assert order_violations(kill_run.effects) == []


def test_after_sigkill_the_repeats_are_at_most_the_in_flight_limit(kill_run: KillRun) -> None:
    """The issue's bound: what the killed process had sent but not committed is at most what it had in
    flight. Repeats are events Zendesk received more than once."""
    count = repeats(kill_run.effects)
    print(f"\n[kill] repeats={count} delivered_before_kill={kill_run.delivered_before_kill}")
    assert count <= MAX_IN_FLIGHT, f"{count} events reached Zendesk twice (in-flight limit {MAX_IN_FLIGHT})"
