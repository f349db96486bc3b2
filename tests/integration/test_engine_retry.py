"""The retry path on real Kafka with the simulator: in place, then the retry topic with the key parked."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stream.simulator.testing import RunningSimulator
from tests.support.kafka import (
    consume,
    create_service_topics,
    dlq_topic_of,
    headers_of,
    produce,
    retry_topic_of,
    unique_topic,
    value_of,
)
from tests.support.segment import identify, track
from tests.support.service import log_events, run_to_end, service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

FAST_RETRIES = {"STREAM_RETRY_ATTEMPTS": "2", "STREAM_RETRY_DELAY_S": "1", "STREAM_RETRY_ROUNDS": "3"}


SETTINGS = {"events": ["*"]}


def _seed_users(simulator: RunningSimulator, *external_ids: str) -> None:
    simulator.control.seed(users=[{"name": f"User {x}", "external_id": x} for x in external_ids])


def _sequence(simulator: RunningSimulator, external_id: str) -> list[int]:
    """The `seq` property of the events Zendesk holds for one user, in the order it received them."""
    state = simulator.control.state()
    user_id = next(u["id"] for u in state["users"] if u["external_id"] == external_id)
    return [int(e["properties"]["seq"]) for e in state["events"] if int(e["user_id"]) == user_id]


def _events(key: str, seqs: range | list[int]) -> list[tuple[str | None, dict[str, object]]]:
    return [(key, track(key, "Step", seq=n)) for n in seqs]


def test_a_key_whose_event_fails_transiently_is_parked_and_its_later_events_follow_in_order(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("retry-order")
    create_service_topics(kafka_bootstrap, topic)
    _seed_users(fast_simulator, "k1")
    # Two in-place attempts fail; the event goes to the retry topic and its key is parked.
    fast_simulator.control.inject_fault(path="events", method="POST", count=2, status=503)
    produce(kafka_bootstrap, topic, _events("k1", [1, 2, 3]))

    result = run_to_end(service_env(kafka_bootstrap, topic, fast_simulator, SETTINGS, **FAST_RETRIES))

    assert result.returncode == 0, result.stderr[-3000:]
    outcomes = [
        (e["outcome"], e["topic"].endswith(".retry"))
        for e in log_events(result.stderr)
        if e.get("event") == "event"
    ]
    assert outcomes.count(("sent_to_retry", False)) == 1
    assert outcomes.count(("parked_behind", False)) == 2
    assert outcomes.count(("delivered", True)) == 3
    assert _sequence(fast_simulator, "k1") == [1, 2, 3]


def test_a_parked_key_keeps_its_later_events_behind_it_across_a_restart(
    kafka_bootstrap: str, fast_simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic = unique_topic("retry-restart")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    _seed_users(fast_simulator, "k1", "k2")
    env = service_env(
        kafka_bootstrap,
        topic,
        fast_simulator,
        SETTINGS,
        STREAM_RETRY_ATTEMPTS="1",
        STREAM_RETRY_DELAY_S="6",
        STREAM_RETRY_ROUNDS="3",
    )
    fast_simulator.control.inject_fault(path="events", method="POST", count=1, status=503)
    produce(kafka_bootstrap, topic, _events("k1", [1]))
    log_path = tmp_path / "first.log"

    first = start_service(env, log_path)
    try:
        wait_for(
            lambda: '"sent_to_retry"' in log_path.read_text(),
            timeout_s=60,
            what="the first event sent to the retry topic",
        )
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0
    finally:
        if first.poll() is None:
            first.kill()
    assert fast_simulator.control.state()["events"] == []

    # While the consumer is down, more events of the parked key arrive, and one of another key.
    produce(kafka_bootstrap, topic, _events("k1", [2, 3]) + _events("k2", [1]))
    result = run_to_end(env)

    assert result.returncode == 0, result.stderr[-3000:]
    events = [e for e in log_events(result.stderr) if e.get("event") == "event"]
    assert any(e["outcome"] == "parked_behind" for e in events), events
    assert _sequence(fast_simulator, "k1") == [1, 2, 3]
    assert _sequence(fast_simulator, "k2") == [1]


def test_the_retry_path_gives_up_after_its_rounds_and_dead_letters_retries_exhausted(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("retry-exhausted")
    create_service_topics(kafka_bootstrap, topic)
    fast_simulator.control.inject_fault(path="create_or_update", method="POST", count=100, status=503)
    produce(kafka_bootstrap, topic, [("k1", identify("k1", name="Never"))])

    result = run_to_end(service_env(kafka_bootstrap, topic, fast_simulator, {}, **FAST_RETRIES))

    assert result.returncode == 0, result.stderr[-3000:]
    dead = consume(kafka_bootstrap, dlq_topic_of(topic), count=1)[0]
    headers = headers_of(dead)
    assert headers["zs.error.reason"] == b"retries_exhausted"
    assert headers["zs.error.class"] == b"transient"
    assert headers["zs.error.http_status"] == b"503"
    assert headers["zs.original.topic"] == topic.encode()
    assert int(headers["zs.attempts"]) == 2 + 3  # in place, then the retry rounds
    assert json.loads(value_of(dead))["traits"]["name"] == "Never"


def test_the_circuit_breaker_stops_the_service_when_most_events_are_rejected(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("breaker")
    create_service_topics(kafka_bootstrap, topic)
    # Track events for users Zendesk does not know: each is rejected (user_not_found).
    produce(kafka_bootstrap, topic, [(f"ghost-{i}", track(f"ghost-{i}", "Signed Up")) for i in range(60)])
    env = service_env(
        kafka_bootstrap,
        topic,
        fast_simulator,
        {"events": ["*"]},
        STREAM_BREAKER_WINDOW="20",
        STREAM_MAX_IN_FLIGHT="4",
    )

    result = run_to_end(env)

    assert result.returncode == 1
    assert "circuit breaker open" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[result.stderr.find("Traceback") - 300 :][:3000]
    dead_lettered = [e for e in log_events(result.stderr) if e.get("outcome") == "dead_lettered"]
    assert 20 <= len(dead_lettered) < 60


def test_zendesk_refusing_the_credentials_stops_start_up_with_one_line(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("refused")
    create_service_topics(kafka_bootstrap, topic)
    env = {**service_env(kafka_bootstrap, topic, fast_simulator, {}), "ZENDESK_API_TOKEN": "wrong-token"}

    result = run_to_end(env)

    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("zendesk-stream:")]
    assert len(lines) == 1 and "401" in lines[0], result.stderr[-2000:]
    assert "wrong-token" not in result.stderr


def test_zendesk_refusing_the_credentials_mid_run_stops_loudly_and_dead_letters_nothing(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("revoked")
    create_service_topics(kafka_bootstrap, topic)
    _seed_users(fast_simulator, "k1", "k2", "k3")
    produce(kafka_bootstrap, topic, _events("k1", [1]) + _events("k2", [1]) + _events("k3", [1]))
    env = service_env(kafka_bootstrap, topic, fast_simulator, SETTINGS)
    # Credentials revoked after start-up: every event post answers 401.
    fast_simulator.control.inject_fault(path="user_profiles/events", status=401, count=1_000)

    stopped = run_to_end(env)

    assert stopped.returncode == 2, stopped.stderr[-2000:]
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("zendesk-stream: Zendesk refused our credentials (401)"), last
    assert "Traceback" not in stopped.stderr
    assert _high_watermark(kafka_bootstrap, dlq_topic_of(topic)) == 0

    # Once the credentials work again, a restart delivers every event: nothing was committed unfinished.
    fast_simulator.control.clear_faults()
    again = run_to_end(env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert [_sequence(fast_simulator, key) for key in ("k1", "k2", "k3")] == [[1], [1], [1]]


def _high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("peek")})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def test_retry_records_go_to_the_retry_partition_with_their_input_partitions_number(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("retry-partition")
    create_service_topics(kafka_bootstrap, topic, partitions=4)
    keys = [f"k{i}" for i in range(12)]
    _seed_users(fast_simulator, *keys)
    # Every event fails once in place and again in the retry path's first round, then succeeds.
    fast_simulator.control.inject_fault(path="events", method="POST", count=24, status=503)
    # Placed by hand, as a producer with another partitioner (Java's murmur2) would: not where
    # librdkafka's own hash of the key would put them.
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for index, (key, event) in enumerate(e for k in keys for e in _events(k, [1])):
        producer.produce(topic, key=key, value=json.dumps(event).encode(), partition=index % 4)
    assert producer.flush(30) == 0
    env = service_env(
        kafka_bootstrap,
        topic,
        fast_simulator,
        SETTINGS,
        STREAM_RETRY_ATTEMPTS="1",
        STREAM_RETRY_DELAY_S="1",
        STREAM_RETRY_ROUNDS="5",
    )

    result = run_to_end(env)

    assert result.returncode == 0, result.stderr[-3000:]
    retried = consume(kafka_bootstrap, retry_topic_of(topic), count=12)
    assert len({m.partition() for m in retried}) > 1  # the keys spread over several partitions
    for message in retried:
        headers = headers_of(message)
        assert int(headers["zs.original.partition"]) == message.partition()
    assert all(_sequence(fast_simulator, key) == [1] for key in keys)
