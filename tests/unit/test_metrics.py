"""The metrics as a scrape shows them, over a real HTTP server on a free port: every name of the
contract (docs/contracts.md §5) with bounded labels, /healthz and /readyz, and the settings' checks."""

from __future__ import annotations

import dataclasses
import socket

import httpx
import pytest

from stream.config import DEFAULT_METRICS_PORT, metrics_port_from_env
from stream.engine.ports import RecordLabel
from stream.engine.runner import EngineSnapshot
from stream.errors import ConfigError
from stream.health import Health
from stream.metrics import Metrics, MetricsServer, Sampler, ServiceObserver
from stream.zendesk.governor import Governor

CONTRACT = [
    "zendesk_stream_events_total",
    "zendesk_stream_zendesk_requests_total",
    "zendesk_stream_zendesk_request_seconds",
    "zendesk_stream_rate_limit_waits_total",
    "zendesk_stream_consumer_lag",
    "zendesk_stream_committed_offset",
    "zendesk_stream_in_flight_events",
    "zendesk_stream_parked_keys",
    "zendesk_stream_breaker_open",
]


def snapshot() -> EngineSnapshot:
    return EngineSnapshot(
        in_flight=4,
        buffered=9,
        parked_keys=2,
        breaker_open=False,
        committed={("in", 0): 10, ("in.g.retry", 0): 3},
        delivered_ids=7,
    )


def test_a_scrape_carries_every_contract_name_with_bounded_labels() -> None:
    metrics = Metrics()
    observer = ServiceObserver(metrics)
    observer.consumed("in", 3)
    observer.outcome(RecordLabel("identify", "m1"), "delivered", "none")
    observer.outcome(RecordLabel("page-view-of-someone", None), "skipped", "unsupported_type")  # not bounded
    observer.produced("dead_letter", "user_not_found")
    metrics.request("/api/v2/users/{id}", "200", 0.02)
    metrics.request("/api/v2/users/{id}", "timeout", 30.0)
    metrics.job_done(1.5)
    governor = Governor(clock=lambda: 100.0)
    Sampler(
        metrics,
        engine=snapshot,
        governor=governor.budget,
        bulk_jobs=lambda: 2,
        token_expires_in_s=lambda: 3000.0,
        caches=lambda: {"user_ids_by_external_id": 40},
    ).take()
    metrics.sample = dataclasses.replace(metrics.sample, ends={("in", 0): 25})

    text = metrics.render().decode()

    for name in CONTRACT:
        assert f"\n{name}" in text, name  # a sample of it, not only its HELP line
    assert 'zendesk_stream_events_total{outcome="delivered",reason="none",type="identify"} 1.0' in text
    assert (
        'zendesk_stream_events_total{outcome="skipped",reason="unsupported_type",type="unknown"} 1.0' in text
    )
    assert 'zendesk_stream_events_consumed_total{topic="in"} 3.0' in text
    assert 'zendesk_stream_records_produced_total{kind="dead_letter",reason="user_not_found"} 1.0' in text
    assert 'zendesk_stream_zendesk_requests_total{endpoint="/api/v2/users/{id}",status="timeout"} 1.0' in text
    assert 'zendesk_stream_zendesk_request_seconds_count{endpoint="/api/v2/users/{id}"} 2.0' in text
    assert "zendesk_stream_bulk_job_seconds_count 1.0" in text
    assert "zendesk_stream_bulk_jobs_in_flight 2.0" in text
    assert "zendesk_stream_in_flight_events 4.0" in text
    assert "zendesk_stream_buffered_events 9.0" in text
    assert "zendesk_stream_parked_keys 2.0" in text
    assert "zendesk_stream_breaker_open 0.0" in text
    assert 'zendesk_stream_cache_entries{cache="user_ids_by_external_id"} 40.0' in text
    assert 'zendesk_stream_cache_entries{cache="delivered_tracks"} 7.0' in text
    assert 'zendesk_stream_committed_offset{partition="0",topic="in"} 10.0' in text
    assert 'zendesk_stream_end_offset{partition="0",topic="in"} 25.0' in text
    assert 'zendesk_stream_consumer_lag{partition="0",topic="in"} 15.0' in text
    assert 'zendesk_stream_consumer_lag{partition="0",topic="in.g.retry"}' not in text  # no end known yet
    assert 'zendesk_stream_rate_limit_tokens{bucket="account"}' in text
    assert "zendesk_stream_bulk_job_slots_free 30.0" in text
    assert "zendesk_stream_oauth_token_expires_in_seconds 3000.0" in text
    assert "zendesk_stream_ready 0.0" in text
    assert "process_cpu_seconds_total" in text


def test_the_governor_waits_and_429s_are_counted_by_bucket_family_never_by_key() -> None:
    metrics = Metrics()
    governor = Governor(clock=lambda: 100.0)
    governor.stats.waits.update({"account": 3, "user": 2})
    governor.stats.rate_limited.update({"events": 1})
    Sampler(metrics, engine=snapshot, governor=governor.budget).take()
    text = metrics.render().decode()
    assert 'zendesk_stream_rate_limit_waits_total{bucket="account"} 3.0' in text
    assert 'zendesk_stream_rate_limit_waits_total{bucket="user"} 2.0' in text
    assert 'zendesk_stream_rate_limited_total{bucket="events"} 1.0' in text
    assert 'zendesk_stream_rate_limited_total{bucket="account"} 0.0' in text


def test_the_server_answers_metrics_healthz_and_readyz_from_its_own_thread() -> None:
    health = Health()
    metrics = Metrics(health=health)
    server = MetricsServer(metrics, port=0, host="127.0.0.1").start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        scraped = httpx.get(f"{base}/metrics")
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert "zendesk_stream_events_total" in scraped.text
        assert httpx.get(f"{base}/healthz").json() == {"status": "starting"}
        not_ready = httpx.get(f"{base}/readyz")
        assert (not_ready.status_code, not_ready.json()["status"]) == (503, "not_assigned")
        health.beat()
        health.assigned()
        assert httpx.get(f"{base}/readyz").status_code == 200
        health.stopping("fatal error: circuit breaker open")
        halted = httpx.get(f"{base}/readyz")
        assert halted.status_code == 503
        assert halted.json() == {"status": "halted", "detail": "fatal error: circuit breaker open"}
        assert httpx.get(f"{base}/nothing").status_code == 404
    finally:
        server.close()


def test_a_port_taken_is_one_line_naming_the_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"^STREAM_METRICS_PORT: cannot serve metrics on port {port} "):
            MetricsServer(Metrics(), port=port, host="127.0.0.1")


@pytest.mark.parametrize(
    ("raw", "port"), [("", DEFAULT_METRICS_PORT), ("0", None), ("9100", 9100), (" 65535 ", 65535)]
)
def test_stream_metrics_port(raw: str, port: int | None) -> None:
    assert metrics_port_from_env({"STREAM_METRICS_PORT": raw}) == port


@pytest.mark.parametrize("raw", ["-1", "65536", "nine", "9464.0"])
def test_a_bad_stream_metrics_port_is_one_line(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^STREAM_METRICS_PORT: expected a port number from 1 to 65535"):
        metrics_port_from_env({"STREAM_METRICS_PORT": raw})
