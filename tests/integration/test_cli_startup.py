"""Start-up: bad settings stop `zendesk-stream run` with one clear line, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.kafka import REPO, unique_topic

GOOD = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "ZENDESK_SUBDOMAIN": "acme",
    "ZENDESK_EMAIL": "admin@example.com",
    "ZENDESK_API_TOKEN": "s3cr3t-token-value",
    "STREAM_LOG_FORMAT": "json",
}


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "ZENDESK_", "STREAM_"))}
    return subprocess.run(
        [sys.executable, "-m", "stream", *(args or ("run",))],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"ZENDESK_SUBDOMAIN": ""}, "ZENDESK_SUBDOMAIN is required"),
        ({"ZENDESK_SUBDOMAIN": "evil.com/"}, "ZENDESK_SUBDOMAIN must be a single name"),
        ({"ZENDESK_SETTINGS": '{"evnets": ["Signed Up"]}'}, 'ZENDESK_SETTINGS: unknown key "evnets"'),
        ({"ZENDESK_SETTINGS": "{not json"}, "ZENDESK_SETTINGS: not valid JSON"),
        ({"ZENDESK_SETTINGS": "/nonexistent/settings.json"}, "ZENDESK_SETTINGS: cannot read"),
        ({"ZENDESK_API_TOKEN": ""}, "ZENDESK_API_TOKEN"),
        ({"ZENDESK_BASE_URL": "http://example.com"}, "ZENDESK_BASE_URL must use https"),
        ({"KAFKA_ENABLE_AUTO_COMMIT": "true"}, "KAFKA_ENABLE_AUTO_COMMIT: not allowed"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "not a server"}, "KAFKA_BOOTSTRAP_SERVERS: expected host:port"),
        ({"STREAM_MAX_IN_FLIGHT": "0"}, "STREAM_MAX_IN_FLIGHT: expected a whole number"),
        ({"STREAM_GROUP_PROTOCOL": "eager"}, "STREAM_GROUP_PROTOCOL"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line_naming_it(change: dict[str, str], expected: str) -> None:
    line = _one_line_error(_run({**GOOD, **change}))
    assert expected in line
    assert "s3cr3t-token-value" not in line


def test_unreachable_bootstrap_servers_stop_start_up_with_one_line() -> None:
    line = _one_line_error(_run(GOOD))
    assert "KAFKA_BOOTSTRAP_SERVERS: no broker answered at 127.0.0.1:1" in line


@pytest.mark.kafka
def test_missing_input_topic_names_the_topic_and_the_command_that_creates_it(kafka_bootstrap: str) -> None:
    topic = unique_topic("absent")
    line = _one_line_error(_run({**GOOD, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "STREAM_TOPIC": topic}))
    assert f"topic {topic} does not exist" in line
    assert "zendesk-stream topics apply" in line


def test_help_explains_the_commands() -> None:
    top = _run({}, "--help")
    assert top.returncode == 0
    for command in ("run", "topics", "simulator", "demo"):
        assert command in top.stdout
    apply = _run({}, "topics", "apply", "--help")
    assert apply.returncode == 0
    assert "idempotent" in apply.stdout.lower() or "any number of times" in apply.stdout
    run = _run({}, "run", "--help")
    assert "--exit-at-end" in run.stdout
