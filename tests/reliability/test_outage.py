"""Reliability scenario 3, a Zendesk outage, on real Kafka with the simulator and `zendesk-stream run`.

Mid-run, every request fails: first 503 with Retry-After, then dropped connections, then Zendesk answers
again. Nothing may be dead-lettered or lost, the retry topic stays empty (the outage pauses consumption
instead, `stream.engine.outage`), every key keeps its order, the backlog starts draining within 10 s of
Zendesk answering, and the release after it does not set off a storm of 429s (the governor paces it).

The simulator keeps its rate limits on (Enterprise Plus, scaled up so the short variant stays short);
the service learns the scaled limits from the answers' headers. The short variant runs in the default
suite; the full one (2,000 events, 60 s) is marked slow.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.reliability.report import Figures as Row
from tests.reliability.report import record
from tests.support.engine import (
    EffectLog,
    Sequencer,
    create_side_topics,
    engine_summary,
    missing,
    order_violations,
    produce_in_order,
    read_log,
    repeats,
    seed_users,
    settings_for,
    user_keys,
)
from tests.support.kafka import create_topics, dlq_topic_of, records_written, retry_topic_of, unique_topic
from tests.support.service import service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
SIMULATOR_ARGS = ["--plan", "enterprise_plus", "--limit-scale", "5", "--seed", "3"]
RECOVERY_TO_DRAIN_S = 10.0
MAX_429_SHARE = 0.005


@dataclass(frozen=True)
class Scenario:
    events: int
    keys: int
    error_s: int  # 503 with Retry-After
    drop_s: int  # then dropped connections
    retry_after_s: int = 5


@dataclass(frozen=True)
class Figures:
    events: int
    delivered_distinct: int
    lost: int
    repeats: int
    order_violations: int
    dead_lettered: int
    retry_records: int
    recovery_to_first_delivery_s: float
    requests: int
    rate_limited: int
    outages_declared: int
    outages_ended: int
    run_s: float
    outage_s: float

    def show(self) -> str:
        return " ".join(f"{name}={value}" for name, value in vars(self).items())


def run_outage(bootstrap: str, scenario: Scenario, log_path: Path) -> Figures:
    topic = unique_topic("outage")
    create_topics(bootstrap, [topic], partitions=PARTITIONS)
    create_side_topics(bootstrap, topic, partitions=PARTITIONS)
    with run_simulator(extra_args=SIMULATOR_ARGS) as simulator:
        names = user_keys(scenario.keys)
        seed_users(simulator, names)
        sequencer = Sequencer()
        produce_in_order(bootstrap, topic, sequencer.events(names, scenario.events, rng=random.Random(3)))
        env = service_env(bootstrap, topic, simulator, settings_for("solo"), STREAM_LOG_LEVEL="info")
        effects = EffectLog(simulator)
        started = time.monotonic()
        service = start_service(env, log_path, "--exit-at-end")
        try:
            # Mid-run: a tenth of the events are in, the rest is the backlog the outage holds up.
            wait_for(
                lambda: effects.distinct() >= scenario.events // 10,
                timeout_s=60,
                what="the first tenth of the events delivered",
            )
            ends_at = begin_outage(simulator, scenario)
            code = service.wait(timeout=scenario.error_s + scenario.drop_s + 180)
        finally:
            if service.poll() is None:
                service.kill()
        run_s = time.monotonic() - started
        assert code == 0, log_path.read_text()[-3000:]
        seen = effects.refresh()
        requests = simulator.control.requests()
    lines = read_log(log_path)
    summary = engine_summary(lines)
    after = [e.at for e in seen if e.at >= ends_at]
    return Figures(
        events=sequencer.total,
        delivered_distinct=len({(e.key, e.seq) for e in seen}),
        lost=len(missing(seen, sequencer.counts)),
        repeats=repeats(seen),
        order_violations=len(order_violations(seen)),
        dead_lettered=records_written(bootstrap, dlq_topic_of(topic))
        + sum(summary["dead_lettered"].values()),
        retry_records=records_written(bootstrap, retry_topic_of(topic)),
        recovery_to_first_delivery_s=round(min(after) - ends_at, 2) if after else float("inf"),
        requests=len(requests),
        rate_limited=sum(1 for r in requests if r["status"] == 429),
        outages_declared=sum(1 for line in lines if str(line.get("event", "")).startswith(DECLARED)),
        outages_ended=sum(1 for line in lines if str(line.get("event", "")).startswith(ENDED)),
        run_s=round(run_s, 1),
        outage_s=scenario.error_s + scenario.drop_s,
    )


DECLARED, ENDED = "zendesk outage declared", "zendesk outage over"


def begin_outage(simulator: RunningSimulator, scenario: Scenario) -> float:
    """Every request fails from now: 503 with Retry-After, then dropped connections. Returns when Zendesk
    answers again, on the simulator's clock (the one its request log stamps)."""
    first: dict[str, Any] = simulator.control.add_outage(
        duration_seconds=scenario.error_s, status=503, retry_after=scenario.retry_after_s
    )
    second: dict[str, Any] = simulator.control.add_outage(
        start_in_seconds=scenario.error_s, duration_seconds=scenario.drop_s, action="drop"
    )
    assert abs(second["starts_at"] - first["ends_at"]) < 0.5
    return float(second["ends_at"])


def check(figures: Figures, variant: str) -> None:
    print(f"\noutage scenario: {figures.show()}")
    record(
        "outage",
        variant,
        Row(
            events=figures.events,
            faults=f"every request failed for {figures.outage_s:.0f} s: 503 with Retry-After, then dropped "
            "connections",
            wall_s=figures.run_s,
            lost=figures.lost,
            order_violations=figures.order_violations,
            dead_letters={"any": figures.dead_lettered} if figures.dead_lettered else {},
            recovery=f"first delivery {figures.recovery_to_first_delivery_s:.1f} s after Zendesk answered",
            details=f"retry-topic records {figures.retry_records}, requests {figures.requests}, 429s "
            f"{figures.rate_limited}, outages declared/ended {figures.outages_declared}/"
            f"{figures.outages_ended}, events sent twice {figures.repeats}",
        ),
    )
    assert figures.lost == 0, figures
    assert figures.dead_lettered == 0, figures
    # Nothing reaches the retry topic: with the default five in-place attempts and Retry-After 5 s,
    # the outage is declared at the second failures, long before any in-place budget runs out.
    assert figures.retry_records == 0, figures
    assert figures.order_violations == 0, figures
    assert figures.outages_declared >= 1 and figures.outages_ended == figures.outages_declared, figures
    assert figures.recovery_to_first_delivery_s <= RECOVERY_TO_DRAIN_S, figures
    assert figures.rate_limited <= MAX_429_SHARE * figures.requests, figures


def test_a_short_zendesk_outage_pauses_the_backlog_and_it_drains_soon_after(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    check(
        run_outage(
            kafka_bootstrap, Scenario(events=500, keys=100, error_s=15, drop_s=10), tmp_path / "run.log"
        ),
        "short",
    )


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the full variants take minutes
def test_a_minute_long_zendesk_outage_of_a_2000_event_backlog(kafka_bootstrap: str, tmp_path: Path) -> None:
    check(
        run_outage(
            kafka_bootstrap, Scenario(events=2000, keys=400, error_s=30, drop_s=30), tmp_path / "run.log"
        ),
        "full",
    )


def test_a_sigterm_during_an_outage_exits_within_the_deadline_and_a_restart_loses_nothing(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The probe keeps retrying while Zendesk is down; a SIGTERM still ends the process within the
    shutdown deadline, having committed nothing unfinished: a restart once Zendesk is back delivers
    every event, in order."""
    topic = unique_topic("outage-stop")
    create_topics(kafka_bootstrap, [topic], partitions=PARTITIONS)
    create_side_topics(kafka_bootstrap, topic, partitions=PARTITIONS)
    deadline_s = 10
    with run_simulator(extra_args=SIMULATOR_ARGS) as simulator:
        names = user_keys(50)
        seed_users(simulator, names)
        sequencer = Sequencer()
        produce_in_order(kafka_bootstrap, topic, sequencer.events(names, 300, rng=random.Random(4)))
        env = service_env(
            kafka_bootstrap,
            topic,
            simulator,
            settings_for("solo"),
            STREAM_LOG_LEVEL="info",
            STREAM_SHUTDOWN_DEADLINE_S=str(deadline_s),
        )
        effects = EffectLog(simulator)
        log_path = tmp_path / "first.log"
        service = start_service(env, log_path, "--exit-at-end")
        try:
            wait_for(lambda: effects.distinct() >= 30, timeout_s=60, what="the first events delivered")
            simulator.control.add_outage(duration_seconds=600, status=503, retry_after=2)
            wait_for(lambda: DECLARED in log_path.read_text(), timeout_s=60, what="the outage declared")
            stopped = time.monotonic()
            service.send_signal(signal.SIGTERM)
            code = service.wait(timeout=deadline_s + 30)
            took = time.monotonic() - stopped
        finally:
            if service.poll() is None:
                service.kill()
        print(f"\nSIGTERM during the outage: exit {code} after {took:.1f} s (deadline {deadline_s} s)")
        assert code == 0, log_path.read_text()[-3000:]
        assert took <= deadline_s + 5
        simulator.control.clear_faults()
        restart = start_service(env, tmp_path / "second.log", "--exit-at-end")
        try:
            assert restart.wait(timeout=120) == 0, (tmp_path / "second.log").read_text()[-3000:]
        finally:
            if restart.poll() is None:
                restart.kill()
        seen = effects.refresh()
    assert missing(seen, sequencer.counts) == []
    assert order_violations(seen) == []
    assert records_written(kafka_bootstrap, dlq_topic_of(topic)) == 0
    assert records_written(kafka_bootstrap, retry_topic_of(topic)) == 0
