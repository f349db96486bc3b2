"""The project's own docker-compose.yml brought up for real: Kafka, the topics job, the simulator and the
service, from the images ops/containers/images.sh gives (ZS_*_IMAGE), on the engine engine.sh gives.
Events produced into its Kafka reach the simulator; then the stack goes down and leaves nothing behind.

The compose client is Debian's docker-compose (1.29, the Docker API over DOCKER_HOST), installed by
ops/containers/engine.sh. podman 4.3 without systemd never runs health checks on its own, so while the
stack starts, a ticker runs them (`podman healthcheck run`), as Docker's engine would on its timer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.containers import Images, container_engine, ensure_images, free_port
from tests.support.kafka import REPO
from tests.support.segment import identify, track
from tests.support.waiting import wait_for

pytestmark = pytest.mark.containers

CORE = ["kafka", "topics", "zendesk-simulator", "zendesk-stream"]


@pytest.fixture(scope="module")
def images() -> Iterator[Images]:
    with container_engine():
        yield ensure_images()


def compose_binary() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed (ops/containers/engine.sh installs Debian's)")
    return found


class Stack:
    def __init__(self, images: Images) -> None:
        self.project = f"zs-compose-{uuid.uuid4().hex[:6]}"
        self.simulator_port, self.metrics_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "ZS_KAFKA_IMAGE": images.kafka,
            "ZS_SERVICE_IMAGE": images.service,
            "ZS_SIMULATOR_IMAGE": images.simulator,
            "ZS_SIMULATOR_PORT": str(self.simulator_port),
            "ZS_METRICS_PORT": str(self.metrics_port),
        }
        self._stop = threading.Event()

    def compose(self, *args: str, stdin: str | None = None, timeout_s: float = 300) -> str:
        done = subprocess.run(
            [compose_binary(), "-f", str(REPO / "docker-compose.yml"), *args],
            env=self.env,
            cwd=REPO,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        assert done.returncode == 0, (
            f"docker-compose {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        )
        return done.stdout

    def containers(self) -> list[str]:
        done = subprocess.run(
            ["docker", "ps", "-a", "-q", "--filter", f"label=com.docker.compose.project={self.project}"],
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout.split()

    def tick_health_checks(self) -> None:
        """What the engine's timer does where Docker runs: each container's health check, every 5 s (the
        file's shortest interval)."""
        podman = shutil.which("podman")
        while podman and not self._stop.wait(5.0):
            for container in self.containers():
                subprocess.run([podman, "healthcheck", "run", container], capture_output=True, check=False)

    def __enter__(self) -> Stack:
        threading.Thread(target=self.tick_health_checks, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # The service lives in the simulator's network namespace: podman removes it first, or not at all.
        self.compose("rm", "--stop", "--force", "zendesk-stream", timeout_s=120)
        self.compose("down", "-v", "--remove-orphans", "--timeout", "60")


def _state(port: int) -> dict[str, Any] | None:
    try:
        answer: dict[str, Any] = httpx.get(f"http://127.0.0.1:{port}/_simulator/state", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    return answer


def test_the_compose_stack_delivers_events_from_its_kafka_to_the_simulator_and_leaves_nothing_behind(
    images: Images,
) -> None:
    stack = Stack(images)
    with stack:
        stack.compose("up", "-d", "--no-build", *CORE, timeout_s=600)
        wait_for(
            lambda: _state(stack.simulator_port) is not None,
            timeout_s=180,
            what="the simulator",
            interval_s=1,
        )
        lines = [
            f"c1|{json.dumps(identify('c1', name='Carla One', email='carla@example.com'))}",
            f"c2|{json.dumps(identify('c2', name='Carl Two'))}",
            f"c1|{json.dumps(track('c1', 'Signed Up', plan='pro'))}",
        ]
        stack.compose(
            "exec", "-T", "kafka", "kafka-console-producer.sh", "--bootstrap-server", "kafka:9092",
            "--topic", "segment.events", "--property", "parse.key=true", "--property", "key.separator=|",
            stdin="\n".join(lines) + "\n",
        )  # fmt: skip

        def delivered() -> dict[str, Any] | None:
            state = _state(stack.simulator_port)
            if state is None:
                return None
            users = {u.get("external_id") for u in state["users"]}
            return state if {"c1", "c2"} <= users and state["events"] else None

        state = wait_for(delivered, timeout_s=180, what="the events in the simulator", interval_s=1)
        names = sorted(u["name"] for u in state["users"] if u.get("external_id") in {"c1", "c2"})
        assert names == ["Carl Two", "Carla One"]
        assert [e["type"] for e in state["events"]] == ["Signed Up"]
        health = httpx.get(f"http://127.0.0.1:{stack.metrics_port}/healthz", timeout=5)
        assert health.status_code == 200
        assert (
            "zendesk_stream_events_total" in httpx.get(f"http://127.0.0.1:{stack.metrics_port}/metrics").text
        )
        assert len(stack.containers()) == len(CORE)
    assert stack.containers() == []
    networks = subprocess.run(
        ["docker", "network", "ls", "-q", "--filter", f"name={stack.project}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert networks.stdout.split() == []
