"""Rebalance: a second and a third consumer join and leave while events flow.

Members are real `zendesk-stream run` processes of one group; a producer thread keeps producing the
sequenced workload all along. Checked on Zendesk's side (tests/support/engine.py):
- nothing lost: every produced event reached Zendesk;
- no order violation: per key, each event follows its predecessor, or a replay goes back;
- no event processed by two members at once: members never own a partition at the same time (their own
  assignment/revocation log lines), and every event a member sent, the simulator received while that
  member owned the event's partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from tests.support.members import ChurnResult, Group, run_with_churn

pytestmark = pytest.mark.kafka

PARTITIONS = 4
SIMULATOR_ARGS = ["--no-rate-limits", "--latency-ms", "5", "--jitter-ms", "20"]


def churn(
    bootstrap: str,
    topic: str,
    log_dir: Path,
    *,
    keys: int,
    per_second: int,
    steps: Sequence[str],
    protocol: str = "classic",
) -> ChurnResult:
    create_side_topics(bootstrap, topic, partitions=PARTITIONS)
    with run_simulator(extra_args=SIMULATOR_ARGS) as simulator:
        names = user_keys(keys)
        seed_users(simulator, names)
        group = Group(
            bootstrap,
            topic,
            simulator,
            log_dir,
            extra_env={"STREAM_MAX_IN_FLIGHT": "16", "STREAM_GROUP_PROTOCOL": protocol},
        )
        return run_with_churn(group, keys=names, per_second=per_second, steps=steps)


def assert_sound(result: ChurnResult, members: Sequence[str]) -> None:
    print(
        f"\n[rebalance] events={sum(result.expected.values())} effects={len(result.effects)} "
        f"sent_by={dict(result.sent_by)} ownership_windows={len(result.windows)}"
    )
    assert missing(result.effects, result.expected) == [], "events never reached Zendesk"
    assert order_violations(result.effects) == []
    assert ownership_problems(result.windows, result.effects, result.partition_of) == []
    for member in members:  # every member really took part
        assert result.sent_by[member] > 0, result.sent_by


def test_members_join_and_leave_during_a_run_without_loss_reordering_or_overlap(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Default-suite size: 200 keys, about 150 events/s while b joins, c joins, b leaves, c leaves."""
    result = churn(
        kafka_bootstrap,
        new_topic(partitions=PARTITIONS),
        tmp_path,
        keys=200,
        per_second=150,
        steps=["+b", "+c", "-b", "-c"],
    )
    assert_sound(result, ["a", "b", "c"])


# Slow: the default suite keeps the same checks with fewer steps (the join-and-leave test above) and
# with SIGKILLs and joins every 5 s (tests/reliability/test_rebalance_storm.py's short variant).
@pytest.mark.slow
def test_repeated_churn_over_1000_keys(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """1,000 keys, about 400 events/s; members come and go six times, one of them twice."""
    result = churn(
        kafka_bootstrap,
        new_topic(partitions=PARTITIONS),
        tmp_path,
        keys=1_000,
        per_second=400,
        steps=["+b", "+c", "-b", "+d", "-c", "+e", "-d", "-e"],
    )
    assert_sound(result, ["a", "b", "c", "d", "e"])


def test_a_member_leaving_with_sigterm_hands_its_partitions_over_promptly(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    """SIGTERM: in-flight work (requests of at most 25 ms) finishes, offsets are committed, the member
    leaves the group through its revocation callback and exits, in seconds; the rest of the group
    takes its partitions over and goes on."""
    result = churn(
        kafka_bootstrap,
        new_topic(partitions=PARTITIONS),
        tmp_path,
        keys=50,
        per_second=100,
        steps=["+b", "-b"],
    )
    print(f"\n[leave] seconds from SIGTERM to exit: {result.leave_s}")
    assert_sound(result, ["a", "b"])
    assert result.shutdown_problems == {"a": [], "b": []}
    assert max(result.leave_s.values()) < 10, result.leave_s
