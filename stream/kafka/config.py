"""Kafka settings from the environment (ARCHITECTURE.md §2.2), validated once.

`KAFKA_BOOTSTRAP_SERVERS` names the brokers; every other `KAFKA_*` variable is passed to librdkafka
after mapping its name (`KAFKA_SASL_MECHANISM` → `sasl.mechanism`). Values of keys that look secret are
kept in `Secret` wrappers (`stream.secret`) so they never reach a log line or an error message; only
`client_config()`, whose dict goes straight to the confluent-kafka constructors, reveals them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from stream.errors import ConfigError
from stream.secret import Secret

_SECRET_HINTS = ("password", "secret", "token", "key")
# Commits are ours: the engine commits only finished work. librdkafka must never commit on its own.
_FORBIDDEN = {
    "enable.auto.commit": "the engine commits offsets itself, only after Zendesk accepted the event",
    "group.id": "use STREAM_GROUP_ID",
}
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    bootstrap_servers: str
    input_topic: str
    group_id: str
    retry_topic: str
    dlq_topic: str
    client_overrides: Mapping[str, str | Secret] = field(default_factory=dict)

    def client_config(self) -> dict[str, str | int | float | bool]:
        """Base librdkafka configuration shared by consumer, producer and admin client. Secrets are
        revealed here: the dict is for the confluent-kafka constructors only, never for a log."""
        config: dict[str, str | int | float | bool] = {"bootstrap.servers": self.bootstrap_servers}
        for key, value in self.client_overrides.items():
            config[key] = value.reveal() if isinstance(value, Secret) else value
        return config


def librdkafka_key(env_name: str) -> str:
    return env_name.removeprefix("KAFKA_").lower().replace("_", ".")


def kafka_settings_from_env(env: Mapping[str, str]) -> KafkaSettings:
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092").strip()
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not servers or not all(_HOST_PORT.match(s) for s in servers):
        raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS: expected host:port[,host:port...], got {bootstrap!r}")
    overrides: dict[str, str | Secret] = {}
    for name, value in sorted(env.items()):
        if not name.startswith("KAFKA_") or name == "KAFKA_BOOTSTRAP_SERVERS":
            continue
        key = librdkafka_key(name)
        if key in _FORBIDDEN:
            raise ConfigError(f"{name}: not allowed, {_FORBIDDEN[key]}")
        overrides[key] = Secret(value) if any(h in key for h in _SECRET_HINTS) else value
    topic = _name(env, "STREAM_TOPIC", "segment.events")
    return KafkaSettings(
        bootstrap_servers=",".join(servers),
        input_topic=topic,
        group_id=_name(env, "STREAM_GROUP_ID", "zendesk-stream"),
        retry_topic=_name(env, "STREAM_RETRY_TOPIC", f"{topic}.retry"),
        dlq_topic=_name(env, "STREAM_DLQ_TOPIC", f"{topic}.dlq"),
        client_overrides=overrides,
    )


_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")


def _name(env: Mapping[str, str], variable: str, default: str) -> str:
    value = env.get(variable, default).strip()
    if not _TOPIC_NAME.match(value) or value in {".", ".."}:
        raise ConfigError(f"{variable}: {value!r} is not a valid Kafka name (letters, digits, . _ -)")
    return value
