"""One simulator subprocess for the whole suite; every test starts from a reset account.

Default per test: rate limits off and a manual clock (nothing moves unless a test advances it). Tests of
rate limits reset again with the limits on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from stream.simulator.testing import RunningSimulator, run_simulator


@pytest.fixture(scope="session")
def shared_simulator() -> Iterator[RunningSimulator]:
    with run_simulator() as running:
        yield running


@pytest.fixture
def sim(shared_simulator: RunningSimulator) -> RunningSimulator:
    shared_simulator.control.reset(rate_limits=False, manual_clock=True)
    return shared_simulator


@pytest.fixture
def zd(sim: RunningSimulator) -> Iterator[httpx.Client]:
    with sim.client() as client:
        yield client


def upsert_user(zd: httpx.Client, **user: Any) -> httpx.Response:
    return zd.post("/api/v2/users/create_or_update.json", json={"user": user})


def upsert_org(zd: httpx.Client, **organization: Any) -> httpx.Response:
    return zd.post("/api/v2/organizations/create_or_update.json", json={"organization": organization})


def track(
    zd: httpx.Client,
    *,
    identifiers: list[dict[str, str]],
    event_type: str = "checkout",
    source: str = "segment",
    path: str = "/api/v2/user_profiles/events",
    **event: Any,
) -> httpx.Response:
    body = {
        "profile": {"source": source, "type": "user", "identifiers": identifiers},
        "event": {"source": source, "type": event_type, "properties": {}, **event},
    }
    return zd.post(path, json=body)


def detail(response: httpx.Response, field: str) -> dict[str, Any]:
    """The first 422 ``details`` item of ``field``."""
    body = response.json()
    assert body["error"] == "RecordInvalid", body
    item: dict[str, Any] = body["details"][field][0]
    return item
