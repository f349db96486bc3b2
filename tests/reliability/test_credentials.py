"""Reliability scenario 7, credentials: a credential Zendesk stops taking mid-run, and OAuth renewals.

1. **Refused mid-run.** Tracks flow to the simulator while `zendesk-stream run` works, with an API token.
   A third of the way in, Zendesk answers every API request with 401 (as when an admin deletes the
   token). The service must stop loudly (exit 2, one line naming the credential), commit nothing it
   did not finish (every record below a committed offset reached Zendesk before the stop), and neither
   dead-letter nor retry anything for it. With the credential restored, a restart delivers the rest:
   nothing lost, nothing posted twice, each key in order.
2. **OAuth expiry survived.** The same load with client credentials and two-second access tokens, and
   once mid-run every live token revoked before its time. The service renews as tokens age, renews
   again on the 401 `invalid_token`, and goes on: exit 0, nothing lost, dead-lettered or posted twice.

The short variants run in the default suite; the full ones are marked slow.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.reliability.report import Figures, record
from tests.support.engine import (
    EffectLog,
    Sequencer,
    create_side_topics,
    engine_summary,
    missing,
    order_violations,
    produce_in_order,
    read_log,
    seed_users,
    settings_for,
    user_keys,
)
from tests.support.kafka import (
    committed_offsets,
    create_topics,
    dlq_topic_of,
    records_written,
    retry_topic_of,
    unique_topic,
)
from tests.support.service import run_to_end, service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
CLIENT, SECRET = "zendesk-stream", "cl1ent-s3cret-reliability"
REFUSED = "zendesk-stream: Zendesk refused our credentials (401)"


@dataclass(frozen=True)
class Workload:
    topic: str
    sequencer: Sequencer
    at: dict[tuple[int, int], tuple[str, int]]  # (partition, offset) -> (key, seq)


def workload(bootstrap: str, simulator: RunningSimulator, *, events: int, keys: int, seed: int) -> Workload:
    topic = unique_topic("credentials")
    create_topics(bootstrap, [topic], partitions=PARTITIONS)
    create_side_topics(bootstrap, topic, partitions=PARTITIONS)
    names = user_keys(keys)
    seed_users(simulator, names)
    sequencer = Sequencer()
    records = sequencer.events(names, events, rng=random.Random(seed))
    produced = produce_in_order(bootstrap, topic, records)
    at = {
        position: (key, int(json.loads(value)["properties"]["seq"]))
        for (key, value), position in zip(records, produced.positions, strict=True)
    }
    return Workload(topic, sequencer, at)


@dataclass(frozen=True)
class Refused:
    events: int
    delivered_before_stop: int
    exit_code: int
    stop_s: float  # from the first 401 to the process's exit
    last_line: str
    committed_not_delivered: int
    dead_letters: int
    retry_records: int
    lost: int
    order_violations: int
    posted_twice: int
    wall_s: float

    def line(self) -> str:
        return (
            f"events {self.events:,}: {self.delivered_before_stop:,} delivered, then every request refused "
            f"(401); exit {self.exit_code} {self.stop_s:.1f} s after the first 401, committed but not "
            f"delivered {self.committed_not_delivered}, dead letters {self.dead_letters}, retry records "
            f"{self.retry_records}; after a restart lost {self.lost}, order violations "
            f"{self.order_violations}, posted twice {self.posted_twice}; wall {self.wall_s:.0f} s"
        )


def refused_mid_run(bootstrap: str, work: Path, *, events: int, keys: int, seed: int) -> Refused:
    started = time.monotonic()
    with run_simulator(extra_args=["--no-rate-limits", "--latency-ms", "5", "--jitter-ms", "20"]) as sim:
        load = workload(bootstrap, sim, events=events, keys=keys, seed=seed)
        env = service_env(bootstrap, load.topic, sim, settings_for("solo"), STREAM_LOG_LEVEL="info")
        log = EffectLog(sim)
        log_path = work / "refused.log"
        process = start_service(env, log_path)
        try:
            wait_for(lambda: log.distinct() >= events // 3, timeout_s=300, what="a third delivered")
            refused_at = time.monotonic()
            sim.control.inject_fault(
                path=r"^/api/", status=401, count=10**9, error="Couldn't authenticate you"
            )
            code = process.wait(timeout=120)
            stop_s = time.monotonic() - refused_at
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        before = {(e.key, e.seq) for e in log.refresh()}
        positions = committed_offsets(bootstrap, load.topic, PARTITIONS)
        text = log_path.read_text()
        last = text.strip().splitlines()[-1] if text.strip() else ""
        committed_not_delivered = sum(
            1
            for (partition, offset), event in load.at.items()
            if offset < positions.get(partition, 0) and event not in before
        )
        sim.control.clear_faults()
        again = run_to_end(env, timeout_s=600)
        assert again.returncode == 0, again.stderr[-3000:]
        effects = log.refresh()
        assert sim.api_token and sim.api_token not in text + again.stderr
    posted = Counter((e.key, e.seq) for e in effects)
    return Refused(
        events=events,
        delivered_before_stop=len(before),
        exit_code=code,
        stop_s=stop_s,
        last_line=last,
        committed_not_delivered=committed_not_delivered,
        dead_letters=records_written(bootstrap, dlq_topic_of(load.topic)),
        retry_records=records_written(bootstrap, retry_topic_of(load.topic)),
        lost=len(missing(effects, load.sequencer.counts)),
        order_violations=len(order_violations(effects)),
        posted_twice=sum(1 for n in posted.values() if n > 1),
        wall_s=time.monotonic() - started,
    )


@dataclass(frozen=True)
class Renewed:
    events: int
    tokens: int
    revoked: int
    refused_requests: int  # 401s Zendesk answered (the revoked tokens' last uses)
    exit_code: int
    outcomes: dict[str, int]
    lost: int
    order_violations: int
    posted_twice: int
    wall_s: float

    def line(self) -> str:
        return (
            f"events {self.events:,} with 2 s access tokens: {self.tokens} tokens, {self.revoked} revoked "
            f"mid-run ({self.refused_requests} requests answered 401), exit {self.exit_code}, outcomes "
            f"{self.outcomes}; lost {self.lost}, order violations {self.order_violations}, posted twice "
            f"{self.posted_twice}; wall {self.wall_s:.0f} s"
        )


def oauth_expiry(bootstrap: str, work: Path, *, events: int, keys: int, seed: int) -> Renewed:
    started = time.monotonic()
    args = ["--no-rate-limits", "--latency-ms", "20", "--jitter-ms", "20"]
    with run_simulator(extra_args=args, oauth_clients={CLIENT: SECRET}) as sim:
        sim.control.set_options(oauth_min_expires_in_s=1)  # tokens of seconds, on the real clock
        load = workload(bootstrap, sim, events=events, keys=keys, seed=seed)
        env = service_env(
            bootstrap,
            load.topic,
            sim,
            settings_for("solo"),
            STREAM_LOG_LEVEL="info",
            ZENDESK_EMAIL="",
            ZENDESK_API_TOKEN="",
            ZENDESK_OAUTH_CLIENT_ID=CLIENT,
            ZENDESK_OAUTH_CLIENT_SECRET=SECRET,
            ZENDESK_OAUTH_TOKEN_TTL_S="2",
            STREAM_MAX_IN_FLIGHT="8",  # a slower run: it outlives several token lifetimes
        )
        log = EffectLog(sim)
        log_path = work / "oauth.log"
        process = start_service(env, log_path, "--exit-at-end")
        try:
            wait_for(lambda: log.distinct() >= events // 2, timeout_s=300, what="half delivered")
            revoked = sim.control.revoke_oauth_tokens(client_id=CLIENT)
            code = process.wait(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        effects = log.refresh()
        tokens = sim.control.oauth_tokens(client_id=CLIENT)
        refused = sum(1 for r in sim.control.requests() if r["status"] == 401)
        text = log_path.read_text()
    assert SECRET not in text
    summary = engine_summary(read_log(log_path))
    outcomes = {
        "delivered": int(summary["delivered"]),
        "dead_lettered": sum(summary["dead_lettered"].values()),
        "sent_to_retry": sum(summary["sent_to_retry"].values()),
        "skipped": sum(summary["skipped"].values()),
    }
    posted = Counter((e.key, e.seq) for e in effects)
    return Renewed(
        events=events,
        tokens=len(tokens),
        revoked=sum(int(v) for v in revoked.values()),
        refused_requests=refused,
        exit_code=code,
        outcomes=dict(outcomes),
        lost=len(missing(effects, load.sequencer.counts)),
        order_violations=len(order_violations(effects)),
        posted_twice=sum(1 for n in posted.values() if n > 1),
        wall_s=time.monotonic() - started,
    )


def _assert_refused(result: Refused, variant: str) -> None:
    print(f"\n[credentials refused] {result.line()}")
    record(
        "credentials-refused",
        variant,
        Figures(
            events=result.events,
            faults=f"every API request answered 401 after {result.delivered_before_stop:,} deliveries",
            wall_s=result.wall_s,
            lost=result.lost,
            duplicates=result.posted_twice,
            order_violations=result.order_violations,
            dead_letters={"any": result.dead_letters} if result.dead_letters else {},
            recovery=f"stopped with exit {result.exit_code} {result.stop_s:.1f} s after the first 401",
            details=f"committed but not delivered {result.committed_not_delivered}, retry records "
            f"{result.retry_records}",
        ),
        **vars(result),
    )
    assert result.exit_code == 2, result.last_line
    assert result.last_line.startswith(REFUSED), result.last_line
    assert result.committed_not_delivered == 0
    assert result.dead_letters == 0 and result.retry_records == 0
    assert result.lost == 0 and result.order_violations == 0 and result.posted_twice == 0


def _assert_renewed(result: Renewed, variant: str) -> None:
    print(f"\n[credentials oauth] {result.line()}")
    record(
        "credentials-oauth",
        variant,
        Figures(
            events=result.events,
            faults=f"2 s access tokens ({result.tokens} in all); every live one revoked once mid-run",
            wall_s=result.wall_s,
            lost=result.lost,
            duplicates=result.posted_twice,
            order_violations=result.order_violations,
            details=f"{result.refused_requests} requests answered 401 after the revocation, each renewed "
            f"and sent again; outcomes {result.outcomes}",
        ),
        **vars(result),
    )
    assert result.exit_code == 0
    assert result.revoked >= 1 and result.tokens >= 4
    assert result.outcomes["dead_lettered"] == 0 and result.outcomes["sent_to_retry"] == 0, result.outcomes
    assert result.lost == 0 and result.order_violations == 0 and result.posted_twice == 0


def test_a_refused_credential_mid_run_stops_loudly_and_commits_nothing_unfinished(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _assert_refused(refused_mid_run(kafka_bootstrap, tmp_path, events=1_500, keys=150, seed=31), "short")


def test_oauth_tokens_expiring_and_revoked_mid_run_are_survived(kafka_bootstrap: str, tmp_path: Path) -> None:
    _assert_renewed(oauth_expiry(kafka_bootstrap, tmp_path, events=1_500, keys=150, seed=32), "short")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the full variants take minutes
def test_the_full_refused_credential_mid_run(kafka_bootstrap: str, tmp_path: Path) -> None:
    _assert_refused(refused_mid_run(kafka_bootstrap, tmp_path, events=20_000, keys=1_000, seed=33), "full")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the full variants take minutes
def test_the_full_oauth_expiry_mid_run(kafka_bootstrap: str, tmp_path: Path) -> None:
    _assert_renewed(oauth_expiry(kafka_bootstrap, tmp_path, events=20_000, keys=1_000, seed=34), "full")
