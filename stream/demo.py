"""`zendesk-stream demo`: the whole path on one machine, with real parts.

A local Apache Kafka broker (ops/kafka, KRaft), the Zendesk simulator as a real HTTP server, the sample
Segment events of `stream/samples/segment-events.jsonl` (the seed's own examples, deliberate skips and
dead letters, and a few dozen customers), the consumer until it has caught up, then what reached
"Zendesk" according to the simulator.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from confluent_kafka import Producer

from stream.config import engine_options_from_env, load_config
from stream.engine.stats import Stats
from stream.errors import ConfigError
from stream.events import event_key
from stream.kafka.admin import KafkaAdmin
from stream.kafka.config import kafka_settings_from_env
from stream.localkafka import LAUNCHER, load_launcher
from stream.observability import configure_logging
from stream.service import run_service
from stream.simulator.testing import run_simulator
from stream.topics import CreateTopic, load_specs, plan_changes

REPO = Path(__file__).resolve().parent.parent
SAMPLES = Path(__file__).resolve().parent / "samples" / "segment-events.jsonl"
DEMO_PORT = 19092  # below Linux's ephemeral port range, where outgoing sockets could hold it
DEMO_SETTINGS = {"events": ["Article Completed"], "removeUsersFromOrganizations": True, "verified": True}


def say(text: str) -> None:
    print(text, flush=True)


def run_demo(env: Mapping[str, str], *, keep_kafka: bool) -> int:
    """The terminal shows the steps, one live progress line and the summary; the service's own log
    goes to a file, whose path is printed (it would drown the summary)."""
    log_path = Path(tempfile.gettempdir()) / f"zendesk-stream-demo-{time.strftime('%Y%m%d-%H%M%S')}.log"
    with log_path.open("w") as log_file:
        configure_logging(
            {**env, "STREAM_LOG_FORMAT": env.get("STREAM_LOG_FORMAT", "json")}, destination=log_file
        )
        say(f"the service's log: {log_path}")
        return _demo(env, keep_kafka=keep_kafka)


def _demo(env: Mapping[str, str], *, keep_kafka: bool) -> int:
    launcher = load_launcher()
    data_dir = Path(tempfile.mkdtemp(prefix="zendesk-stream-demo-kafka-"))
    try:
        base_port = launcher.free_base_port(start=DEMO_PORT)  # a user's own Kafka may sit on 9092
    except launcher.LauncherError as err:
        raise ConfigError(f"local Kafka: {err}") from None
    say(f"1. local Kafka (KRaft, data in {data_dir}) ...")
    began = time.monotonic()
    try:
        cluster = launcher.start(data_dir, 1, base_port, None, 180.0)
    except launcher.LauncherError as err:
        raise ConfigError(f"local Kafka: {err}") from None
    say(f"   ready at {cluster.bootstrap} in {time.monotonic() - began:.1f}s")
    try:
        return _with_kafka(cluster.bootstrap, env)
    finally:
        if keep_kafka:
            say(f"local Kafka left running; stop it with: python3 {LAUNCHER} --data-dir {data_dir} stop")
        else:
            for node in cluster.nodes:
                launcher.stop_node(node)
            shutil.rmtree(data_dir, ignore_errors=True)
            say("local Kafka stopped (use --keep-kafka to leave it running)")


def _with_kafka(bootstrap: str, env: Mapping[str, str]) -> int:
    say("2. Zendesk simulator ...")
    with run_simulator(extra_args=["--plan", "enterprise", "--limit-scale", "20"]) as simulator:
        say(f"   listening at {simulator.base_url} (Enterprise limits x20, to keep the demo short)")
        run_id = time.strftime("%Y%m%d-%H%M%S")
        demo_env = {
            **{k: v for k, v in env.items() if k.startswith("STREAM_LOG")},
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "STREAM_TOPIC": f"demo-{run_id}.segment.events",
            "STREAM_GROUP_ID": f"zendesk-stream-demo-{run_id}",
            "ZENDESK_SUBDOMAIN": "demo",
            "ZENDESK_BASE_URL": simulator.base_url,
            "ZENDESK_EMAIL": simulator.email or "",
            "ZENDESK_API_TOKEN": simulator.api_token or "",
            "ZENDESK_SETTINGS": json.dumps(DEMO_SETTINGS),
        }
        kafka = kafka_settings_from_env(demo_env)
        admin = KafkaAdmin(settings=kafka)
        specs = load_specs(kafka, replication_factor=1)
        admin.apply(a for a in plan_changes(specs, {}, broker_count=1) if isinstance(a, CreateTopic))
        count = _produce_samples(bootstrap, kafka.input_topic)
        say(f"3. produced {count} sample events to {kafka.input_topic}")
        say(f"4. consuming with settings {json.dumps(DEMO_SETTINGS)} ...")
        config = load_config(demo_env)
        progress = ProgressLine(total=count, out=sys.stdout)
        result = asyncio.run(
            run_service(config, engine_options_from_env(demo_env), exit_at_end=True, on_progress=progress)
        )
        progress.close()
        _print_summary(result.summary, simulator.control.state(), simulator.control.requests())
        return result.exit_code


class ProgressLine:
    """`events done of total, rate`: rewritten in place on a terminal, a plain line every few seconds
    otherwise (a log file, CI)."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, *, total: int, out: TextIO) -> None:
        self._total = total
        self._out = out
        self._began = time.monotonic()
        self._printed_at = 0.0
        self._live = out.isatty()
        self._last = ""

    def __call__(self, stats: Stats) -> None:
        elapsed = max(time.monotonic() - self._began, 1e-6)
        done = min(stats.settled, self._total)
        self._last = f"   {done} of {self._total} events done, {done / elapsed:.0f}/s, {elapsed:.1f}s"
        if self._live:
            self._out.write("\r" + self._last + "\x1b[K")
            self._out.flush()
        elif time.monotonic() - self._printed_at >= self.PLAIN_EVERY_S:
            self._printed_at = time.monotonic()
            say(self._last)

    def close(self) -> None:
        if self._live:
            self._out.write("\n")
        else:
            say(self._last)
        self._out.flush()


def _produce_samples(bootstrap: str, topic: str) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    lines = [line for line in SAMPLES.read_bytes().splitlines() if line.strip()]
    for line in lines:
        try:
            key = event_key(None, json.loads(line))
        except (ValueError, AttributeError):
            key = None
        producer.produce(topic, key=key.encode() if key else None, value=line)
    if producer.flush(30) != 0:
        raise ConfigError("local Kafka did not accept the sample events within 30s")
    return len(lines)


def _print_summary(summary: Mapping[str, Any], state: Mapping[str, Any], requests: Any) -> None:
    users = state.get("users", [])
    organizations = state.get("organizations", [])
    memberships = state.get("memberships", state.get("organization_memberships", []))
    events = state.get("events", [])
    user_fields = state.get("user_fields", [])
    org_fields = state.get("organization_fields", [])
    calls = Counter(f"{r.get('method')} {r.get('status')}" for r in _request_list(requests))
    say("\n5. what reached Zendesk (the simulator's state):")
    say(f"   users: {len(users)}  organizations: {len(organizations)}  memberships: {len(memberships)}")
    say(f"   Sunshine events: {len(events)}")
    say(f"   custom fields: {len(user_fields)} user, {len(org_fields)} organization")
    for user in users[:3]:
        fields = {k: v for k, v in (user.get("user_fields") or {}).items() if v is not None}
        say(f"   e.g. user {user.get('name')!r} external_id={user.get('external_id')} fields={fields}")
    say(f"   HTTP calls by method and status: {dict(sorted(calls.items()))}")
    say("\n   the consumer's own account:")
    say(
        f"   received {summary['received']}, delivered {summary['delivered']} "
        f"({summary['operations']} operations planned), max in flight {summary['max_in_flight_seen']}"
    )
    say(f"   skipped (committed, not sent): {summary['skipped']}")
    say(f"   dead-lettered (see the .dlq topic headers): {summary['dead_lettered']}")
    say(f"   zendesk client: {summary.get('zendesk', {})}")


def _request_list(requests: Any) -> list[Mapping[str, Any]]:
    if isinstance(requests, Mapping):
        requests = requests.get("requests", [])
    return [r for r in requests if isinstance(r, Mapping)] if isinstance(requests, list) else []
