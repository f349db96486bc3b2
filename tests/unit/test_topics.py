"""The pure plan of `topics apply`: what it creates, aligns and refuses."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from stream.errors import ConfigError
from stream.kafka.config import kafka_settings_from_env
from stream.topics import (
    AlterConfig,
    CreateTopic,
    ExistingTopic,
    TopicSpec,
    Warning_,
    describe,
    load_specs,
    min_isr_for,
    plan_changes,
)

SETTINGS = kafka_settings_from_env({"STREAM_TOPIC": "in", "STREAM_GROUP_ID": "g"})


def _specs(replication_factor: int | None = None) -> list[TopicSpec]:
    return load_specs(SETTINGS, replication_factor=replication_factor)


def _isr1(spec: TopicSpec) -> dict[str, str]:
    return {**spec.config, "min.insync.replicas": "1"}


def _existing(
    name: str, *, rf: int, partitions: int = 12, config: Mapping[str, str] | None = None
) -> ExistingTopic:
    return ExistingTopic(name=name, partitions=partitions, config=dict(config or {}), replication_factor=rf)


@pytest.mark.parametrize(
    ("declared", "rf", "expected"), [(2, 3, 2), (2, 2, 1), (2, 1, 1), (1, 1, 1), (3, 5, 3), (5, 3, 2)]
)
def test_min_insync_replicas_stays_below_the_replication_factor(
    declared: int, rf: int, expected: int
) -> None:
    assert min_isr_for(declared, rf) == expected


def test_new_topics_on_a_single_broker_get_min_isr_1_with_replication_factor_1() -> None:
    actions = plan_changes(_specs(replication_factor=1), {}, broker_count=1)
    created = [a.spec for a in actions if isinstance(a, CreateTopic)]
    assert [s.name for s in created] == ["in", "in.g.retry", "in.g.dlq", "in.g.delivered"]
    assert all(s.replication_factor == 1 and s.config["min.insync.replicas"] == "1" for s in created)


def test_existing_replication_factor_1_topics_keep_min_isr_1_without_the_override() -> None:
    """The bug: applying the production file to topics made with --replication-factor 1 set
    min.insync.replicas 1 -> 2, after which every acks=all write failed."""
    specs = _specs()
    existing = {s.name: _existing(s.name, rf=1, partitions=s.partitions, config=_isr1(s)) for s in specs}
    actions = plan_changes(specs, existing, broker_count=1)
    assert not [a for a in actions if isinstance(a, AlterConfig)]
    warnings = [a for a in actions if isinstance(a, Warning_)]
    assert len(warnings) == 4 and all("replication factor 1, 3 wanted" in w.message for w in warnings)


def test_the_override_and_the_file_agree_on_existing_topics() -> None:
    specs = _specs()
    existing = {s.name: _existing(s.name, rf=1, partitions=s.partitions, config=_isr1(s)) for s in specs}
    with_override = plan_changes(_specs(replication_factor=1), existing, broker_count=1)
    assert with_override == []


def test_creating_with_more_replicas_than_brokers_is_refused_but_dry_run_prints_the_plan() -> None:
    with pytest.raises(ConfigError, match="replication factor 3 needs 3 brokers, the cluster has 1"):
        plan_changes(_specs(), {}, broker_count=1)
    actions = plan_changes(_specs(), {}, broker_count=1, dry_run=True)
    assert [type(a) for a in actions] == [Warning_, CreateTopic] * 4
    assert "cannot be created" in describe(actions[0])


def test_retry_and_dead_letter_topics_take_records_as_large_as_the_input() -> None:
    specs = _specs(replication_factor=1)
    existing = {s.name: _existing(s.name, rf=1, partitions=s.partitions, config=_isr1(s)) for s in specs}
    existing["in"] = _existing("in", rf=1, config={**existing["in"].config, "max.message.bytes": "5000000"})
    actions = plan_changes(specs, existing, broker_count=1)
    altered = {a.topic: a.changes for a in actions if isinstance(a, AlterConfig)}
    assert altered == {
        "in.g.retry": {"max.message.bytes": (None, "5000000")},
        "in.g.dlq": {"max.message.bytes": (None, "5000000")},
    }


def test_a_second_plan_after_applying_the_first_changes_nothing() -> None:
    specs = _specs(replication_factor=1)
    created = [a.spec for a in plan_changes(specs, {}, broker_count=1) if isinstance(a, CreateTopic)]
    existing = {s.name: _existing(s.name, rf=1, partitions=s.partitions, config=s.config) for s in created}
    assert plan_changes(specs, existing, broker_count=1) == []


def test_the_delivered_topic_is_compacted_aligned_with_the_input_and_kept_as_long_as_the_window() -> None:
    by_role = {spec.role: spec for spec in _specs()}
    delivered = by_role["delivered"]
    assert delivered.name == "in.g.delivered"
    assert delivered.partitions == by_role["input"].partitions
    assert delivered.config["cleanup.policy"] == "compact,delete"
    assert int(delivered.config["retention.ms"]) >= 7 * 86_400_000  # STREAM_DEDUP_WINDOW's default
