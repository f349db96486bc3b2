"""Bulk endpoints: organizations create_many/update_many, memberships create_many, users
create_or_update_many item errors, and the rules every bulk endpoint shares (docs/zendesk-api.md §2.3, §5.4,
§6.2, §7, §9). The clock is manual; jobs are completed explicitly."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import upsert_org, upsert_user


def finished(sim: RunningSimulator, zd: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    """The job of a bulk response, after completing every job."""
    assert response.status_code == 200, response.text
    sim.control.complete_jobs()
    job_id = response.json()["job_status"]["id"]
    status: dict[str, Any] = zd.get(f"/api/v2/job_statuses/{job_id}.json").json()["job_status"]
    assert status["status"] == "completed"
    return status


def create_many_orgs(zd: httpx.Client, organizations: list[dict[str, Any]]) -> httpx.Response:
    return zd.post("/api/v2/organizations/create_many.json", json={"organizations": organizations})


def bulk_users(zd: httpx.Client, users: list[dict[str, Any]]) -> httpx.Response:
    return zd.post("/api/v2/users/create_or_update_many.json", json={"users": users})


def create_many_memberships(zd: httpx.Client, memberships: list[dict[str, Any]]) -> httpx.Response:
    return zd.post(
        "/api/v2/organization_memberships/create_many.json", json={"organization_memberships": memberships}
    )


# -- organizations/create_many ---------------------------------------------------------------------------


def test_org_create_many_returns_200_with_a_queued_bulk_create_organization_job(zd: httpx.Client) -> None:
    response = create_many_orgs(zd, [{"name": "A"}, {"name": "B"}])
    assert response.status_code == 200
    status = response.json()["job_status"]
    assert (status["job_type"], status["status"], status["total"], status["results"]) == (
        "Bulk Create Organization",
        "queued",
        2,
        None,
    )
    assert "zendesk-ratelimit-inflight-jobs" in response.headers


def test_org_create_many_results_are_status_created_with_the_id_as_recorded_live(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    status = finished(sim, zd, create_many_orgs(zd, [{"name": "A", "external_id": "a"}, {"name": "B"}]))
    ids = [o["id"] for o in sim.control.state()["organizations"]]
    assert status["results"] == [{"status": "Created", "id": ids[0]}, {"status": "Created", "id": ids[1]}]


def test_org_create_many_documented_result_style_is_an_option(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(organization_create_many_results="documented")
    status = finished(sim, zd, create_many_orgs(zd, [{"name": "A"}]))
    assert status["results"] == [{"id": sim.control.state()["organizations"][0]["id"], "index": 0}]


def test_org_create_many_taken_name_fails_the_item_like_zendesks_org_failures(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    upsert_org(zd, name="Acme")
    status = finished(sim, zd, create_many_orgs(zd, [{"name": "New"}, {"name": " acme "}]))
    assert status["results"][0]["status"] == "Created"
    assert status["results"][1] == {
        "index": 1,
        "error": "OrganizationCreateFailed",
        "id": None,
        "details": "Name:  acme has already been taken",
    }
    assert sorted(o["name"] for o in sim.control.state()["organizations"]) == ["Acme", "New"]


def test_org_create_many_failure_code_is_an_option(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(organization_create_job_error_code="DuplicateValue")
    upsert_org(zd, name="Acme")
    status = finished(sim, zd, create_many_orgs(zd, [{"name": "Acme"}]))
    assert status["results"][0]["error"] == "DuplicateValue"


def test_org_create_many_over_100_gives_400_too_many_values(zd: httpx.Client) -> None:
    response = create_many_orgs(zd, [{"name": f"O{i}"} for i in range(101)])
    assert response.status_code == 400
    assert response.json() == {
        "error": "TooManyValues",
        "description": "Parameter  cannot specify more than 100 values",
        "max_count": 100,
    }


def test_org_create_many_working_message_counts_organizations(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(job_working_ms=1000, job_ms_per_item=0)
    job_id = create_many_orgs(zd, [{"name": f"O{i}"} for i in range(10)]).json()["job_status"]["id"]
    sim.control.advance_clock(0.1 + 0.55)
    working = zd.get(f"/api/v2/job_statuses/{job_id}").json()["job_status"]
    assert (working["status"], working["progress"], working["message"]) == (
        "working",
        5,
        "Creating organization #5",
    )


# -- organizations/update_many ---------------------------------------------------------------------------


def test_org_update_many_batch_by_id_and_external_id_updates_each(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    first = upsert_org(zd, name="A", external_id="a").json()["organization"]["id"]
    second = upsert_org(zd, name="B", external_id="b").json()["organization"]["id"]
    body = {"organizations": [{"id": first, "notes": "one"}, {"external_id": "B", "notes": "two"}]}
    status = finished(sim, zd, zd.put("/api/v2/organizations/update_many.json", json=body))
    assert status["job_type"] == "Bulk Update Organization"
    assert status["results"] == [
        {"action": "update", "id": first, "status": "Updated", "success": True},
        {"action": "update", "id": second, "status": "Updated", "success": True},
    ]
    assert [o["notes"] for o in sim.control.state()["organizations"]] == ["one", "two"]


@pytest.mark.parametrize("by", ["ids", "external_ids"])
def test_org_update_many_with_ids_or_external_ids_applies_one_change_to_all(
    sim: RunningSimulator, zd: httpx.Client, by: str
) -> None:
    orgs = [upsert_org(zd, name=n, external_id=n.lower()).json()["organization"] for n in ("A", "B")]
    keys = ",".join(str(o["id"]) if by == "ids" else o["external_id"] for o in orgs)
    response = zd.put(
        "/api/v2/organizations/update_many", params={by: keys}, json={"organization": {"notes": "same"}}
    )
    status = finished(sim, zd, response)
    assert [r["id"] for r in status["results"]] == [o["id"] for o in orgs]
    assert [o["notes"] for o in sim.control.state()["organizations"]] == ["same", "same"]


def test_org_update_many_taken_name_fails_with_organization_update_failed_and_a_double_space(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    upsert_org(zd, name="Taken")
    mine = upsert_org(zd, name="Mine").json()["organization"]["id"]
    body = {"organizations": [{"id": mine, "name": "Taken"}]}
    status = finished(sim, zd, zd.put("/api/v2/organizations/update_many", json=body))
    assert status["results"] == [
        {
            "index": 0,
            "error": "OrganizationUpdateFailed",
            "id": mine,
            "details": "Name:  Taken has already been taken",
        }
    ]
    assert list(status["results"][0]) == ["index", "error", "id", "details"]


def test_org_update_many_unknown_organization_fails_the_item_with_record_not_found(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    body = {
        "organizations": [{"id": 123, "notes": "x"}, {"external_id": "nope", "notes": "x"}, {"notes": "x"}]
    }
    status = finished(sim, zd, zd.put("/api/v2/organizations/update_many", json=body))
    assert status["results"] == [
        {"index": 0, "error": "RecordNotFound", "id": 123, "details": "Not found"},
        {"index": 1, "error": "RecordNotFound", "id": None, "details": "Not found"},
        {"index": 2, "error": "RecordNotFound", "id": None, "details": "Not found"},
    ]


def test_org_update_many_is_not_held_to_the_per_organization_update_limit(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.reset(manual_clock=True)  # limits on
    org_id = upsert_org(zd, name="A").json()["organization"]["id"]
    body = {"organizations": [{"id": org_id, "notes": f"n{i}"} for i in range(10)]}
    status = finished(sim, zd, zd.put("/api/v2/organizations/update_many", json=body))
    assert all(r.get("success") for r in status["results"])
    assert zd.put(f"/api/v2/organizations/{org_id}", json={"organization": {"notes": "x"}}).status_code == 200


def test_org_update_many_over_100_or_a_wrong_envelope_gives_400(zd: httpx.Client) -> None:
    ids = ",".join(str(i) for i in range(1, 102))
    too_many = zd.put("/api/v2/organizations/update_many", params={"ids": ids}, json={"organization": {}})
    no_envelope = zd.put("/api/v2/organizations/update_many", params={"ids": "1"}, json={"notes": "x"})
    not_ids = zd.put("/api/v2/organizations/update_many", params={"ids": "a,b"}, json={"organization": {}})
    assert too_many.status_code == 400 and too_many.json()["error"] == "TooManyValues"
    assert no_envelope.status_code == 400 and no_envelope.json()["error"]["title"] == "Invalid attribute"
    assert not_ids.status_code == 400


def test_org_create_or_update_many_is_not_a_zendesk_endpoint(zd: httpx.Client) -> None:
    response = zd.post("/api/v2/organizations/create_or_update_many", json={"organizations": []})
    assert response.status_code == 404
    assert response.json() == {"error": "InvalidEndpoint", "description": "Not found"}


# -- organization_memberships/create_many ----------------------------------------------------------------


def test_membership_create_many_creates_each_with_the_documented_result(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    seeded = sim.control.seed(
        users=[{"name": "U", "external_id": "u"}],
        organizations=[{"name": "A"}, {"name": "B"}],
    )
    user_id = seeded["users"][0]["id"]
    org_ids = [o["id"] for o in seeded["organizations"]]
    response = create_many_memberships(zd, [{"user_id": user_id, "organization_id": o} for o in org_ids])
    status = finished(sim, zd, response)
    memberships = sim.control.state()["organization_memberships"]
    assert status["results"] == [
        {"action": "create", "id": m["id"], "status": "Created", "success": True} for m in memberships
    ]
    assert [m["organization_id"] for m in memberships] == org_ids
    assert [m["default"] for m in memberships] == [True, None]


def test_membership_create_many_existing_or_unknown_fails_the_item(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    seeded = sim.control.seed(users=[{"name": "U"}], organizations=[{"name": "A"}])
    user_id, org_id = seeded["users"][0]["id"], seeded["organizations"][0]["id"]
    sim.control.seed(memberships=[{"user_id": user_id, "organization_id": org_id}])
    items = [
        {"user_id": user_id, "organization_id": org_id},
        {"user_id": 1, "organization_id": org_id},
        {"user_id": user_id, "organization_id": 1},
    ]
    status = finished(sim, zd, create_many_memberships(zd, items))
    assert status["results"] == [
        {"index": 0, "id": None, "error": "DuplicateValue", "details": "User has already been taken"},
        {"index": 1, "id": None, "error": "BlankValue", "details": "User cannot be blank"},
        {"index": 2, "id": None, "error": "BlankValue", "details": "Organization cannot be blank"},
    ]


def test_membership_create_many_failure_code_is_an_option(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(membership_job_error_code="OrganizationMembershipCreateFailed")
    status = finished(sim, zd, create_many_memberships(zd, [{"user_id": 1, "organization_id": 2}]))
    assert status["results"][0]["error"] == "OrganizationMembershipCreateFailed"


def test_membership_create_many_over_100_gives_400(zd: httpx.Client) -> None:
    response = create_many_memberships(zd, [{"user_id": 1, "organization_id": 2}] * 101)
    assert response.status_code == 400 and response.json()["error"] == "TooManyValues"


# -- users/create_or_update_many item errors -------------------------------------------------------------


def test_user_bulk_item_errors_come_as_index_id_error_details(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    owner = upsert_user(zd, name="Owner", email="taken@example.com").json()["user"]["id"]
    upsert_user(zd, name="D", external_id="d")
    items: list[Any] = [
        {"external_id": "d", "email": "taken@example.com"},  # external_id names D, the email is Owner's
        {"name": "Tz", "external_id": "t", "time_zone": "Mars/Olympus"},
        {"external_id": "nameless"},
        {"name": "Role", "role": "boss"},
        {"id": 5, "notes": "x"},
        {"id": owner, "external_id": "D"},  # D's external_id
        {"name": "Ok", "external_id": "ok"},
    ]
    results = finished(sim, zd, bulk_users(zd, items))["results"]
    assert results[:6] == [
        {
            "index": 0,
            "id": None,
            "error": "DuplicateValue",
            "details": "Email: taken@example.com is already being used by another user",
        },
        {
            "index": 1,
            "id": None,
            "error": "InvalidValue",
            "details": "Time zone: Mars/Olympus is not included in the list",
        },
        {
            "index": 2,
            "id": None,
            "error": "RecordInvalid",
            "details": "Name: is too short (minimum is 1 characters)",
        },
        {
            "index": 3,
            "id": None,
            "error": "InvalidValue",
            "details": "Role: boss is not included in the list",
        },
        {"index": 4, "id": None, "error": "RecordNotFound", "details": "Not found"},
        {"index": 5, "id": None, "error": "DuplicateValue", "details": "External: D has already been taken"},
    ]
    assert results[6]["status"] == "Created"
    assert sorted(u["name"] for u in sim.control.state()["users"]) == ["D", "Ok", "Owner"]


def test_user_bulk_invalid_time_zone_is_dropped_when_the_policy_is_ignore(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(invalid_time_zone="ignore")
    results = finished(sim, zd, bulk_users(zd, [{"name": "Tz", "time_zone": "Mars/Olympus"}]))["results"]
    assert results[0]["status"] == "Created"


def test_user_bulk_error_code_is_an_option(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(user_job_error_code="UserUpdateError")
    results = finished(sim, zd, bulk_users(zd, [{"external_id": "nameless"}]))["results"]
    assert results[0]["error"] == "UserUpdateError"


def test_user_bulk_wrongly_typed_item_fails_the_request_or_the_item_by_option(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    items = [{"name": "A", "tags": "not-a-list"}, {"name": "B"}]
    refused = bulk_users(zd, items)
    assert refused.status_code == 400 and refused.json()["error"]["title"] == "Invalid attribute"
    sim.control.set_options(bulk_item_type_errors="fail_item")
    results = finished(sim, zd, bulk_users(zd, items))["results"]
    assert results[0]["error"] == "InvalidAttribute" and "user.tags must be an array" in results[0]["details"]
    assert results[1]["status"] == "Created"


def test_user_bulk_items_are_not_held_to_the_create_or_update_user_limits(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.reset(manual_clock=True)  # limits on: 1/s per account, 5/min per user
    items = [{"name": f"N{i}", "external_id": "same"} for i in range(10)]
    results = finished(sim, zd, bulk_users(zd, items))["results"]
    assert [r["status"] for r in results] == ["Created"] + ["Updated"] * 9
    single = upsert_user(zd, name="Single", external_id="same")
    assert single.status_code == 200
    assert single.headers["zendesk-ratelimit-create-update-user"].startswith("total=5; remaining=4")


# -- rules shared by every bulk endpoint -----------------------------------------------------------------


def test_a_bulk_request_counts_once_against_the_account_bucket(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.reset(manual_clock=True)
    before = int(zd.get("/api/v2/user_fields").headers["x-rate-limit-remaining"])
    bulk_users(zd, [{"name": f"U{i}"} for i in range(100)])
    create_many_orgs(zd, [{"name": f"O{i}"} for i in range(100)])
    sim.control.complete_jobs()
    after = int(zd.get("/api/v2/user_fields").headers["x-rate-limit-remaining"])
    assert before - after == 3  # two bulk requests and this GET; the 200 items cost nothing


def test_the_30_in_flight_jobs_limit_holds_across_all_bulk_endpoints(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    for i in range(10):
        assert bulk_users(zd, [{"name": f"U{i}"}]).status_code == 200
        assert create_many_orgs(zd, [{"name": f"O{i}"}]).status_code == 200
        assert create_many_memberships(zd, [{"user_id": 1, "organization_id": 2}]).status_code == 200
    refused = zd.put("/api/v2/organizations/update_many", json={"organizations": [{"id": 1}]})
    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "TooManyJobs" and len(body["current_job_ids"]) == 30
    assert body["description"].endswith("jobs are currently queued or running. Try again later.")
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["zendesk-ratelimit-inflight-jobs"] == "total=30; remaining=0; resets=60"
    sim.control.complete_jobs()
    assert zd.put("/api/v2/organizations/update_many", json={"organizations": [{"id": 1}]}).status_code == 200


def test_too_many_jobs_retry_after_is_the_time_until_a_job_finishes(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(max_inflight_jobs=1, job_workers=1, job_queued_ms=0, job_working_ms=4000)
    assert create_many_orgs(zd, [{"name": "A"}]).status_code == 200
    sim.control.advance_clock(1)
    refused = create_many_orgs(zd, [{"name": "B"}])
    assert refused.status_code == 429 and refused.headers["retry-after"] == "4"  # 3.005 s left, rounded up


def test_every_bulk_item_is_logged_with_its_user_key_in_applied_order(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    seeded = sim.control.seed(organizations=[{"name": "Acme"}])
    org_id = seeded["organizations"][0]["id"]
    upsert_user(zd, name="First", external_id="u1")
    bulk_users(zd, [{"external_id": "u1", "notes": "from job"}, {"name": "Other", "external_id": "u2"}])
    sim.control.complete_jobs()
    user_id = sim.control.state()["users"][0]["id"]
    create_many_memberships(zd, [{"user_id": user_id, "organization_id": org_id}])
    sim.control.complete_jobs()
    upsert_user(zd, external_id="u1", notes="single again")
    log = sim.control.requests(user_key="u1")
    assert [(e["method"], e["change"]["kind"]) for e in log] == [
        ("POST", "user.create"),
        ("JOB", "user.update"),
        ("JOB", "membership.create"),
        ("POST", "user.update"),
    ]
    job_entry = log[1]
    assert job_entry["path"] == "/api/v2/users/create_or_update_many"
    assert job_entry["change"]["job_item"] == 0 and job_entry["change"]["job_id"].startswith("V3-")
    assert job_entry["user_id"] == user_id and job_entry["status"] == 200


def test_failed_bulk_items_are_logged_as_failed_job_entries(sim: RunningSimulator, zd: httpx.Client) -> None:
    create_many_memberships(zd, [{"user_id": 1, "organization_id": 2}])
    sim.control.complete_jobs()
    (entry,) = sim.control.requests(method="JOB")
    assert entry["status"] == 422 and entry["user_key"] is None
    assert entry["change"]["kind"] == "job.item_failed" and entry["change"]["error"] == "BlankValue"


# -- job_statuses/show_many ------------------------------------------------------------------------------


def test_show_many_returns_exactly_the_named_jobs_in_the_documented_envelope(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    first = bulk_users(zd, [{"name": "A"}]).json()["job_status"]["id"]
    second = create_many_orgs(zd, [{"name": "B"}]).json()["job_status"]["id"]
    bulk_users(zd, [{"name": "C"}])  # not asked for
    body = zd.get(
        "/api/v2/job_statuses/show_many.json", params={"ids": f"{second},V3-unknown,{first}"}
    ).json()
    assert list(body) == ["job_statuses"]
    assert [j["id"] for j in body["job_statuses"]] == [second, first]
    assert body["job_statuses"][0]["job_type"] == "Bulk Create Organization"


def test_show_many_without_ids_is_empty(zd: httpx.Client) -> None:
    bulk_users(zd, [{"name": "A"}])
    assert zd.get("/api/v2/job_statuses/show_many").json() == {"job_statuses": []}


def test_show_many_moves_per_poll_jobs_like_a_single_get(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(job_mode="per_poll")
    job_id = bulk_users(zd, [{"name": "A"}]).json()["job_status"]["id"]
    statuses = [
        zd.get("/api/v2/job_statuses/show_many", params={"ids": job_id}).json()["job_statuses"][0]["status"]
        for _ in range(2)
    ]
    assert statuses == ["working", "completed"]
