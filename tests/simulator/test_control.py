"""The control API: reset, seed, dump, request log, options, clock."""

from __future__ import annotations

import httpx

from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from tests.simulator.conftest import track, upsert_user


def test_request_log_gives_per_user_order_of_applied_events(sim: RunningSimulator, zd: httpx.Client) -> None:
    user_id = upsert_user(zd, name="A", external_id="a").json()["user"]["id"]
    upsert_user(zd, name="B", external_id="b")
    for name in ("first", "second", "third"):
        track(zd, identifiers=[{"type": "external_id", "value": "a"}], event_type=name)
    log = sim.control.requests(user_id=user_id)
    assert [entry["change"]["kind"] for entry in log] == ["user.create", "event", "event", "event"]
    assert [entry["change"].get("type") for entry in log[1:]] == ["first", "second", "third"]
    assert [entry["user_key"] for entry in log] == ["a"] * 4
    assert [entry["seq"] for entry in log] == sorted(entry["seq"] for entry in log)


def test_request_log_entries_have_seq_time_method_path_status(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    zd.get("/api/v2/users/1.json")
    (entry,) = sim.control.requests()
    assert {"seq", "time", "method", "path", "status", "user_key", "change"} <= set(entry)
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/api/v2/users/1.json", 404)


def test_control_calls_are_not_logged_and_since_filters(sim: RunningSimulator, zd: httpx.Client) -> None:
    zd.get("/api/v2/user_fields")
    sim.control.state()
    last = sim.control.requests()[-1]["seq"]
    zd.get("/api/v2/user_fields")
    assert len(sim.control.requests()) == 2
    assert [e["seq"] for e in sim.control.requests(since=last)] == [last + 1]


def test_job_items_are_logged_per_user(sim: RunningSimulator, zd: httpx.Client) -> None:
    zd.post("/api/v2/users/create_or_update_many", json={"users": [{"name": "A", "external_id": "a"}]})
    sim.control.complete_jobs()
    (item,) = sim.control.requests(user_key="a")
    assert item["method"] == "JOB" and item["change"]["kind"] == "user.create"


def test_seed_takes_explicit_ids_and_links_memberships_by_external_id(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.seed(
        users=[{"id": 42, "name": "A", "external_id": "a"}],
        organizations=[{"id": 7, "name": "Org", "external_id": "o"}],
        memberships=[{"user_external_id": "a", "organization_external_id": "o"}],
    )
    assert zd.get("/api/v2/users/42").json()["user"]["organization_id"] == 7


def test_seed_rejects_what_zendesk_would_reject(sim: RunningSimulator) -> None:
    response = httpx.post(
        f"{sim.base_url}/_simulator/seed", json={"users": [{"email": "no-name@example.com"}]}
    )
    assert response.status_code == 400 and "422" in response.json()["error"]


def test_reset_empties_the_account_and_restores_launch_options(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    upsert_user(zd, name="A")
    sim.control.set_options(latency_ms=5.0)
    options = sim.control.reset()
    assert sim.control.state()["users"] == []
    assert options["latency_ms"] == 0.0 and options["rate_limits"] is True


def test_options_hide_secrets_and_reject_unknown_names(sim: RunningSimulator) -> None:
    assert sim.control.options()["api_token"] == "***"
    bad = httpx.patch(f"{sim.base_url}/_simulator/options", json={"no_such_option": 1})
    wrong_type = httpx.patch(f"{sim.base_url}/_simulator/options", json={"rate_limits": "yes"})
    assert bad.status_code == 400 and wrong_type.status_code == 400


def test_clock_advance_needs_the_manual_clock(sim: RunningSimulator) -> None:
    before = sim.control.advance_clock(10)
    assert httpx.get(f"{sim.base_url}/_simulator/clock").json() == {"now": before, "manual": True}
    sim.control.set_options(manual_clock=False)
    assert httpx.post(f"{sim.base_url}/_simulator/clock/advance", json={"seconds": 1}).status_code == 409


def test_unknown_control_path_gives_404(sim: RunningSimulator) -> None:
    assert httpx.get(f"{sim.base_url}/_simulator/nope").status_code == 404


def test_in_process_variant_serves_the_same_api() -> None:
    with run_simulator_in_thread(SimulatorOptions(rate_limits=False)) as running, running.client() as client:
        assert upsert_user(client, name="A", external_id="a").status_code == 201
        assert [u["external_id"] for u in running.control.state()["users"]] == ["a"]
