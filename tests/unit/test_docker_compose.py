"""docker-compose.yml cannot run here (no Docker engine); keep it valid against the config contract."""

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
    assert {"kafka", "zendesk-simulator", "zendesk-stream"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
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
        if command is None or name == "kafka":
            continue
        parser.parse_args([str(part) for part in command])  # exits (fails the test) on a bad command


def test_dockerfile_the_compose_file_builds_exists() -> None:
    build = _compose()["x-stream-image"]["build"]
    assert (REPO / build["dockerfile"]).is_file()
