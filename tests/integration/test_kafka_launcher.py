"""The native launcher (ops/kafka/kafkalocal.py) brings back a node it lost, at once.

A broker killed with SIGKILL leaves its listening ports with sockets in TIME-WAIT (the connections it
had open). The broker binds with SO_REUSEADDR and can listen again immediately; the launcher must not
refuse to start it for a minute in the meantime.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stream.localkafka import LAUNCHER
from tests.support.kafka import consume, create_topics, native_cluster, produce, unique_topic, value_of
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka


def launcher_cli(data_dir: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def answers_alone(bootstrap: str) -> bool:
    """Whether this one broker answers a metadata request now (a fresh client, a short deadline)."""
    try:
        return bool(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2).brokers)
    except Exception:
        return False


def test_a_node_killed_with_sigkill_is_restarted_at_once_and_serves_again(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka"
    with native_cluster(data_dir) as (bootstrap, launcher):
        topic = unique_topic("restart")
        create_topics(bootstrap, [topic])
        produce(bootstrap, topic, [("k", {"n": 0})])
        # A client connected through the kill: the broker's ends of its connections go to TIME-WAIT.
        connected = Producer({"bootstrap.servers": bootstrap})
        assert connected.list_topics(timeout=10).brokers
        node = launcher.existing_cluster(data_dir).nodes[0]
        pid = launcher.running_pid(node)
        assert pid is not None

        os.kill(pid, signal.SIGKILL)
        # Only until the launcher stops seeing it run: the JVM may still be closing its sockets.
        wait_for(lambda: launcher.running_pid(node) is None, timeout_s=10, what="the broker to die")
        killed = time.monotonic()
        restart = launcher_cli(data_dir, "start", "--node", "1")
        restarted = time.monotonic()

        assert restart.returncode == 0, restart.stderr
        # `start` returns when the node is ready, not merely when its port listens.
        assert answers_alone(bootstrap), "start returned before the restarted broker answered"
        produce(bootstrap, topic, [("k", {"n": 1})])
        values = [json.loads(value_of(m))["n"] for m in consume(bootstrap, topic, count=2)]
        assert values == [0, 1]
        serving = time.monotonic()
        print(
            f"\nkill -> start returned {restarted - killed:.1f}s, kill -> produced and consumed again "
            f"{serving - killed:.1f}s"
        )
        connected.flush(1)


# Slow: the single-node test above keeps the launcher's restart at once in the default suite, and
# tests/reliability/test_broker_failure.py's short variant restarts killed nodes of three there too.
@pytest.mark.slow
def test_a_killed_node_of_three_rejoins_the_cluster_when_restarted_at_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "kafka3"
    with native_cluster(data_dir, nodes=3) as (bootstrap, launcher):
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = unique_topic("rejoin")
        for future in admin.create_topics([NewTopic(topic, 3, 3)]).values():
            future.result(timeout=60)
        produce(bootstrap, topic, [(f"k{i}", {"n": i}) for i in range(10)])
        node = launcher.existing_cluster(data_dir).nodes[1]  # node 2
        pid = launcher.running_pid(node)
        assert pid is not None

        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        # The launcher's own wait: once it returns, the dead JVM (all its threads) let go of its ports.
        launcher.wait_exited(node)
        assert all(launcher.port_free(port) for port in node.ports)
        restart = launcher_cli(data_dir, "start", "--node", "2")

        assert restart.returncode == 0, restart.stderr
        assert answers_alone(node.bootstrap), "start returned before the restarted broker answered"

        def back_in_every_isr() -> bool:
            partitions = admin.list_topics(topic=topic, timeout=5).topics[topic].partitions.values()
            return all(node.node_id in p.isrs for p in partitions)

        wait_for(back_in_every_isr, timeout_s=60, what="node 2 back in the ISR of every partition")
        print(f"\nkill -> node 2 in sync again {time.monotonic() - killed:.1f}s")
        produce(node.bootstrap, topic, [(f"k{i}", {"n": i}) for i in range(10, 20)])
        values = sorted(json.loads(value_of(m))["n"] for m in consume(node.bootstrap, topic, count=20))
        assert values == list(range(20))
