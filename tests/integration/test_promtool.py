"""The Prometheus files are what Prometheus itself accepts, and the alerts fire when they should: promtool
checks the rule files and the scrape configuration, and runs the rule unit tests in ops/prometheus/tests/
(synthetic series, real rule evaluation).

promtool comes with Prometheus (`ops/dev.sh setup` installs Debian's package when root on Debian). Under
CI=true a missing promtool fails these tests; elsewhere they skip, saying how to get it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ops.prometheus.metric_names import dashboard_queries

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "ops" / "prometheus"
RULE_FILES = sorted(PROMETHEUS.glob("*.rules.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yml"))
# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": ".+"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is missing (ops/dev.sh setup installs it as root on Debian; else: Prometheus 2.x)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{reason}; CI needs it", pytrace=False)
        pytest.skip(reason)
    return found


def run(promtool: str, *args: str | Path, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def rule_count(path: Path) -> int:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return sum(len(group["rules"]) for group in document["groups"])


def test_there_are_rule_files_and_rule_tests() -> None:
    assert RULE_FILES == [PROMETHEUS / "zendesk-stream.rules.yml"]
    assert RULE_TESTS


def test_promtool_accepts_the_rule_files(promtool: str) -> None:
    result = run(promtool, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in RULE_FILES:  # promtool counts the rules it understood: all of them
        assert f"SUCCESS: {rule_count(path)} rules found" in result.stdout


def test_promtool_accepts_the_scrape_config_and_the_rule_files_it_names(promtool: str) -> None:
    result = run(promtool, "check", "config", PROMETHEUS / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_every_dashboard_query_is_promql_prometheus_accepts(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query of the dashboard, its Grafana variables substituted, as a recording
    rule's expression."""
    rules = []
    for number, written in enumerate(dashboard_queries()):
        query = written
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        assert "$" not in query, f"a Grafana variable this test does not know: {query}"
        if query.startswith("label_values("):  # a template variable's query, not PromQL
            continue
        rules.append({"record": f"dashboard:query_{number}", "expr": query})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run(promtool, "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_rule_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("original", "mutated"),
    [
        ("            > 0.01\n", "            > 0.03\n"),  # the 429 share
        ("breaker_open[15m]", "breaker_open[1m]"),  # the breaker's look-back
        ("time() < 60\n", "time() < 600\n"),  # the token's time left
    ],
    ids=["429-threshold", "breaker-window", "oauth-threshold"],
)
def test_the_rule_unit_tests_fail_for_a_changed_rule(
    promtool: str, tmp_path: Path, original: str, mutated: str
) -> None:
    rules = (PROMETHEUS / "zendesk-stream.rules.yml").read_text(encoding="utf-8")
    assert original in rules
    (tmp_path / "zendesk-stream.rules.yml").write_text(rules.replace(original, mutated), encoding="utf-8")
    (tmp_path / "tests").mkdir()
    for test in RULE_TESTS:
        shutil.copy(test, tmp_path / "tests" / test.name)
    result = run(promtool, "test", "rules", *sorted((tmp_path / "tests").glob("*.test.yml")), cwd=tmp_path)
    assert result.returncode != 0, result.stdout
    assert "FAILED" in result.stdout + result.stderr
