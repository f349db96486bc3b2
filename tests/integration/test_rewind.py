"""`zendesk-stream rewind` on real Kafka: the plan changes nothing, --execute moves the group and its
retry path together, and an active member stops it."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.test_status import commit, env_for, produce_to
from tests.support.kafka import create_service_topics, group_of, retry_topic_of, unique_topic
from tests.support.service import zendesk_stream

pytestmark = pytest.mark.kafka


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, n) for n in range(partitions)], timeout=30)
    finally:
        consumer.close()
    return [tp.offset for tp in found]


def setup(bootstrap: str) -> str:
    """Two partitions of six events each, all committed; one event of partition 1 (offset 2) waits in
    the retry path."""
    topic = unique_topic("rewind")
    group = group_of(topic)
    create_service_topics(bootstrap, topic, partitions=2)
    for partition in (0, 1):
        produce_to(bootstrap, topic, partition, [(f"u{n}", {}) for n in range(6)])
        commit(bootstrap, group, topic, partition, 6)
    waiting = {"zs.group": group, "zs.original.topic": topic, "zs.original.offset": "2"}
    produce_to(bootstrap, retry_topic_of(topic), 1, [("u2", waiting)])
    commit(bootstrap, f"{group}.retry", retry_topic_of(topic), 1, 0)
    return topic


def test_the_plan_changes_nothing_and_execute_moves_the_group_and_its_retry_path(
    kafka_bootstrap: str,
) -> None:
    topic = setup(kafka_bootstrap)
    group, env = group_of(topic), env_for(kafka_bootstrap, topic)
    args = ["rewind", "--to-offset", "0:3", "--to-offset", "1:4"]

    planned = zendesk_stream(args, env)
    assert planned.returncode == 0, planned.stderr
    assert "plan only" in planned.stdout and "from 2, not 4" in planned.stdout
    assert planned.stdout.rstrip().endswith("7 events will be processed again")  # 3 + 4
    assert committed(kafka_bootstrap, group, topic, 2) == [6, 6]

    done = zendesk_stream([*args, "--execute"], env)
    assert done.returncode == 0, done.stderr
    assert committed(kafka_bootstrap, group, topic, 2) == [3, 2]
    assert committed(kafka_bootstrap, f"{group}.retry", retry_topic_of(topic), 2)[1] == 1  # past the event


def test_rewind_refuses_while_the_group_has_an_active_member(kafka_bootstrap: str) -> None:
    topic = setup(kafka_bootstrap)
    member = Consumer(
        {"bootstrap.servers": kafka_bootstrap, "group.id": group_of(topic), "enable.auto.commit": False}
    )
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 60
        while not member.assignment():
            assert time.monotonic() < deadline, "the member never got its partitions"
            member.poll(0.2)
        done = zendesk_stream(["rewind", "--to-earliest", "--execute"], env_for(kafka_bootstrap, topic))
    finally:
        member.close()
    assert done.returncode == 1
    assert "1 active member(s)" in done.stderr and "stop them first" in done.stderr
    assert committed(kafka_bootstrap, group_of(topic), topic, 2) == [6, 6]
