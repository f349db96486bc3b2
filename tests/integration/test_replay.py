"""`zendesk-stream replay` on real Kafka with the simulator: the outage case of the recovery issue.

Zendesk refuses every write for a while, so a run dead-letters everything (short retry settings); once
it answers again, `replay` and `run --exit-at-end` leave Zendesk as a run without the outage would have,
each Sunshine event posted once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer

from stream.engine.records import Failure, InboundRecord, failure_headers
from stream.outcomes import DlqReason
from stream.simulator.testing import RunningSimulator
from tests.support.engine import seed_users
from tests.support.kafka import (
    consume,
    create_service_topics,
    dlq_topic_of,
    end_offsets,
    headers_of,
    produce,
    records_written,
    retry_topic_of,
    unique_topic,
)
from tests.support.runbooks import REPO, runbook_commands
from tests.support.segment import identify, track
from tests.support.service import log_events, run_to_end, service_env, zendesk_stream
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

USERS = [f"u{n}" for n in range(6)]
SHORT_RETRIES = {
    "STREAM_RETRY_ATTEMPTS": "1",
    "STREAM_RETRY_DELAY_S": "1",
    "STREAM_RETRY_ROUNDS": "1",
    "STREAM_BREAKER_WINDOW": "10000",  # everything fails on purpose: the breaker must not stop the run
}


def events() -> list[tuple[str | None, dict[str, object]]]:
    records: list[tuple[str | None, dict[str, object]]] = []
    for user in USERS:
        records.append((user, identify(user, name=f"Name {user}", plan="pro")))
        records += [(user, track(user, "Step", seq=n)) for n in (1, 2)]
    return records


def produce_dead_letters(
    bootstrap: str,
    topic: str,
    letters: list[tuple[str | None, bytes]],
    headers: list[list[tuple[str, bytes]]],
) -> None:
    """Dead letters as the service writes them (its own header code), without an outage to make them."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20})
    for (key, value), extra in zip(letters, headers, strict=True):
        while True:
            try:
                producer.produce(
                    topic, key=key, value=value, headers=list[tuple[str, str | bytes | None]](extra)
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def test_after_an_outage_replay_then_run_leave_zendesk_as_without_it_each_event_once(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("replay")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, events())
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]}, **SHORT_RETRIES)
    fast_simulator.control.inject_fault(path="create_or_update|events", count=100_000, status=503)

    outage = run_to_end(env)
    assert outage.returncode == 0, outage.stderr[-3000:]
    dead = consume(kafka_bootstrap, dlq_topic_of(topic), count=len(events()))
    assert {headers_of(m)["zs.error.reason"] for m in dead} <= {b"retries_exhausted", b"user_not_found"}
    fast_simulator.control.clear_faults()

    retry_before = end_offsets(kafka_bootstrap, retry_topic_of(topic))
    dry = zendesk_stream(["replay", "--dry-run"], env)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert f"{len(events())} would go to {retry_topic_of(topic)} (dry run: nothing changed)" in dry.stdout
    assert "503 6" in dry.stdout  # the six identifies; the tracks, never sent, have no status
    assert end_offsets(kafka_bootstrap, retry_topic_of(topic)) == retry_before

    replayed = zendesk_stream(["replay"], env)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    assert f"{len(events())} went to {retry_topic_of(topic)}" in replayed.stdout
    again = zendesk_stream(["replay"], env)  # the same replay again: it resumes at the end
    assert again.returncode == 0 and "read 0 dead letters" in again.stdout, again.stdout + again.stderr

    recovered = run_to_end(env)
    assert recovered.returncode == 0, recovered.stderr[-3000:]
    state = fast_simulator.control.state()
    users = {u["external_id"]: u for u in state["users"]}
    assert {x: users[x]["name"] for x in USERS} == {x: f"Name {x}" for x in USERS}
    assert all(users[x]["user_fields"]["plan"] == "pro" for x in USERS)
    by_user = {u["id"]: u["external_id"] for u in state["users"]}
    posted = sorted((by_user[int(e["user_id"])], int(e["properties"]["seq"])) for e in state["events"])
    assert posted == sorted((x, n) for x in USERS for n in (1, 2))  # each once, none lost
    retry = retry_topic_of(topic)
    copies = consume(kafka_bootstrap, retry, count=records_written(kafka_bootstrap, retry))
    replay_ids = [headers_of(m)["zs.replay.id"] for m in copies if "zs.replay.id" in headers_of(m)]
    assert len(replay_ids) == len(events()) and len(set(replay_ids)) == 1  # one replay, each record once


RUNBOOK = REPO / "ops" / "runbooks" / "zendesk-outage.md"


def test_the_outage_runbook_recovers_an_outage_with_its_own_commands(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    """The runbook's commands, taken from it and run in its order, after the outage it describes."""
    topic = unique_topic("runbook")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, events())
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]}, **SHORT_RETRIES)
    fast_simulator.control.inject_fault(path="create_or_update|events", count=100_000, status=503)
    assert run_to_end(env).returncode == 0
    fast_simulator.control.clear_faults()

    commands = runbook_commands(RUNBOOK)
    assert [c[0] for c in commands] == ["status", "replay", "replay", "run"]
    for command in commands:
        done = zendesk_stream(command, env)
        assert done.returncode == 0, (command, done.stderr[-3000:])

    state = fast_simulator.control.state()
    by_user = {u["id"]: u["external_id"] for u in state["users"]}
    posted = sorted((by_user[int(e["user_id"])], int(e["properties"]["seq"])) for e in state["events"])
    assert posted == sorted((x, n) for x in USERS for n in (1, 2))


def _posted(simulator: RunningSimulator) -> list[tuple[str, int]]:
    state = simulator.control.state()
    by_user = {u["id"]: u["external_id"] for u in state["users"]}
    return sorted((by_user[int(e["user_id"])], int(e["properties"]["seq"])) for e in state["events"])


def test_a_rewind_to_the_earliest_offsets_reproduces_the_state_with_no_sunshine_event_twice(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    """The recovery issue's rewind case: the upserts go again (idempotent), the tracks are skipped as
    already delivered."""
    topic = unique_topic("rewound")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, events())
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]})
    assert run_to_end(env).returncode == 0
    users_before = {u["external_id"]: u["user_fields"] for u in fast_simulator.control.state()["users"]}

    rewound = zendesk_stream(["rewind", "--to-earliest", "--execute"], env)
    assert rewound.returncode == 0, rewound.stderr
    again = run_to_end(env)

    assert again.returncode == 0, again.stderr[-3000:]
    skipped = [e for e in log_events(again.stderr) if e.get("reason") == "already_delivered"]
    assert len(skipped) == 2 * len(USERS)
    assert _posted(fast_simulator) == sorted((x, n) for x in USERS for n in (1, 2))
    assert {
        u["external_id"]: u["user_fields"] for u in fast_simulator.control.state()["users"]
    } == users_before


def test_a_replay_killed_halfway_and_started_again_leaves_no_gap_and_no_event_twice(
    kafka_bootstrap: str, fast_simulator: RunningSimulator, tmp_path: Path
) -> None:
    """The replay is SIGKILLed once it has copied part of the dead letters; run again, it resumes from
    its last checkpoint. What it copied twice reaches the retry path twice and is skipped the second
    time, so Zendesk holds every event once."""
    topic = unique_topic("replay-kill")
    group = f"{topic}-group"
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    users, per_user = [f"k{n}" for n in range(100)], 60
    seed_users(fast_simulator, users)
    now = datetime.now(UTC)
    letters: list[tuple[str | None, bytes]] = []
    headers_by_letter: list[list[tuple[str, bytes]]] = []
    for n in range(per_user):
        for index, user in enumerate(users):
            record = InboundRecord(
                topic=topic, partition=index % 2, offset=n * len(users) + index, key=user.encode(), value=b""
            )
            failure = Failure(reason=DlqReason.RETRIES_EXHAUSTED, message="503", http_status=503)
            headers_by_letter.append(failure_headers(record, failure, now=now, group=group))
            letters.append((user, json.dumps(track(user, "Step", seq=n)).encode()))
    produce_dead_letters(kafka_bootstrap, dlq_topic_of(topic), letters, headers_by_letter)
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]})
    total = len(letters)

    with (tmp_path / "replay.log").open("w") as log:
        replay = subprocess.Popen(
            [sys.executable, "-m", "stream", "replay"], env=env, cwd=REPO, stdout=log, stderr=log
        )
    try:
        wait_for(
            lambda: total // 4 <= records_written(kafka_bootstrap, retry_topic_of(topic)) < total,
            timeout_s=120,
            what="a quarter of the dead letters copied",
            interval_s=0.02,
        )
        replay.send_signal(signal.SIGKILL)
    finally:
        if replay.poll() is None:
            replay.kill()
        replay.wait(timeout=30)
    copied_before = records_written(kafka_bootstrap, retry_topic_of(topic))
    assert replay.returncode == -signal.SIGKILL and copied_before < total

    resumed = zendesk_stream(["replay"], env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    copied = records_written(kafka_bootstrap, retry_topic_of(topic))
    assert total <= copied <= total + 500  # at most one checkpoint copied twice
    delivered = run_to_end(env, timeout_s=600)

    assert delivered.returncode == 0, delivered.stderr[-3000:]
    print(f"\n[replay kill] copied before the kill {copied_before}, in all {copied} of {total}")
    assert _posted(fast_simulator) == sorted((u, n) for u in users for n in range(per_user))
