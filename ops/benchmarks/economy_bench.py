"""Rate economy: what the service spends of Zendesk's budget, and how fast it goes within it.

    .venv/bin/python -m ops.benchmarks.economy_bench requests  [--events 100000] [--users 10000]
    .venv/bin/python -m ops.benchmarks.economy_bench audience  [--users 100000]
    .venv/bin/python -m ops.benchmarks.economy_bench drain     [--events 10000] [--users 1000]
    .venv/bin/python -m ops.benchmarks.economy_bench freshness [--light-s 200] [--heavy-s 60]
    .venv/bin/python -m ops.benchmarks.economy_bench headroom  [--events 50000] [--users 5000]
    .venv/bin/python -m ops.benchmarks.economy_bench all

Every run is `zendesk-stream run` as real processes on a real broker (KAFKA_BOOTSTRAP_SERVERS, or a
one-node broker from ops/kafka's native launcher), against the Zendesk simulator as its own process.
Requests are counted from the simulator's request log (job items, which it logs as JOB, are not
requests); the final state is read from the simulator and compared with what the workload must leave
(ops/benchmarks/workloads.py). Each subcommand prints its figures and, unless `--no-write`, writes them as
its own section of ops/benchmarks/RESULTS.md.

requests   Requests per event, by event type, on the mix (60% identify, half of them unchanged repeats;
           30% track; 10% group over `--organizations`): the defaults against the simulator without
           limits, next to the same events with bulk, coalescing and no-op skipping off; then the defaults
           again under Enterprise limits scaled by `--scale` (so that 30,000 tracks do not take 43 minutes
           on the events bucket).
audience   One identify per distinct user, each setting one boolean trait, under Enterprise limits: with
           the simulator's default job processing, with no bound on the jobs Zendesk runs at once, and
           with slow jobs (3 s each).
drain      A backlog of the mix under Enterprise limits, by 1 and by 3 processes of one group.
freshness  Kafka append (the broker's LogAppendTime) to the Zendesk request or job item that applies the
           event, at light load and at a load that needs bulk jobs.
headroom   The engine's own ceiling: simulator without limits, no latency, bulk always; CPU per event and
           peak memory; and the pure part (decode, validate, plan) timed in this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from confluent_kafka import Message, Producer

from ops.benchmarks.common import (
    REPO,
    RESULTS,
    broker,
    create_topics,
    machine,
    produce,
    run_consumers,
    service_env,
    start_consumer,
    stop_consumer,
    write_section,
)
from ops.benchmarks.workloads import Verdict, Workload, audience, check, identify, mix, track
from stream.events import decode_json, validate
from stream.mapping.fields import Known
from stream.mapping.plan import plan
from stream.mapping.settings import DestinationSettings
from stream.simulator.testing import ControlClient, RunningSimulator, run_simulator
from stream.zendesk.governor import ACCOUNT_CREATE_UPDATE_PER_S

ENTERPRISE_RPM = 700
EXTRA_SETTINGS: dict[str, str] = {}  # --env: on top of every arm's settings (experiments)
LOG_LIMIT = 3_000_000
PARTITIONS = 6


# ------------------------------------------------------------------------------------------ arms


@dataclass
class Arm:
    name: str
    processes: int
    wall_s: float
    span_s: float
    requests: int
    rate_limited: int
    families: dict[str, float]
    verdict: Verdict | None
    peak_rss_mib: float
    cpu_s: float
    log: list[dict[str, Any]] = field(repr=False, default_factory=list)
    state: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0


def new_topic(bootstrap: str, prefix: str, records: list[tuple[str, bytes]], **config: str) -> str:
    topic = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic, f"{topic}.retry", f"{topic}.dlq"], PARTITIONS, config or None)
    if records:
        produce(bootstrap, topic, records, partition=None)
    return topic


def control_of(simulator: RunningSimulator) -> ControlClient:
    return ControlClient(simulator.base_url, timeout=600.0)


def run_arm(
    name: str,
    *,
    bootstrap: str,
    topic: str,
    simulator: RunningSimulator,
    work: Path,
    simulator_options: Mapping[str, Any],
    settings: Mapping[str, str] | None = None,
    processes: int = 1,
    workload: Workload | None = None,
    timeout_s: float = 3600.0,
    before: Callable[[ControlClient], None] | None = None,
) -> Arm:
    """The service over `topic` (a group of its own) from an empty simulator with `simulator_options`,
    until every partition is at its end; what Zendesk saw, and whether its state is exactly right."""
    control = control_of(simulator)
    try:
        control.reset(request_log_limit=LOG_LIMIT, **simulator_options)
        if before is not None:
            before(control)
        group = f"{topic}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
        env = service_env(bootstrap, topic, group, simulator, **{**(settings or {}), **EXTRA_SETTINGS})
        print(f"  {name}: {processes} process(es) running ...", flush=True)
        finished = run_consumers([env] * processes, work, group, timeout_s=timeout_s)
        for index, run in enumerate(finished):
            if run.exit_code != 0:
                raise RuntimeError(
                    f"{name}: process {index} exited {run.exit_code}; see {work}/{group}-*.log"
                )
        log = control.requests()
        state = control.state()
    finally:
        control.close()
    zendesk = [entry for entry in log if entry["method"] != "JOB"]
    # The span of the work: from the first request an event caused (not start-up's checks of the fields).
    times = [float(entry["at"]) for entry in zendesk if family(entry) != "fields"]
    arm = Arm(
        name=name,
        processes=processes,
        wall_s=max(run.wall_s for run in finished),
        span_s=(max(times) - min(times)) if times else 0.0,
        requests=len(zendesk),
        rate_limited=sum(1 for entry in zendesk if entry["status"] == 429),
        families=families(log),
        verdict=check(workload.expected, state) if workload is not None else None,
        peak_rss_mib=max(max(run.max_rss_kib, run.hwm_kib) for run in finished) / 1024,
        cpu_s=sum(run.cpu_s for run in finished),
        log=log,
        state=state,
    )
    verdict = "" if arm.verdict is None else f", state exact: {arm.verdict.exact}"
    print(
        f"  {name}: wall {arm.wall_s:.1f}s, span {arm.span_s:.1f}s, {arm.requests:,} requests, "
        f"{arm.rate_limited:,} 429s{verdict}",
        flush=True,
    )
    if arm.verdict is not None and not arm.verdict.exact:
        print(f"  {name}: {arm.verdict}", flush=True)
    return arm


def family(entry: Mapping[str, Any]) -> str:
    """What a Zendesk request was for, by its path."""
    path = entry["path"]
    if "_fields" in path:
        return "fields"
    if "/user_profiles/" in path or path.rstrip("/").endswith(("/events", "/events.json")):
        return "track"
    if "/users/create_or_update" in path:
        return "identify"
    if "/job_statuses" in path:
        return "poll"
    if "/organization" in path:
        return "group"
    if "/users/search" in path or "/users/show_many" in path:
        return "lookup"
    return "other"


def families(log: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Requests by purpose. A job poll is shared among the kinds of the jobs it asked about (known from the
    simulator's JOB entries), so polls count towards identify (user jobs) or group (membership jobs)."""
    job_kind: dict[str, str] = {}
    for entry in log:
        if entry["method"] == "JOB" and entry.get("change") and entry["change"].get("job_id"):
            job_kind[entry["change"]["job_id"]] = "group" if "membership" in entry["path"] else "identify"
    counts: dict[str, float] = defaultdict(float)
    for entry in log:
        if entry["method"] == "JOB":
            continue
        kind = family(entry)
        if kind != "poll":
            counts[kind] += 1
            continue
        ids = ",".join(parse_qs(entry.get("query") or "").get("ids", [])).split(",")
        kinds = [job_kind.get(job_id, "identify") for job_id in ids if job_id] or ["identify"]
        for one in kinds:
            counts[f"{one}"] += 1 / len(kinds)
        counts["polls"] += 1
    return counts


@contextlib.contextmanager
def simulator_process() -> Iterator[RunningSimulator]:
    with run_simulator(extra_args=["--set", f"request_log_limit={LOG_LIMIT}"]) as simulator:
        yield simulator


def header(title: str, goal: list[str], command: str, source: str, load: str) -> list[str]:
    return [
        title,
        "",
        *goal,
        "",
        "Command:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Broker: {source}. Machine: {machine()}; load average before the run {load}. "
        f"Measured {datetime.now(UTC):%Y-%m-%d}.",
        "",
    ]


def verdict_text(verdict: Verdict | None) -> str:
    if verdict is None:
        return "not checked"
    if verdict.exact:
        return "exact"
    return (
        f"{verdict.users_wrong} users wrong, {verdict.memberships_missing} memberships missing, "
        f"{verdict.tracks_lost} tracks lost, {verdict.tracks_duplicated} duplicated"
    )


# ----------------------------------------------------------------------------- 1. requests per event


def bench_requests(args: argparse.Namespace, bootstrap: str, source: str, work: Path, load: str) -> str:
    workload = mix(events=args.events, users=args.users, organizations=args.organizations)
    topic = new_topic(bootstrap, "mix", workload.records)
    kinds = workload.kinds
    print(f"requests per event: {args.events:,} events produced ({dict(kinds)})", flush=True)
    off = {"STREAM_BULK": "off", "STREAM_COALESCE": "false", "STREAM_UNCHANGED_TTL_S": "0"}
    arms = []
    with simulator_process() as simulator:
        for name, options, settings in (
            ("economy (defaults), no limits", {"rate_limits": False}, {}),
            ("per event (bulk, coalescing, skipping off), no limits", {"rate_limits": False}, off),
            (
                f"economy (defaults), Enterprise limits x{args.scale:g}",
                {"plan": "enterprise", "limit_scale": args.scale},
                {},
            ),
        ):
            arms.append(
                run_arm(
                    name,
                    bootstrap=bootstrap,
                    topic=topic,
                    simulator=simulator,
                    work=work,
                    simulator_options=options,
                    settings=settings,
                    workload=workload,
                )
            )
    economy, per_event, limited = arms
    command = (
        f".venv/bin/python -m ops.benchmarks.economy_bench requests --events {args.events} "
        f"--users {args.users} --organizations {args.organizations} --scale {args.scale:g}"
    )
    lines = header(
        "## Rate economy: requests per event",
        [
            "Goal: on the realistic mix, Zendesk requests per identify at most 0.02, per group at most",
            "0.05, per track at most 1.01 (one events request each is the floor: Zendesk has no bulk",
            "events endpoint), next to the same events sent one request per write.",
        ],
        command,
        source,
        load,
    )
    identifies, tracks, groups = kinds["identify"], kinds["track"], kinds["group"]
    lines += [
        f"Workload: {args.events:,} events over {args.users:,} users in {PARTITIONS} partitions: "
        f"{identifies:,} identifies ({kinds['identify_unchanged']:,} repeat the user's traits unchanged), "
        f"{tracks:,} tracks, {groups:,} groups over {args.organizations} organizations; each user's first "
        "event is an identify. Traits: name, email, two custom fields (a text and a number).",
        "The first two arms run against the simulator without limits (ZENDESK_PLAN=unlimited): every "
        "setting at its default, then STREAM_BULK=off, STREAM_COALESCE=false, STREAM_UNCHANGED_TTL_S=0. "
        f"The third runs the defaults against Enterprise limits scaled x{args.scale:g} (account and events "
        f"buckets {ENTERPRISE_RPM * args.scale:,.0f}/min, learned from X-Rate-Limit; the create_or_update "
        "bucket stays at the real 1/s), for what pacing does to the figures.",
        "Requests are attributed by path; a job poll is shared among the kinds of jobs it asked about;",
        "lookups (users/search, users/show_many) serve tracks and groups alike and are shown on their own,",
        "then charged in full to each of the two as an upper bound.",
        "",
        "| arm | per identify | per group | per track | lookups | per track, all lookups "
        "| per group, all lookups | per event | 429s | span s | final state |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for arm in arms:
        f = arm.families
        lines.append(
            f"| {arm.name} | {f['identify'] / identifies:.4f} | {f['group'] / groups:.4f} | "
            f"{f['track'] / tracks:.4f} | {f['lookup']:,.0f} | {(f['track'] + f['lookup']) / tracks:.4f} | "
            f"{(f['group'] + f['lookup']) / groups:.4f} | {arm.requests / args.events:.4f} | "
            f"{arm.rate_limited:,} | {arm.span_s:.0f} | {verdict_text(arm.verdict)} |"
        )
    e = economy.families
    lines += [
        "",
        f"Economy arm, every request: {dict(sorted((k, round(v)) for k, v in e.items()))}; "
        f"{economy.requests:,} requests for {args.events:,} events, "
        f"{per_event.requests / economy.requests:.1f}x fewer than the per-event arm. Under limits: "
        f"{limited.requests:,} requests ({per_event.requests / limited.requests:.1f}x fewer).",
        "",
        "Under limits the identify and group figures rise, by design: the events bucket binds (the",
        "tracks), so the account bucket has budget to spare, and job polls, paced at one round per 10",
        "account tokens, come faster (every 0.1 s at x10, every 0.86 s at real Enterprise limits); fewer",
        "events arrive per linger, so more of them take the single path while it has a token. Both spend",
        "budget nothing else was using.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- 2. audience sync


def bench_audience(args: argparse.Namespace, bootstrap: str, source: str, work: Path, load: str) -> str:
    workload = audience(args.users)
    topic = new_topic(bootstrap, "audience", workload.records)
    print(f"audience sync: {args.users:,} identifies produced", flush=True)
    settings = {"STREAM_MAX_IN_FLIGHT": str(args.in_flight)} if args.in_flight else {}
    cases = [
        ("simulator default jobs (4 at once, 0.2 s + 5 ms per item)", {}),
        ("jobs unbounded (any number at once)", {"job_workers": 0}),
        (
            "slow jobs (3 s each, any number at once)",
            {"job_workers": 0, "job_working_ms": 3000, "job_ms_per_item": 0},
        ),
    ]
    arms = []
    with simulator_process() as simulator:
        for name, options in cases:
            arms.append(
                run_arm(
                    name,
                    bootstrap=bootstrap,
                    topic=topic,
                    simulator=simulator,
                    work=work,
                    simulator_options={"plan": "enterprise", **options},
                    settings=settings,
                    workload=workload,
                )
            )
    jobs = math.ceil(args.users / 100)
    posts_floor = jobs / ENTERPRISE_RPM * 60
    command = f".venv/bin/python -m ops.benchmarks.economy_bench audience --users {args.users}" + (
        f" --in-flight {args.in_flight}" if args.in_flight else ""
    )
    lines = header(
        "## Rate economy: audience sync",
        [
            f"Goal: {args.users:,} identifies, one per distinct user, each setting one boolean trait (an",
            "Engage audience), under Enterprise limits, in at most 1.3x the minimum the account bucket",
            "allows.",
        ],
        command,
        source,
        load,
    )
    lines += [
        f"Arithmetic: {args.users:,} users are {jobs:,} create_or_update_many jobs of 100. At "
        f"{ENTERPRISE_RPM} requests/min the posts alone take {jobs} / {ENTERPRISE_RPM} x 60 = "
        f"**{posts_floor:.1f} s**; every poll adds 1/{ENTERPRISE_RPM} min (a round asks about every job in "
        "flight at once, and rounds come at most once per 10 account tokens: every 0.86 s at 700/min, "
        "about 10% of the budget while jobs run). With the simulator's default job "
        f"processing (4 jobs at once, 0.2 s + 5 ms per item = 0.7 s a job) Zendesk itself needs "
        f"{jobs} x 0.7 / 4 = {jobs * 0.7 / 4:.0f} s. Slow jobs (3 s, 30 at most queued or running) allow "
        f"30 x 100 users / 3 s = 1,000 users/s: {args.users / 1000:.0f} s.",
        f"{PARTITIONS} partitions, one process"
        + (f", STREAM_MAX_IN_FLIGHT={args.in_flight}" if args.in_flight else ", every setting at its default")
        + "; time is the process's wall time, start-up and group join included.",
        "",
        "| jobs at Zendesk | wall s | span of requests s | binding floor s | wall / floor | requests "
        "| job posts | polls | 429s | final state |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    floors = [max(posts_floor, jobs * 0.7 / 4), posts_floor, max(posts_floor, args.users / 1000)]
    for arm, floor in zip(arms, floors, strict=True):
        posts = sum(
            1
            for e in arm.log
            if e["method"] == "POST" and "create_or_update_many" in e["path"] and e["status"] == 200
        )
        lines.append(
            f"| {arm.name} | {arm.wall_s:.1f} | {arm.span_s:.1f} | {floor:.1f} | {arm.wall_s / floor:.2f} | "
            f"{arm.requests:,} | {posts:,} | {arm.families['polls']:,.0f} | {arm.rate_limited:,} | "
            f"{verdict_text(arm.verdict)} |"
        )
    lines += [
        "",
        "Reading: with slow jobs, the 30 job slots bind, not the account bucket. Each slot also waits for",
        "its job to be seen done (up to one poll round) and for its next batch of 100 to gather.",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- 3. backlog drain


def bench_drain(args: argparse.Namespace, bootstrap: str, source: str, work: Path, load: str) -> str:
    workload = mix(events=args.events, users=args.users, organizations=args.organizations, seed=11)
    topic = new_topic(bootstrap, "drain", workload.records)
    tracks = workload.kinds["track"]
    floor = tracks / ENTERPRISE_RPM * 60
    print(f"backlog drain: {args.events:,} events produced, floor {floor:.0f}s", flush=True)
    arms = []
    with simulator_process() as simulator:
        for processes in (1, 3):
            arms.append(
                run_arm(
                    f"{processes} process{'es' if processes > 1 else ''}",
                    bootstrap=bootstrap,
                    topic=topic,
                    simulator=simulator,
                    work=work,
                    simulator_options={"plan": "enterprise"},
                    processes=processes,
                    workload=workload,
                )
            )
    lines = header(
        "## Rate economy: backlog drain",
        [
            f"Goal: a backlog of {args.events:,} mixed events over {args.users:,} users under Enterprise "
            "limits drains in at most 1.2x the minimum set by the binding bucket, by 1 and by 3 processes of",
            "one group on one account; 429s at most 0.5% of requests; the final Zendesk state exactly right,",
            "no Sunshine event lost or duplicated.",
        ],
        f".venv/bin/python -m ops.benchmarks.economy_bench drain --events {args.events} --users {args.users}",
        source,
        load,
    )
    lines += [
        f"Workload: the mix ({workload.kinds['identify']:,} identifies, half unchanged repeats; {tracks:,} "
        f"tracks; {workload.kinds['group']:,} groups) in {PARTITIONS} partitions. Binding bucket: the events "
        f"API, {tracks:,} tracks / {ENTERPRISE_RPM} per min = **{floor:.0f} s**. Time is from the start of "
        "the processes to the exit of the last (start-up and group join included).",
        "",
        "| processes | wall s | wall / floor | requests | 429s | 429 share | peak RSS MiB | final state |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for arm in arms:
        lines.append(
            f"| {arm.processes} | {arm.wall_s:.1f} | {arm.wall_s / floor:.2f} | {arm.requests:,} | "
            f"{arm.rate_limited:,} | {arm.share_429:.2%} | {arm.peak_rss_mib:.0f} | "
            f"{verdict_text(arm.verdict)} |"
        )
    for arm in arms:
        if arm.verdict is not None:
            v = arm.verdict
            lines.append(
                f"\n{arm.name}: tracks lost {v.tracks_lost}, duplicated {v.tracks_duplicated}, users wrong "
                f"{v.users_wrong}, memberships missing {v.memberships_missing}."
            )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- 4. freshness


@dataclass
class Schedule:
    """Events to produce at their offsets from the start (seconds)."""

    at: list[float]
    records: list[tuple[str, bytes, str]]  # key, value, what it is: "identify:<user>" or "track:<n>"


def poisson(rate_per_s: float, duration_s: float, rng: random.Random) -> list[float]:
    times: list[float] = []
    now = 0.0
    while True:
        now += rng.expovariate(rate_per_s)
        if now >= duration_s:
            return times
        times.append(now)


def freshness_schedule(
    identifies_per_s: float, tracks_per_s: float, duration_s: float, seed: int, prefix: str
) -> Schedule:
    rng = random.Random(seed)
    events: list[tuple[float, tuple[str, bytes, str]]] = []
    for n, at in enumerate(poisson(identifies_per_s, duration_s, rng)):
        user = f"{prefix}-new-{n:06d}"
        value = identify(user, {"name": f"Fresh {n}", "plan": "pro"})
        events.append((at, (user, _json(value), f"identify:{user}")))
    for n, at in enumerate(poisson(tracks_per_s, duration_s, rng) if tracks_per_s else []):
        user = f"{prefix}-known-{n % 200:03d}"
        events.append((at, (user, _json(track(user, n)), f"track:{n}")))
    events.sort(key=lambda pair: pair[0])
    return Schedule([at for at, _ in events], [record for _, record in events])


def _json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def produce_on_schedule(bootstrap: str, topic: str, schedule: Schedule) -> dict[str, float]:
    """Produce each record at its time; what -> the broker's append time (LogAppendTime, seconds)."""
    appended: dict[str, float] = {}
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})

    def delivered(what: str) -> Callable[[Any, Message], None]:
        def report(err: Any, message: Message) -> None:
            if err is None:
                appended[what] = message.timestamp()[1] / 1000.0

        return report

    started = time.time()
    for at, (key, value, what) in zip(schedule.at, schedule.records, strict=True):
        while (delay := started + at - time.time()) > 0:
            producer.poll(min(delay, 0.05))
        producer.produce(topic, key=key, value=value, on_delivery=delivered(what))
        producer.poll(0)
    producer.flush(60)
    return appended


@dataclass(frozen=True)
class Freshness:
    name: str
    identifies: list[float]
    tracks: list[float]
    single: int
    bulk: int

    @staticmethod
    def p(values: list[float], q: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def applied_at(
    log: Sequence[Mapping[str, Any]], state: Mapping[str, Any]
) -> tuple[dict[str, float], int, int]:
    """what -> when Zendesk applied it: an identify's first successful upsert (request or job item) of its
    user; a track's events request (by the event id the simulator gave it)."""
    found: dict[str, float] = {}
    single = bulk = 0
    event_n = {e["id"]: (e.get("properties") or {}).get("n") for e in state["events"]}
    for entry in log:
        status, path = entry["status"], entry["path"]
        if status not in (200, 201, 202):
            continue
        if "create_or_update" in path and entry.get("user_key"):
            what = f"identify:{entry['user_key']}"
            if what not in found:
                found[what] = float(entry["at"])
                if entry["method"] == "JOB":
                    bulk += 1
                else:
                    single += 1
        elif family(entry) == "track" and entry.get("change"):
            n = event_n.get(entry["change"].get("event_id"))
            if isinstance(n, int):
                found.setdefault(f"track:{n}", float(entry["at"]))
    return found, single, bulk


def measure_freshness(
    name: str,
    *,
    bootstrap: str,
    simulator: RunningSimulator,
    work: Path,
    identifies_per_s: float,
    tracks_per_s: float,
    duration_s: float,
) -> Freshness:
    prefix = f"f{uuid.uuid4().hex[:6]}"
    topic = new_topic(bootstrap, "fresh", [], **{"message.timestamp.type": "LogAppendTime"})
    control = control_of(simulator)
    control.reset(request_log_limit=LOG_LIMIT, plan="enterprise")
    control.seed(
        users=[{"name": f"Known {n}", "external_id": f"{prefix}-known-{n:03d}"} for n in range(200)],
        user_fields=[{"key": "plan", "type": "text", "title": "Plan"}],
    )
    env = service_env(bootstrap, topic, f"{topic}-group", simulator)
    process = start_consumer(env, work / f"{topic}.log")
    try:
        warm = f"{prefix}-warm-up"
        produce(bootstrap, topic, [(warm, _json(identify(warm, {"name": "Warm up"})))], partition=None)
        deadline = time.monotonic() + 120
        while not control.requests(user_key=warm.lower(), method="POST") and not control.requests(
            user_key=warm, method="POST"
        ):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the consumer did not deliver the warm-up event; see {work / f'{topic}.log'}"
                )
            time.sleep(0.2)
        time.sleep(2.0)  # the warm-up's commit and the idle poll settle
        schedule = freshness_schedule(identifies_per_s, tracks_per_s, duration_s, seed=5, prefix=prefix)
        print(f"  {name}: producing {len(schedule.at):,} events over {duration_s:.0f}s ...", flush=True)
        appended = produce_on_schedule(bootstrap, topic, schedule)
        expected = set(appended)
        deadline = time.monotonic() + 300
        while True:
            found, single, bulk = applied_at(control.requests(since=0), control.state())
            if expected <= found.keys():
                break
            if time.monotonic() > deadline or process.poll() is not None:
                missing = len(expected - found.keys())
                raise RuntimeError(f"{name}: {missing} events never reached Zendesk; see {work}")
            time.sleep(1.0)
    finally:
        stop_consumer(process)
        control.close()
    ids = [found[w] - appended[w] for w in expected if w.startswith("identify:")]
    trs = [found[w] - appended[w] for w in expected if w.startswith("track:")]
    result = Freshness(name, ids, trs, single, bulk)
    print(
        f"  {name}: identify p50 {result.p(ids, 0.5) * 1000:.0f} ms p99 {result.p(ids, 0.99) * 1000:.0f} ms; "
        f"track p50 {result.p(trs, 0.5) * 1000:.0f} ms p99 {result.p(trs, 0.99) * 1000:.0f} ms; "
        f"identifies single {single}, in jobs {bulk}",
        flush=True,
    )
    return result


def bench_freshness(args: argparse.Namespace, bootstrap: str, source: str, work: Path, load: str) -> str:
    with simulator_process() as simulator:
        light = measure_freshness(
            "light: 0.5 identifies/s + 3 tracks/s",
            bootstrap=bootstrap,
            simulator=simulator,
            work=work,
            identifies_per_s=0.5,
            tracks_per_s=3.0,
            duration_s=args.light_s,
        )
        heavy = measure_freshness(
            "needs bulk: 50 identifies/s",
            bootstrap=bootstrap,
            simulator=simulator,
            work=work,
            identifies_per_s=50.0,
            tracks_per_s=0.0,
            duration_s=args.heavy_s,
        )
    lines = header(
        "## Rate economy: freshness",
        [
            "Goal: from Kafka append to the Zendesk request that applies the event, p99 at most 100 ms at",
            "light load (the single path has budget there), and at most 1 s plus the linger (250 ms) under a",
            "load that needs bulk jobs.",
        ],
        f".venv/bin/python -m ops.benchmarks.economy_bench freshness --light-s {args.light_s:g} "
        f"--heavy-s {args.heavy_s:g}",
        source,
        load,
    )
    lines += [
        "Append time: the broker's LogAppendTime of each record (topic setting "
        "`message.timestamp.type=LogAppendTime`). Applied: the simulator's time of the request that wrote "
        "the "
        "user (single path) or of the job item that did (bulk path: later than the job's POST), and of the "
        "events request for a track. Same machine, same clock. Poisson arrivals; identifies create new "
        "users; tracks go to 200 users that exist in Zendesk but not yet in the service's cache. Simulator "
        "at Enterprise limits, every service setting at its default, one process, warmed up by one event.",
        "",
        "| load | identifies | identify p50 ms | identify p99 ms | tracks | track p50 ms | track p99 ms "
        "| identifies by single request / in jobs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for f in (light, heavy):
        lines.append(
            f"| {f.name} | {len(f.identifies):,} | {f.p(f.identifies, 0.5) * 1000:.0f} | "
            f"{f.p(f.identifies, 0.99) * 1000:.0f} | {len(f.tracks):,} | "
            + (f"{f.p(f.tracks, 0.5) * 1000:.0f} | {f.p(f.tracks, 0.99) * 1000:.0f}" if f.tracks else "- | -")
            + f" | {f.single} / {f.bulk} |"
        )
    # What Zendesk's one user write per second per account allows the light load (Poisson arrivals).
    refill_s = 1 / ACCOUNT_CREATE_UPDATE_PER_S
    rate = 0.5
    no_token = 1 - math.exp(-rate * refill_s)
    single_p99_s = refill_s + math.log(0.99) / rate  # the wait of an arrival at the 1st percentile gap
    lines += [
        "",
        f"Reading: Zendesk allows one user write (create_or_update or update) per second per account; the "
        f"governor spaces them {refill_s:.2f} s apart. At {rate:g} identifies/s, Poisson, "
        f"{no_token:.0%} of identifies arrive less than {refill_s:.2f} s after the previous one, when the "
        f"single path has no token. Sent one at a time, their p99 wait would be {refill_s:.2f} - "
        f"{-math.log(0.99) / rate:.2f} = {single_p99_s:.2f} s. The service sends those in a job instead, "
        "which the simulator applies about 0.55 s after arrival (250 ms linger, 100 ms queued, 205 ms "
        "working), and that is the light load's identify p99. Tracks have their own bucket with room and "
        "stay near their request time. A p99 of 100 ms for identifies at this rate would need more than one "
        "user write a second, which Zendesk does not allow.",
    ]
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------- 5. headroom


def pure_part(workload: Workload) -> float:
    """Microseconds per event to decode, validate and plan the workload's records, in this process, with the
    custom fields known (the steady state)."""
    settings = DestinationSettings.parse({"events": ["*"]})
    # As the service holds it once the workloads' custom fields exist (the first events create them).
    known = Known.from_zendesk(
        user_fields=[
            {"key": "plan", "type": "text"},
            {"key": "logins", "type": "integer"},
            {"key": "in_winter_sale_audience", "type": "checkbox"},
        ],
        organization_fields=[],
    )
    values = [value for _, value in workload.records]
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        for value in values:
            plan(validate(decode_json(value)), settings, known)
        best = min(best, time.perf_counter() - started)
    return best / len(values) * 1e6


HEADROOM_SIMULATOR: Final = {
    "rate_limits": False,
    "job_queued_ms": 0,
    "job_working_ms": 0,
    "job_ms_per_item": 0,
    "job_workers": 0,
}


def bench_headroom(args: argparse.Namespace, bootstrap: str, source: str, work: Path, load: str) -> str:
    workloads = [
        ("the mix", mix(events=args.events, users=args.users, organizations=args.organizations, seed=13)),
        ("identifies only (one per user)", audience(args.events)),
    ]
    # The pure part first, while nothing else runs on the machine.
    micros = {name: pure_part(workload) for name, workload in workloads}
    arms: list[tuple[str, Workload, Arm, float]] = []
    with simulator_process() as simulator:
        for name, workload in workloads:
            topic = new_topic(bootstrap, "headroom", workload.records)
            print(f"headroom, {name}: {len(workload.records):,} events produced", flush=True)
            arm = run_arm(
                f"bulk always, no limits, {name}",
                bootstrap=bootstrap,
                topic=topic,
                simulator=simulator,
                work=work,
                simulator_options=HEADROOM_SIMULATOR,
                settings={"STREAM_BULK": "always"},
                workload=workload,
            )
            arms.append((name, workload, arm, micros[name]))
    lines = header(
        "## Rate economy: engine headroom",
        [
            "Goal: with Zendesk out of the way (simulator without limits, no latency, jobs done at once), at",
            "least 5,000 events/s through one process (decode, plan, bulk send, commit), and the pure part",
            "(decode, validate, plan) at most 20 us per event.",
        ],
        f".venv/bin/python -m ops.benchmarks.economy_bench headroom --events {args.events} "
        f"--users {args.users}",
        source,
        load,
    )
    lines += [
        f"Workloads: the mix, {args.events:,} events over {args.users:,} users (a track is one events "
        f"request: Zendesk has no bulk form), and {args.events:,} identifies of distinct users (all of "
        f"them bulk); {PARTITIONS} partitions, STREAM_BULK=always, other settings at their defaults. "
        "Rate over the span from the first to the last request an event caused; CPU is the consumer "
        "process's user + system time over the whole run (start-up included); the pure part is the best of "
        "five passes over the same records in the benchmark's own process, with the custom fields known, "
        "timed before the broker has work and the simulator runs.",
        "",
        "| workload | events | events/s | span s | wall s | requests | CPU s | CPU ms per event "
        "| peak RSS MiB | pure part us/event | final state |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, workload, arm, micro in arms:
        events = len(workload.records)
        lines.append(
            f"| {name} | {events:,} | {events / arm.span_s:,.0f} | {arm.span_s:.1f} | {arm.wall_s:.1f} | "
            f"{arm.requests:,} | {arm.cpu_s:.1f} | {arm.cpu_s / events * 1000:.2f} | "
            f"{arm.peak_rss_mib:.0f} | "
            f"{micro:.1f} | {verdict_text(arm.verdict)} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ main

BENCHES = {
    "requests": ("## Rate economy: requests per event", bench_requests),
    "audience": ("## Rate economy: audience sync", bench_audience),
    "drain": ("## Rate economy: backlog drain", bench_drain),
    "freshness": ("## Rate economy: freshness", bench_freshness),
    "headroom": ("## Rate economy: engine headroom", bench_headroom),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", choices=[*BENCHES, "all"])
    parser.add_argument("--events", type=int)
    parser.add_argument("--users", type=int)
    parser.add_argument("--organizations", type=int, default=200)
    parser.add_argument("--scale", type=float, default=10.0, help="requests: Enterprise limits x this")
    parser.add_argument(
        "--in-flight", type=int, default=0, help="audience: STREAM_MAX_IN_FLIGHT (0: default)"
    )
    parser.add_argument("--light-s", type=float, default=200.0)
    parser.add_argument("--heavy-s", type=float, default=60.0)
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a service setting for every arm"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    EXTRA_SETTINGS.update(item.split("=", 1) for item in args.env)
    defaults = {
        "requests": (100_000, 10_000),
        "audience": (0, 100_000),
        "drain": (10_000, 1_000),
        "freshness": (0, 0),
        "headroom": (50_000, 5_000),
    }
    chosen = list(BENCHES) if args.bench == "all" else [args.bench]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    tmp = tempfile.mkdtemp(prefix="economy-bench-")  # kept: the consumers' logs, for a look afterwards
    with broker() as (bootstrap, source):
        print(f"broker {bootstrap} ({source}); logs in {tmp}", flush=True)
        for name in chosen:
            section, bench = BENCHES[name]
            run_args = argparse.Namespace(**vars(args))
            events, users = defaults[name]
            run_args.events = args.events or events
            run_args.users = args.users or users
            started = time.monotonic()
            text = bench(run_args, bootstrap, source, Path(tmp), load)
            print(f"\n{text}\n({name}: {time.monotonic() - started:.0f} s)", flush=True)
            if not args.no_write:
                write_section(section, text)
                print(f"written to {RESULTS.relative_to(REPO)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
