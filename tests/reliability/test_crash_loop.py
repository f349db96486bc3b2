"""Reliability, crash loop (issue 15, scenario 1): a consumer SIGKILLed again and again while it delivers.

Tracks (each a Sunshine event, which Zendesk would store twice) go to the simulator while one consumer
process after another is killed with SIGKILL at a random moment of its delivering, each restarted at
once with the same static membership id (`STREAM_GROUP_INSTANCE_ID`). A last process runs to the end.
Checked against the input: lost 0, per-key order violations 0, tracks posted twice 0; and each
restarted member had its partitions back within 10 s (static membership: the broker hands a returning
instance its assignment at once, instead of waiting out the dead member's session timeout).

The short variant runs in the default suite; the full one (`-m slow`: 50,000 events, 10 kills) prints
the figures for ops/benchmarks/RELIABILITY.md.
"""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from stream.simulator.testing import run_simulator
from tests.reliability.report import Figures, record
from tests.support.engine import (
    EffectLog,
    Sequencer,
    create_side_topics,
    missing,
    order_violations,
    produce_in_order,
    seed_users,
    settings_for,
    user_keys,
)
from tests.support.kafka import create_topics, unique_topic
from tests.support.service import log_events, run_to_end, service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
MEMBER = "crash-loop-member"


@dataclass(frozen=True)
class CrashLoop:
    events: int
    kills: int
    lost: int
    order_violations: int
    posted_twice: int
    cut_off_checked: int
    assigned_after_s: list[float]  # per restart: from the process's start to its partitions assigned
    wall_s: float

    def line(self) -> str:
        worst = max(self.assigned_after_s, default=0.0)
        return (
            f"events {self.events:,}, SIGKILLs {self.kills}, lost {self.lost}, order violations "
            f"{self.order_violations}, tracks posted twice {self.posted_twice}, cut-off attempts found in "
            f"Zendesk {self.cut_off_checked}, partitions back after a restart within {worst:.1f} s (worst), "
            f"wall {self.wall_s:.0f} s"
        )


def _assigned_at(log_path: Path) -> float | None:
    for line in log_events(log_path.read_text()):
        if line.get("event") == "partitions assigned":
            return time.monotonic()
    return None


def crash_loop(bootstrap: str, work: Path, *, events: int, keys: int, kills: int, seed: int) -> CrashLoop:
    started = time.monotonic()
    rng = random.Random(seed)
    topic = unique_topic("crash-loop")
    create_topics(bootstrap, [topic], partitions=PARTITIONS)
    create_side_topics(bootstrap, topic, partitions=PARTITIONS)
    with run_simulator(
        extra_args=["--no-rate-limits", "--latency-ms", "5", "--jitter-ms", "20"]
    ) as simulator:
        names = user_keys(keys)
        seed_users(simulator, names)
        sequencer = Sequencer()
        produce_in_order(bootstrap, topic, sequencer.events(names, events, rng=rng))
        env = service_env(bootstrap, topic, simulator, settings_for("solo"), STREAM_GROUP_INSTANCE_ID=MEMBER)
        env["STREAM_LOG_LEVEL"] = "info"  # the outcome lines of 50,000 events would dominate the run
        log = EffectLog(simulator)
        assigned_after: list[float] = []
        logs: list[Path] = []
        # Kill points spread over the run, each a random number of events after the last one.
        stride = events // (kills + 1)
        targets = sorted(
            min(events - 1, (n + 1) * stride + rng.randrange(-stride // 3, stride // 3)) for n in range(kills)
        )
        for kill, target in enumerate(targets, start=1):
            logs.append(work / f"killed-{kill}.log")
            launched = time.monotonic()
            process = start_service(env, logs[-1])
            try:
                assigned = wait_for(
                    lambda: _assigned_at(logs[-1]),
                    timeout_s=120,
                    what=f"process {kill} assigned",
                    interval_s=0.05,
                )
                if kill > 1:
                    assigned_after.append(assigned - launched)
                wait_for(
                    lambda: log.distinct() >= target,  # noqa: B023 (called within the iteration)
                    timeout_s=300,
                    what=f"{target} events in Zendesk before kill {kill}",
                    interval_s=0.02,
                )
                process.send_signal(signal.SIGKILL)
                assert process.wait(timeout=30) == -signal.SIGKILL
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)
        launched = time.monotonic()
        last = run_to_end(env, timeout_s=1200)
        assert last.returncode == 0, last.stderr[-3000:]
        effects = log.refresh()
    texts = [*(p.read_text() for p in logs), last.stderr]
    checked = sum(
        1
        for text in texts
        for line in log_events(text)
        if line.get("event") == "checked an interrupted delivery in Zendesk" and line.get("found")
    )
    posted = Counter((e.key, e.seq) for e in effects)
    return CrashLoop(
        events=events,
        kills=kills,
        lost=len(missing(effects, sequencer.counts)),
        order_violations=len(order_violations(effects)),
        posted_twice=sum(1 for n in posted.values() if n > 1),
        cut_off_checked=checked,
        assigned_after_s=assigned_after,
        wall_s=time.monotonic() - started,
    )


def _assert_reliable(result: CrashLoop, variant: str) -> None:
    print(f"\n[crash loop] {result.line()}")
    worst = max(result.assigned_after_s, default=0.0)
    record(
        "crash-loop",
        variant,
        Figures(
            events=result.events,
            faults=f"{result.kills} SIGKILLs of the consumer while it delivered",
            wall_s=result.wall_s,
            lost=result.lost,
            duplicates=result.posted_twice,
            order_violations=result.order_violations,
            recovery=f"partitions back {worst:.1f} s (worst) after a restart",
            details=f"{result.cut_off_checked} cut-off attempts found in Zendesk and not sent again",
        ),
        **asdict(result),
    )
    assert result.lost == 0
    assert result.order_violations == 0
    assert result.posted_twice == 0
    assert all(s <= 10.0 for s in result.assigned_after_s), result.assigned_after_s


def test_a_short_crash_loop_loses_nothing_keeps_order_and_posts_no_track_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _assert_reliable(crash_loop(kafka_bootstrap, tmp_path, events=3_000, keys=300, kills=4, seed=11), "short")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the full variants take minutes
def test_the_full_crash_loop_of_50000_events_and_10_kills(kafka_bootstrap: str, tmp_path: Path) -> None:
    _assert_reliable(
        crash_loop(kafka_bootstrap, tmp_path, events=50_000, keys=2_000, kills=10, seed=5), "full"
    )
