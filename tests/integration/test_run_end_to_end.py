"""`zendesk-stream run` as a real process: real Kafka in, the Zendesk simulator out."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from stream.simulator.testing import RunningSimulator
from tests.support.kafka import (
    consume,
    create_service_topics,
    create_topics,
    delivered_topic_of,
    dlq_topic_of,
    headers_of,
    produce,
    retry_topic_of,
    unique_topic,
)
from tests.support.segment import group, identify, track
from tests.support.service import log_events, run_to_end, service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

SETTINGS = {"events": ["Article Completed"], "removeUsersFromOrganizations": True}


def test_the_seed_examples_reach_zendesk_and_the_run_exits_at_the_end(
    kafka_bootstrap: str, new_topic: Callable[..., str], simulator: RunningSimulator
) -> None:
    topic = new_topic(partitions=2)
    new_dlq = dlq_topic_of(topic)
    create_topics(kafka_bootstrap, [new_dlq, retry_topic_of(topic), delivered_topic_of(topic)], partitions=2)
    events = [
        identify("97980cfea0067", name="Peter Gibbons", email="peter@example.com", plan="premium", logins=5),
        group(
            "97980cfea0067",
            "0e8c78ea9d97a7b8185e8632",
            name="Initech",
            employees=329,
            **{"total billed": 830},
        ),
        track("97980cfea0067", "Article Completed", title="How to Create a Tracking Plan"),
        track("97980cfea0067", "Signed Out"),  # not listed in events: skipped
        {"type": "page", "userId": "97980cfea0067", "name": "Home"},  # skipped
    ]
    produce(kafka_bootstrap, topic, [("97980cfea0067", e) for e in events] + [("broken", b"{not json")])

    result = run_to_end(service_env(kafka_bootstrap, topic, simulator, SETTINGS))

    assert result.returncode == 0, result.stderr[-3000:]
    state = simulator.control.state()
    peter = next(u for u in state["users"] if u["external_id"] == "97980cfea0067")
    assert peter["name"] == "Peter Gibbons"
    assert peter["user_fields"]["plan"] == "premium"
    assert peter["user_fields"]["logins"] == 5
    initech = next(o for o in state["organizations"] if o["external_id"] == "0e8c78ea9d97a7b8185e8632")
    assert initech["organization_fields"]["total_billed"] == 830
    memberships = state["organization_memberships"]
    assert any(m["user_id"] == peter["id"] and m["organization_id"] == initech["id"] for m in memberships)
    assert [e["type"] for e in state["events"]] == ["Article Completed"]

    outcomes = [line for line in log_events(result.stderr) if line.get("event") == "event"]
    by_outcome = sorted((line["outcome"], line.get("reason")) for line in outcomes)
    assert by_outcome == sorted(
        [
            ("delivered", None),
            ("delivered", None),
            ("delivered", None),
            ("skipped", "event_not_enabled"),
            ("skipped", "unsupported_type"),
            ("dead_lettered", "invalid_payload"),
        ]
    )
    dead = consume(kafka_bootstrap, new_dlq, count=1)[0]
    headers = headers_of(dead)
    assert headers["zs.error.reason"] == b"invalid_payload"
    assert dead.value() == b"{not json"


def test_sigterm_stops_the_service_gracefully_with_exit_0_and_commits(
    kafka_bootstrap: str, new_topic: Callable[..., str], fast_simulator: RunningSimulator, tmp_path: Path
) -> None:
    topic = new_topic()
    create_topics(kafka_bootstrap, [dlq_topic_of(topic), retry_topic_of(topic), delivered_topic_of(topic)])
    produce(kafka_bootstrap, topic, [(f"u{i}", identify(f"u{i}", name=f"User {i}")) for i in range(20)])
    log_path = tmp_path / "service.log"
    process = start_service(service_env(kafka_bootstrap, topic, fast_simulator, SETTINGS), log_path)
    try:
        wait_for(
            lambda: len(fast_simulator.control.state()["users"]) == 20,
            timeout_s=90,
            what="20 users in the simulator",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert any(line.get("event") == "engine stopped" for line in lines)

    # A second run finds nothing left: everything was committed.
    again = run_to_end(service_env(kafka_bootstrap, topic, fast_simulator, SETTINGS))
    assert again.returncode == 0, again.stderr[-2000:]
    assert not [line for line in log_events(again.stderr) if line.get("event") == "event"]


def test_static_membership_keeps_the_member_registered_under_its_instance_id(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("static")
    create_service_topics(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [("u1", identify("u1", name="Static"))])
    env = service_env(
        kafka_bootstrap, topic, fast_simulator, SETTINGS, STREAM_GROUP_INSTANCE_ID="zs-static-1"
    )

    result = run_to_end(env)

    assert result.returncode == 0, result.stderr[-2000:]
    assert [u["name"] for u in fast_simulator.control.state()["users"]] == ["Static"]
    # A static member that stops is not removed from the group: it may come back without a rebalance.
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    described = admin.describe_consumer_groups([env["STREAM_GROUP_ID"]])[env["STREAM_GROUP_ID"]].result(
        timeout=30
    )
    assert [m.group_instance_id for m in described.members] == ["zs-static-1"]
