"""The ground every other test stands on: a real broker, real produce and consume, real topic admin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.support.kafka import REPO, consume, key_of, native_cluster, produce, unique_topic, value_of
from tests.support.segment import identify

pytestmark = pytest.mark.kafka


def test_events_produced_to_the_broker_are_consumed_back_in_order_per_key(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic(partitions=3)
    events = [(f"user-{i % 5}", identify(f"user-{i % 5}", name=f"Name {i}", seq=i)) for i in range(50)]
    produce(kafka_bootstrap, topic, events)

    messages = consume(kafka_bootstrap, topic, count=50)

    by_key: dict[str, list[int]] = {}
    for message in messages:
        body = json.loads(value_of(message))
        by_key.setdefault(key_of(message), []).append(body["traits"]["seq"])
    assert sorted(seq for seqs in by_key.values() for seq in seqs) == list(range(50))
    assert all(seqs == sorted(seqs) for seqs in by_key.values()), by_key


def _cli(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env={**os.environ, **env, "STREAM_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def test_topics_apply_creates_the_topics_and_a_second_run_changes_nothing(kafka_bootstrap: str) -> None:
    base = unique_topic("apply")
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "STREAM_TOPIC": base}

    first = _cli(["topics", "apply", "--replication-factor", "1"], env)
    assert first.returncode == 0, first.stderr
    assert f"create {base} (input)" in first.stdout
    assert "applied 4 change(s)" in first.stdout

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    assert len(topics[base].partitions) == 12
    dlq = f"{base}.zendesk-stream.dlq"  # the default group's
    assert len(topics[dlq].partitions) == 3
    dlq_config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, dlq)])
    entries = next(iter(dlq_config.values())).result()
    assert entries["retention.ms"].value == "2592000000"

    second = _cli(["topics", "apply", "--replication-factor", "1"], env)
    assert second.returncode == 0, second.stderr
    retry, delivered = f"{base}.zendesk-stream.retry", f"{base}.zendesk-stream.delivered"
    assert second.stdout.strip() == f"topics up to date: {base}, {retry}, {dlq}, {delivered}"
    delivered_config = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, delivered)])
    assert next(iter(delivered_config.values())).result()["cleanup.policy"].value == "compact,delete"


def test_topics_apply_aligns_drifted_config_and_never_lowers_partitions(kafka_bootstrap: str) -> None:
    base = unique_topic("drift")
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    wider = NewTopic(base, 16, 1, config={"retention.ms": "1000"})
    for future in admin.create_topics([wider]).values():
        future.result(timeout=30)
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "STREAM_TOPIC": base}

    result = _cli(["topics", "apply", "--replication-factor", "1"], env)

    assert result.returncode == 0, result.stderr
    assert f"alter {base}: retention.ms: 1000 -> 604800000" in result.stdout
    assert "partition counts are never lowered" in result.stdout
    assert len(admin.list_topics(timeout=10).topics[base].partitions) == 16


def test_topics_apply_refuses_a_replication_factor_the_cluster_cannot_hold(kafka_bootstrap: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "STREAM_TOPIC": unique_topic("rf")}

    result = _cli(["topics", "apply"], env)

    assert result.returncode == 2
    assert "replication factor 3 needs 3 brokers" in result.stderr
    assert "Traceback" not in result.stderr


# Slow: tests/reliability/test_broker_failure.py's short variant, in the default suite, proves the
# stronger case (kill -9 of a node of three, twice, with writes going on) on the same launcher.
@pytest.mark.slow
def test_three_node_cluster_keeps_a_replicated_topic_available_when_one_broker_stops(tmp_path: Path) -> None:
    with native_cluster(tmp_path / "kafka3", nodes=3) as (bootstrap, launcher):
        assert len(bootstrap.split(",")) == 3
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert len(admin.list_topics(timeout=30).brokers) == 3
        topic = unique_topic("replicated")
        spec = NewTopic(topic, 3, 3, config={"min.insync.replicas": "2"})
        for future in admin.create_topics([spec]).values():
            future.result(timeout=60)
        produce(bootstrap, topic, [(f"k{i}", {"n": i}) for i in range(30)])
        partitions = admin.list_topics(topic=topic, timeout=10).topics[topic].partitions
        assert all(len(p.replicas) == 3 and len(p.isrs) == 3 for p in partitions.values())

        cluster = launcher.existing_cluster(tmp_path / "kafka3")
        assert launcher.stop_node(cluster.nodes[1])  # node 2, which leads one partition

        # acks=all with min.insync.replicas=2 still succeeds: the data lives on the other two.
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for i in range(30, 60):
            producer.produce(topic, key=f"k{i}", value=json.dumps({"n": i}).encode())
        assert producer.flush(60) == 0
        values = sorted(json.loads(value_of(m))["n"] for m in consume(bootstrap, topic, count=60))
        assert values == list(range(60))
