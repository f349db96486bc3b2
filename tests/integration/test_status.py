"""`zendesk-stream status` on real Kafka: the lag, parked keys and dead letters a test set up on purpose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stream.simulator.testing import RunningSimulator
from tests.support.kafka import (
    create_service_topics,
    dlq_topic_of,
    group_of,
    native_cluster,
    produce,
    retry_topic_of,
    unique_topic,
)
from tests.support.segment import identify
from tests.support.service import run_to_end, service_env, zendesk_stream

pytestmark = pytest.mark.kafka


def produce_to(bootstrap: str, topic: str, partition: int, records: list[tuple[str, dict[str, str]]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, headers in records:
        producer.produce(topic, key=key, value=b"{}", partition=partition, headers=list(headers.items()))
    assert producer.flush(30) == 0


def commit(bootstrap: str, group: str, topic: str, partition: int, offset: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
    finally:
        consumer.close()


def env_for(bootstrap: str, topic: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZENDESK_", "STREAM_"))}
    return {
        **clean,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "STREAM_TOPIC": topic,
        "STREAM_GROUP_ID": group_of(topic),
        "STREAM_LOG_LEVEL": "warning",
    }


def test_status_reports_the_lag_the_parked_keys_and_the_dead_letters_set_up(kafka_bootstrap: str) -> None:
    topic = unique_topic("status")
    group = group_of(topic)
    retry, dlq = retry_topic_of(topic), dlq_topic_of(topic)
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    produce_to(kafka_bootstrap, topic, 0, [(f"u{n}", {}) for n in range(10)])
    produce_to(kafka_bootstrap, topic, 1, [(f"v{n}", {}) for n in range(5)])
    commit(kafka_bootstrap, group, topic, 0, 4)  # partition 1: never committed
    ours = {"zs.group": group}
    produce_to(
        kafka_bootstrap,
        retry,
        0,
        [
            ("done", {**ours, "zs.error.reason": "retry_scheduled"}),  # before the retry group's commit
            ("k1", {**ours, "zs.error.reason": "retry_scheduled"}),
            ("k1", {**ours, "zs.error.reason": "parked_behind"}),
            ("k2", {**ours, "zs.error.reason": "retry_scheduled"}),
            ("k9", {"zs.group": "another-deployment", "zs.error.reason": "retry_scheduled"}),
        ],
    )
    commit(kafka_bootstrap, f"{group}.retry", retry, 0, 1)
    produce_to(
        kafka_bootstrap,
        dlq,
        0,
        [
            ("a", {**ours, "zs.error.reason": "invalid_payload"}),
            ("b", {**ours, "zs.error.reason": "invalid_payload"}),
            ("c", {**ours, "zs.error.reason": "identity_conflict"}),
            ("d", {"zs.group": "another-deployment", "zs.error.reason": "invalid_payload"}),
        ],
    )

    done = zendesk_stream(["status", "--json"], env_for(kafka_bootstrap, topic))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    lags = {p["partition"]: (p["committed"], p["end"], p["lag"]) for p in report["partitions"]}
    assert lags == {0: (4, 10, 6), 1: (None, 5, 5)}
    assert report["lag"] == 11
    parked = {p["partition"]: (p["keys"], p["records"], p["oldest_offset"]) for p in report["parked"]}
    assert parked == {0: (2, 3, 1), 1: (0, 0, None)}
    assert report["parked_keys"] == 2
    assert report["retry_reasons"] == {"retry_scheduled": 2, "parked_behind": 1}
    assert report["dlq_reasons"] == {"invalid_payload": 2, "identity_conflict": 1}
    assert report["members"] == []

    text = zendesk_stream(["status"], env_for(kafka_bootstrap, topic))
    assert text.returncode == 0, text.stderr
    assert "2 parked keys" in text.stdout and "invalid_payload 2" in text.stdout


def test_status_of_a_topic_that_does_not_exist_says_how_to_create_it(kafka_bootstrap: str) -> None:
    done = zendesk_stream(["status"], env_for(kafka_bootstrap, unique_topic("missing")))
    assert done.returncode == 2
    assert "topics apply" in done.stderr and "Traceback" not in done.stderr


def test_status_on_a_broker_that_never_hosted_a_group_waits_for_its_coordinator(tmp_path: Path) -> None:
    """A fresh broker answers NOT_COORDINATOR until its group coordinator has loaded: `status` waits for
    it instead of failing with a traceback (found by the scaling runbook's test)."""
    with native_cluster(tmp_path) as (bootstrap, _):
        topic = unique_topic("fresh")
        create_service_topics(bootstrap, topic, partitions=1)
        done = zendesk_stream(["status", "--json"], env_for(bootstrap, topic))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout)["members"] == []


def test_run_on_a_broker_that_never_hosted_a_group_waits_for_its_coordinators(
    tmp_path: Path, fast_simulator: RunningSimulator
) -> None:
    """The same for `run --exit-at-end`, whose readers of committed offsets (the retry group's, at the
    end) met NOT_COORDINATOR in the container test and stopped with a traceback."""
    with native_cluster(tmp_path) as (bootstrap, _):
        topic = unique_topic("fresh-run")
        create_service_topics(bootstrap, topic, partitions=2)
        produce(bootstrap, topic, [(f"f{n}", identify(f"f{n}", name=f"Fresh {n}")) for n in range(4)])
        done = run_to_end(service_env(bootstrap, topic, fast_simulator, {}), timeout_s=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert sorted(u["external_id"] for u in fast_simulator.control.state()["users"]) == [
        f"f{n}" for n in range(4)
    ]
