"""Topic definitions (`topics/topics.toml`) and the pure plan that aligns a cluster with them.

`plan_changes` compares what is declared with what the cluster holds and returns the actions; the
admin seam (`stream.kafka.admin`) carries them out. Keeping the decision pure makes "apply twice
changes nothing" a property of one function.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stream.errors import ConfigError
from stream.kafka.config import KafkaSettings

ROLES = ("input", "retry", "dlq")
DEFAULT_FILE = Path(__file__).resolve().parent.parent / "topics" / "topics.toml"


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    role: str
    name: str
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ExistingTopic:
    name: str
    partitions: int
    config: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class CreateTopic:
    spec: TopicSpec


@dataclass(frozen=True, kw_only=True)
class AlterConfig:
    topic: str
    changes: Mapping[str, tuple[str | None, str]]  # key -> (current, wanted)


@dataclass(frozen=True, kw_only=True)
class IncreasePartitions:
    topic: str
    current: int
    wanted: int


@dataclass(frozen=True, kw_only=True)
class Warning_:
    topic: str
    message: str


Action = CreateTopic | AlterConfig | IncreasePartitions | Warning_


def load_specs(
    settings: KafkaSettings, *, path: Path = DEFAULT_FILE, replication_factor: int | None = None
) -> list[TopicSpec]:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"topics file: {path} not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"topics file: {path} is not valid TOML ({err})") from None
    declared = document.get("topics", {})
    names = {"input": settings.input_topic, "retry": settings.retry_topic, "dlq": settings.dlq_topic}
    unknown = sorted(set(declared) - set(ROLES))
    if unknown:
        raise ConfigError(f"topics file: unknown topic role {unknown[0]!r} (known: {', '.join(ROLES)})")
    specs = []
    for role in ROLES:
        if role not in declared:
            raise ConfigError(f"topics file: topic role {role!r} is not declared in {path}")
        specs.append(_spec(role, names[role], declared[role], replication_factor))
    return specs


def _spec(role: str, name: str, body: Mapping[str, object], rf_override: int | None) -> TopicSpec:
    partitions = body.get("partitions")
    declared_rf = body.get("replication_factor")
    if not isinstance(partitions, int) or partitions < 1:
        raise ConfigError(f"topics file: topics.{role}.partitions must be a positive integer")
    if not isinstance(declared_rf, int) or declared_rf < 1:
        raise ConfigError(f"topics file: topics.{role}.replication_factor must be a positive integer")
    raw_config = body.get("config", {})
    if not isinstance(raw_config, dict):
        raise ConfigError(f"topics file: topics.{role}.config must be a table")
    config = {str(k): str(v) for k, v in raw_config.items()}
    rf = rf_override or declared_rf
    if "min.insync.replicas" in config and int(config["min.insync.replicas"]) >= rf:
        # A development cluster with fewer replicas still has to accept writes.
        config["min.insync.replicas"] = str(max(1, rf - 1))
    return TopicSpec(role=role, name=name, partitions=partitions, replication_factor=rf, config=config)


def plan_changes(
    specs: list[TopicSpec],
    existing: Mapping[str, ExistingTopic],
    *,
    broker_count: int,
    increase_partitions: bool = False,
) -> list[Action]:
    actions: list[Action] = []
    for spec in specs:
        current = existing.get(spec.name)
        if current is None:
            if spec.replication_factor > broker_count:
                raise ConfigError(
                    f"topic {spec.name}: replication factor {spec.replication_factor} needs "
                    f"{spec.replication_factor} brokers, the cluster has {broker_count}; "
                    "pass --replication-factor for a development cluster"
                )
            actions.append(CreateTopic(spec=spec))
            continue
        drift = {
            key: (current.config.get(key), wanted)
            for key, wanted in spec.config.items()
            if current.config.get(key) != wanted
        }
        if drift:
            actions.append(AlterConfig(topic=spec.name, changes=drift))
        if current.partitions > spec.partitions:
            actions.append(
                Warning_(
                    topic=spec.name,
                    message=f"has {current.partitions} partitions, more than the {spec.partitions} declared; "
                    "partition counts are never lowered",
                )
            )
        elif current.partitions < spec.partitions:
            if increase_partitions:
                actions.append(
                    IncreasePartitions(topic=spec.name, current=current.partitions, wanted=spec.partitions)
                )
            else:
                actions.append(
                    Warning_(
                        topic=spec.name,
                        message=f"has {current.partitions} partitions, {spec.partitions} declared; raising "
                        "the count remaps keys to partitions (per-key order breaks across the change): "
                        "rerun with --increase-partitions to do it",
                    )
                )
    return actions


def describe(action: Action) -> str:
    match action:
        case CreateTopic(spec=spec):
            return (
                f"create {spec.name} ({spec.role}): {spec.partitions} partitions, "
                f"replication factor {spec.replication_factor}"
            )
        case AlterConfig(topic=topic, changes=changes):
            parts = ", ".join(f"{k}: {old} -> {new}" for k, (old, new) in sorted(changes.items()))
            return f"alter {topic}: {parts}"
        case IncreasePartitions(topic=topic, current=current, wanted=wanted):
            return f"increase partitions of {topic}: {current} -> {wanted} (keys are remapped)"
        case Warning_(topic=topic, message=message):
            return f"warning: {topic} {message}"
