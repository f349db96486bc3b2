"""docker-compose.yml against the config contract, without an engine (tests/containers/test_compose.py
brings it up for real)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stream.cli import build_parser
from stream.config import load_config
from stream.environment import ENVIRONMENT

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(document, dict)
    return document


def test_compose_declares_kafka_the_simulator_and_the_service() -> None:
    services = _compose()["services"]
    assert {"kafka", "topics", "zendesk-simulator", "zendesk-stream", "prometheus", "grafana"} <= set(
        services
    )
    assert services["kafka"]["image"] == "${ZS_KAFKA_IMAGE:-apache/kafka:4.1.0}"
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft


def test_compose_service_environment_uses_only_contract_variables_and_loads() -> None:
    environment = _compose()["services"]["zendesk-stream"]["environment"]
    unknown = sorted(set(environment) - set(ENVIRONMENT))
    assert not unknown, f"variables outside the contract: {unknown}"
    config = load_config({key: str(value) for key, value in environment.items()})
    assert config.kafka.input_topic == environment["STREAM_TOPIC"]
    assert config.zendesk.subdomain == environment["ZENDESK_SUBDOMAIN"]


def test_compose_commands_are_real_subcommands() -> None:
    parser = build_parser()
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if command is None or name in {"kafka", "prometheus", "grafana"}:
            continue
        parser.parse_args([str(part) for part in command])  # exits (fails the test) on a bad command


def test_dockerfile_the_compose_file_builds_exists() -> None:
    build = _compose()["x-service-image"]["build"]
    assert (REPO / build["dockerfile"]).is_file()


def test_every_long_running_service_restarts_and_has_a_health_check() -> None:
    for name, service in _compose()["services"].items():
        assert service.get("restart"), name
        if name != "topics":  # a job: done when it exited 0
            assert service["healthcheck"]["test"], name


def test_prometheus_and_grafana_mount_the_files_that_exist() -> None:
    services = _compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for volume in services[name]["volumes"]:
            assert (REPO / volume.split(":")[0]).exists(), volume
