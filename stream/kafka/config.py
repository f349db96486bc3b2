"""Kafka settings from the environment (docs/contracts.md §2), validated once.

`KAFKA_BOOTSTRAP_SERVERS` names the brokers; every other `KAFKA_*` variable names a librdkafka property
(`KAFKA_SASL_MECHANISM` → `sasl.mechanism`, `KAFKA_LOG_LEVEL` → `log_level`), checked against librdkafka's
own list (`stream.kafka.properties`): an unknown one stops start-up with a did-you-mean. Each property
goes to the clients it belongs to (consumer, producer or both), and the user's value wins over our
defaults, except for the few settings the engine's guarantees rest on, which are refused with the
reason. The variables Kubernetes injects next to a Service named `kafka` (`KAFKA_PORT`,
`KAFKA_SERVICE_HOST`, …) are recognised and ignored. Values of keys that look secret are kept in `Secret`
wrappers (`stream.secret`), revealed only by `client_config()`, whose dict goes straight to the
confluent-kafka constructors.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from stream.errors import ConfigError
from stream.kafka.properties import PROPERTIES
from stream.secret import Secret

Client = Literal["consumer", "producer", "admin"]
_SECRET_HINTS = ("password", "secret", "token", "key")
# Settings the engine's guarantees rest on: refused, with the reason, unless set to our own value.
_FIXED: dict[str, tuple[str | None, str]] = {
    "enable.auto.commit": (
        "false",
        "the engine commits offsets itself, only after Zendesk accepted the event",
    ),
    "enable.auto.offset.store": ("false", "the engine stores and commits offsets itself"),
    "group.id": (None, "use STREAM_GROUP_ID"),
    "acks": ("all", "retry and dead-letter copies must be durable (acks=all) before an offset is committed"),
    "enable.idempotence": ("true", "retry and dead-letter copies are written idempotently"),
}
_ALIASES = {"-1": "all"}
# Service links Kubernetes adds for a Service named `kafka`: KAFKA_PORT=tcp://10.0.0.5:9092,
# KAFKA_SERVICE_HOST, KAFKA_SERVICE_PORT[_NAME], KAFKA_PORT_9092_TCP[_ADDR|_PORT|_PROTO].
_SERVICE_LINK = re.compile(
    r"^KAFKA_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$"
)
_BY_ENV_NAME = {"KAFKA_" + name.upper().replace(".", "_"): name for name in PROPERTIES}
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):\d{1,5}$")


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    bootstrap_servers: str
    input_topic: str
    group_id: str
    retry_topic: str
    dlq_topic: str
    delivered_topic: str = ""  # the markers of delivered events; "": `<input>.<group>.delivered`
    client_overrides: Mapping[str, str | Secret] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.delivered_topic:
            object.__setattr__(self, "delivered_topic", f"{self.input_topic}.{self.group_id}.delivered")

    def client_config(self, client: Client = "admin") -> dict[str, str | int | float | bool]:
        """The user's librdkafka properties that belong to `client` (a consumer gets the consumer ones,
        a producer the producer ones, every client the shared ones). Secrets are revealed here: the dict
        is for the confluent-kafka constructors only, never for a log."""
        wanted = {"*", "C"} if client == "consumer" else {"*", "P"} if client == "producer" else {"*"}
        config: dict[str, str | int | float | bool] = {"bootstrap.servers": self.bootstrap_servers}
        for key, value in self.client_overrides.items():
            if PROPERTIES.get(key, "*") in wanted:
                config[key] = value.reveal() if isinstance(value, Secret) else value
        return config

    def chosen(self, key: str) -> str | None:
        """The value the user set for a (non-secret) property, if any."""
        value = self.client_overrides.get(key)
        return value if isinstance(value, str) else None


def librdkafka_key(env_name: str) -> str | None:
    """The librdkafka property a `KAFKA_*` variable names, or None when it names none."""
    return _BY_ENV_NAME.get(env_name)


def is_service_link(env_name: str) -> bool:
    return bool(_SERVICE_LINK.match(env_name))


def kafka_settings_from_env(env: Mapping[str, str]) -> KafkaSettings:
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092").strip()
    servers = [s.strip() for s in bootstrap.split(",") if s.strip()]
    if not servers or not all(_HOST_PORT.match(s) for s in servers):
        raise ConfigError(f"KAFKA_BOOTSTRAP_SERVERS: expected host:port[,host:port...], got {bootstrap!r}")
    overrides: dict[str, str | Secret] = {}
    for name, value in sorted(env.items()):
        if not name.startswith("KAFKA_") or name == "KAFKA_BOOTSTRAP_SERVERS" or is_service_link(name):
            continue
        key = librdkafka_key(name)
        if key is None:
            raise ConfigError(f"{name}: not a librdkafka property{_did_you_mean(name)}")
        if key in _FIXED:
            _check_fixed(name, key, value)
            continue
        overrides[key] = Secret(value) if any(h in key for h in _SECRET_HINTS) else value
    topic = _name(env, "STREAM_TOPIC", "segment.events")
    group = _name(env, "STREAM_GROUP_ID", "zendesk-stream")
    # Group-specific by default: two deployments on one input (staging and production accounts) must
    # never act on each other's retries or dead letters.
    return KafkaSettings(
        bootstrap_servers=",".join(servers),
        input_topic=topic,
        group_id=group,
        retry_topic=_name(env, "STREAM_RETRY_TOPIC", f"{topic}.{group}.retry"),
        dlq_topic=_name(env, "STREAM_DLQ_TOPIC", f"{topic}.{group}.dlq"),
        delivered_topic=_name(env, "STREAM_DELIVERED_TOPIC", f"{topic}.{group}.delivered"),
        client_overrides=overrides,
    )


def _check_fixed(name: str, key: str, value: str) -> None:
    ours, reason = _FIXED[key]
    given = value.strip().lower()
    if ours is None or _ALIASES.get(given, given) != ours:
        raise ConfigError(f"{name}: not allowed, {reason}")


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name, _BY_ENV_NAME, n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else " (see librdkafka's CONFIGURATION.md)"


_TOPIC_NAME = re.compile(r"^[A-Za-z0-9._\-]{1,249}$")


def _name(env: Mapping[str, str], variable: str, default: str) -> str:
    value = env.get(variable, default).strip()
    if not _TOPIC_NAME.match(value) or value in {".", ".."}:
        raise ConfigError(f"{variable}: {value!r} is not a valid Kafka name (letters, digits, . _ -)")
    return value
