"""Containers for the tests: an engine, the project's images, and a Kafka broker in a container.

    with container_engine():                  # ops/containers/engine.sh: an engine that answers, or podman
        images = ensure_images()              # ops/containers/images.sh: built here when no registry answers
        with container_kafka(image=images.kafka) as bootstrap:
            ...                               # a real broker, reachable from the host at `bootstrap`

Needs `testcontainers` and `packaging` (testcontainers 4.15 imports it without declaring it).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
ENGINE_SH = REPO / "ops" / "containers" / "engine.sh"
IMAGES_SH = REPO / "ops" / "containers" / "images.sh"
# Every container started here carries this label, with what it is for as the value.
TEST_LABEL = "org.zendesk-stream.test"
BOOTSTRAP_LABEL = "org.zendesk-stream.bootstrap"


class ContainerSetupError(RuntimeError):
    """No engine, no image, or a container that would not start: the reason, for the test report."""


@dataclass(frozen=True)
class Engine:
    docker_host: str
    started_here: bool


@dataclass(frozen=True)
class Images:
    kafka: str
    service: str
    simulator: str


def _script(*args: str, timeout_s: float) -> tuple[int, dict[str, str], str]:
    """Run one of the ops/containers scripts: (exit code, its KEY=VALUE stdout lines, its stderr)."""
    try:
        done = subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout_s, check=False, cwd=REPO
        )
    except subprocess.TimeoutExpired as err:
        raise ContainerSetupError(
            f"{Path(args[0]).name} {' '.join(args[1:])}: no answer in {timeout_s}s"
        ) from err
    values = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return done.returncode, values, done.stderr


def configure_testcontainers() -> None:
    """Settings testcontainers needs with the engines engine.sh makes, unless already set otherwise.

    Ryuk off: its image cannot be pulled where no registry answers, and every container here is removed
    by its own context. Connection mode docker_host with TC_HOST=localhost: in a container (this machine
    carries /.dockerenv) testcontainers would otherwise ask the engine for a gateway and misread podman's
    answer. testcontainers reads these once, at import, so they are also set on its configuration.
    """
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    os.environ.setdefault("TC_HOST", "localhost")
    from testcontainers.core.config import ConnectionMode, testcontainers_config  # noqa: PLC0415

    testcontainers_config.ryuk_disabled = os.environ["TESTCONTAINERS_RYUK_DISABLED"].lower() == "true"
    testcontainers_config.connection_mode_override = ConnectionMode(
        os.environ["TESTCONTAINERS_CONNECTION_MODE"]
    )
    testcontainers_config.tc_host_override = os.environ["TC_HOST"]


@contextmanager
def container_engine(*, setup_timeout_s: float = 300.0) -> Iterator[Engine]:
    """An engine that answers, with DOCKER_HOST set to it; one this call started is stopped at the end."""
    code, values, stderr = _script(str(ENGINE_SH), "status", timeout_s=30)
    started_here = code != 0
    if started_here:
        code, values, stderr = _script(str(ENGINE_SH), "up", timeout_s=setup_timeout_s)
        if code != 0 or "DOCKER_HOST" not in values:
            raise ContainerSetupError(f"no container engine: {stderr.strip().splitlines()[-1:]}")
    previous = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = values["DOCKER_HOST"]
    configure_testcontainers()
    try:
        yield Engine(docker_host=values["DOCKER_HOST"], started_here=started_here)
    finally:
        if previous is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = previous
        if started_here:
            _script(str(ENGINE_SH), "stop", timeout_s=60)


_IMAGES: Images | None = None


def ensure_images(*, timeout_s: float = 1800.0) -> Images:
    """The images to use, built or pulled by images.sh on first use in this process (cached after)."""
    global _IMAGES  # noqa: PLW0603 - one build check per test process
    if _IMAGES is None:
        if not os.environ.get("DOCKER_HOST"):
            raise ContainerSetupError("ensure_images() needs an engine: call it inside container_engine()")
        code, values, stderr = _script(str(IMAGES_SH), timeout_s=timeout_s)
        if code != 0:
            raise ContainerSetupError(f"images.sh failed: {' | '.join(stderr.strip().splitlines()[-5:])}")
        _IMAGES = Images(
            kafka=values["ZS_KAFKA_IMAGE"],
            service=values["ZS_SERVICE_IMAGE"],
            simulator=values["ZS_SIMULATOR_IMAGE"],
        )
    return _IMAGES


def docker_client() -> Any:
    """A docker SDK client for the engine in DOCKER_HOST (the caller closes it)."""
    import docker  # type: ignore[import-untyped]  # noqa: PLC0415 (no stubs are published)

    return docker.from_env(timeout=60)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kafka_environment(port: int, *, advertised_host: str) -> dict[str, str]:
    """One KRaft node on `port` (clients) and 9093 (controller), in the variables both local/kafka and the
    official apache/kafka image read."""
    return {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{advertised_host}:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }


def broker_answers(bootstrap: str) -> bool:
    """Whether a broker at `bootstrap` answers a metadata request (and lists itself in it)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, "socket.timeout.ms": 2000})
    try:
        return bool(admin.list_topics(timeout=2).brokers)
    except KafkaException:
        return False


def _host_of(container: Any) -> str:
    host = str(container.get_container_host_ip())
    # The broker advertises this address to clients: an IPv4 literal spares them a try on ::1.
    return "127.0.0.1" if host in ("localhost", "::1") else host


@contextmanager
def container_kafka(*, image: str | None = None, ready_timeout_s: float = 120.0) -> Iterator[str]:
    """A Kafka broker in a container, ready for clients on the host; yields its bootstrap address.

    The client port is the same number inside and outside (host port P to container port P), so the
    broker can advertise the address the host reaches it at. Readiness is a metadata request from the
    host. At the end the container is removed with its volumes. Sets up an engine when none is
    configured (and stops it again).
    """
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    with ExitStack() as stack:
        if not os.environ.get("DOCKER_HOST"):
            stack.enter_context(container_engine())
        configure_testcontainers()
        image = image or ensure_images().kafka
        container, bootstrap = _start_kafka(DockerContainer, image)
        stack.callback(container.stop)
        wrapped = container.get_wrapped_container()

        def ready() -> bool:
            wrapped.reload()
            if wrapped.status not in ("created", "running"):
                logs = wrapped.logs(tail=20).decode(errors="replace")
                raise ContainerSetupError(f"the Kafka container {wrapped.status} during start-up:\n{logs}")
            return broker_answers(bootstrap)

        wait_for(
            ready,
            timeout_s=ready_timeout_s,
            what=f"Kafka in {image} to answer at {bootstrap}",
            interval_s=0.2,
        )
        yield bootstrap


def _start_kafka(container_class: Any, image: str, *, attempts: int = 3) -> tuple[Any, str]:
    """Start the broker container on a free port; another port when the first is taken meanwhile."""
    last: Exception | None = None
    for _ in range(attempts):
        port = free_port()
        host = "127.0.0.1"
        bootstrap = f"{host}:{port}"
        container = container_class(image).with_kwargs(
            labels={TEST_LABEL: "kafka", BOOTSTRAP_LABEL: bootstrap}
        )
        # Published on loopback only: the docker SDK's (address, port) form, which with_bind_ports lacks.
        container.ports[f"{port}/tcp"] = (host, port)
        for key, value in kafka_environment(port, advertised_host=host).items():
            container = container.with_env(key, value)
        try:
            container.start()
        except Exception as err:  # the docker SDK's APIError, e.g. "address already in use"
            container.stop()
            last = err
            continue
        actual = _host_of(container)
        if actual != host:
            container.stop()
            raise ContainerSetupError(
                f"the engine publishes ports on {actual}, not here: only local engines are supported"
            )
        return container, bootstrap
    raise ContainerSetupError(f"the Kafka container would not start: {last}")
