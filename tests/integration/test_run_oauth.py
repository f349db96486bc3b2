"""`zendesk-stream run` as a real process with OAuth: real Kafka in, the simulator's /oauth/tokens and API
out. A run with client credentials outlives several token lifetimes and delivers everything; refused
credentials stop start-up with one line; API-token mode warns once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.support.kafka import create_service_topics, dlq_topic_of, produce, unique_topic
from tests.support.segment import identify
from tests.support.service import log_events, run_to_end, service_env

pytestmark = pytest.mark.kafka

CLIENT = "zendesk-stream"
SECRET = "cl1ent-s3cret-e2e"
SETTINGS = {"events": ["Article Completed"]}


@pytest.fixture
def oauth_simulator() -> Iterator[RunningSimulator]:
    with run_simulator(extra_args=["--no-rate-limits"], oauth_clients={CLIENT: SECRET}) as running:
        running.control.set_options(oauth_min_expires_in_s=1)  # tokens of seconds, on the real clock
        yield running


def oauth_env(bootstrap: str, topic: str, sim: RunningSimulator, **extra: str) -> dict[str, str]:
    oauth = {
        "ZENDESK_EMAIL": "",
        "ZENDESK_API_TOKEN": "",
        "ZENDESK_OAUTH_CLIENT_ID": CLIENT,
        "ZENDESK_OAUTH_CLIENT_SECRET": SECRET,
    }
    return service_env(bootstrap, topic, sim, SETTINGS, **{**oauth, **extra})


def test_a_run_with_client_credentials_outlives_several_token_lifetimes_and_delivers_everything(
    kafka_bootstrap: str, oauth_simulator: RunningSimulator
) -> None:
    sim = oauth_simulator
    topic = unique_topic("t-oauth-run")
    create_service_topics(kafka_bootstrap, topic)
    users = [f"oauth-user-{n}" for n in range(60)]
    produce(kafka_bootstrap, topic, [(u, identify(u, name=f"User {u}", plan="pro")) for u in users])
    sim.control.set_options(latency_ms=150)  # a slow Zendesk: the run takes several token lifetimes
    env = oauth_env(
        kafka_bootstrap,
        topic,
        sim,
        ZENDESK_OAUTH_TOKEN_TTL_S="2",
        STREAM_MAX_IN_FLIGHT="2",
        STREAM_BULK="off",
    )

    result = run_to_end(env, timeout_s=180)

    assert result.returncode == 0, result.stderr[-3000:]
    delivered = {u["external_id"] for u in sim.control.state()["users"]}
    assert set(users) <= delivered
    tokens = sim.control.oauth_tokens(client_id=CLIENT)
    assert len(tokens) >= 4, f"only {len(tokens)} tokens: the run did not outlive three lifetimes"
    assert all(t["grant_type"] == "client_credentials" for t in tokens)
    api = [e for e in sim.control.requests() if e["path"].startswith("/api/")]
    assert api and {e["status"] for e in api} == {200, 201}, {e["status"] for e in api}  # never a 401
    assert {e["auth"] for e in api} == {f"oauth:{CLIENT}"}
    used = [t for t in tokens if t["uses"]]
    assert len(used) >= 3  # renewed tokens really were used, not only fetched
    events = log_events(result.stderr)
    outcomes = [e["outcome"] for e in events if e.get("event") == "event"]
    assert outcomes.count("delivered") == len(users)
    assert SECRET not in result.stderr
    assert not any("retir" in str(e.get("event")) for e in events)  # no API-token warning with OAuth


def test_refused_client_credentials_stop_start_up_with_one_line_and_exit_2(
    kafka_bootstrap: str, oauth_simulator: RunningSimulator
) -> None:
    topic = unique_topic("t-oauth-refused")
    create_service_topics(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [("k", identify("k", name="K"))])
    env = oauth_env(kafka_bootstrap, topic, oauth_simulator, ZENDESK_OAUTH_CLIENT_SECRET="not-the-secret")

    result = run_to_end(env)

    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("zendesk-stream:")]
    assert lines == [
        "zendesk-stream: Zendesk refused our credentials (401): Zendesk refused the OAuth client_credentials "
        "grant on POST /oauth/tokens (401 invalid_client: client authentication failed: unknown client or "
        "secret); check ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET"
    ]
    assert "not-the-secret" not in result.stderr and "Traceback" not in result.stderr
    assert oauth_simulator.control.state()["users"] == []


def test_credentials_revoked_mid_run_stop_it_after_one_renewal_and_dead_letter_nothing(
    kafka_bootstrap: str, oauth_simulator: RunningSimulator
) -> None:
    sim = oauth_simulator
    topic = unique_topic("t-oauth-revoked")
    create_service_topics(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [(f"k{n}", identify(f"k{n}", name="K")) for n in range(3)])
    env = oauth_env(kafka_bootstrap, topic, sim)
    # Start-up works (the field lists), then every user write answers 401 invalid_token: renewed, refused.
    sim.control.inject_fault(path="users/create_or_update", status=401, count=1_000, error="invalid_token")

    stopped = run_to_end(env)

    assert stopped.returncode == 2, stopped.stderr[-3000:]
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("zendesk-stream: Zendesk refused our credentials (401): Zendesk refused the "), (
        last
    )
    assert "again after renewing the access token" in last
    assert "ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET" in last
    assert SECRET not in stopped.stderr
    assert sim.control.oauth_grants()["client_credentials"] >= 2
    assert _records(kafka_bootstrap, dlq_topic_of(topic)) == 0

    sim.control.clear_faults()  # nothing unfinished was committed: a restart delivers every event
    again = run_to_end(env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {u["external_id"] for u in sim.control.state()["users"]} >= {"k0", "k1", "k2"}


def test_api_token_mode_warns_once_at_start_up(
    kafka_bootstrap: str, oauth_simulator: RunningSimulator
) -> None:
    topic = unique_topic("t-api-token-warning")
    create_service_topics(kafka_bootstrap, topic)
    produce(kafka_bootstrap, topic, [("k", identify("k", name="K"))])

    result = run_to_end(service_env(kafka_bootstrap, topic, oauth_simulator, SETTINGS))

    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [e for e in log_events(result.stderr) if "2027-04-30" in str(e.get("event"))]
    assert len(warnings) == 1, warnings
    (warning,) = warnings
    assert warning["level"] == "warning"
    assert "2026-10-27" in warning["event"] and "ZENDESK_OAUTH_CLIENT_ID" in warning["event"]
    assert oauth_simulator.api_token is not None and oauth_simulator.api_token not in result.stderr


def _records(bootstrap: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition  # noqa: PLC0415

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_topic("peek")})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        total = 0
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()
