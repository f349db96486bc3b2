"""`explain` and `run` make one request sequence: the same events, run both ways against the same Zendesk
state, come to the same outcomes and reasons, with the same write requests."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from stream.explain import run_explain
from stream.simulator.testing import RunningSimulator
from tests.support.kafka import create_service_topics, produce, unique_topic
from tests.support.segment import group, identify, track
from tests.support.service import log_events, run_to_end, service_env

pytestmark = pytest.mark.kafka

SETTINGS = {"events": ["Article Completed"], "removeUsersFromOrganizations": True}
WRITES = {"POST", "PUT", "DELETE"}


def events() -> list[dict[str, Any]]:
    return [
        identify("new-1", name="Ann New", email="ann@example.com", plan="gold", seats=3),
        identify("known-1", name="Kim Known", plan="silver"),
        track("known-1", "Article Completed", title="How to"),
        track("ghost", "Article Completed"),
        track("known-1", "Not Enabled"),
        group("known-1", "org-1", name="Initech", industry="Tech"),
        group("ghost", "org-2", name="Globex"),
        identify("nameless", email="n@example.com"),
        {"type": "page", "userId": "known-1"},
        {"userId": "no-type"},
    ]


def seed(sim: RunningSimulator) -> None:
    sim.control.reset()
    sim.control.seed(
        users=[{"name": "Kim Known", "external_id": "known-1"}],
        user_fields=[{"key": "plan", "type": "text", "title": "Plan"}],
    )


def explained(sim: RunningSimulator) -> tuple[list[tuple[str, str | None]], list[tuple[str, str]]]:
    env = {
        "ZENDESK_SUBDOMAIN": "acme",
        "ZENDESK_BASE_URL": sim.base_url,
        "ZENDESK_EMAIL": sim.email or "",
        "ZENDESK_API_TOKEN": sim.api_token or "",
        "ZENDESK_SETTINGS": json.dumps(SETTINGS),
    }
    out = io.StringIO()
    run_explain("-", env, as_json=True, out=out, stdin=io.StringIO(json.dumps(events())))
    document = json.loads(out.getvalue())
    outcomes = [(e["result"]["outcome"], e["result"].get("reason")) for e in document["events"]]
    writes = [(c["method"], c["path"]) for e in document["events"] for c in e["calls"] if c["write"]]
    return outcomes, writes


def test_explain_and_run_come_to_the_same_outcomes_with_the_same_writes(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    seed(fast_simulator)
    expected_outcomes, expected_writes = explained(fast_simulator)
    assert {r["method"] for r in fast_simulator.control.requests()} == {"GET"}  # explain wrote nothing

    seed(fast_simulator)
    topic = unique_topic("t-explain-agrees")
    create_service_topics(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [("one-key", event) for event in events()])  # one lane: in order
    result = run_to_end(service_env(kafka_bootstrap, topic, fast_simulator, SETTINGS))
    assert result.returncode == 0, result.stderr[-2000:]

    lines = sorted(
        (e for e in log_events(result.stderr) if e.get("event") == "event"), key=lambda e: e["offset"]
    )
    ran = [(e["outcome"], e.get("reason")) for e in lines]
    written = [(r["method"], r["path"]) for r in fast_simulator.control.requests() if r["method"] in WRITES]
    assert ran == expected_outcomes
    assert [_template(w) for w in written] == expected_writes
    assert ("dead_lettered", "user_not_found") in ran and ("skipped", "missing_name") in ran


def _template(write: tuple[str, str]) -> tuple[str, str]:
    method, path = write
    return method, path.removesuffix(".json")
