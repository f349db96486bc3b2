"""The container leg: a Kafka broker in a container for the host, and the service images themselves.

The engine, the images and the broker come from tests/support/containers.py (ops/containers/*.sh):
where no engine runs, podman is set up for the session and stopped after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from stream import __version__
from tests.support.containers import (
    BOOTSTRAP_LABEL,
    TEST_LABEL,
    Images,
    container_engine,
    container_kafka,
    docker_client,
    ensure_images,
    free_port,
)
from tests.support.kafka import consume, create_topics, key_of, produce, unique_topic, value_of
from tests.support.segment import identify
from tests.support.waiting import wait_for

pytestmark = pytest.mark.containers

SIMULATOR_EMAIL = "admin@example.com"
SIMULATOR_TOKEN = "simulator-token"


@pytest.fixture(scope="module")
def images() -> Iterator[Images]:
    with container_engine():
        yield ensure_images()


@pytest.fixture(scope="module")
def docker(images: Images) -> Iterator[Any]:
    client = docker_client()
    yield client
    client.close()


def run_once(
    docker: Any, image: str, *args: str, entrypoint: list[str] | None = None, **kwargs: Any
) -> tuple[int, str]:
    """Run a container to its end as the tests' services run: read-only root, tmpfs /tmp. (exit code, output)

    Waits for the exit and reads it before removing the container: podman's Docker API loses the exit code
    of `docker run --rm`.
    """
    container = docker.containers.run(
        image,
        list(args),
        entrypoint=entrypoint,
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        labels={TEST_LABEL: "one-shot"},
        detach=True,
        **kwargs,
    )
    try:
        status = container.wait(timeout=120)
        return int(status["StatusCode"]), container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def labelled(docker: Any, bootstrap: str) -> list[Any]:
    return list(docker.containers.list(all=True, filters={"label": f"{BOOTSTRAP_LABEL}={bootstrap}"}))


# ----------------------------------------------------------------------------------------------- kafka


def test_a_container_broker_round_trips_messages_from_the_host(images: Images) -> None:
    with container_kafka(image=images.kafka) as bootstrap:
        topic = unique_topic("containers")
        create_topics(bootstrap, [topic], partitions=3)
        sent = [(f"user-{i % 7}", {"n": i}) for i in range(300)]
        produce(bootstrap, topic, sent)

        received = consume(bootstrap, topic, count=len(sent))

    got = [(key_of(m), json.loads(value_of(m))) for m in received]
    assert sorted(got, key=lambda kv: kv[1]["n"]) == sent
    for key in {k for k, _ in sent}:  # one key, one partition: in the order produced
        assert [v["n"] for k, v in got if k == key] == [v["n"] for k, v in sent if k == key]


def test_the_kafka_container_is_gone_after_the_context(images: Images, docker: Any) -> None:
    with container_kafka(image=images.kafka) as bootstrap:
        during = labelled(docker, bootstrap)
        assert [c.status for c in during] == ["running"]
        assert during[0].labels[TEST_LABEL] == "kafka"

    assert labelled(docker, bootstrap) == []
    assert docker.containers.list(all=True, filters={"id": during[0].id}) == []


# --------------------------------------------------------------------------------------------- service


def test_the_service_image_runs_as_a_non_root_user_on_a_read_only_root(images: Images, docker: Any) -> None:
    assert docker.images.get(images.service).attrs["Config"]["User"] == "10001:10001"

    code, uid = run_once(docker, images.service, "-u", entrypoint=["id"])
    assert (code, uid.strip()) == (0, "10001")

    code, output = run_once(docker, images.service, "--version")
    assert (code, output.strip()) == (0, f"zendesk-stream {__version__}")


def test_the_simulator_image_has_its_http_stack_and_the_service_image_no_test_tools(
    images: Images, docker: Any
) -> None:
    modules = "('uvloop', 'httptools', 'pytest')"
    probe = f"import importlib.util as u; print(sorted(m for m in {modules} if u.find_spec(m)))"
    code, output = run_once(docker, images.simulator, "-c", probe, entrypoint=["python3"])
    assert (code, output.strip()) == (0, "['httptools', 'uvloop']")
    code, output = run_once(docker, images.service, "-c", probe, entrypoint=["python3"])
    assert code == 0
    assert "pytest" not in output


HEALTH_SERVER = """\
import http.server, subprocess, sys, threading
port, status = int(sys.argv[1]), int(sys.argv[2])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(status if self.path == "/healthz" else 404)
        self.end_headers()
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.exit(subprocess.run(["python3", "-c", sys.argv[3]]).returncode)
"""


def test_the_healthcheck_asks_healthz_on_the_metrics_port_and_falls_back_to_the_version(
    images: Images, docker: Any
) -> None:
    created = docker.containers.create(images.service, labels={TEST_LABEL: "inspect"})
    try:  # the engine's view of the image's HEALTHCHECK (podman shows it on containers, not images)
        test = created.attrs["Config"]["Healthcheck"]["Test"]
    finally:
        created.remove(force=True)
    assert test[:3] == ["CMD", "python3", "-c"]
    check = test[3]

    code, output = run_once(docker, images.service, "-c", check, entrypoint=["python3"])
    assert (code, output.strip()) == (0, f"zendesk-stream {__version__}")  # nothing listens: the version

    code, _ = run_once(
        docker, images.service, "-c", HEALTH_SERVER, "9464", "200", check, entrypoint=["python3"]
    )
    assert code == 0
    code, output = run_once(
        docker, images.service, "-c", HEALTH_SERVER, "9464", "503", check, entrypoint=["python3"]
    )
    assert code == 1
    assert "answered 503" in output
    port_env = {"STREAM_METRICS_PORT": "9555"}
    code, _ = run_once(
        docker,
        images.service,
        "-c",
        HEALTH_SERVER,
        "9555",
        "503",
        check,
        entrypoint=["python3"],
        environment=port_env,
    )
    assert code == 1


def test_the_images_apply_topics_and_deliver_an_event_to_the_simulator(images: Images, docker: Any) -> None:
    """The compose flow, read-only and non-root: topics apply, the simulator, the service to the end."""
    sim_port = free_port()
    simulator = docker.containers.run(
        images.simulator,
        [
            "simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(sim_port),
            "--email",
            SIMULATOR_EMAIL,
            "--token",
            SIMULATOR_TOKEN,
        ],
        network_mode="host",
        read_only=True,
        tmpfs={"/tmp": "rw,size=64m"},
        labels={TEST_LABEL: "simulator"},
        detach=True,
    )
    try:
        with container_kafka(image=images.kafka) as bootstrap:
            topic = unique_topic("containers-e2e")
            group = f"{topic}-group"
            env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "STREAM_TOPIC": topic, "STREAM_GROUP_ID": group}
            code, output = run_once(
                docker, images.service, "topics", "apply", "--replication-factor", "1",
                network_mode="host", environment=env,
            )  # fmt: skip
            assert code == 0, output
            listed = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
            side = {f"{topic}.{group}.{role}" for role in ("retry", "dlq", "delivered")}
            assert {topic, *side} <= set(listed)

            base_url = f"http://127.0.0.1:{sim_port}"
            wait_for(
                lambda: _simulator_answers(base_url), timeout_s=60, what="the simulator container to answer"
            )
            produce(
                bootstrap, topic, [("u-1", identify("u-1", name="Peter Gibbons", email="peter@example.com"))]
            )
            service_env = {
                **env,
                "ZENDESK_SUBDOMAIN": "acme",
                "ZENDESK_BASE_URL": base_url,
                "ZENDESK_EMAIL": SIMULATOR_EMAIL,
                "ZENDESK_API_TOKEN": SIMULATOR_TOKEN,
                "ZENDESK_SETTINGS": json.dumps({"events": ["*"]}),
            }
            code, output = run_once(
                docker, images.service, "run", "--exit-at-end", network_mode="host", environment=service_env
            )
            assert code == 0, output[-3000:]
            state = httpx.get(f"{base_url}/_simulator/state", timeout=10).json()
            delivered = [u for u in state["users"] if u.get("external_id") == "u-1"]
            assert [(u["name"], u["email"]) for u in delivered] == [("Peter Gibbons", "peter@example.com")]
    finally:
        simulator.remove(force=True)


def _simulator_answers(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/_simulator/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
