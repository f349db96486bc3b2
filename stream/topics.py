"""Topic definitions (`topics/topics.toml`) and the pure plan that aligns a cluster with them.

`plan_changes` compares what is declared with what the cluster holds and returns the actions; the
admin seam (`stream.kafka.admin`) carries them out. Keeping the decision pure makes "apply twice
changes nothing" a property of one function.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from stream.errors import ConfigError
from stream.kafka.config import KafkaSettings

ROLES = ("input", "retry", "dlq", "delivered")


def definitions_dir() -> Traversable:
    """The topic definitions (`topics/`): read in place in a checkout; an installed package carries them
    as `stream.definitions` (pyproject.toml maps the directory there)."""
    checkout = Path(__file__).resolve().parent.parent / "topics"
    if (checkout / "topics.toml").is_file():
        return checkout
    return files("stream.definitions")


DEFAULT_FILE = definitions_dir() / "topics.toml"


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
    replication_factor: int = 1


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
    settings: KafkaSettings, *, path: Path | Traversable = DEFAULT_FILE, replication_factor: int | None = None
) -> list[TopicSpec]:
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"topics file: {path} not found") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"topics file: {path} is not valid TOML ({err})") from None
    declared = document.get("topics", {})
    names = {
        "input": settings.input_topic,
        "retry": settings.retry_topic,
        "dlq": settings.dlq_topic,
        "delivered": settings.delivered_topic,
    }
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
    for key in (MIN_ISR, MAX_MESSAGE_BYTES):
        if key in config and not config[key].isdigit():
            raise ConfigError(f"topics file: topics.{role}.config.{key} must be a whole number")
    rf = rf_override or declared_rf
    return TopicSpec(role=role, name=name, partitions=partitions, replication_factor=rf, config=config)


MIN_ISR = "min.insync.replicas"
MAX_MESSAGE_BYTES = "max.message.bytes"
BROKER_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's default for a topic's max.message.bytes


def min_isr_for(declared: int, replication_factor: int) -> int:
    """min.insync.replicas never reaches the replication factor (except 1 of 1): one replica down must
    still accept acks=all writes, and a single-broker development cluster must accept them at all."""
    return declared if declared < replication_factor else max(1, replication_factor - 1)


def max_message_bytes(config: Mapping[str, str]) -> int:
    raw = config.get(MAX_MESSAGE_BYTES, "")
    return int(raw) if raw.isdigit() else BROKER_DEFAULT_MAX_MESSAGE_BYTES


def plan_changes(
    specs: list[TopicSpec],
    existing: Mapping[str, ExistingTopic],
    *,
    broker_count: int,
    increase_partitions: bool = False,
    dry_run: bool = False,
) -> list[Action]:
    """The actions that align the cluster with `specs`. Rules:
    1. A missing topic is created; one whose replication factor the cluster cannot hold is refused
       (ConfigError), or reported as a warning with `dry_run`.
    2. min.insync.replicas follows `min_isr_for` with the replication factor the topic has (or will
       have): replication factors are never changed here.
    3. The retry and dead-letter topics take records at least as large as the input's
       (max.message.bytes), so every record's copy fits unless its headers push it over.
    4. Partition counts are never lowered; raising one needs `increase_partitions`."""
    actions: list[Action] = []
    by_role = {spec.role: spec for spec in specs}
    input_spec = by_role.get("input")
    input_limit = BROKER_DEFAULT_MAX_MESSAGE_BYTES
    if input_spec is not None:
        current_input = existing.get(input_spec.name)
        input_limit = max_message_bytes(current_input.config if current_input else input_spec.config)
    for spec in specs:
        current = existing.get(spec.name)
        replication = current.replication_factor if current is not None else spec.replication_factor
        wanted = dict(spec.config)
        if MIN_ISR in wanted:
            wanted[MIN_ISR] = str(min_isr_for(int(wanted[MIN_ISR]), replication))
        if spec.role in ("retry", "dlq"):
            size = max(max_message_bytes(wanted), input_limit)
            if size != BROKER_DEFAULT_MAX_MESSAGE_BYTES or MAX_MESSAGE_BYTES in wanted:
                wanted[MAX_MESSAGE_BYTES] = str(size)
        if current is None:
            if spec.replication_factor > broker_count:
                message = (
                    f"replication factor {spec.replication_factor} needs {spec.replication_factor} "
                    f"brokers, the cluster has {broker_count}; pass --replication-factor for a "
                    "development cluster"
                )
                if not dry_run:
                    raise ConfigError(f"topic {spec.name}: {message}")
                actions.append(Warning_(topic=spec.name, message=f"cannot be created: {message}"))
            actions.append(CreateTopic(spec=TopicSpec(**{**vars(spec), "config": wanted})))
            continue
        if current.replication_factor != spec.replication_factor:
            actions.append(
                Warning_(
                    topic=spec.name,
                    message=f"has replication factor {current.replication_factor}, "
                    f"{spec.replication_factor} wanted; topics apply never changes a replication factor "
                    f"(min.insync.replicas follows the topic's own {current.replication_factor})",
                )
            )
        drift = {
            key: (current.config.get(key), value)
            for key, value in wanted.items()
            if current.config.get(key) != value
        }
        if drift:
            actions.append(AlterConfig(topic=spec.name, changes=drift))
        actions.extend(_partition_actions(spec, current, increase_partitions=increase_partitions))
    return actions


def _partition_actions(spec: TopicSpec, current: ExistingTopic, *, increase_partitions: bool) -> list[Action]:
    if current.partitions > spec.partitions:
        return [
            Warning_(
                topic=spec.name,
                message=f"has {current.partitions} partitions, more than the {spec.partitions} declared; "
                "partition counts are never lowered",
            )
        ]
    if current.partitions == spec.partitions:
        return []
    if increase_partitions:
        return [IncreasePartitions(topic=spec.name, current=current.partitions, wanted=spec.partitions)]
    return [
        Warning_(
            topic=spec.name,
            message=f"has {current.partitions} partitions, {spec.partitions} declared; raising "
            "the count remaps keys to partitions (per-key order breaks across the change): "
            "rerun with --increase-partitions to do it",
        )
    ]


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
