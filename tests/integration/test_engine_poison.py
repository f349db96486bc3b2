"""Poison: malformed events go to the dead-letter topic with their reason, the rest of their key goes on
in order, and the consumer's memory stays flat under a storm of them.

Poison records share keys (lanes) with good events, so a poison record sits between good events of the
same key: the good ones must still reach Zendesk, in order, each once.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream.simulator.testing import run_simulator
from tests.support.engine import (
    EffectLog,
    RssSampler,
    Sequencer,
    create_side_topics,
    engine_summary,
    produce_in_order,
    read_log,
    seed_users,
    sequences_by_key,
    settings_for,
    user_keys,
)
from tests.support.kafka import consume, dlq_topic_of
from tests.support.segment import track
from tests.support.service import log_events, run_to_end, service_env, start_service

pytestmark = pytest.mark.kafka

LONG_NAME = "Checkout Completed With A Very Long Event Name"  # 46 characters, Zendesk allows 40
LONG_USER_ID = "u" * 61  # Zendesk's events API allows identifiers of at most 60 characters


def poison_kinds(key: str) -> list[tuple[str, str, bytes]]:
    """(expected reason, expected class, value) for each kind of poison we send on `key`."""
    return [
        ("invalid_payload", "invalid", b"{not json"),
        ("invalid_payload", "invalid", b"[1, 2, 3]"),
        ("invalid_payload", "invalid", b""),
        ("invalid_payload", "invalid", b'{"userId": "' + key.encode() + b'"}'),  # no type
        ("invalid_payload", "invalid", json.dumps({"type": "track", "userId": key}).encode()),  # no name
        ("event_name_too_long", "invalid", json.dumps(track(key, LONG_NAME)).encode()),
        ("identifier_too_long", "invalid", json.dumps(track(LONG_USER_ID, "seq-x")).encode()),
        ("user_not_found", "rejected", json.dumps(track(f"ghost-{key}", "Signed In")).encode()),
    ]


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def test_poison_goes_to_the_dlq_with_reasons_and_its_keys_go_on_in_order(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    partitions = 2
    topic = new_topic(partitions=partitions)
    dlq = dlq_topic_of(topic)
    create_side_topics(kafka_bootstrap, topic, partitions=partitions)
    rng = random.Random(17)
    with run_simulator(
        extra_args=["--no-rate-limits", "--latency-ms", "2", "--jitter-ms", "10"]
    ) as simulator:
        keys = user_keys(20)
        seed_users(simulator, keys)
        sequencer = Sequencer()
        histories: dict[str, list[tuple[tuple[str | None, bytes], tuple[str, str] | None]]] = {}
        for key in keys:
            history = histories[key] = [(sequencer.event(key), None)]
            for reason, error_class, value in poison_kinds(key):
                history.append(((key, value), (reason, error_class)))
                history.append((sequencer.event(key), None))
        # Interleave the keys' histories at random; each key keeps its own order.
        records: list[tuple[str | None, bytes]] = []
        expected: list[tuple[str, str]] = []  # (reason, class) per poison record, in production order
        poison_at: list[int] = []  # indexes of poison records in `records`
        while histories:
            key = rng.choice(sorted(histories))
            record, poison = histories[key].pop(0)
            if not histories[key]:
                del histories[key]
            if poison is not None:
                poison_at.append(len(records))
                expected.append(poison)
            records.append(record)
        produced = produce_in_order(kafka_bootstrap, topic, records)
        env = service_env(kafka_bootstrap, topic, simulator, settings_for("solo"))

        result = run_to_end(env, timeout_s=180)

        assert result.returncode == 0, result.stderr[-3000:]
        effects = EffectLog(simulator).refresh()

    # The good events: every one, once, in order per key, although poison sat between them.
    assert sequences_by_key(effects) == {key: list(range(n)) for key, n in sequencer.counts.items()}

    # The poison: each record once in the DLQ, with its reason, class and origin; key and value kept.
    dead = consume(kafka_bootstrap, dlq, count=len(poison_at), timeout_s=60)
    assert high_watermark(kafka_bootstrap, dlq) == len(poison_at), "a poison record was dead-lettered twice"
    origin = {produced.positions[i]: (records[i], expected[n]) for n, i in enumerate(poison_at)}
    seen = set()
    for message in dead:
        raw = message.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        headers = {str(k): v.decode() if isinstance(v, bytes) else str(v or "") for k, v in pairs}
        position = (int(headers["zs.original.partition"]), int(headers["zs.original.offset"]))
        assert position in origin, headers
        (record_key, value), (reason, error_class) = origin[position]
        assert headers["zs.original.topic"] == topic
        assert (headers["zs.error.reason"], headers["zs.error.class"]) == (reason, error_class), headers
        assert headers["zs.error.message"], headers
        assert int(headers["zs.attempts"]) >= 1
        assert "zs.first_failure_at" in headers and "zs.original.timestamp" in headers
        assert message.key() == (record_key.encode() if record_key else None)
        assert (message.value() or b"") == value
        seen.add(position)
    assert len(seen) == len(poison_at)

    summary = engine_summary(log_events(result.stderr))
    assert summary["dead_lettered"] == dict(Counter(reason for reason, _ in expected))
    assert summary["delivered"] == sequencer.total


def test_memory_stays_flat_under_a_poison_storm(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """20,000 malformed records over 2,000 keys; the consumer's resident memory is sampled every 0.1 s.
    A leak per record would show as growth from the first half of the run to the second."""
    count = 20_000
    topic = new_topic(partitions=1)
    create_side_topics(kafka_bootstrap, topic, partitions=1)
    values = [b"{not json", b"[1]", json.dumps({"type": "track", "userId": "x"}).encode()]
    records: list[tuple[str | None, bytes]] = [(f"k{i % 2000}", values[i % 3]) for i in range(count)]
    produce_in_order(kafka_bootstrap, topic, records)
    with run_simulator(extra_args=["--no-rate-limits"]) as simulator:
        env = service_env(kafka_bootstrap, topic, simulator, settings_for("solo"))
        log_path = tmp_path / "storm.log"
        started = time.monotonic()
        process = start_service(env, log_path, "--exit-at-end")
        sampler = RssSampler(process.pid, interval_s=0.1)
        try:
            code = process.wait(timeout=240)
        finally:
            sampler.stop()
            if process.poll() is None:
                process.kill()
    took = time.monotonic() - started
    assert code == 0, log_path.read_text()[-3000:]
    summary = engine_summary(read_log(log_path))
    assert sum(summary["dead_lettered"].values()) == count

    samples = [kib for _, kib in sampler.samples]
    assert len(samples) >= 20, "too few memory samples"
    first, second = samples[: len(samples) // 2], samples[len(samples) // 2 :]
    mib = 1024
    quarters = [samples[len(samples) * q // 4] / mib for q in (1, 2, 3)]
    print(
        f"\n[poison storm] {count} records in {took:.1f}s; RSS MiB at 1/4, 1/2, 3/4 of the run "
        f"{quarters[0]:.0f}, {quarters[1]:.0f}, {quarters[2]:.0f}, end {samples[-1] / mib:.0f}, "
        f"peak {sampler.peak_kib / mib:.0f}; max first half {max(first) / mib:.0f}, "
        f"max second half {max(second) / mib:.0f}"
    )
    assert max(second) - max(first) < 16 * mib, "resident memory grew during the storm"
