"""Per-key order with keys in flight concurrently: real Kafka, `zendesk-stream run` as a process, the
simulator adding random latency (5..25 ms per request) so that faster keys overtake slower ones.

Zendesk's side decides: the simulator's request log must show, for every key, exactly the events
`seq-0, seq-1, …` in that order, each once; and requests of many keys must have been inside the
simulator at the same instant (see tests/support/engine.py for how that is read from the log).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from stream.simulator.testing import run_simulator
from tests.support.engine import (
    EffectLog,
    Sequencer,
    create_side_topics,
    engine_summary,
    missing,
    order_violations,
    peak_keys_in_flight,
    produce_in_order,
    seed_users,
    sequences_by_key,
    settings_for,
    user_keys,
)
from tests.support.service import log_events, run_to_end, service_env

pytestmark = pytest.mark.kafka

LATENCY_MS, JITTER_MS = 5, 20
MAX_IN_FLIGHT = 64
PARTITIONS = 4


@dataclass(frozen=True)
class OrderRun:
    events: int
    keys: int
    peak_keys_in_flight: int
    max_in_flight_seen: int


def run_order_workload(bootstrap: str, topic: str, *, events: int, keys: int, timeout_s: float) -> OrderRun:
    create_side_topics(bootstrap, topic, partitions=PARTITIONS)
    simulator_args = ["--no-rate-limits", "--latency-ms", str(LATENCY_MS), "--jitter-ms", str(JITTER_MS)]
    with run_simulator(extra_args=[*simulator_args, "--seed", "11"]) as simulator:
        names = user_keys(keys)
        seed_users(simulator, names)
        sequencer = Sequencer()
        produce_in_order(bootstrap, topic, sequencer.events(names, events, rng=random.Random(5)))
        env = service_env(
            bootstrap, topic, simulator, settings_for("solo"), STREAM_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT)
        )

        result = run_to_end(env, timeout_s=timeout_s)

        assert result.returncode == 0, result.stderr[-3000:]
        effects = EffectLog(simulator).refresh()
    assert not missing(effects, sequencer.counts), "events never reached Zendesk"
    assert order_violations(effects) == []
    # A clean run delivers each event exactly once, and in order: the whole per-key history is 0..n-1.
    assert sequences_by_key(effects) == {key: list(range(n)) for key, n in sequencer.counts.items()}
    summary = engine_summary(log_events(result.stderr))
    run = OrderRun(
        events=events,
        keys=keys,
        peak_keys_in_flight=peak_keys_in_flight(effects, min_latency_s=LATENCY_MS / 1000),
        max_in_flight_seen=int(summary["max_in_flight_seen"]),
    )
    print(f"\n[order] {run}")
    return run


def test_per_key_order_holds_while_many_keys_are_in_flight(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """The default-suite size: 2,000 events over 200 keys and 4 partitions."""
    run = run_order_workload(
        kafka_bootstrap, new_topic(partitions=PARTITIONS), events=2_000, keys=200, timeout_s=240
    )

    # Observed on Zendesk's side, not only by the engine's own count.
    assert run.peak_keys_in_flight >= 8, run
    assert run.max_in_flight_seen >= 8, run


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_per_key_order_holds_for_20000_events_over_1000_keys(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """The issue's size: 20,000 events over 1,000 keys and 4 partitions."""
    run = run_order_workload(
        kafka_bootstrap, new_topic(partitions=PARTITIONS), events=20_000, keys=1_000, timeout_s=800
    )

    assert run.peak_keys_in_flight >= 8, run
    assert run.max_in_flight_seen >= 8, run
