"""Reliability, broker failure (issue 15, scenario 2): a 3-node KRaft cluster (every node broker and
controller; replication factor 3, min.insync.replicas 2) loses a node to `kill -9` while the service
delivers, and gets it back later: first the broker leading most of the input's partitions, then the
active controller (the quorum's leader). Checked against the input: lost 0, per-key order violations 0,
tracks posted twice 0. The service's producer writes with acks=all, so a copy or a marker is only
confirmed once two replicas hold it.

The short variant runs in the default suite; the full one is marked slow. Each node killed is brought
back and waited for until it is in every ISR again before the next kill: killing a second replica of a
partition whose third has not caught up would stop its writes, as min ISR 2 promises (that happened
once in CI before the wait was added, and the service stopped with exit 1 after its produce timed out).
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream.simulator.testing import run_simulator
from tests.reliability.report import Figures, record
from tests.support.engine import (
    BackgroundProducer,
    EffectLog,
    missing,
    order_violations,
    seed_users,
    settings_for,
    user_keys,
)
from tests.support.kafka import (
    committed_offsets,
    delivered_topic_of,
    dlq_topic_of,
    end_offsets,
    native_cluster,
    retry_topic_of,
    unique_topic,
)
from tests.support.service import service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 4
LEADER = re.compile(r"\[RaftManager id=(\d+)\] Completed transition to Leader\(.*?epoch=(\d+)")


@dataclass(frozen=True)
class BrokerFailure:
    events: int
    killed: list[str]  # what was killed, in order
    lost: int
    order_violations: int
    posted_twice: int
    longest_pause_s: float  # the longest time between two deliveries, kills included
    wall_s: float

    def line(self) -> str:
        return (
            f"events {self.events:,}, kill -9 of {', then '.join(self.killed)}, each brought back; "
            f"lost {self.lost}, order violations {self.order_violations}, "
            f"tracks posted twice {self.posted_twice}, longest pause in deliveries "
            f"{self.longest_pause_s:.1f} s, wall {self.wall_s:.0f} s"
        )


def _create(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    config = {"min.insync.replicas": "2"}
    wanted = [
        NewTopic(topic, PARTITIONS, 3, config=config),
        NewTopic(retry_topic_of(topic), PARTITIONS, 3, config=config),
        NewTopic(
            delivered_topic_of(topic), PARTITIONS, 3, config={**config, "cleanup.policy": "compact,delete"}
        ),
        NewTopic(dlq_topic_of(topic), 1, 3, config=config),
    ]
    for future in admin.create_topics(wanted, operation_timeout=60).values():
        future.result(timeout=90)


def _leader_of_most(bootstrap: str, topic: str) -> int:
    partitions = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30).topics[topic]
    leaders = Counter(p.leader for p in partitions.partitions.values())
    return leaders.most_common(1)[0][0]


def _in_every_isr(bootstrap: str, topic: str, node_id: int) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    metadata = admin.list_topics(timeout=10).topics
    # The group's offsets too: a commit needs min ISR of its __consumer_offsets partition.
    names = [
        topic,
        retry_topic_of(topic),
        delivered_topic_of(topic),
        dlq_topic_of(topic),
        "__consumer_offsets",
    ]
    return all(
        node_id in p.isrs for name in names if name in metadata for p in metadata[name].partitions.values()
    )


def _committed_to_the_end(bootstrap: str, topic: str) -> bool:
    ends = end_offsets(bootstrap, topic)
    return all(offset >= ends[n] for n, offset in committed_offsets(bootstrap, topic, PARTITIONS).items())


def _active_controller(nodes: list[Any]) -> int:
    """The quorum's leader: the node that last logged becoming Leader, at the highest epoch."""
    best = (-1, -1)
    for node in nodes:
        for name in ("kafka.log.previous", "kafka.log"):  # the launcher's log of the node, before a restart
            path = Path(node.server_log).parent / name
            text = path.read_text(errors="replace") if path.exists() else ""
            for local, epoch in LEADER.findall(text):
                best = max(best, (int(epoch), int(local)))
    assert best[1] > 0, "no node logged becoming the quorum's leader"
    return best[1]


def _kill(launcher: ModuleType, data_dir: Path, node_id: int) -> Any:
    node = next(n for n in launcher.existing_cluster(data_dir).nodes if n.node_id == node_id)
    pid = launcher.running_pid(node)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    launcher.wait_exited(node)
    return node


def broker_failure(work: Path, *, per_second: int, step: int, keys: int, seed: int) -> BrokerFailure:
    """Events produced at `per_second` throughout; each fault (and each return) waits for `step` more
    deliveries, so the service is delivering when it happens and goes on delivering through it."""
    started = time.monotonic()
    data_dir = work / "kafka3"
    with native_cluster(data_dir, nodes=3) as (bootstrap, launcher):
        topic = unique_topic("broker-failure")
        _create(bootstrap, topic)
        with run_simulator(extra_args=["--no-rate-limits", "--latency-ms", "5", "--jitter-ms", "20"]) as sim:
            names = user_keys(keys)
            seed_users(sim, names)
            env = service_env(bootstrap, topic, sim, settings_for("solo"))
            env["STREAM_LOG_LEVEL"] = "info"
            log = EffectLog(sim)
            producer = BackgroundProducer(bootstrap, topic, names, per_second=per_second, seed=seed)
            producer.start()
            process = start_service(env, work / "service.log")
            killed: list[str] = []

            def more(what: str) -> None:
                target = log.distinct() + step
                wait_for(lambda: log.distinct() >= target, timeout_s=240, what=what, interval_s=0.05)

            try:
                more("deliveries before the first fault")
                for pick in ("leader", "controller"):
                    nodes = launcher.existing_cluster(data_dir).nodes
                    victim = (
                        _leader_of_most(bootstrap, topic) if pick == "leader" else _active_controller(nodes)
                    )
                    node = _kill(launcher, data_dir, victim)
                    role = "leader of most partitions" if pick == "leader" else "active controller"
                    killed.append(f"node {victim} ({role})")
                    more(f"deliveries going on without node {victim}")  # min ISR 2 of the other two
                    launcher.start(data_dir, None, None, node.node_id, 180.0)
                    # Back in sync before the next kill: losing a second replica of a partition whose
                    # third has not caught up would stop its writes (min ISR 2), as Kafka promises.
                    wait_for(
                        lambda: _in_every_isr(bootstrap, topic, victim),  # noqa: B023
                        timeout_s=180,
                        what=f"node {victim} back in the ISR of every partition",
                        interval_s=0.5,
                    )
                    more(f"deliveries after node {victim} came back")
                sequencer = producer.stop()
                # Every event in Zendesk, or the group has committed all that Kafka holds: then what is
                # missing was lost, and the figures below say how much.
                wait_for(
                    lambda: log.distinct() >= sequencer.total or _committed_to_the_end(bootstrap, topic),
                    timeout_s=300,
                    what="every produced event in Zendesk, or the group's offsets at the end of the topic",
                    interval_s=0.5,
                )
            finally:
                producer.stop_quietly()
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=90)
            effects = log.refresh()
    posted = Counter((e.key, e.seq) for e in effects)
    return BrokerFailure(
        events=sequencer.total,
        killed=killed,
        lost=len(missing(effects, sequencer.counts)),
        order_violations=len(order_violations(effects)),
        posted_twice=sum(1 for n in posted.values() if n > 1),
        longest_pause_s=max((b - a for a, b in pairwise(sorted(e.at for e in effects))), default=0.0),
        wall_s=time.monotonic() - started,
    )


def _assert_reliable(result: BrokerFailure, variant: str) -> None:
    print(f"\n[broker failure] {result.line()}")
    record(
        "broker-failure",
        variant,
        Figures(
            events=result.events,
            faults=f"kill -9 of {', then '.join(result.killed)}, each brought back",
            wall_s=result.wall_s,
            lost=result.lost,
            duplicates=result.posted_twice,
            order_violations=result.order_violations,
            recovery=f"longest pause in deliveries {result.longest_pause_s:.1f} s",
        ),
        **asdict(result),
    )
    assert result.lost == 0
    assert result.order_violations == 0
    assert result.posted_twice == 0


def test_a_short_broker_failure_loses_nothing(tmp_path: Path) -> None:
    _assert_reliable(broker_failure(tmp_path, per_second=150, step=300, keys=300, seed=21), "short")


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the full variants take minutes
def test_the_full_broker_failure_of_the_leader_and_the_controller(tmp_path: Path) -> None:
    _assert_reliable(broker_failure(tmp_path, per_second=400, step=3_000, keys=1_000, seed=22), "full")
