"""Session fixtures shared by every test directory: a real Kafka broker and per-test topics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.support.kafka import create_topics, session_broker, unique_topic

_BROKERS_USED: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which real broker the Kafka tests talked to, so a green run cannot hide a missing one."""
    for broker in _BROKERS_USED:
        terminalreporter.write_line(f"Kafka broker used by the tests: {broker}")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker, started once per session when none is configured.

    Never skips: without a broker the tests that need one fail, with the reason.
    """
    data_dir: Path = tmp_path_factory.mktemp("kafka")
    try:
        with session_broker(data_dir) as (bootstrap, source):
            _BROKERS_USED.append(f"{bootstrap} ({source})")
            yield bootstrap
    except Exception as err:
        pytest.fail(f"no Kafka broker could be had: {err}", pytrace=False)


@pytest.fixture
def new_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Create a topic named after the test, unique to it: `new_topic(partitions=4)`."""

    def make(*, partitions: int = 1, suffix: str = "") -> str:
        stem = request.node.name.replace("[", "-").replace("]", "")[:60]
        name = unique_topic(f"t-{stem}{suffix}")
        create_topics(kafka_bootstrap, [name], partitions=partitions)
        return name

    return make


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    """The Zendesk simulator as a real subprocess on a free loopback port, faithful limits on."""
    with run_simulator() as running:
        yield running


@pytest.fixture
def fast_simulator() -> Iterator[RunningSimulator]:
    """The simulator with rate limits off: for tests about our engine, not about Zendesk's limits."""
    with run_simulator(extra_args=["--no-rate-limits"]) as running:
        yield running
