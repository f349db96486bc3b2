"""The Zendesk client against the project's simulator: a real HTTP server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream.errors import ZendeskConfigError
from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from stream.zendesk import (
    Ok,
    RateLimited,
    Rejected,
    Unavailable,
    UnavailableReason,
    ZendeskClient,
    connection_from,
    is_already_member,
    is_duplicate_email,
    is_duplicate_field_key,
    is_duplicate_organization_name,
    is_record_not_found,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with run_simulator_in_thread(SimulatorOptions()) as sim:
        yield sim


@pytest.fixture
def sim(simulator: RunningSimulator) -> RunningSimulator:
    simulator.control.reset(manual_clock=True)
    return simulator


def client_for(sim: RunningSimulator, *, api_token: str | None = None) -> ZendeskClient:
    conn = connection_from("acme", sim.base_url, sim.email, api_token or sim.api_token, None)
    return ZendeskClient(connection=conn)


async def test_user_upsert_and_lookups(sim: RunningSimulator) -> None:
    email = "Jane+vip#1@example.com"
    async with client_for(sim) as zendesk:
        created = await zendesk.create_or_update_user({"name": "Jane", "email": email, "external_id": "U-1"})
        assert isinstance(created, Ok) and created.status == 201
        user_id = created.json["user"]["id"]
        assert zendesk.cache.user_id_by_external_id("u-1") == user_id
        zendesk.cache.clear()

        by_external_id = await zendesk.find_users_by_external_id("u-1")
        assert isinstance(by_external_id, Ok) and [u["id"] for u in by_external_id.json["users"]] == [user_id]
        by_email = await zendesk.search_users_by_email(email)
        assert isinstance(by_email, Ok) and [u["id"] for u in by_email.json["users"]] == [user_id]
        assert zendesk.cache.user_id_by_email(email) == user_id

        sim.control.advance_clock(61)
        other = await zendesk.create_or_update_user({"name": "Other", "email": email, "external_id": "U-2"})
        # the email matches U-1 and the external_id nobody: U-1 is updated, no conflict
        assert isinstance(other, Ok)
        sim.control.advance_clock(61)
        assert isinstance(await zendesk.create_or_update_user({"name": "Third", "external_id": "U-3"}), Ok)
        sim.control.advance_clock(61)
        conflict = await zendesk.create_or_update_user({"name": "X", "email": email, "external_id": "U-3"})
        assert isinstance(conflict, Rejected) and is_duplicate_email(conflict)

        missing = await zendesk.show_user(999_999_999)
        assert isinstance(missing, Rejected) and is_record_not_found(missing)


async def test_create_or_update_user_rate_limit(sim: RunningSimulator) -> None:
    async with client_for(sim) as zendesk:
        assert isinstance(await zendesk.create_or_update_user({"name": "A", "external_id": "a"}), Ok)
        limited = await zendesk.create_or_update_user({"name": "B", "external_id": "b"})
    assert isinstance(limited, RateLimited) and limited.retry_after_s > 0
    assert limited.bucket == "create-update-user"
    assert zendesk.rate_limits.latest("create-update-user") is not None


async def test_fields_over_several_pages(sim: RunningSimulator) -> None:
    sim.control.seed(user_fields=[{"key": f"f{i}", "type": "text", "title": f"F{i}"} for i in range(250)])
    async with client_for(sim) as zendesk:
        fields = await zendesk.list_user_fields()
        assert isinstance(fields, Ok) and len(fields.json["user_fields"]) == 250
        created = await zendesk.create_user_field("plan_name", "text", "Plan name")
        assert isinstance(created, Ok) and created.status == 201
        taken = await zendesk.create_user_field("plan_name", "text", "Plan name")
        assert isinstance(taken, Rejected) and is_duplicate_field_key(taken)
        refreshed = await zendesk.list_user_fields()
        assert isinstance(refreshed, Ok)
        assert "plan_name" in {f["key"] for f in refreshed.json["user_fields"]}


async def test_organizations_and_memberships(sim: RunningSimulator) -> None:
    async with client_for(sim) as zendesk:
        user = await zendesk.create_or_update_user({"name": "Jane", "external_id": "U-1"})
        org = await zendesk.create_or_update_organization({"external_id": "G-1", "name": "Acme"})
        assert isinstance(user, Ok) and isinstance(org, Ok)
        user_id, org_id = user.json["user"]["id"], org.json["organization"]["id"]
        assert zendesk.cache.organization_id_by_external_id("g-1") == org_id

        taken = await zendesk.create_or_update_organization({"external_id": "G-2", "name": "Acme"})
        assert isinstance(taken, Rejected) and is_duplicate_organization_name(taken)

        assert isinstance(await zendesk.create_membership(user_id, org_id), Ok)
        again = await zendesk.create_membership(user_id, org_id)
        assert isinstance(again, Rejected) and is_already_member(again)

        memberships = await zendesk.list_user_memberships(user_id)
        assert isinstance(memberships, Ok)
        [membership] = memberships.json["organization_memberships"]
        assert await zendesk.delete_membership(user_id, membership["id"]) == Ok(204, {})
        gone = await zendesk.delete_membership(user_id, membership["id"])
        assert isinstance(gone, Rejected) and is_record_not_found(gone)


async def test_send_event(sim: RunningSimulator) -> None:
    body = {
        "profile": {
            "source": "segment",
            "type": "user",
            "identifiers": [{"type": "external_id", "value": "U-9"}],
        },
        "event": {"source": "segment", "type": "Order Completed", "properties": {"total": 3}},
    }
    async with client_for(sim) as zendesk:
        result = await zendesk.send_event(body)
    assert isinstance(result, Ok) and result.status == 202 and result.json["status"] == "received"


async def test_faults_become_transient(sim: RunningSimulator) -> None:
    sim.control.inject_fault(path="/api/v2/users/", status=503, retry_after=7)
    # Twice: the transport retries an idempotent request once on a dropped kept-alive connection.
    sim.control.inject_fault(path="/api/v2/organizations/", action="drop", count=2)
    async with client_for(sim) as zendesk:
        assert await zendesk.show_user(1) == Unavailable(UnavailableReason.SERVER_ERROR, 503, 7.0)
        dropped = await zendesk.show_organization(1)
    assert isinstance(dropped, Unavailable) and dropped.reason is UnavailableReason.NETWORK_ERROR


async def test_wrong_token_stops_with_a_config_error(sim: RunningSimulator) -> None:
    async with client_for(sim, api_token="wrong-token") as zendesk:
        with pytest.raises(ZendeskConfigError) as info:
            await zendesk.show_user(1)
    assert info.value.status == 401 and "wrong-token" not in str(info.value)
