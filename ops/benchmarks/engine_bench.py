"""Key-parallel lanes against partition-sequential processing, and memory under a poison storm.

    .venv/bin/python -m ops.benchmarks.engine_bench [--events 2000] [--keys 1000] [--latency-ms 50]
                                                    [--lanes-in-flight 100] [--poison 50000] [--no-write]

One run, one workload, both arms: N identify events over K keys (each one `create_or_update` call to
Zendesk, no lookups, so both arms make exactly the same requests) in ONE partition, read by
`zendesk-stream run --exit-at-end` as a real process against the Zendesk simulator (rate limits off, a
fixed latency per request, no jitter). The arms differ only in STREAM_MAX_IN_FLIGHT: the lanes arm lets up
to `--lanes-in-flight` keys run at once; with STREAM_MAX_IN_FLIGHT=1 and one partition the engine is
exactly partition-sequential. Each arm has its own consumer group on the same topic and starts from an
empty simulator.

Throughput is measured on Zendesk's side: events / (last request - first request) from the simulator's
request log, so Kafka start-up and group join are not counted (the wall time of each process is shown
too). Peak memory is the consumer process's own peak RSS (`ru_maxrss` from `os.wait4` on that child).

Poison storm: `--poison` malformed records (three kinds, over 2,000 keys) go to the dead-letter topic;
the consumer's RSS is sampled every 0.1 s from /proc; reported at a quarter, half and three quarters of
the run, at the end, and its peak (VmHWM).

The broker: KAFKA_BOOTSTRAP_SERVERS when set, otherwise a one-node broker started with ops/kafka's native
launcher in a temporary directory (and stopped at the end). Prints the figures; unless `--no-write`,
writes them as the `## Engine` section of ops/benchmarks/RESULTS.md (replacing an earlier one).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from httpx_aiohttp import AiohttpTransport

from ops.benchmarks.common import (
    REPO,
    RESULTS,
    broker,
    create_topics,
    machine,
    produce,
    run_consumer,
    service_env,
    write_section,
)
from stream.simulator.testing import RunningSimulator, run_simulator

SECTION = "## Engine"
COMPARE_SECTION = "## Engine: this tree against an earlier one"


# ------------------------------------------------------------------------------------------ broker


# --------------------------------------------------------------------------------------- consumer


# ------------------------------------------------------------------------------------------- arms


def identify_events(events: int, keys: int) -> list[tuple[str, bytes]]:
    records = []
    for n in range(events):
        key = f"bench-{n % keys:05d}"
        event = {
            "type": "identify",
            "userId": key,
            "messageId": str(uuid.uuid4()),
            "traits": {"name": f"User {key} v{n // keys}"},
            "timestamp": "2026-11-29T10:00:00.000Z",
        }
        records.append((key, json.dumps(event).encode()))
    return records


@dataclass(frozen=True)
class Arm:
    name: str
    in_flight: int
    events: int
    requests: int
    span_s: float
    wall_s: float
    max_rss_kib: int

    @property
    def events_per_s(self) -> float:
        return self.events / self.span_s


def run_arm(
    name: str,
    *,
    in_flight: int,
    bootstrap: str,
    topic: str,
    simulator: RunningSimulator,
    events: int,
    work: Path,
    code: Path = REPO,
    group: str | None = None,
) -> Arm:
    """One arm. An older checkout (`code`) gets only the settings it knows: newer versions refuse an
    unknown STREAM_* or ZENDESK_* variable."""
    simulator.control.reset()
    group = group or f"{topic}-{name}"
    # One request per event in both arms: the economy (coalescing, skipping unchanged writes) is the
    # economy benchmark's subject, not this one's.
    env = service_env(
        bootstrap,
        topic,
        group,
        simulator,
        STREAM_MAX_IN_FLIGHT=str(in_flight),
        STREAM_BULK="off",
        STREAM_COALESCE="false",
        STREAM_UNCHANGED_TTL_S="0",
    )
    known = _settings_known_to(code)
    if known is not None:
        env = {k: v for k, v in env.items() if not k.startswith(("STREAM_", "ZENDESK_")) or k in known}
    timeout = max(600.0, events * 0.2)
    finished = run_consumer(env, work / f"{group}.log", timeout_s=timeout, code=code)
    if finished.exit_code != 0:
        raise RuntimeError(f"the {name} arm exited {finished.exit_code}; see {work / f'{name}.log'}")
    upserts = simulator.control.requests(method="POST", path="create_or_update")
    ok = [r for r in upserts if r["status"] in (200, 201)]
    if len(ok) != events:
        raise RuntimeError(f"the {name} arm made {len(ok)} successful upserts for {events} events")
    times = [float(r["at"]) for r in ok]
    span = max(times) - min(times)
    return Arm(name, in_flight, events, len(upserts), span, finished.wall_s, finished.max_rss_kib)


def _settings_known_to(code: Path) -> set[str] | None:
    """The STREAM_*/ZENDESK_* names a checkout declares (None: it declares none and ignores others)."""
    for candidate in (code / "stream" / "environment.py", code / "stream" / "config.py"):
        if candidate.exists() and "ENVIRONMENT" in (text := candidate.read_text()):
            return set(re.findall(r'"((?:STREAM|ZENDESK)_[A-Z0-9_]+)"', text))
    return None


@dataclass(frozen=True)
class Storm:
    records: int
    wall_s: float
    quarters_mib: list[float]
    end_mib: float
    peak_mib: float
    max_rss_kib: int


def run_storm(bootstrap: str, simulator: RunningSimulator, count: int, work: Path) -> Storm:
    topic = f"bench-poison-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic, f"{topic}.dlq", f"{topic}.retry"])
    kinds = [b"{not json", b"[1]", json.dumps({"type": "track", "userId": "x"}).encode()]
    produce(bootstrap, topic, [(f"k{i % 2000}", kinds[i % 3]) for i in range(count)])
    env = service_env(bootstrap, topic, f"{topic}-group", simulator)
    finished = run_consumer(env, work / "poison.log", timeout_s=900, sample=True)
    if finished.exit_code != 0:
        raise RuntimeError(f"the poison storm run exited {finished.exit_code}; see {work / 'poison.log'}")
    samples = finished.samples_kib
    quarters = [samples[len(samples) * q // 4] / 1024 for q in (1, 2, 3)]
    peak = max(finished.hwm_kib, finished.max_rss_kib) / 1024
    return Storm(count, finished.wall_s, quarters, samples[-1] / 1024, peak, finished.max_rss_kib)


# ------------------------------------------------------------------------------ HTTP client ceiling


@dataclass(frozen=True)
class Ceiling:
    requests: int
    concurrency: int
    httpx_service: float
    httpx_wide: float
    raw: float


async def client_ceiling(simulator: RunningSimulator, requests: int, concurrency: int) -> Ceiling:
    """How many requests/s one asyncio process gets from the simulator at this latency, `concurrency`
    at a time: through httpx with the aiohttp transport (as the service's Zendesk client uses it), through
    httpx with its default transport (httpcore), and through bare asyncio streams (HTTP/1.1 keep-alive)."""
    simulator.control.reset()
    auth = "Basic " + base64.b64encode(f"{simulator.email}/token:{simulator.api_token}".encode()).decode()
    path = "/api/v2/user_fields.json"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def through_httpx(transport: httpx.AsyncBaseTransport | None) -> float:
        async with httpx.AsyncClient(
            base_url=simulator.base_url, headers={"Authorization": auth}, limits=limits, transport=transport
        ) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with gate:
                    (await client.get(path)).raise_for_status()

            started = time.monotonic()
            await asyncio.gather(*(one() for _ in range(requests)))
            return requests / (time.monotonic() - started)

    async def through_streams() -> float:
        host, port = simulator.base_url.removeprefix("http://").rsplit(":", 1)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n\r\n".encode()

        async def connection(count: int) -> None:
            reader, writer = await asyncio.open_connection(host, int(port))
            for _ in range(count):
                writer.write(request)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length:\s*(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
            writer.close()

        started = time.monotonic()
        await asyncio.gather(*(connection(requests // concurrency) for _ in range(concurrency)))
        return (requests // concurrency) * concurrency / (time.monotonic() - started)

    return Ceiling(
        requests=requests,
        concurrency=concurrency,
        httpx_service=await through_httpx(AiohttpTransport(limits=limits)),
        httpx_wide=await through_httpx(None),
        raw=await through_streams(),
    )


# ---------------------------------------------------------------------------------------- report


def report(
    args: argparse.Namespace,
    *,
    source: str,
    arms: list[Arm],
    storm: Storm | None,
    ceiling: Ceiling | None,
    load: str,
) -> str:
    lanes, sequential = arms[0], arms[1]
    speedup = lanes.events_per_s / sequential.events_per_s
    lines = [
        SECTION,
        "",
        "Goal: on one partition, key-parallel lanes beat partition-sequential processing by at least 30x",
        "when Zendesk answers in 50 ms; memory stays flat under a poison storm.",
        "",
        "Command:",
        "",
        "```sh",
        f".venv/bin/python -m ops.benchmarks.engine_bench --events {args.events} --keys {args.keys} "
        f"--latency-ms {args.latency_ms:g} --lanes-in-flight {args.lanes_in_flight} --poison {args.poison} "
        f"--ceiling-requests {args.ceiling_requests}",
        "```",
        "",
        f"Workload: {args.events:,} identify events over {args.keys:,} keys in one partition, one",
        "`create_or_update` call each, simulator with rate limits off and a fixed latency of "
        f"{args.latency_ms:g} ms (no jitter).",
        "Each arm is `zendesk-stream run --exit-at-end` as its own process (own consumer group, same topic,",
        "simulator reset in between); events/s over the span from the first to the last Zendesk request.",
        f"Broker: {source}. Machine: {machine()}; load average before the run {load}.",
        f"Measured {datetime.now(UTC):%Y-%m-%d}:",
        "",
        "| arm | STREAM_MAX_IN_FLIGHT | events | Zendesk requests | span s | events/s | wall s "
        "| peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm in arms:
        lines.append(
            f"| {arm.name} | {arm.in_flight} | {arm.events:,} | {arm.requests:,} | {arm.span_s:.1f} | "
            f"{arm.events_per_s:,.1f} | {arm.wall_s:.1f} | {arm.max_rss_kib / 1024:.0f} |"
        )
    lines += ["", f"Speed-up of lanes over partition-sequential: **{speedup:.1f}x** (goal: at least 30x)."]
    ideal = min(lanes.in_flight, args.keys) / (args.latency_ms / 1000)
    lines += [
        "",
        f"Reading: bound by latency alone, {lanes.in_flight} keys in flight at {args.latency_ms:g} ms would "
        f"give {ideal:,.0f} events/s; the lanes arm reached {lanes.events_per_s:,.0f} "
        f"({lanes.events_per_s / ideal:.0%} of that).",
    ]
    if ceiling is not None:
        lines[-1] += (
            f" With no engine at all, the service's HTTP client setup gets {ceiling.httpx_service:,.0f} "
            f"requests/s from the same simulator ({ceiling.raw:,.0f} through bare asyncio streams); the rest "
            "of the gap is the engine's own work per event (decode, plan, log, commit), on two cores shared "
            "with the broker and the simulator. httpx's default transport (httpcore) would cap it far lower: "
            "its pool costs O(queued x connections) per request, which is why the client uses aiohttp's."
        )
        lines += [
            "",
            f"The HTTP client's own ceiling: {ceiling.requests:,} requests to the same simulator "
            f"({args.latency_ms:g} ms), {ceiling.concurrency} at a time, from one asyncio process:",
            "",
            "| client | requests/s |",
            "|---|---:|",
            f"| httpx with the aiohttp transport, as the service's Zendesk client ({ceiling.concurrency} "
            f"connections) | {ceiling.httpx_service:,.0f} |",
            f"| httpx with its default transport, httpcore ({ceiling.concurrency} connections) "
            f"| {ceiling.httpx_wide:,.0f} |",
            f"| raw asyncio streams, {ceiling.concurrency} keep-alive connections | {ceiling.raw:,.0f} |",
        ]
    if storm is not None:
        q = storm.quarters_mib
        lines += [
            "",
            f"Poison storm: {storm.records:,} malformed records (invalid JSON, a JSON array, a track "
            f"without a name; 2,000 keys) to the dead-letter topic in {storm.wall_s:.1f} s "
            f"({storm.records / storm.wall_s:,.0f} records/s). Consumer RSS: {q[0]:.0f} MiB at a quarter "
            f"of the run, {q[1]:.0f} at half, {q[2]:.0f} at three quarters, {storm.end_mib:.0f} at the end; "
            f"peak {storm.peak_mib:.0f} MiB.",
        ]
    return "\n".join(lines) + "\n"


def compare(
    args: argparse.Namespace, *, bootstrap: str, topic: str, simulator: RunningSimulator, work: Path
) -> str:
    """This tree's lanes arm against another checkout's, alternating, each in its own consumer group."""
    trees = {"this tree": REPO, str(args.compare_with): args.compare_with.resolve()}
    rates: dict[str, list[float]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        for name, code in trees.items():
            arm = run_arm(
                "lanes",
                in_flight=args.lanes_in_flight,
                bootstrap=bootstrap,
                topic=topic,
                simulator=simulator,
                events=args.events,
                work=work,
                code=code,
                group=f"{topic}-cmp-{round_}-{len(rates[name])}-{abs(hash(name)) % 10_000}",
            )
            rates[name].append(arm.events_per_s)
            print(f"round {round_ + 1}, {name}: {arm.events_per_s:,.1f} events/s", flush=True)
    ours, theirs = (statistics.median(r) for r in rates.values())
    verdict = (
        f"median events/s: this tree {ours:,.1f}, {args.compare_with} {theirs:,.1f}; "
        f"ratio {ours / theirs:.3f}"
    )
    print(verdict)
    mine, other = rates.values()
    return (
        "\n".join(
            [
                COMPARE_SECTION,
                "",
                "Goal: the engine's rework costs nothing beyond noise: this tree's lanes arm against",
                "an earlier checkout's, alternating in one run, same topic, same simulator, one request",
                "per event (bulk, coalescing and skipping off where the tree knows them).",
                "",
                "Command:",
                "",
                "```sh",
                f".venv/bin/python -m ops.benchmarks.engine_bench --compare-with {args.compare_with} "
                f"--rounds {args.rounds} --events {args.events} --keys {args.keys} "
                f"--latency-ms {args.latency_ms:g} --lanes-in-flight {args.lanes_in_flight}",
                "```",
                "",
                f"Machine: {machine()}. Measured {datetime.now(UTC):%Y-%m-%d}. Earlier tree: "
                f"`{_head_of(args.compare_with)}`; this tree: `{_head_of(REPO)}`.",
                "",
                "| round | this tree events/s | earlier tree events/s |",
                "|---:|---:|---:|",
                *(
                    f"| {n + 1} | {a:,.1f} | {b:,.1f} |"
                    for n, (a, b) in enumerate(zip(mine, other, strict=True))
                ),
                "",
                f"Medians: {ours:,.1f} against {theirs:,.1f} events/s, ratio **{ours / theirs:.3f}**.",
            ]
        )
        + "\n"
    )


def _head_of(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()[:80] or str(tree)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--lanes-in-flight", type=int, default=100)
    parser.add_argument("--poison", type=int, default=50_000, help="records of the poison storm (0: skip)")
    parser.add_argument(
        "--ceiling-requests",
        type=int,
        default=1_000,
        help="requests of the HTTP client ceiling probe (0: skip)",
    )
    parser.add_argument(
        "--compare-with",
        type=Path,
        metavar="DIR",
        help="another checkout: its lanes arm runs alternately with this tree's, in the same run",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternations for --compare-with")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    with broker() as (bootstrap, source), tempfile.TemporaryDirectory(prefix="engine-bench-") as tmp:
        work = Path(tmp)
        print(f"broker {bootstrap} ({source})", flush=True)
        topic = f"bench-lanes-{uuid.uuid4().hex[:8]}"
        create_topics(bootstrap, [topic, f"{topic}.dlq", f"{topic}.retry"])
        produce(bootstrap, topic, identify_events(args.events, args.keys))
        simulator_args = ["--no-rate-limits", "--latency-ms", f"{args.latency_ms:g}"]
        with run_simulator(extra_args=simulator_args) as simulator:
            if args.compare_with is not None:
                text = compare(args, bootstrap=bootstrap, topic=topic, simulator=simulator, work=work)
                if not args.no_write:
                    write_section(COMPARE_SECTION, text)
                return 0
            arms = []
            plan = [("lanes", args.lanes_in_flight), ("partition-sequential", 1)]
            for name, in_flight in plan:
                arm = run_arm(
                    name,
                    in_flight=in_flight,
                    bootstrap=bootstrap,
                    topic=topic,
                    simulator=simulator,
                    events=args.events,
                    work=work,
                )
                print(
                    f"{name}: {arm.events_per_s:,.1f} events/s over {arm.span_s:.1f}s "
                    f"(wall {arm.wall_s:.1f}s), peak RSS {arm.max_rss_kib / 1024:.0f} MiB",
                    flush=True,
                )
                arms.append(arm)
            ceiling = None
            if args.ceiling_requests:
                ceiling = asyncio.run(client_ceiling(simulator, args.ceiling_requests, args.lanes_in_flight))
                print(f"client ceiling: {ceiling}", flush=True)
        storm = None
        if args.poison:
            with run_simulator(extra_args=["--no-rate-limits"]) as simulator:
                storm = run_storm(bootstrap, simulator, args.poison, work)
    text = report(args, source=source, arms=arms, storm=storm, ceiling=ceiling, load=load)
    print()
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
        print(f"written to {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
