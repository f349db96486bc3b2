"""Organization memberships (docs/zendesk-api.md §6)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import detail


@pytest.fixture
def people(sim: RunningSimulator) -> dict[str, Any]:
    seeded = sim.control.seed(
        users=[{"name": "Ann", "external_id": "u1"}],
        organizations=[{"name": "Beta", "external_id": "b"}, {"name": "Alpha", "external_id": "a"}],
    )
    return {
        "user": seeded["users"][0]["id"],
        "beta": seeded["organizations"][0]["id"],
        "alpha": seeded["organizations"][1]["id"],
    }


def join(zd: httpx.Client, user_id: int, org_id: int, **extra: Any) -> httpx.Response:
    membership = {"user_id": user_id, "organization_id": org_id, **extra}
    return zd.post("/api/v2/organization_memberships.json", json={"organization_membership": membership})


def test_membership_create_returns_201_and_first_is_default(zd: httpx.Client, people: dict[str, Any]) -> None:
    response = join(zd, people["user"], people["beta"])
    assert response.status_code == 201
    membership = response.json()["organization_membership"]
    assert membership["default"] is True and membership["organization_name"] == "Beta"
    user = zd.get(f"/api/v2/users/{people['user']}").json()["user"]
    assert user["organization_id"] == people["beta"]


def test_non_default_membership_has_default_null_not_false(zd: httpx.Client, people: dict[str, Any]) -> None:
    join(zd, people["user"], people["beta"])
    second = join(zd, people["user"], people["alpha"]).json()["organization_membership"]
    assert second["default"] is None


def test_duplicate_membership_gives_422_duplicate_value(zd: httpx.Client, people: dict[str, Any]) -> None:
    join(zd, people["user"], people["beta"])
    response = join(zd, people["user"], people["beta"])
    assert response.status_code == 422
    assert detail(response, "user_id")["error"] == "DuplicateValue"


def test_membership_to_missing_org_gives_422_organization_blank(
    zd: httpx.Client, people: dict[str, Any]
) -> None:
    response = join(zd, people["user"], 1)
    assert response.status_code == 422
    assert detail(response, "organization") == {
        "description": "Organization cannot be blank",
        "error": "BlankValue",
    }


def test_membership_create_under_the_user_path(zd: httpx.Client, people: dict[str, Any]) -> None:
    path = f"/api/v2/users/{people['user']}/organization_memberships.json"
    body = {"organization_membership": {"organization_id": people["alpha"]}}
    assert zd.post(path, json=body).status_code == 201
    assert zd.post(path, json=body).status_code == 422


def test_user_membership_list_is_default_first_then_by_org_name_and_paginates(
    zd: httpx.Client, people: dict[str, Any], sim: RunningSimulator
) -> None:
    gamma = sim.control.seed(organizations=[{"name": "Gamma"}])["organizations"][0]["id"]
    for org in (people["beta"], gamma, people["alpha"]):
        join(zd, people["user"], org)
    path = f"/api/v2/users/{people['user']}/organization_memberships.json"
    names: list[str] = []
    url: str | None = f"{path}?page[size]=2"
    while url:
        body = zd.get(url).json()
        names += [m["organization_name"] for m in body["organization_memberships"]]
        url = body["links"]["next"] if body["meta"]["has_more"] else None
    assert names == ["Beta", "Alpha", "Gamma"]
    assert zd.get(path).json()["count"] == 3


def test_delete_membership_by_id_gives_204_and_records_the_ticket_unassign(
    zd: httpx.Client, people: dict[str, Any], sim: RunningSimulator
) -> None:
    membership_id = join(zd, people["user"], people["beta"]).json()["organization_membership"]["id"]
    response = zd.delete(f"/api/v2/organization_memberships/{membership_id}.json")
    assert response.status_code == 204 and response.content == b""
    effects = sim.control.state()["side_effects"]
    assert effects == [
        {
            "kind": "unassign_working_tickets",
            "user_id": people["user"],
            "organization_id": people["beta"],
            "membership_id": membership_id,
            "at": effects[0]["at"],
        }
    ]
    assert zd.get(f"/api/v2/users/{people['user']}").json()["user"]["organization_id"] is None


def test_delete_membership_under_the_user_path_and_by_organization(
    zd: httpx.Client, people: dict[str, Any], sim: RunningSimulator
) -> None:
    beta = join(zd, people["user"], people["beta"]).json()["organization_membership"]["id"]
    join(zd, people["user"], people["alpha"])
    assert zd.delete(f"/api/v2/users/{people['user']}/organization_memberships/{beta}").status_code == 204
    assert (
        zd.delete(f"/api/v2/users/{people['user']}/organizations/{people['alpha']}.json").status_code == 204
    )
    assert len(sim.control.state()["side_effects"]) == 2


def test_deleting_the_default_membership_makes_another_default(
    zd: httpx.Client, people: dict[str, Any]
) -> None:
    beta = join(zd, people["user"], people["beta"]).json()["organization_membership"]["id"]
    join(zd, people["user"], people["alpha"])
    zd.delete(f"/api/v2/organization_memberships/{beta}")
    assert zd.get(f"/api/v2/users/{people['user']}").json()["user"]["organization_id"] == people["alpha"]


def test_deleting_a_missing_membership_gives_404(zd: httpx.Client, people: dict[str, Any]) -> None:
    assert zd.delete("/api/v2/organization_memberships/1").status_code == 404
    assert zd.delete(f"/api/v2/users/{people['user']}/organizations/{people['beta']}").status_code == 404


def test_single_organization_accounts_replace_the_membership_by_switch(
    zd: httpx.Client, people: dict[str, Any], sim: RunningSimulator
) -> None:
    sim.control.set_options(multiple_organizations=False)
    join(zd, people["user"], people["beta"])
    join(zd, people["user"], people["alpha"])
    listing = zd.get(f"/api/v2/users/{people['user']}/organization_memberships").json()
    assert [m["organization_id"] for m in listing["organization_memberships"]] == [people["alpha"]]
