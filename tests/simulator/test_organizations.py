"""Organizations (docs/zendesk-api.md §5)."""

from __future__ import annotations

import httpx

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import detail, upsert_org

ORG_KEYS = [
    "url",
    "id",
    "name",
    "shared_tickets",
    "shared_comments",
    "external_id",
    "created_at",
    "updated_at",
    "domain_names",
    "details",
    "notes",
    "group_id",
    "tags",
    "organization_fields",
]


def test_org_create_or_update_returns_201_on_create_and_200_on_update_by_external_id(
    zd: httpx.Client,
) -> None:
    created = upsert_org(zd, name="Acme", external_id="g1")
    updated = upsert_org(zd, external_id="G1", notes="big")
    assert created.status_code == 201 and updated.status_code == 200
    assert updated.json()["organization"]["id"] == created.json()["organization"]["id"]
    assert list(created.json()["organization"]) == ORG_KEYS


def test_org_create_or_update_matches_by_id(zd: httpx.Client) -> None:
    org_id = upsert_org(zd, name="Acme").json()["organization"]["id"]
    response = upsert_org(zd, id=org_id, notes="x")
    assert response.status_code == 200 and response.json()["organization"]["notes"] == "x"


def test_org_name_is_not_a_match_key_and_a_taken_name_gives_422(zd: httpx.Client) -> None:
    upsert_org(zd, name="Lorem Ipsum")
    response = upsert_org(zd, name="Lorem Ipsum")
    assert response.status_code == 422
    assert detail(response, "name") == {
        "description": "Name: Lorem Ipsum has already been taken",
        "error": "DuplicateValue",
    }


def test_org_name_uniqueness_ignores_surrounding_whitespace_and_case(zd: httpx.Client) -> None:
    upsert_org(zd, name="API Company")
    assert upsert_org(zd, name="api company ", external_id="x").status_code == 422


def test_org_matched_by_external_id_renamed_to_another_orgs_name_gives_422(zd: httpx.Client) -> None:
    upsert_org(zd, name="A", external_id="a")
    upsert_org(zd, name="B", external_id="b")
    assert upsert_org(zd, external_id="a", name="B").status_code == 422


def test_org_create_post_gives_201_and_duplicate_name_422(zd: httpx.Client) -> None:
    created = zd.post("/api/v2/organizations.json", json={"organization": {"name": "Acme"}})
    assert created.status_code == 201 and "location" in created.headers
    again = zd.post("/api/v2/organizations.json", json={"organization": {"name": "Acme"}})
    assert again.status_code == 422


def test_fresh_org_has_the_live_defaults(zd: httpx.Client) -> None:
    org = upsert_org(zd, name="Acme").json()["organization"]
    assert (org["external_id"], org["domain_names"], org["tags"], org["organization_fields"]) == (
        None,
        [],
        [],
        {},
    )
    assert (org["shared_tickets"], org["shared_comments"], org["group_id"]) == (False, False, None)


def test_org_domain_names_are_replaced_on_update(zd: httpx.Client) -> None:
    upsert_org(zd, name="Acme", external_id="g1", domain_names=["a.com", "b.com"])
    org = upsert_org(zd, external_id="g1", domain_names=["c.com"]).json()["organization"]
    assert org["domain_names"] == ["c.com"]


def test_org_search_by_external_id_or_name_exact_case_insensitive(zd: httpx.Client) -> None:
    upsert_org(zd, name="Acme", external_id="g1")
    upsert_org(zd, name="Acme Two", external_id="g12")
    by_external = zd.get("/api/v2/organizations/search.json", params={"external_id": "G1"}).json()
    by_name = zd.get("/api/v2/organizations/search", params={"name": "ACME"}).json()
    assert [o["external_id"] for o in by_external["organizations"]] == ["g1"]
    assert [o["name"] for o in by_name["organizations"]] == ["Acme"]
    assert by_name["count"] == 1 and by_name["next_page"] is None


def test_org_search_with_both_or_neither_parameter_gives_400(zd: httpx.Client) -> None:
    assert zd.get("/api/v2/organizations/search", params={"name": "a", "external_id": "b"}).status_code == 400
    assert zd.get("/api/v2/organizations/search").status_code == 400


def test_org_show_returns_200_or_404(zd: httpx.Client) -> None:
    org_id = upsert_org(zd, name="Acme").json()["organization"]["id"]
    assert zd.get(f"/api/v2/organizations/{org_id}.json").status_code == 200
    assert zd.get("/api/v2/organizations/1.json").json() == {
        "error": "RecordNotFound",
        "description": "Not found",
    }


def test_org_fields_only_known_keys_are_stored(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.seed(organization_fields=[{"key": "region", "title": "Region"}])
    org = upsert_org(zd, name="Acme", organization_fields={"region": "eu", "other": 1}).json()["organization"]
    assert org["organization_fields"] == {"region": "eu"}
