"""The metric names the dashboard and the alert rules query, read out of those files themselves: the one
list of them, so that it cannot drift from what the files use.

tests/unit/test_operations_files.py checks every name against the contract (docs/contracts.md §5); a test
against a live `/metrics` scrape can compare `used_metric_names()` with what the service exposes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

OPS = Path(__file__).resolve().parents[1]
DASHBOARD = OPS / "grafana" / "zendesk-stream.json"
RULES = OPS / "prometheus" / "zendesk-stream.rules.yml"
METRIC = re.compile(r"\bzendesk_stream_[a-z0-9_]*[a-z0-9]\b")


def dashboard_queries(path: Path = DASHBOARD) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its template variables."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return [*_exprs(document.get("panels", [])), *_variable_queries(document)]


def rule_expressions(path: Path = RULES) -> dict[str, str]:
    """Each rule's expression, by alert (or recorded) name."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in document["groups"]
        for rule in group["rules"]
    }


def metric_names(expression: str) -> set[str]:
    return set(METRIC.findall(expression))


def used_metric_names() -> frozenset[str]:
    """The names, as exposed (a histogram's `_bucket`, `_sum`, `_count`), the dashboard and rules query."""
    expressions = [*dashboard_queries(), *rule_expressions().values()]
    return frozenset(name for expression in expressions for name in metric_names(expression))


def _exprs(panels: list[dict[str, Any]]) -> Iterator[str]:
    for panel in panels:
        for target in panel.get("targets", []):
            if "expr" in target:
                yield target["expr"]
        yield from _exprs(panel.get("panels", []))  # a collapsed row holds its panels


def _variable_queries(document: dict[str, Any]) -> Iterator[str]:
    for variable in document.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        yield query["query"] if isinstance(query, dict) else str(query)
