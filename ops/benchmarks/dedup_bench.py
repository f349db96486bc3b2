"""What the memory of delivered events costs (README: "No Sunshine event posted twice").

Three figures, printed and written to RESULTS.md (`--no-write` leaves it alone):
1. **Memory per million ids**: `DeliveredMemory` loaded with a million markers, measured with
   tracemalloc (what the dicts and the 16-byte digests hold), and the time that load takes.
2. **The check per event**: delivery id (messageId, or the content hash) plus the lookup, best of five.
3. **End to end**: `zendesk-stream run --exit-at-end` over the same tracks with the memory on and with
   `STREAM_DEDUP_WINDOW=0`, alternating, simulator unlimited and without latency: the throughput ratio in
   one run, and the time a restarted member takes to read the markers back.

    .venv/bin/python -m ops.benchmarks.dedup_bench [--events 20000] [--rounds 2] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import tracemalloc
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

from ops.benchmarks.common import (
    broker,
    create_topics,
    machine,
    produce,
    run_consumer,
    service_env,
    write_section,
)
from stream.engine.delivered import DONE, DeliveredMemory
from stream.events import delivery_id, validate
from stream.simulator.testing import run_simulator

SECTION = "## Dedup memory"
MILLION = 1_000_000


def memory_per_million() -> tuple[float, float]:
    """MiB held by a million remembered ids, and the seconds their load takes."""
    markers = [(f"m:{uuid.UUID(int=i)}".encode(), DONE, 1_000.0 + i / 1000) for i in range(MILLION)]
    memory = DeliveredMemory(window_s=10**9)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    memory.load(0, markers, now_s=2_000.0)
    seconds = time.perf_counter() - started
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(memory) == MILLION
    return held / 2**20, seconds


def check_cost_us(with_message_id: bool) -> float:
    """Microseconds per event for its delivery id and the lookup, best of five rounds of 20,000."""
    events = []
    for i in range(20_000):
        raw = {"type": "track", "event": "Order Completed", "userId": f"u{i % 500}", "properties": {"n": i}}
        if with_message_id:
            raw["messageId"] = str(uuid.uuid4())
        events.append(validate(raw))
    memory = DeliveredMemory()
    memory.load(0, [(delivery_id(e), DONE, 1_000.0) for e in events[::2]], now_s=1_000.0)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for event in events:
            memory.has(0, delivery_id(event), now_s=1_000.0)
        best = min(best, (time.perf_counter() - started) / len(events))
    return best * 1e6


def track_events(count: int, users: int) -> list[tuple[str, bytes]]:
    return [
        (
            f"u{i % users}",
            json.dumps(
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": f"u{i % users}",
                    "messageId": str(uuid.uuid4()),
                    "properties": {"n": i},
                    "timestamp": "2026-12-01T10:00:00.000Z",
                }
            ).encode(),
        )
        for i in range(count)
    ]


def end_to_end(events: int, rounds: int, work: Path) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {"on": [], "off": [], "reread_s": []}
    with broker() as (bootstrap, _), run_simulator(extra_args=["--no-rate-limits"]) as simulator:
        records = track_events(events, 500)
        simulator.control.seed(users=[{"name": f"User {i}", "external_id": f"u{i}"} for i in range(500)])
        for round_number in range(rounds):
            for arm in ("on", "off"):
                topic = f"bench-dedup-{uuid.uuid4().hex[:8]}"
                create_topics(bootstrap, [topic, f"{topic}.retry", f"{topic}.dlq"], 4)
                produce(bootstrap, topic, records, partition=None)
                window = {"STREAM_DEDUP_WINDOW": "0"} if arm == "off" else {}
                env = service_env(
                    bootstrap,
                    topic,
                    f"{topic}-group",
                    simulator,
                    ZENDESK_SETTINGS='{"events": ["*"]}',
                    **window,
                )
                done = run_consumer(env, work / f"{arm}-{round_number}.log", timeout_s=1800)
                if done.exit_code != 0:
                    raise RuntimeError(f"the {arm} run exited {done.exit_code}; see {work}")
                figures[arm].append(events / done.wall_s)
                print(
                    f"round {round_number + 1} dedup {arm}: {events / done.wall_s:,.0f} events/s", flush=True
                )
                if arm == "on":  # a restarted member reads every marker back, and skips every event
                    env_again = {**env, "STREAM_GROUP_ID": f"{topic}-group"}
                    reset_group(bootstrap, f"{topic}-group", topic)
                    started = time.monotonic()
                    again = run_consumer(env_again, work / f"again-{round_number}.log", timeout_s=1800)
                    figures["reread_s"].append(time.monotonic() - started)
                    if again.exit_code != 0:
                        raise RuntimeError(f"the rerun exited {again.exit_code}; see {work}")
                    posted = len(simulator.control.state()["events"])
                    print(
                        f"  rewound, run again: {figures['reread_s'][-1]:.1f} s; events in Zendesk: {posted}"
                    )
                    if posted != events:
                        raise RuntimeError(f"{posted} events in Zendesk after the rewind, {events} sent")
                simulator.control.reset()
                simulator.control.seed(
                    users=[{"name": f"User {i}", "external_id": f"u{i}"} for i in range(500)]
                )
    return figures


def reset_group(bootstrap: str, group: str, topic: str) -> None:
    """`rewind --to-earliest --execute`, as the operator would run it."""
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.commit(offsets=[TopicPartition(topic, p, 0) for p in partitions], asynchronous=False)
    finally:
        consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    mib, load_s = memory_per_million()
    print(f"memory: {mib:.1f} MiB per million ids; loading a million markers: {load_s:.2f} s", flush=True)
    with_id, hashed = check_cost_us(True), check_cost_us(False)
    print(
        f"check per event: {with_id:.2f} us with messageId, {hashed:.2f} us with a content hash", flush=True
    )
    with TemporaryDirectory(prefix="dedup-bench-") as tmp:
        figures = end_to_end(args.events, args.rounds, Path(tmp))
    on, off = statistics.median(figures["on"]), statistics.median(figures["off"])
    print(f"end to end: {on:,.0f} events/s with the memory, {off:,.0f} without: {on / off:.2f}x", flush=True)
    reread = statistics.median(figures["reread_s"])
    text = f"""{SECTION}

Command: `.venv/bin/python -m ops.benchmarks.dedup_bench --events {args.events} --rounds {args.rounds}`.
Machine: {machine()}; shared, so compare the ratios, measured in the same run.

| figure | value |
|---|---:|
| memory per million remembered ids (tracemalloc) | {mib:.1f} MiB |
| loading a million markers into memory (CPU only) | {load_s:.2f} s |
| check per event, messageId (delivery id + lookup, best of 5) | {with_id:.2f} us |
| check per event, content hash (no messageId) | {hashed:.2f} us |
| `run --exit-at-end`, {args.events:,} tracks, memory on (median of {args.rounds}) | {on:,.0f} events/s |
| the same, `STREAM_DEDUP_WINDOW=0` | {off:,.0f} events/s |
| ratio on / off | {on / off:.2f}x |
| rewound to the start and run again (reads {args.events:,} markers, skips every event) | {reread:.1f} s |

Each track costs two marker writes (announced before it is sent, settled after), each confirmed by the
broker; Zendesk's budget is not touched. Rates per round, on: {", ".join(f"{x:,.0f}" for x in figures["on"])};
off: {", ".join(f"{x:,.0f}" for x in figures["off"])}.
"""
    if not args.no_write:
        write_section(SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
