"""Realism knobs: injected faults, outages, error rate, latency, connection drops."""

from __future__ import annotations

import time

import httpx
import pytest

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import upsert_user


def test_injected_503_with_retry_after_hits_only_the_next_n_matching_requests(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.inject_fault(
        path=r"/users/create_or_update", method="POST", count=2, status=503, retry_after=7
    )
    assert zd.get("/api/v2/user_fields").status_code == 200
    first, second, third = (upsert_user(zd, name="A", external_id="a") for _ in range(3))
    assert (first.status_code, first.headers["retry-after"]) == (503, "7")
    assert second.status_code == 503
    assert third.status_code == 201


@pytest.mark.parametrize("status", [429, 500, 503])
def test_injected_status_is_returned(sim: RunningSimulator, zd: httpx.Client, status: int) -> None:
    sim.control.inject_fault(path="user_fields", status=status, retry_after=2)
    response = zd.get("/api/v2/user_fields")
    assert response.status_code == status and response.headers["retry-after"] == "2"


def test_injected_fault_answers_zendesks_own_error_body_when_given(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.inject_fault(
        path=r"/organization_memberships/",
        method="DELETE",
        status=404,
        error="RecordNotFound",
        description="Not found",
    )
    response = zd.delete("/api/v2/users/1/organization_memberships/2")
    assert response.status_code == 404
    assert response.json() == {"error": "RecordNotFound", "description": "Not found"}
    assert [r["change"] for r in sim.control.requests(method="DELETE")] == [{"kind": "fault"}]


def test_injected_fault_without_error_fields_keeps_the_generic_body(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.inject_fault(path="user_fields", status=404)
    assert zd.get("/api/v2/user_fields").json() == {"error": "Error", "description": "Simulated failure"}
    sim.control.inject_fault(path="user_fields", status=503, description="Down for maintenance")
    assert zd.get("/api/v2/user_fields").json() == {
        "error": "ServiceUnavailable",
        "description": "Down for maintenance",
    }


@pytest.mark.parametrize(
    "spec",
    [
        {"path": "x", "error": 404},
        {"path": "x", "description": ["Not found"]},
        {"path": "x", "action": "drop", "error": "RecordNotFound"},
    ],
)
def test_fault_error_fields_are_validated(sim: RunningSimulator, spec: dict[str, object]) -> None:
    response = httpx.post(f"{sim.base_url}/_simulator/faults", json=spec)
    assert response.status_code == 400
    assert httpx.get(f"{sim.base_url}/_simulator/faults").json()["faults"] == []


def test_injected_drop_closes_the_connection_without_applying(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.inject_fault(path="create_or_update", action="drop")
    with pytest.raises(httpx.TransportError):
        upsert_user(zd, name="A", external_id="a")
    assert sim.control.state()["users"] == []
    assert upsert_user(zd, name="A", external_id="a").status_code == 201


def test_injected_drop_after_applies_then_closes_the_connection(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.inject_fault(path="create_or_update", action="drop_after")
    with pytest.raises(httpx.TransportError):
        upsert_user(zd, name="A", external_id="a")
    assert [u["external_id"] for u in sim.control.state()["users"]] == ["a"]


def test_outage_window_answers_503_until_it_ends(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.add_outage(duration_seconds=30, retry_after=30)
    during = zd.get("/api/v2/user_fields")
    assert (during.status_code, during.headers["retry-after"]) == (503, "30")
    sim.control.advance_clock(30)
    assert zd.get("/api/v2/user_fields").status_code == 200


def test_outage_can_drop_connections(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.add_outage(duration_seconds=5, action="drop")
    with pytest.raises(httpx.TransportError):
        zd.get("/api/v2/user_fields")


def test_error_rate_fails_that_share_of_requests(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(error_rate=1.0)
    response = zd.get("/api/v2/user_fields")
    assert response.status_code == 503 and "retry-after" in response.headers
    sim.control.set_options(error_rate=0.0)
    assert zd.get("/api/v2/user_fields").status_code == 200


def test_latency_delays_every_zendesk_response(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(latency_ms=60.0, jitter_ms=10.0)
    started = time.perf_counter()
    zd.get("/api/v2/user_fields")
    assert time.perf_counter() - started >= 0.06


def test_faults_are_listed_and_cleared(sim: RunningSimulator) -> None:
    sim.control.inject_fault(path="x", count=3)
    sim.control.add_outage(duration_seconds=1, start_in_seconds=100)
    listed = httpx.get(f"{sim.base_url}/_simulator/faults").json()
    assert len(listed["faults"]) == 1 and len(listed["outages"]) == 1
    sim.control.clear_faults()
    assert httpx.get(f"{sim.base_url}/_simulator/faults").json() == {"faults": [], "outages": []}
