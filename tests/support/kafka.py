"""A real Kafka broker for the tests, and small helpers to produce and consume on it.

Broker choice (docs/contracts.md): `KAFKA_BOOTSTRAP_SERVERS` if set; testcontainers when a Docker
engine answers; otherwise the native launcher in ops/kafka (jars from Maven Central, Java 17, KRaft).
No path skips: a test that needs Kafka fails when no broker can be had, in CI and on a laptop alike.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from confluent_kafka import Consumer, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream.kafka.config import KafkaSettings, kafka_settings_from_env
from stream.kafka.scan import read_committed, read_watermarks
from stream.localkafka import load_launcher

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def native_cluster(data_dir: Path, *, nodes: int = 1) -> Iterator[tuple[str, ModuleType]]:
    launcher = load_launcher()
    base_port = launcher.free_base_port(nodes)
    cluster = launcher.start(data_dir, nodes, base_port, None, 180.0)
    try:
        yield cluster.bootstrap, launcher
    finally:
        for node in cluster.nodes:
            launcher.stop_node(node)


@contextmanager
def session_broker(data_dir: Path) -> Iterator[tuple[str, str]]:
    """Yields (bootstrap servers, how it was obtained): KAFKA_BOOTSTRAP_SERVERS when set; else, with
    ZS_TEST_KAFKA=container (the container leg, `ops/dev.sh test-containers`), a broker in a container
    started through testcontainers on the engine ops/containers/engine.sh gives; else the native
    launcher."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured, "KAFKA_BOOTSTRAP_SERVERS"
        return
    mode = os.environ.get("ZS_TEST_KAFKA", "native")
    if mode == "container":
        from tests.support.containers import container_engine, container_kafka, ensure_images  # noqa: PLC0415

        with container_engine() as engine:
            image = ensure_images().kafka
            with container_kafka(image=image) as bootstrap:
                yield bootstrap, f"a container of {image} (testcontainers, engine {engine.docker_host})"
        return
    if mode != "native":
        raise ValueError(f"ZS_TEST_KAFKA: expected native or container, got {mode!r}")
    with native_cluster(data_dir) as (bootstrap, _):
        yield bootstrap, "native launcher ops/kafka/kafkalocal.py"


def unique_topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def create_topics(bootstrap: str, names: Iterable[str], *, partitions: int = 1, replication: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, partitions, replication) for n in names], operation_timeout=30)
    for future in futures.values():
        future.result(timeout=60)


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[str | None, bytes | dict[str, Any]]],
    *,
    headers: list[tuple[str, str | bytes | None]] | None = None,
    producer_config: dict[str, str | int | float | bool] | None = None,
) -> int:
    """Produce (key, value) records with acks=all; dict values are JSON-encoded. Returns the count."""
    config: dict[str, str | int | float | bool] = {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": 5,
        **(producer_config or {}),
    }
    producer = Producer(config)
    errors: list[str] = []

    def delivered(err: Any, _msg: Message) -> None:
        if err is not None:
            errors.append(str(err))

    count = 0
    for key, value in records:
        payload = value if isinstance(value, bytes) else json.dumps(value).encode()
        producer.produce(topic, key=key, value=payload, headers=headers, on_delivery=delivered)
        producer.poll(0)
        count += 1
    remaining = producer.flush(60)
    assert remaining == 0 and not errors, f"produce failed: {remaining} unflushed, errors {errors[:3]}"
    return count


def consume(bootstrap: str, topic: str, *, count: int, timeout_s: float = 60.0) -> list[Message]:
    """Read `count` records from the beginning of `topic` with a throw-away group; fail at the deadline."""
    import time  # noqa: PLC0415

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_topic("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                messages.append(msg)
    finally:
        consumer.close()
    assert len(messages) >= count, f"read {len(messages)} of {count} records from {topic} in {timeout_s}s"
    return messages


def group_of(topic: str) -> str:
    """The consumer group the tests give a service reading `topic` (tests/support/service.py)."""
    return f"{topic}-group"


def retry_topic_of(topic: str, group: str | None = None) -> str:
    """The service's default retry topic: group-specific, `<input>.<group>.retry`."""
    return f"{topic}.{group or group_of(topic)}.retry"


def dlq_topic_of(topic: str, group: str | None = None) -> str:
    """The service's default dead-letter topic, `<input>.<group>.dlq`."""
    return f"{topic}.{group or group_of(topic)}.dlq"


def delivered_topic_of(topic: str, group: str | None = None) -> str:
    """The service's default topic of delivered-event markers, `<input>.<group>.delivered`."""
    return f"{topic}.{group or group_of(topic)}.delivered"


def value_of(message: Message) -> bytes:
    value = message.value()
    assert isinstance(value, bytes), (
        f"record {message.topic()}[{message.partition()}]@{message.offset()} has no value"
    )
    return value


def key_of(message: Message) -> str:
    key = message.key()
    assert isinstance(key, bytes), "the record has no key"
    return key.decode()


def headers_of(message: Message) -> dict[str, bytes]:
    """A record's headers by name (the last value of a repeated one)."""
    pairs = message.headers() or []
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return {str(k): v.encode() if isinstance(v, str) else (v or b"") for k, v in items}


def create_service_topics(bootstrap: str, topic: str, *, partitions: int = 1) -> None:
    """The input topic with its retry and delivered topics (same partition count) and dead-letter topic."""
    create_topics(bootstrap, [topic, retry_topic_of(topic), delivered_topic_of(topic)], partitions=partitions)
    create_topics(bootstrap, [dlq_topic_of(topic)], partitions=1)


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's end offset (high watermark), read as the service reads it."""
    return {n: high for n, (_, high) in read_watermarks(_settings(bootstrap), topic).items()}


def records_written(bootstrap: str, topic: str) -> int:
    """How many records were ever written to the topic (its partitions' end offsets, summed)."""
    return sum(end_offsets(bootstrap, topic).values())


def committed_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """The offset the topic's group (`group_of`) committed per partition; 0 where it committed none."""
    found = read_committed(
        _settings(bootstrap), group_id=group_of(topic), partitions=[(topic, n) for n in range(partitions)]
    )
    return {n: offset or 0 for (_, n), (offset, _) in found.items()}


def _settings(bootstrap: str) -> KafkaSettings:
    return kafka_settings_from_env({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})
