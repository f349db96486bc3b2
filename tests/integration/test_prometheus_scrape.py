"""The dashboard and the alert rules against the real thing: a running `zendesk-stream run` scraped over
HTTP, and Prometheus from Debian's package (ops/dev.sh setup installs it as root on Debian) scraping it
with the project's own rules loaded.

- Every metric the dashboard or a rule queries is one the service exports (a live scrape, not a list).
- Prometheus scrapes the service, and every rule of ops/prometheus/zendesk-stream.rules.yml is evaluated
  over that real data without error; a rule's expression, asked of Prometheus, finds the service's
  series.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ops.prometheus.metric_names import RULES, used_metric_names
from stream.simulator.testing import RunningSimulator
from tests.support.containers import free_port
from tests.support.engine import seed_users
from tests.support.kafka import create_service_topics, produce, unique_topic
from tests.support.segment import identify, track
from tests.support.service import service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "prometheus is not installed (ops/dev.sh setup installs Debian's package as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def running_service(kafka_bootstrap: str, fast_simulator: RunningSimulator, tmp_path: Path) -> Iterator[int]:
    """A service with its metrics on a free port, having delivered a few events; yields the port."""
    topic = unique_topic("scraped")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    seed_users(fast_simulator, ["p1", "p2"])
    records: list[tuple[str | None, Any]] = [(u, identify(u, name=f"Name {u}")) for u in ("p1", "p2")]
    records += [(u, track(u, "Step", seq=1)) for u in ("p1", "p2")]
    produce(kafka_bootstrap, topic, records)
    port = free_port()
    env = service_env(
        kafka_bootstrap, topic, fast_simulator, {"events": ["*"]}, STREAM_METRICS_PORT=str(port)
    )
    process = start_service(env, tmp_path / "service.log")
    try:
        wait_for(lambda: _delivered(port) >= 4, timeout_s=90, what="the events delivered", interval_s=0.2)
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def _scrape(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None


def _delivered(port: int) -> float:
    text = _scrape(port)
    if text is None:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "zendesk_stream_events_total" and sample.labels.get("outcome") == "delivered"
    )


def exposed(port: int) -> set[str]:
    """The names a scrape shows: every sample's, and every family's, even one without a sample now (the
    OAuth token's expiry in API-token mode). The parser drops a counter family's `_total`."""
    text = _scrape(port) or ""
    families = list(text_string_to_metric_families(text))
    names = {sample.name for family in families for sample in family.samples}
    return names | {family.name for family in families}


def test_every_metric_the_dashboard_and_the_rules_query_is_one_the_running_service_exports(
    running_service: int,
) -> None:
    """Lag and committed offsets appear once the sampler has seen a commit and the end offsets (read
    every 5 s): the test waits for them, at most 30 s."""
    missing = used_metric_names() - exposed(running_service)
    wait_for(
        lambda: not used_metric_names() - exposed(running_service),
        timeout_s=30,
        what=f"every queried metric exported (missing at first: {sorted(missing)})",
        interval_s=0.5,
    )


def test_prometheus_scrapes_the_service_and_evaluates_every_rule_over_its_data(
    running_service: int, tmp_path: Path
) -> None:
    binary = prometheus_binary()
    web = free_port()
    (tmp_path / "rules.yml").write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "prometheus.yml").write_text(
        f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: zendesk-stream
    static_configs:
      - targets: ["127.0.0.1:{running_service}"]
""",
        encoding="utf-8",
    )
    with (tmp_path / "prometheus.log").open("w") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    api = f"http://127.0.0.1:{web}/api/v1"
    try:

        def query(expression: str) -> list[Any] | None:
            try:
                answer = httpx.get(f"{api}/query", params={"query": expression}, timeout=5).json()
            except (httpx.HTTPError, ValueError):
                return None
            result: list[Any] = answer.get("data", {}).get("result", [])
            return result or None

        series = wait_for(
            lambda: query('zendesk_stream_events_total{outcome="delivered"}'),
            timeout_s=60,
            what="Prometheus to have scraped the service",
            interval_s=0.5,
        )
        assert sum(float(s["value"][1]) for s in series) >= 4

        def evaluated() -> list[Any] | None:
            try:
                groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
            except (httpx.HTTPError, ValueError, KeyError):
                return None
            rules = [rule for group in groups for rule in group["rules"]]
            done = all(
                r.get("lastEvaluation", "").startswith("2") and r.get("health") != "unknown" for r in rules
            )
            return rules if rules and done else None

        rules = wait_for(evaluated, timeout_s=60, what="every rule evaluated", interval_s=0.5)
        assert {r["name"]: r["health"] for r in rules} == {r["name"]: "ok" for r in rules}
        assert len(rules) == 6
    finally:
        process.terminate()
        process.wait(timeout=30)
