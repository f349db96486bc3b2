"""The runbooks of ops/runbooks/, each run with its own commands after staging the situation it describes.

Every test takes the `zendesk-stream ...` lines of its runbook (tests/support/runbooks.py), checks that
they are the ones it expects (so a changed runbook fails here until its test follows), and runs them in
their order against a real broker and the Zendesk simulator. Placeholders a runbook must leave to the
reader (a time, a key) are replaced by the test with the value of the situation it staged; each test says
which.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stream.simulator.testing import RunningSimulator
from tests.support.kafka import create_service_topics, produce, unique_topic
from tests.support.runbooks import RUNBOOKS, runbook_commands
from tests.support.segment import identify, track
from tests.support.service import run_to_end, service_env, zendesk_stream

pytestmark = pytest.mark.kafka

Records = list[tuple[str | None, dict[str, Any]]]


def user_events(users: list[str], **traits: Any) -> Records:
    """Per user an identify with `traits` and a name, then two `Step` tracks."""
    records: Records = []
    for user in users:
        records.append((user, identify(user, name=f"Name {user}", **traits)))
        records += [(user, track(user, "Step", seq=n)) for n in (1, 2)]
    return records


def posted_events(simulator: RunningSimulator) -> list[tuple[str, str, int]]:
    """The Sunshine events in Zendesk as (external id, event name, seq), sorted, duplicates kept."""
    state = simulator.control.state()
    by_user = {u["id"]: u["external_id"] for u in state["users"]}
    return sorted(
        (by_user[int(e["user_id"])], str(e["type"]), int(e["properties"]["seq"])) for e in state["events"]
    )


def users_by_external_id(simulator: RunningSimulator) -> dict[str, dict[str, Any]]:
    return {u["external_id"]: u for u in simulator.control.state()["users"] if u["external_id"]}


def status_json(env: dict[str, str]) -> dict[str, Any]:
    done = zendesk_stream(["status", "--json"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def run_all(commands: list[list[str]], env: dict[str, str]) -> list[str]:
    """Run each command to its end, asserting exit 0; their stdout, in order."""
    outputs = []
    for command in commands:
        done = zendesk_stream(command, env)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
        outputs.append(done.stdout)
    return outputs


def fatal_lines(stderr: str) -> list[str]:
    """The lines the command printed for a person (not the JSON log lines): `zendesk-stream: ...`."""
    return [line for line in stderr.splitlines() if line.startswith("zendesk-stream:")]


# ------------------------------------------------------------------------------------ bad-deploy.md

BAD_DEPLOY = RUNBOOKS / "bad-deploy.md"


def test_bad_deploy_runbook_replays_what_a_rejecting_release_dead_lettered(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    """A release whose user upserts Zendesk rejects (422) dead-letters the identifies as zendesk_rejected
    and their tracks as user_not_found until the breaker stops it (exit 1, one line). After the rollback
    the runbook's commands leave every user with its traits and every Sunshine event posted once."""
    users = [f"u{n}" for n in range(8)]
    records = user_events(users, plan="pro")
    topic = unique_topic("bad-deploy")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, records)
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]}, STREAM_BREAKER_WINDOW="6")
    fast_simulator.control.inject_fault(
        path="users/create_or_update",
        count=100_000,
        status=422,
        error="RecordInvalid",
        description="Record validation errors",
    )
    bad = run_to_end(env)
    assert bad.returncode == 1, bad.stderr[-3000:]
    lines = fatal_lines(bad.stderr)
    assert len(lines) == 1 and "circuit breaker open" in lines[0], bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr
    stopped = status_json(env)
    assert stopped["dlq_reasons"].get("zendesk_rejected", 0) >= 1, stopped
    assert set(stopped["dlq_reasons"]) <= {"zendesk_rejected", "user_not_found"}, stopped
    assert stopped["lag"] > 0, stopped  # the breaker stopped it before the end: the rest waits, uncommitted
    assert fast_simulator.control.state()["events"] == []
    fast_simulator.control.clear_faults()  # the rollback

    commands = runbook_commands(BAD_DEPLOY)
    reasons = ["--reason", "zendesk_rejected", "--reason", "user_not_found", "--since", "2h"]
    assert commands == [
        ["status"],
        ["replay", "--dry-run", *reasons],
        ["replay", *reasons],
        ["run", "--exit-at-end"],
        ["status"],
    ]
    outputs = run_all(commands, env)
    dead = sum(stopped["dlq_reasons"].values())
    assert f"{dead} would go to" in outputs[1] and "422" in outputs[1], outputs[1]
    assert f"{dead} went to" in outputs[2], outputs[2]

    after = status_json(env)
    assert after["lag"] == 0 and after["parked_keys"] == 0, after
    assert after["dlq_records"] == dead, after  # nothing failed again
    found = users_by_external_id(fast_simulator)
    assert {u: (found[u]["name"], found[u]["user_fields"]["plan"]) for u in users} == {
        u: (f"Name {u}", "pro") for u in users
    }
    assert posted_events(fast_simulator) == sorted((u, "Step", n) for u in users for n in (1, 2))
