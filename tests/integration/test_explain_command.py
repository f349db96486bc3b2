"""`zendesk-stream explain` against the Zendesk simulator: a dry run writes nothing, --send delivers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.errors import ZendeskConfigError
from stream.explain import EXIT_DEAD_LETTER, EXIT_OK, run_explain
from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from tests.support.segment import group, identify, track

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with run_simulator_in_thread(SimulatorOptions(rate_limits=False)) as sim:
        yield sim


@pytest.fixture
def sim(simulator: RunningSimulator) -> RunningSimulator:
    simulator.control.reset()
    return simulator


def env_for(sim: RunningSimulator, *, token: str | None = None) -> dict[str, str]:
    return {
        "ZENDESK_SUBDOMAIN": "acme",
        "ZENDESK_BASE_URL": sim.base_url,
        "ZENDESK_EMAIL": sim.email or "",
        "ZENDESK_API_TOKEN": token or sim.api_token or "",
        "ZENDESK_SETTINGS": json.dumps({"events": ["Article Completed"]}),
    }


def explain(sim: RunningSimulator, events: object, **kwargs: bool) -> tuple[int, str]:
    out = io.StringIO()
    code = run_explain("-", env_for(sim), out=out, stdin=io.StringIO(json.dumps(events)), **kwargs)
    return code, out.getvalue()


def test_dry_run_reads_the_custom_fields_and_writes_nothing(sim: RunningSimulator) -> None:
    sim.control.seed(user_fields=[{"key": "plan", "type": "text", "title": "Plan"}])
    code, text = explain(
        sim, [identify("u1", name="Ann", plan="gold", logins=3), track("u1", "Article Completed")]
    )
    assert code == EXIT_OK
    assert text.splitlines()[0] == (
        f"custom fields: read from Zendesk at {sim.base_url} (GET only): 1 user field, 0 organization fields"
    )
    assert 'create the user field "logins" (integer)' in text
    assert 'create the user field "plan"' not in text  # it exists: the plan is exact
    assert {r["method"] for r in sim.control.requests()} == {"GET"}
    assert sim.control.state()["users"] == []


def test_send_delivers_and_shows_each_answer_and_the_outcome(sim: RunningSimulator) -> None:
    events = [identify("u1", name="Ann", email="ann@example.com"), group("u1", "g1", name="Initech")]
    code, text = explain(sim, events, send=True)
    assert code == EXIT_OK, text
    assert "  1. POST /api/v2/users/create_or_update → 201 {" in text
    assert "POST /api/v2/organization_memberships → 201 {" in text
    assert text.count("result: delivered") == 2
    assert len(sim.control.state()["organization_memberships"]) == 1
    assert sim.api_token is not None and sim.api_token not in text


def test_send_of_a_rejected_event_exits_3_with_the_reason(sim: RunningSimulator) -> None:
    code, text = explain(sim, track("ghost", "Article Completed"), send=True)
    assert code == EXIT_DEAD_LETTER
    assert "result: dead-lettered, reason user_not_found (class rejected)" in text
    assert "POST /api/v2/user_profiles/events" not in text.split("sent:")[1]


def test_refused_credentials_raise_zendesk_config_error_without_printing_the_token(
    sim: RunningSimulator,
) -> None:
    with pytest.raises(ZendeskConfigError) as refused:
        run_explain(
            "-",
            env_for(sim, token="not-the-token"),
            out=io.StringIO(),
            stdin=io.StringIO(json.dumps(identify("u1", name="Ann"))),
        )
    assert refused.value.status == 401 and "not-the-token" not in str(refused.value)


def test_command_exits_2_with_a_clear_line_when_zendesk_refuses_the_credentials(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps(identify("u1", name="Ann")))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZENDESK_", "STREAM_"))}
    result = subprocess.run(
        [sys.executable, "-m", "stream", "explain", str(event_file)],
        env={**clean, **env_for(sim, token="not-the-token"), "STREAM_LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    *logged, line = result.stderr.splitlines()  # the client's error log line (JSON), then the message
    assert all(json.loads(entry)["level"] == "error" for entry in logged)
    assert line.startswith("zendesk-stream: Zendesk refused our credentials (401)")
    assert "not-the-token" not in result.stderr
