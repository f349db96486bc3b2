"""Start-up: bad settings stop `zendesk-stream run` with one clear line, exit code 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.kafka import REPO, create_service_topics, group_of, unique_topic

GOOD = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "ZENDESK_SUBDOMAIN": "acme",
    "ZENDESK_EMAIL": "admin@example.com",
    "ZENDESK_API_TOKEN": "s3cr3t-token-value",
    "STREAM_LOG_FORMAT": "json",
    "STREAM_METRICS_PORT": "0",
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
        # Before: a librdkafka traceback, exit 1.
        ({"KAFKA_FOO_BAR": "1"}, "KAFKA_FOO_BAR: not a librdkafka property"),
        ({"KAFKA_SECURITY_PROTOCL": "SSL"}, "did you mean KAFKA_SECURITY_PROTOCOL?"),
        # Before: read as a file path, "cannot read ["events"]".
        ({"ZENDESK_SETTINGS": '["events"]'}, "ZENDESK_SETTINGS: must be a JSON object, got an array"),
        # Before: "expected seconds (a positive number)", without the bounds.
        (
            {"STREAM_RETRY_DELAY_S": "100000"},
            "STREAM_RETRY_DELAY_S: expected seconds, more than 0 and at most 900",
        ),
        # Before: silently ignored.
        (
            {"STREAM_MAX_INFLIGHT": "8"},
            "STREAM_MAX_INFLIGHT: unknown setting (did you mean STREAM_MAX_IN_FLIGHT?)",
        ),
        ({"STREAM_TOPICS": "x"}, "STREAM_TOPICS: unknown setting (did you mean STREAM_TOPIC?)"),
        ({"ZENDESK_API_TOKN": "x"}, "ZENDESK_API_TOKN: unknown setting (did you mean ZENDESK_API_TOKEN?)"),
        ({"STREAM_INPUT_FORMAT": "protobuf"}, "STREAM_INPUT_FORMAT: expected json, avro or auto"),
        ({"SCHEMA_REGISTRY_URL": "registry:8081"}, "SCHEMA_REGISTRY_URL: expected http(s)://host"),
    ],
)
def test_bad_setting_stops_start_up_with_one_line_naming_it(change: dict[str, str], expected: str) -> None:
    line = _one_line_error(_run({**GOOD, **change}))
    assert expected in line
    assert "s3cr3t-token-value" not in line


def test_unreachable_bootstrap_servers_stop_start_up_with_one_line() -> None:
    line = _one_line_error(_run(GOOD))
    assert "KAFKA_BOOTSTRAP_SERVERS: no broker answered at 127.0.0.1:1" in line


def test_kubernetes_service_links_next_to_a_service_named_kafka_do_not_stop_start_up() -> None:
    links = {
        "KAFKA_PORT": "tcp://10.0.0.5:9092",
        "KAFKA_SERVICE_HOST": "10.0.0.5",
        "KAFKA_PORT_9092_TCP_ADDR": "x",
    }
    line = _one_line_error(_run({**GOOD, **links}))
    assert "KAFKA_BOOTSTRAP_SERVERS: no broker answered" in line  # got as far as the broker


@pytest.mark.kafka
def test_zendesk_unreachable_at_start_up_stops_it_with_one_line_naming_the_url_and_the_error(
    kafka_bootstrap: str,
) -> None:
    """Before: a warning, then every event went to the retry topic and --exit-at-end never ended."""
    topic = unique_topic("t-zendesk-unreachable")
    create_service_topics(kafka_bootstrap, topic)
    env = {
        **GOOD,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "STREAM_TOPIC": topic,
        "STREAM_GROUP_ID": group_of(topic),
        "ZENDESK_BASE_URL": "http://127.0.0.1:1",
    }
    result = _run(env, "run", "--exit-at-end")
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("zendesk-stream: ZENDESK_BASE_URL: Zendesk at http://127.0.0.1:1 did not answer")
    assert "connection refused" in last and "ConnectTimeout" not in result.stderr


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
