"""The operations files (ops/k8s, ops/grafana, ops/prometheus) agree with the service, without a cluster:
the manifests parse and are listed, the pod runs as the image's non-root user on a read-only root
filesystem, stops within its grace period, is probed where the metrics server listens, and scales no
further than the input has partitions; every setting they pass is one the service knows; the dashboard
and the alerts query only the metric names of the contract, and every alert links an existing runbook."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ops.prometheus.metric_names import (
    DASHBOARD,
    METRIC,
    RULES,
    dashboard_queries,
    metric_names,
    rule_expressions,
    used_metric_names,
)
from stream.config import consumer_options_from_env, engine_options_from_env, load_config
from stream.engine.options import EngineOptions
from stream.environment import ENVIRONMENT
from stream.kafka.config import librdkafka_key

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "ops" / "k8s"
RUNBOOKS = REPO / "ops" / "runbooks"
MANIFESTS = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
RUNBOOK_BASE = "https://github.com/example/zendesk-stream/blob/main/"  # placeholder, documented as such
SHUTDOWN_MARGIN_S = 15  # the commit, leaving the group and flushing the producer after the deadline
METRICS_PORT = 9464  # STREAM_METRICS_PORT's default
# Added by the metrics branch beside docs/contracts.md §5 (429s are zendesk_requests_total{status="429"}).
EXTRA_METRICS: dict[str, tuple[str, frozenset[str]]] = {
    "zendesk_stream_oauth_token_expiry_timestamp_seconds": ("gauge", frozenset()),
}
# Labels Prometheus adds to every series of a target (ServiceMonitor or static config).
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "container", "endpoint"})
OUTCOMES = frozenset({"delivered", "skipped", "dead_lettered", "retry_scheduled", "parked"})


# ------------------------------------------------------------------------------------------ reading


def documents(path: Path) -> list[dict[str, Any]]:
    loaded = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    assert all(isinstance(doc, dict) for doc in loaded), path.name
    return loaded


def all_documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def one(kind: str) -> dict[str, Any]:
    found = [doc for doc in all_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("StatefulSet")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    assert len(containers) == 1
    return containers[0]


def config_env() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


def secret_env() -> dict[str, str]:
    data: dict[str, str] = one("Secret")["stringData"]
    return data


FIXED_METRICS = frozenset(  # the names the architecture fixed first; the metrics server added more
    {
        "zendesk_stream_events_total",
        "zendesk_stream_zendesk_requests_total",
        "zendesk_stream_zendesk_request_seconds",
        "zendesk_stream_rate_limit_waits_total",
        "zendesk_stream_consumer_lag",
        "zendesk_stream_committed_offset",
        "zendesk_stream_in_flight_events",
        "zendesk_stream_parked_keys",
        "zendesk_stream_breaker_open",
    }
)


def contract_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """docs/contracts.md §5: each metric's type and labels, plus the names the metrics branch adds."""
    text = (REPO / "docs" / "contracts.md").read_text(encoding="utf-8")
    section = text.split("\n## 5.", 1)[1].split("\n## ", 1)[0]
    found: dict[str, tuple[str, frozenset[str]]] = {}
    row = r"^\| `(zendesk_stream_\w+)` \| (?:built \| |planned \| )?(counter|gauge|histogram) \| (.*) \|$"
    for name, kind, labels in re.findall(row, section, re.M):
        found[name] = (kind, frozenset(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", labels))))
    return {**found, **EXTRA_METRICS}


def exposed_names() -> dict[str, frozenset[str]]:
    """Each series name a scrape shows, with the labels it may carry (a histogram's three series)."""
    names: dict[str, frozenset[str]] = {}
    for name, (kind, labels) in contract_metrics().items():
        if kind == "histogram":
            names |= {f"{name}_bucket": labels | {"le"}, f"{name}_sum": labels, f"{name}_count": labels}
        else:
            names[name] = labels
    return names


def selectors(expression: str) -> Iterator[tuple[str, str, str]]:
    """(metric, label, value) for each label matcher written on a metric: `name{label="value"}`."""
    for name, matchers in re.findall(r"\b(zendesk_stream_\w+)\{([^}]*)\}", expression):
        for label, value in re.findall(r'(\w+)\s*(?:=~|!~|!=|=)\s*"([^"]*)"', matchers):
            yield name, label, value


def alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


# ------------------------------------------------------------------------------------- Kubernetes


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_parses_into_named_kubernetes_objects(path: Path) -> None:
    loaded = documents(path)
    assert loaded, f"{path.name} is empty"
    for doc in loaded:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
        assert doc["metadata"]["name"].startswith("zendesk-stream")


def test_the_kustomization_lists_exactly_the_manifests_present() -> None:
    kustomization = documents(K8S / "kustomization.yaml")[0]
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed)), "a manifest is listed twice"
    assert sorted(listed) == [path.name for path in MANIFESTS]
    assert not list(K8S.glob("*.yml")), "manifests end in .yaml"


def test_the_consumer_is_a_statefulset_with_its_pod_name_as_static_member_id() -> None:
    kinds = [doc["kind"] for doc in all_documents()]
    assert "Deployment" not in kinds
    statefulset = one("StatefulSet")
    env = {item["name"]: item for item in container().get("env", [])}
    instance = env["STREAM_GROUP_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "STREAM_GROUP_INSTANCE_ID" not in config_env()  # one id per pod, never a shared one
    service = one("Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"  # headless: it governs the pods' stable names
    assert "replicas" not in statefulset["spec"], "replicas belong to the ScaledObject"


def test_the_pod_runs_as_the_images_non_root_user_on_a_read_only_root_filesystem() -> None:
    dockerfile = (REPO / "ops" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    image_user = int(re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)[-1][0])
    pod = pod_spec()["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == image_user == 10001
    security = container()["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert security.get("privileged", False) is False
    mounts = {mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec()["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "/tmp is the only place it writes"
    assert pod_spec()["automountServiceAccountToken"] is False


def test_the_grace_period_covers_the_shutdown_deadline_and_a_margin() -> None:
    grace = pod_spec()["terminationGracePeriodSeconds"]
    default_deadline = EngineOptions().shutdown_deadline_s
    configured_deadline = engine_options_from_env(config_env()).shutdown_deadline_s
    assert default_deadline == 30
    assert grace >= default_deadline + SHUTDOWN_MARGIN_S
    assert grace >= configured_deadline + SHUTDOWN_MARGIN_S


def test_the_probes_ask_healthz_and_readyz_on_the_metrics_port() -> None:
    ports = {port["name"]: port["containerPort"] for port in container()["ports"]}
    assert ports == {"metrics": METRICS_PORT}
    kinds = ("livenessProbe", "readinessProbe", "startupProbe")
    probes = {kind: container()[kind]["httpGet"] for kind in kinds}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["startupProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert ports.get(probe["port"], probe["port"]) == METRICS_PORT
    env = {**config_env(), **secret_env()}
    assert env.get("STREAM_METRICS_PORT", str(METRICS_PORT)) == str(METRICS_PORT)


def test_the_container_requests_resources_and_limits_its_memory() -> None:
    resources = container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    assert "memory" in resources["limits"]


def test_keda_scales_the_statefulset_no_further_than_the_input_has_partitions() -> None:
    topics = tomllib.loads((REPO / "topics" / "topics.toml").read_text(encoding="utf-8"))
    partitions = topics["topics"]["input"]["partitions"]
    scaled = one("ScaledObject")["spec"]
    assert scaled["scaleTargetRef"]["kind"] == "StatefulSet"
    assert scaled["scaleTargetRef"]["name"] == one("StatefulSet")["metadata"]["name"]
    assert 1 <= scaled["minReplicaCount"] <= scaled["maxReplicaCount"] <= partitions
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka"
    metadata = trigger["metadata"]
    env = config_env()
    assert metadata["bootstrapServers"] == env["KAFKA_BOOTSTRAP_SERVERS"]
    assert metadata["consumerGroup"] == env["STREAM_GROUP_ID"]
    assert metadata["topic"] == env["STREAM_TOPIC"]
    assert metadata["allowIdleConsumers"] == "false"
    authentication = one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
    for ref in authentication["spec"]["secretTargetRef"]:
        assert ref["name"] == one("Secret")["metadata"]["name"]
        assert ref["key"] in secret_env()


def test_every_environment_name_is_one_the_service_knows() -> None:
    names = {*config_env(), *secret_env(), *(item["name"] for item in container().get("env", []))}
    known_kafka = {name for name in names if name.startswith("KAFKA_") and librdkafka_key(name)}
    unknown = sorted(names - set(ENVIRONMENT) - known_kafka)
    assert unknown == []
    sources = {next(iter(ref.values()))["name"] for ref in container()["envFrom"]}
    assert sources == {one("ConfigMap")["metadata"]["name"], one("Secret")["metadata"]["name"]}


def test_the_example_environment_loads_as_the_service_would_load_it() -> None:
    env = {**config_env(), **secret_env(), "STREAM_GROUP_INSTANCE_ID": "zendesk-stream-0"}
    config = load_config(env)
    assert config.kafka.input_topic == env["STREAM_TOPIC"]
    assert config.kafka.client_config("consumer")["sasl.mechanism"] == "SCRAM-SHA-256"
    assert consumer_options_from_env(env).group_instance_id == "zendesk-stream-0"


def test_the_secret_recommends_oauth_client_credentials_not_api_tokens() -> None:
    secret = secret_env()
    assert {"ZENDESK_OAUTH_CLIENT_ID", "ZENDESK_OAUTH_CLIENT_SECRET"} <= set(secret)
    assert not {"ZENDESK_API_TOKEN", "ZENDESK_EMAIL", "ZENDESK_OAUTH_TOKEN"} & {*secret, *config_env()}
    assert not any("SECRET" in name or "PASSWORD" in name for name in config_env())


def test_the_disruption_budget_and_the_service_monitor_select_the_pods() -> None:
    pod_labels = one("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    budget = one("PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    service = one("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    monitor = one("ServiceMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    service_ports = {port["name"]: port["port"] for port in service["spec"]["ports"]}
    (endpoint,) = monitor["endpoints"]
    assert service_ports[endpoint["port"]] == METRICS_PORT
    assert endpoint["path"] == "/metrics"


# -------------------------------------------------------------------------- dashboard and alerts


def test_the_contract_list_of_metrics_is_read() -> None:
    metrics = contract_metrics()
    assert set(metrics) >= FIXED_METRICS and len(metrics) > len(FIXED_METRICS)
    assert metrics["zendesk_stream_zendesk_request_seconds"][0] == "histogram"
    assert metrics["zendesk_stream_events_total"][1] == {"type", "outcome", "reason"}


def test_the_dashboard_parses_and_queries_only_contract_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "zendesk-stream"
    queries = dashboard_queries()
    assert len(queries) >= 15
    used = {name for query in queries for name in metric_names(query)}
    assert used - set(exposed_names()) == set()
    panel_ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))


def test_the_dashboard_shows_every_metric_the_architecture_fixed() -> None:
    used = {name for query in dashboard_queries() for name in metric_names(query)}
    shown = {n.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for n in used}
    assert FIXED_METRICS - shown == set()


def test_the_alert_rules_query_only_contract_metrics() -> None:
    expressions = rule_expressions()
    assert len(expressions) == 6
    for alert, expression in expressions.items():
        assert metric_names(expression), alert
        assert metric_names(expression) - set(exposed_names()) == set(), alert


def test_the_single_list_of_used_names_is_within_the_contract() -> None:
    used = used_metric_names()
    assert "zendesk_stream_breaker_open" in used
    assert used <= set(exposed_names())


@pytest.mark.parametrize("folder", ["k8s", "grafana", "prometheus"])
def test_every_metric_name_written_anywhere_in_the_files_is_in_the_contract(folder: str) -> None:
    written = {
        (path.name, name)
        for path in (REPO / "ops" / folder).rglob("*")
        if path.suffix in {".yaml", ".yml", ".json"}
        for name in METRIC.findall(path.read_text(encoding="utf-8"))
    }
    assert {(file, name) for file, name in written if name not in exposed_names()} == set()


def test_label_matchers_use_contract_labels_and_outcomes() -> None:
    labels = exposed_names()
    for expression in [*dashboard_queries(), *rule_expressions().values()]:
        for name, label, value in selectors(expression):
            assert label in labels[name] | TARGET_LABELS, f"{name}{{{label}}} in {expression}"
            if label == "outcome" and not value.startswith("$"):
                assert set(value.split("|")) <= OUTCOMES, expression


def test_every_alert_has_a_runbook_url_to_an_existing_runbook() -> None:
    assert len(alerts()) == 6
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        assert url.startswith(RUNBOOK_BASE + "ops/runbooks/"), alert["alert"]
        assert (REPO / url.removeprefix(RUNBOOK_BASE)).is_file(), url
        assert {"summary", "description"} <= set(alert["annotations"]), alert["alert"]
        assert alert["labels"]["severity"] in {"warning", "critical"}
    assert {path.name for path in RUNBOOKS.glob("*.md")} >= {"scaling.md", "bad-deploy.md"}


def test_every_alert_has_a_firing_case_and_a_silent_case_in_the_rule_tests() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in sorted((REPO / "ops" / "prometheus" / "tests").glob("*.test.yml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert document["rule_files"] == ["../" + RULES.name]
        for test in document["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {alert["alert"] for alert in alerts()}
    assert firing == names
    assert silent == names
