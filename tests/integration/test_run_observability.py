"""`zendesk-stream run` as a real process on real Kafka and the simulator, observed from outside: its
/metrics scraped over HTTP during the run add up and agree with what Zendesk saw; /readyz turns green only
once the group assigned partitions and red when the circuit breaker halts the service; and no line of a
run's logs, with API-token or OAuth client-credentials auth, holds a token, a secret or a raw email."""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import pytest

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.support.containers import free_port
from tests.support.kafka import create_service_topics, produce, unique_topic
from tests.support.metrics import Samples, scrape, total
from tests.support.segment import identify, track
from tests.support.service import log_events, run_to_end, service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

SETTINGS = {"events": ["Article Completed"]}


def probe(port: int, path: str) -> tuple[int, dict[str, str]] | None:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    except httpx.HTTPError:
        return None
    return answer.status_code, answer.json()


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()


def test_metrics_scraped_during_a_run_add_up_and_count_every_request_zendesk_saw(
    kafka_bootstrap: str, fast_simulator: RunningSimulator, tmp_path: Path
) -> None:
    sim = fast_simulator
    topic = unique_topic("t-metrics-sums")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    users = [f"metrics-user-{n}" for n in range(8)]
    records: list[tuple[str, object]] = [
        (u, identify(u, name=f"User {n}", email=f"{u}@example.com")) for n, u in enumerate(users)
    ]
    records += [(u, track(u, "Article Completed", title="t")) for u in users]  # delivered, one to retry
    records += [(u, track(u, "Signed Out")) for u in users[:3]]  # skipped: not enabled
    records += [("pager", {"type": "page", "userId": "pager", "name": "Home"})]  # skipped, type other
    records += [("ghost", track("ghost", "Article Completed"))]  # dead-lettered: user_not_found
    records += [("broken", b"{not json")]  # dead-lettered: invalid_payload, type unknown
    produce(kafka_bootstrap, topic, records)  # type: ignore[arg-type]
    sim.control.inject_fault(path="/api/v2/user_profiles/events", count=1, status=503, retry_after=0)
    port = free_port()
    env = service_env(
        kafka_bootstrap,
        topic,
        sim,
        SETTINGS,
        STREAM_METRICS_PORT=str(port),
        STREAM_RETRY_ATTEMPTS="1",  # the 503 sends its track to the retry topic at once
        STREAM_RETRY_DELAY_S="0.5",
        STREAM_BULK="off",
        STREAM_LOG_LEVEL="info",
    )
    process = start_service(env, tmp_path / "service.log")
    try:
        consumed_input = len(records)

        def settled() -> Samples | None:
            samples = scrape(port)
            if samples is None:
                return None
            consumed = total(samples, "zendesk_stream_events_consumed_total")
            ended = total(samples, "zendesk_stream_events_total")
            inputs = total(samples, "zendesk_stream_events_consumed_total", topic=topic)
            return samples if inputs == consumed_input and ended == consumed > consumed_input else None

        samples = wait_for(settled, timeout_s=90, what="every record consumed to reach an outcome")

        consumed = total(samples, "zendesk_stream_events_consumed_total")
        by_outcome = {
            outcome: total(samples, "zendesk_stream_events_total", outcome=outcome)
            for outcome in ("delivered", "skipped", "dead_lettered", "retry_scheduled", "parked")
        }
        retry_topic = f"{topic}.{env['STREAM_GROUP_ID']}.retry"
        from_retry = total(samples, "zendesk_stream_events_consumed_total", topic=retry_topic)
        # consumed = delivered + skipped + dead-lettered + sent to retry (each copy read back once)
        assert consumed == sum(by_outcome.values()) == consumed_input + from_retry
        assert from_retry == by_outcome["retry_scheduled"] + by_outcome["parked"]
        # The 503 sends one track to the retry topic; a later record of its key, if any, is parked.
        parked = by_outcome.pop("parked")
        assert parked in {0, 1}
        assert by_outcome == {"delivered": 16, "skipped": 4, "dead_lettered": 2, "retry_scheduled": 1}
        assert total(samples, "zendesk_stream_events_total", type="identify", outcome="delivered") == 8
        assert (
            total(samples, "zendesk_stream_events_total", type="track", outcome="delivered") == 8
        )  # 8 + retry
        assert total(samples, "zendesk_stream_events_total", type="other", reason="unsupported_type") == 1
        assert total(samples, "zendesk_stream_events_total", type="unknown", reason="invalid_payload") == 1
        assert total(samples, "zendesk_stream_events_total", type="track", reason="user_not_found") == 1
        assert (
            total(samples, "zendesk_stream_records_produced_total", kind="retry", reason="retry_scheduled")
            == 1
        )
        assert total(samples, "zendesk_stream_records_produced_total", kind="dead_letter") == 2

        def requests_agree() -> tuple[Counter[str], Counter[str]] | None:
            seen = Counter(str(e["status"]) for e in sim.control.requests())
            scraped = scrape(port) or []
            counted: Counter[str] = Counter()
            for name, labels, value in scraped:
                if name == "zendesk_stream_zendesk_requests_total":
                    counted[labels["status"]] += int(value)
            return (seen, counted) if seen == counted else None

        _, counted = wait_for(requests_agree, timeout_s=10, what="the requests counted = those Zendesk saw")
        assert counted["503"] == 1 and counted["202"] == 8  # the 503, then every track accepted once
        samples = scrape(port) or []
        endpoints = {ls["endpoint"] for n, ls, _ in samples if n == "zendesk_stream_zendesk_requests_total"}
        assert "/api/v2/user_profiles/events" in endpoints and "/api/v2/users/search" in endpoints
        assert all("{" in e or not re.search(r"/\d+", e) for e in endpoints), endpoints  # templates only
        histogram = total(samples, "zendesk_stream_zendesk_request_seconds_count")
        assert histogram == counted.total()

        # Labels never carry personal data; the lag of the owned input partitions drains to zero.
        values = {v for _, ls, _ in samples for v in ls.values()}
        assert not [v for v in values if "@" in v or "metrics-user" in v or "ghost" in v]

        def lag_zero() -> bool:
            now = scrape(port) or []
            lags = [v for n, ls, v in now if n == "zendesk_stream_consumer_lag" and ls["topic"] == topic]
            return len(lags) == 2 and all(v == 0 for v in lags)

        wait_for(lag_zero, timeout_s=20, what="the input partitions' lag to be 0")
        now = scrape(port) or []
        ends = [v for n, ls, v in now if n == "zendesk_stream_end_offset" and ls["topic"] == topic]
        assert sum(ends) == consumed_input
        assert probe(port, "/healthz") == (200, {"status": "ok"})
        assert probe(port, "/readyz") == (200, {"status": "ok"})
    finally:
        code = stop(process)
    assert code == 0, (tmp_path / "service.log").read_text()[-3000:]


def test_readyz_is_green_only_after_assignment_and_red_when_the_breaker_halts_the_service(
    kafka_bootstrap: str, fast_simulator: RunningSimulator, tmp_path: Path
) -> None:
    sim = fast_simulator
    topic = unique_topic("t-readyz")
    create_service_topics(kafka_bootstrap, topic)
    sim.control.set_options(latency_ms=400)  # start-up's two field listings take most of a second
    port = free_port()
    env = service_env(
        kafka_bootstrap,
        topic,
        sim,
        {"events": ["*"]},
        STREAM_METRICS_PORT=str(port),
        STREAM_BREAKER_WINDOW="4",
        STREAM_BREAKER_THRESHOLD="0.75",
        STREAM_LOG_LEVEL="info",
    )
    log_path = tmp_path / "service.log"
    process = start_service(env, log_path)
    try:

        def assigned_in_log() -> bool:
            return any(e.get("event") == "partitions assigned" for e in log_events(log_path.read_text()))

        def not_ready_before_assignment() -> bool:
            answer = probe(port, "/readyz")  # asked first: the log is read after the answer came
            return answer is not None and answer[1].get("status") == "not_assigned" and not assigned_in_log()

        wait_for(
            not_ready_before_assignment, timeout_s=30, what="/readyz 503 before assignment", interval_s=0.01
        )
        wait_for(lambda: probe(port, "/readyz") == (200, {"status": "ok"}), timeout_s=60, what="/readyz 200")
        assert assigned_in_log()  # logged before readiness turns green
        assert probe(port, "/healthz") == (200, {"status": "ok"})

        # Tracks for users Zendesk does not know: rejected one after another until the breaker opens.
        # Zendesk answers slowly, so the service is still shutting down when /readyz is asked.
        sim.control.set_options(latency_ms=300, jitter_ms=2500)
        produce(kafka_bootstrap, topic, [(f"ghost-{i}", track(f"ghost-{i}", "Signed Up")) for i in range(40)])

        def halted() -> tuple[int, dict[str, str]] | None:
            answer = probe(port, "/readyz")
            return answer if answer is not None and answer[0] == 503 else None

        _, body = wait_for(halted, timeout_s=60, what="/readyz to turn red", interval_s=0.01)
        assert body["status"] == "halted" and "circuit breaker open" in body["detail"], body
        assert process.wait(timeout=60) == 1
    finally:
        stop(process)
    assert "circuit breaker open" in log_path.read_text()


EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def delivered_with_pii(bootstrap: str, topic: str) -> list[str]:
    """Identifies and tracks whose emails a careless log line would show; some Zendesk refuses."""
    users = [f"pii-user-{n}" for n in range(5)]
    create_service_topics(bootstrap, topic)
    records: list[tuple[str, object]] = [
        (f"{u}@example.com", identify(u, name=f"U {u}", email=f"{u}@example.com")) for u in users
    ]
    records += [(u, track(u, "Article Completed", email=f"{u}@example.com")) for u in users]
    records += [("ghost@example.com", track("nobody", "Article Completed", email="ghost@example.com"))]
    produce(bootstrap, topic, records)  # type: ignore[arg-type]
    return [*users, "ghost"]


def assert_no_secret_nor_email(log: str, secrets: list[str]) -> None:
    assert log.strip(), "the run logged nothing"
    for secret in secrets:
        assert secret not in log, f"a secret ({secret[:3]}…) was logged"
    emails = EMAIL_PATTERN.findall(log)
    assert emails == [], emails[:5]


def test_a_run_with_an_api_token_logs_no_token_and_no_raw_email(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("t-logs-api-token")
    delivered_with_pii(kafka_bootstrap, topic)
    env = service_env(kafka_bootstrap, topic, fast_simulator, SETTINGS, STREAM_BULK="off")
    fast_simulator.control.inject_fault(path="/api/v2/users/search", count=1, status=503, retry_after=0)

    result = run_to_end(env)

    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    events = log_events(result.stderr)
    assert sum(1 for e in events if e.get("event") == "event") == 11  # the debug outcome lines are there
    assert any(e.get("key", "").startswith("sha256:") for e in events)  # bound context, hashed
    assert any(e.get("messageId") for e in events)
    assert_no_secret_nor_email(log, [fast_simulator.api_token or "missing", env["ZENDESK_EMAIL"]])


def test_a_run_with_oauth_client_credentials_logs_no_secret_no_token_and_no_raw_email(
    kafka_bootstrap: str,
) -> None:
    client, secret = "zendesk-stream", "cl1ent-s3cret-logs"
    with run_simulator(extra_args=["--no-rate-limits"], oauth_clients={client: secret}) as sim:
        sim.control.set_options(oauth_min_expires_in_s=1)
        topic = unique_topic("t-logs-oauth")
        delivered_with_pii(kafka_bootstrap, topic)
        env = service_env(
            kafka_bootstrap,
            topic,
            sim,
            SETTINGS,
            ZENDESK_EMAIL="",
            ZENDESK_API_TOKEN="",
            ZENDESK_OAUTH_CLIENT_ID=client,
            ZENDESK_OAUTH_CLIENT_SECRET=secret,
            ZENDESK_OAUTH_TOKEN_TTL_S="2",
            STREAM_BULK="off",
            STREAM_MAX_IN_FLIGHT="2",
        )
        sim.control.set_options(latency_ms=300)  # the run outlives a token or two

        result = run_to_end(env, timeout_s=120)

        assert result.returncode == 0, result.stderr[-3000:]
        # The simulator shows the tokens it issued masked: `***` and their last four characters.
        endings = {t["token"].removeprefix("***") for t in sim.control.oauth_tokens(client_id=client)}
        assert len(endings) >= 2, "the run did not outlive its first token"
    log = result.stdout + result.stderr
    assert sum(1 for e in log_events(result.stderr) if e.get("event") == "zendesk.oauth_token") >= 2
    token_like = set(re.findall(r"[0-9a-f]{64}", log))
    assert not [t for t in token_like if t[-4:] in endings], "an access token was logged"
    assert_no_secret_nor_email(log, [secret])
