"""Kafka the way production runs it: SASL_SSL with SCRAM, on a real broker (tests/support/secure_kafka.py).

Clients with the right credentials produce and consume with either SCRAM mechanism; a wrong password is
an authentication error; `zendesk-stream topics apply` and `run` work over SASL_SSL, or stop with one
line that names the credentials (never the password) when the broker refuses them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream.simulator.testing import RunningSimulator
from tests.support.engine import seed_users
from tests.support.kafka import REPO, produce, unique_topic
from tests.support.secure_kafka import SecureKafka, secure_kafka
from tests.support.segment import track
from tests.support.service import service_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    with secure_kafka(tmp_path_factory.mktemp("kafka-secure"), users={"alice": None, "bob": None}) as broker:
        yield broker


def secure_port(broker: SecureKafka) -> int:
    return int(broker.bootstrap.rsplit(":", 1)[1])


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_client_produces_and_consumes_over_sasl_ssl(secure: SecureKafka, mechanism: str) -> None:
    bootstrap, ca_path, users = secure
    assert set(users) == {"alice", "bob"} and ca_path.is_file()
    config = secure.client_config("alice", mechanism)
    assert config["bootstrap.servers"] == bootstrap
    admin = AdminClient(config)
    topic = unique_topic(f"secure-{mechanism.lower()}")
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=30)
    # The broker advertised its SASL_SSL listener to us: every later connection went there too.
    assert [b.port for b in admin.list_topics(timeout=10).brokers.values()] == [secure_port(secure)]

    producer = Producer({**config, "acks": "all"})
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"{mechanism} {i}".encode())
    assert producer.flush(30) == 0

    consumer = Consumer(
        {**config, "group.id": unique_topic("secure-reader"), "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    values: list[bytes | None] = []
    try:

        def read_all() -> bool:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value())
            return len(values) == 5

        wait_for(read_all, timeout_s=60, what="5 records consumed over SASL_SSL")
    finally:
        consumer.close()
    assert values == [f"{mechanism} {i}".encode() for i in range(5)]


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_is_an_authentication_error(secure: SecureKafka, mechanism: str) -> None:
    errors: list[KafkaError] = []
    # bob's password is a real one, just not alice's.
    config: dict[str, Any] = {
        **secure.client_config("alice", mechanism),
        "sasl.password": secure.users["bob"],
    }
    # confluent-kafka's stubs type config values as scalars; callbacks are accepted all the same.
    admin = AdminClient({**config, "error_cb": errors.append})  # type: ignore[dict-item]

    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)

    def refused() -> bool:
        admin.poll(0.2)
        return any(e.code() == KafkaError._AUTHENTICATION for e in errors)

    wait_for(refused, timeout_s=10, what="librdkafka to report the authentication failure")
    failure = next(e for e in errors if e.code() == KafkaError._AUTHENTICATION)
    assert "invalid credentials" in failure.str() and mechanism in failure.str()


def service(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """zendesk-stream as a real process, with no KAFKA_* of ours leaking in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    return subprocess.run(
        [sys.executable, "-m", "stream", *args],
        env={**base, **env, "STREAM_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        check=False,
    )


def test_topics_apply_over_sasl_ssl_with_scram_sha_512_creates_the_topics(secure: SecureKafka) -> None:
    base = unique_topic("secure-apply")
    env = {**secure.service_env("alice", "SCRAM-SHA-512"), "STREAM_TOPIC": base}
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL" and env["KAFKA_SSL_CA_LOCATION"]

    result = service(env, "topics", "apply", "--replication-factor", "1")

    assert result.returncode == 0, result.stderr
    assert "applied 4 change(s)" in result.stdout
    topics = AdminClient({"bootstrap.servers": secure.plaintext_bootstrap}).list_topics(timeout=10).topics
    # the default group's retry, dead-letter and delivered topics
    side = {f"{base}.zendesk-stream.{role}" for role in ("retry", "dlq", "delivered")}
    assert {base, *side} <= set(topics)
    assert secure.users["alice"] not in result.stdout + result.stderr


def test_topics_apply_with_a_wrong_password_stops_with_one_line_naming_the_credentials(
    secure: SecureKafka,
) -> None:
    wrong = "Wr0ngPassw0rdForAlice"
    env = {
        **secure.service_env("alice", "SCRAM-SHA-512"),
        "KAFKA_SASL_PASSWORD": wrong,
        "STREAM_TOPIC": unique_topic("secure-refused"),
    }

    result = service(env, "topics", "apply", "--replication-factor", "1")

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "authentication failed" in line
    assert "KAFKA_SASL_USERNAME" in line and "SCRAM-SHA-512" in line
    assert "no broker answered" not in line and "Traceback" not in line
    output = result.stdout + result.stderr
    assert wrong not in output and secure.users["alice"] not in output


def test_the_service_runs_over_sasl_ssl_delivers_everything_and_never_logs_the_password(
    secure: SecureKafka, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("secure-run")
    password = secure.users["bob"]
    kafka = {**secure.service_env("bob", "SCRAM-SHA-256"), "STREAM_TOPIC": topic}
    assert service(kafka, "topics", "apply", "--replication-factor", "1").returncode == 0
    seed_users(fast_simulator, ["s1", "s2"])
    records = [(u, json.dumps(track(u, "Step", seq=n)).encode()) for u in ("s1", "s2") for n in range(3)]
    produce(secure.plaintext_bootstrap, topic, records)
    env = {
        **service_env(secure.bootstrap, topic, fast_simulator, {"events": ["*"]}),
        **kafka,
        "STREAM_GROUP_ID": "zendesk-stream",  # the group topics apply made the side topics for
        "KAFKA_DEBUG": "security,broker",  # librdkafka's own account of the handshake, into our logs
    }

    result = service(env, "run", "--exit-at-end")

    assert result.returncode == 0, result.stderr[-3000:]
    assert len(fast_simulator.control.state()["events"]) == 6
    assert "SASL" in result.stderr  # librdkafka did log the handshake
    assert password not in result.stdout + result.stderr


def test_the_service_with_a_wrong_kafka_password_stops_with_one_line(
    secure: SecureKafka, fast_simulator: RunningSimulator
) -> None:
    wrong = "Wr0ngPassw0rdForBob"
    topic = unique_topic("secure-run-refused")
    env = {
        **service_env(secure.bootstrap, topic, fast_simulator, {}),
        **secure.service_env("bob", "SCRAM-SHA-512"),
        "KAFKA_SASL_PASSWORD": wrong,
        "STREAM_TOPIC": topic,
        "STREAM_LOG_LEVEL": "info",
    }

    result = service(env, "run", "--exit-at-end")

    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("zendesk-stream:")]
    assert len(lines) == 1 and "authentication failed" in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert wrong not in result.stdout + result.stderr
