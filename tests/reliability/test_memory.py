"""Reliability scenario 8, memory: steady load at half the Zendesk budget, resident memory sampled.

One `zendesk-stream run` process works through a steady stream of events that uses half of the Enterprise
plan's budget (the simulator enforces the real limits, and the service learns them from its answers):
tracks at half the Sunshine events limit (700 a minute), identifies at half the account's one
create-or-update of a user a second, and a few groups. Its resident memory (VmRSS) is sampled all along,
and its caches' sizes are read from its own `/metrics` (`zendesk_stream_cache_entries`).

Checked: after the warm-up, memory stays within 10 % of what it was when the warm-up ended; the service
keeps up (nothing lost, in order per key, no track posted twice, every user's last identify is what
Zendesk holds, every membership made); and the 429s stay a negligible share of the requests.

The short variant (40 s) runs in the default suite; the full one, an hour, is marked slow:
`.venv/bin/python -m ops.benchmarks.reliability -k memory` writes its row into RELIABILITY.md.
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream.simulator.testing import run_simulator
from tests.reliability.report import Figures, record
from tests.support.containers import free_port
from tests.support.engine import (
    EffectLog,
    OrderedProducer,
    RssSampler,
    Sequencer,
    create_side_topics,
    missing,
    order_violations,
    seed_users,
    settings_for,
    user_keys,
)
from tests.support.kafka import create_topics, unique_topic
from tests.support.metrics import scrape, total
from tests.support.segment import group, identify
from tests.support.service import service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
# Half the Enterprise plan's budget (docs/zendesk-api.md: 700 Sunshine events a minute; one
# create-or-update of a user a second, account-wide), and a membership now and then.
TRACKS_PER_S = 700 / 60 / 2
IDENTIFIES_PER_S = 0.5
GROUPS_PER_S = 0.05
ORGANIZATIONS = 10
MAX_GROWTH = 0.10
MAX_429_SHARE = 0.01


@dataclass(frozen=True)
class Load:
    duration_s: float
    warm_up_s: float
    keys: int
    sample_s: float  # VmRSS every
    scrape_s: float  # /metrics every


@dataclass
class SteadyProducer:
    """Produces the mix at its rates in a thread: tracks sequenced per key (`Sequencer`), identifies
    that change each user's name, groups that join users to a handful of organizations."""

    bootstrap: str
    topic: str
    keys: list[str]
    sequencer: Sequencer = field(default_factory=Sequencer)
    last_name: dict[str, str] = field(default_factory=dict)
    memberships: set[tuple[str, str]] = field(default_factory=set)
    produced: Counter[str] = field(default_factory=Counter)
    failure: BaseException | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="steady-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
        assert not self._thread.is_alive(), "the producer did not stop"
        assert self.failure is None, f"the producer failed: {self.failure}"

    def stop_quietly(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _batch(self, tracks: int, identifies: int, groups: int) -> list[tuple[str | None, bytes]]:
        """The kinds are mixed first, then each event is made in that order: a key's sequence numbers
        and its last identify follow the order the events are produced in."""
        kinds = ["track"] * tracks + ["identify"] * identifies + ["group"] * groups
        self._rng.shuffle(kinds)
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        batch: list[tuple[str | None, bytes]] = []
        for kind in kinds:
            key = self._rng.choice(self.keys)
            self.produced[kind] += 1
            if kind == "track":
                batch.append(self.sequencer.event(key))
            elif kind == "identify":
                name = f"User {key} v{self.produced['identify']}"
                self.last_name[key] = name
                batch.append((key, json.dumps({**identify(key, name=name), "timestamp": now}).encode()))
            else:
                org = f"org-{self._rng.randrange(ORGANIZATIONS)}"
                self.memberships.add((key, org))
                event = {**group(key, org, name=f"Organization {org}"), "timestamp": now}
                batch.append((key, json.dumps(event).encode()))
        return batch

    def _main(self) -> None:
        try:
            producer = OrderedProducer(self.bootstrap)
            started = time.monotonic()
            due = Counter[str]()
            while not self._stop.is_set():
                elapsed = time.monotonic() - started
                wanted = {
                    "track": int(elapsed * TRACKS_PER_S),
                    "identify": int(elapsed * IDENTIFIES_PER_S),
                    "group": int(elapsed * GROUPS_PER_S),
                }
                batch = self._batch(*(wanted[k] - due[k] for k in ("track", "identify", "group")))
                due.update({k: wanted[k] - due[k] for k in wanted})
                if batch:
                    producer.send(self.topic, batch)
                # Pacing, not waiting for a condition: the rates are per second of the wall clock.
                self._stop.wait(0.25)
        except BaseException as err:
            self.failure = err


@dataclass(frozen=True)
class MemoryRun:
    events: int
    duration_s: float
    warm_up_s: float
    rss_at_warm_mib: float
    rss_max_after_mib: float
    rss_end_mib: float
    slope_mib_per_h: float
    caches_at_end: dict[str, int]
    lost: int
    order_violations: int
    posted_twice: int
    wrong_names: int
    missing_memberships: int
    requests: int
    rate_limited: int
    max_lag: int
    wall_s: float

    @property
    def growth(self) -> float:
        return self.rss_max_after_mib / self.rss_at_warm_mib - 1

    def slope(self) -> str:
        """The trend per hour, said only of a run long enough for one (a minute's is noise)."""
        if self.duration_s < 600:
            return ""
        return f", slope {self.slope_mib_per_h:+.2f} MiB/h"

    def line(self) -> str:
        return (
            f"{self.events:,} events over {self.duration_s:.0f} s; RSS {self.rss_at_warm_mib:.1f} MiB after "
            f"the {self.warm_up_s:.0f} s warm-up, at most {self.rss_max_after_mib:.1f} MiB after it "
            f"({self.growth:+.1%}), {self.rss_end_mib:.1f} MiB at the end{self.slope()}; caches at the end "
            f"{self.caches_at_end}; requests "
            f"{self.requests:,}, 429s {self.rate_limited}, lag at most {self.max_lag}; lost {self.lost}, "
            f"order violations {self.order_violations}, posted twice {self.posted_twice}, wrong names "
            f"{self.wrong_names}, missing memberships {self.missing_memberships}"
        )


def caches_and_lag(port: int) -> tuple[dict[str, int], int]:
    """The caches' sizes and the summed consumer lag, from the service's /metrics."""
    samples = scrape(port)
    assert samples is not None, "the service's /metrics did not answer"
    caches = {
        labels["cache"]: int(v) for name, labels, v in samples if name == "zendesk_stream_cache_entries"
    }
    return caches, int(total(samples, "zendesk_stream_consumer_lag"))


def slope_per_hour(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS (MiB) over time, per hour."""
    if len(samples) < 2:
        return 0.0
    xs = [t for t, _ in samples]
    ys = [kib / 1024 for _, kib in samples]
    return statistics.linear_regression(xs, ys).slope * 3600


def memory_run(bootstrap: str, work: Path, load: Load) -> MemoryRun:
    started = time.monotonic()
    topic = unique_topic("memory")
    create_topics(bootstrap, [topic], partitions=PARTITIONS)
    create_side_topics(bootstrap, topic, partitions=PARTITIONS)
    with run_simulator(extra_args=["--plan", "enterprise", "--latency-ms", "20", "--jitter-ms", "30"]) as sim:
        names = user_keys(load.keys, prefix="steady")
        seed_users(sim, names)
        port = free_port()
        env = service_env(
            bootstrap,
            topic,
            sim,
            settings_for("steady"),
            STREAM_LOG_LEVEL="info",
            STREAM_METRICS_PORT=str(port),
        )
        producer = SteadyProducer(bootstrap, topic, names)
        log = EffectLog(sim)
        service = start_service(env, work / "service.log")
        sampler = RssSampler(service.pid, interval_s=load.sample_s)
        caches: dict[str, int] = {}
        max_lag = 0
        try:
            wait_for(lambda: "partitions assigned" in (work / "service.log").read_text(), timeout_s=120,
                     what="the service assigned its partitions")  # fmt: skip
            producer.start()
            load_started = time.monotonic()
            while (left := load.duration_s - (time.monotonic() - load_started)) > 0:
                assert service.poll() is None, (work / "service.log").read_text()[-3000:]
                caches, lag = caches_and_lag(port)
                max_lag = max(max_lag, lag)
                time.sleep(min(load.scrape_s, left))  # the load's own clock: this is its length
            load_ended = time.monotonic()
            producer.stop()
            wait_for(
                lambda: not missing(log.refresh(), producer.sequencer.counts),
                timeout_s=300,
                what="every track in Zendesk",
                interval_s=0.5,
            )
            caches, _ = caches_and_lag(port)
            service.send_signal(signal.SIGTERM)
            assert service.wait(timeout=90) == 0, (work / "service.log").read_text()[-3000:]
        finally:
            producer.stop_quietly()
            sampler.stop()
            if service.poll() is None:
                service.kill()
        effects = log.refresh()
        state = sim.control.state()
        requests = sim.control.requests()
    users = {u.get("external_id"): u for u in state["users"]}
    org_ids = {o["id"]: o.get("external_id") for o in state["organizations"]}
    user_ids = {u["id"]: u.get("external_id") for u in state["users"]}
    members = {
        (user_ids.get(m["user_id"]), org_ids.get(m["organization_id"]))
        for m in state["organization_memberships"]
    }
    warm_at = load_started + load.warm_up_s
    during = [(t, kib) for t, kib in sampler.samples if load_started <= t <= load_ended]
    after = [(t, kib) for t, kib in during if t >= warm_at]
    assert after, "no memory sample after the warm-up"
    # The reference: the median of the samples in the first tenth after the warm-up (one GC's noise).
    reference = [kib for t, kib in after if t < warm_at + (load_ended - warm_at) / 10] or [after[0][1]]
    posted = Counter((e.key, e.seq) for e in effects)
    return MemoryRun(
        events=producer.sequencer.total + producer.produced["identify"] + producer.produced["group"],
        duration_s=load_ended - load_started,
        warm_up_s=load.warm_up_s,
        rss_at_warm_mib=statistics.median(reference) / 1024,
        rss_max_after_mib=max(kib for _, kib in after) / 1024,
        rss_end_mib=after[-1][1] / 1024,
        slope_mib_per_h=slope_per_hour(after),
        caches_at_end=caches,
        lost=len(missing(effects, producer.sequencer.counts)),
        order_violations=len(order_violations(effects)),
        posted_twice=sum(1 for n in posted.values() if n > 1),
        wrong_names=sum(1 for key, name in producer.last_name.items() if users[key]["name"] != name),
        missing_memberships=len(producer.memberships - members),
        requests=len(requests),
        rate_limited=sum(1 for r in requests if r["status"] == 429),
        max_lag=max_lag,
        wall_s=time.monotonic() - started,
    )


def _length(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds:.0f} s"


def _assert_flat(result: MemoryRun, variant: str) -> None:
    print(f"\n[memory] {result.line()}")
    record(
        "memory",
        variant,
        Figures(
            events=result.events,
            faults=f"none: {_length(result.duration_s)} of steady load at half the Enterprise budget",
            wall_s=result.wall_s,
            lost=result.lost,
            duplicates=result.posted_twice,
            order_violations=result.order_violations,
            details=(
                f"RSS {result.rss_at_warm_mib:.1f} MiB after warm-up, max {result.rss_max_after_mib:.1f} "
                f"({result.growth:+.1%}){result.slope()}; caches "
                f"{result.caches_at_end}; 429s {result.rate_limited} of {result.requests:,} requests; "
                f"lag at most {result.max_lag}"
            ),
        ),
        **{k: v for k, v in vars(result).items() if k != "caches_at_end"},
        caches_at_end=result.caches_at_end,
    )
    assert result.lost == 0
    assert result.order_violations == 0
    assert result.posted_twice == 0
    assert result.wrong_names == 0
    assert result.missing_memberships == 0
    assert result.rate_limited <= MAX_429_SHARE * result.requests, result.rate_limited
    assert result.growth <= MAX_GROWTH, f"memory grew {result.growth:.1%} after the warm-up"
    assert "delivered_tracks" in result.caches_at_end and "user_ids_by_external_id" in result.caches_at_end


def test_forty_seconds_of_steady_load_keep_memory_flat(kafka_bootstrap: str, tmp_path: Path) -> None:
    _assert_flat(
        memory_run(
            kafka_bootstrap, tmp_path, Load(duration_s=40, warm_up_s=15, keys=200, sample_s=0.5, scrape_s=5)
        ),
        "short",
    )


@pytest.mark.slow
@pytest.mark.timeout(3600 + 900)
def test_an_hour_of_steady_load_at_half_the_budget_keeps_memory_flat(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _assert_flat(
        memory_run(
            kafka_bootstrap, tmp_path, Load(duration_s=3600, warm_up_s=600, keys=500, sample_s=5, scrape_s=30)
        ),
        "full",
    )
