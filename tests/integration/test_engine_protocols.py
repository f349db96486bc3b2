"""The engine under both consumer-group protocols: classic (cooperative-sticky assignment) and KIP-848
(`group.protocol=consumer`, the broker assigns). Same scenario for each: one member consumes, a second
joins while events flow, then leaves; nothing is lost, order holds, no partition has two owners at once.
The broker's own description of the group confirms which protocol ran it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stream.simulator.testing import run_simulator
from tests.support.engine import (
    create_side_topics,
    missing,
    order_violations,
    ownership_problems,
    seed_users,
    user_keys,
)
from tests.support.members import Group, run_with_churn

pytestmark = pytest.mark.kafka

PARTITIONS = 4


@pytest.mark.parametrize(("protocol", "group_type"), [("classic", "CLASSIC"), ("consumer", "CONSUMER")])
def test_the_engine_works_with_both_group_protocols(
    protocol: str, group_type: str, kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = new_topic(partitions=PARTITIONS)
    create_side_topics(kafka_bootstrap, topic, partitions=PARTITIONS)
    with run_simulator(
        extra_args=["--no-rate-limits", "--latency-ms", "5", "--jitter-ms", "20"]
    ) as simulator:
        keys = user_keys(100)
        seed_users(simulator, keys)
        group = Group(
            kafka_bootstrap,
            topic,
            simulator,
            tmp_path,
            extra_env={"STREAM_MAX_IN_FLIGHT": "16", "STREAM_GROUP_PROTOCOL": protocol},
        )
        result = run_with_churn(group, keys=keys, per_second=100, steps=["+b", "-b"])

    print(f"\n[{protocol}] events={sum(result.expected.values())} sent_by={dict(result.sent_by)}")
    assert result.group_type == group_type
    assert missing(result.effects, result.expected) == []
    assert order_violations(result.effects) == []
    assert ownership_problems(result.windows, result.effects, result.partition_of) == []
    assert result.sent_by["a"] > 0 and result.sent_by["b"] > 0, result.sent_by
