"""create_or_update_many and job_statuses (docs/zendesk-api.md §2.3, §7)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import upsert_user
from tests.support.waiting import wait_for


def bulk(zd: httpx.Client, users: list[dict[str, Any]]) -> httpx.Response:
    return zd.post("/api/v2/users/create_or_update_many.json", json={"users": users})


def job(zd: httpx.Client, job_id: str) -> dict[str, Any]:
    status: dict[str, Any] = zd.get(f"/api/v2/job_statuses/{job_id}.json").json()["job_status"]
    return status


def test_create_or_update_many_returns_200_with_a_queued_job(zd: httpx.Client) -> None:
    response = bulk(zd, [{"name": "A", "external_id": "a"}])
    assert response.status_code == 200
    status = response.json()["job_status"]
    assert re.fullmatch(r"V3-[0-9a-f]{32}", status["id"])
    assert (status["status"], status["total"], status["progress"], status["results"]) == (
        "queued",
        1,
        None,
        None,
    )
    assert status["url"].endswith(f"/api/v2/job_statuses/{status['id']}.json")


def test_job_moves_queued_working_completed_with_the_clock(sim: RunningSimulator, zd: httpx.Client) -> None:
    job_id = bulk(zd, [{"name": "A", "external_id": "a"}]).json()["job_status"]["id"]
    assert job(zd, job_id)["status"] == "queued"
    sim.control.advance_clock(0.15)
    assert job(zd, job_id)["status"] == "working"
    sim.control.advance_clock(0.2)
    completed = job(zd, job_id)
    assert completed["status"] == "completed" and completed["progress"] == 1
    assert completed["message"].startswith("Completed at ")


def test_job_moves_one_state_per_poll_in_per_poll_mode(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(job_mode="per_poll")
    job_id = bulk(zd, [{"name": "A"}]).json()["job_status"]["id"]
    assert [job(zd, job_id)["status"] for _ in range(3)] == ["working", "completed", "completed"]


def test_job_results_mix_created_updated_and_failed_items(sim: RunningSimulator, zd: httpx.Client) -> None:
    existing = upsert_user(zd, name="Old", external_id="old").json()["user"]["id"]
    upsert_user(zd, name="Owner", email="taken@example.com")
    job_id = bulk(
        zd,
        [
            {"name": "New", "external_id": "new"},
            {"external_id": "old", "notes": "x"},
            {"external_id": "old", "email": "taken@example.com"},
        ],
    ).json()["job_status"]["id"]
    sim.control.complete_jobs()
    results = job(zd, job_id)["results"]
    assert (
        results[0]["action"] == "create"
        and results[0]["status"] == "Created"
        and results[0]["success"] is True
    )
    assert results[1] == {"action": "update", "id": existing, "status": "Updated", "success": True}
    assert results[2] == {
        "index": 2,
        "id": None,
        "error": "DuplicateValue",
        "details": "Email: taken@example.com is already being used by another user",
    }


def test_job_items_take_effect_only_when_the_job_completes(sim: RunningSimulator, zd: httpx.Client) -> None:
    bulk(zd, [{"name": "A", "external_id": "a"}])
    assert zd.get("/api/v2/users/search", params={"external_id": "a"}).json()["users"] == []
    sim.control.complete_jobs()
    assert len(zd.get("/api/v2/users/search", params={"external_id": "a"}).json()["users"]) == 1


def test_more_than_100_users_gives_400_too_many_values(zd: httpx.Client) -> None:
    response = bulk(zd, [{"name": f"U{i}"} for i in range(101)])
    assert response.status_code == 400
    assert response.json() == {
        "error": "TooManyValues",
        "description": "Maximum 100 users may be created per call",
    }


def test_more_than_30_in_flight_jobs_gives_429_too_many_jobs(zd: httpx.Client) -> None:
    responses = [bulk(zd, [{"name": "A"}]) for _ in range(31)]
    assert all(r.status_code == 200 for r in responses[:30])
    refused = responses[30]
    assert refused.status_code == 429 and "retry-after" in refused.headers
    body = refused.json()
    assert body["error"] == "TooManyJobs" and len(body["current_job_ids"]) == 30
    assert responses[29].headers["zendesk-ratelimit-inflight-jobs"] == "total=30; remaining=0; resets=60"


def test_bulk_import_disabled_gives_403(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(bulk_import_enabled=False)
    response = bulk(zd, [{"name": "A"}])
    assert response.status_code == 403 and response.json()["error"] == "Forbidden"


def test_unknown_job_gives_404_and_job_lists(zd: httpx.Client) -> None:
    first = bulk(zd, [{"name": "A"}]).json()["job_status"]["id"]
    second = bulk(zd, [{"name": "B"}]).json()["job_status"]["id"]
    assert zd.get("/api/v2/job_statuses/V3-0000.json").status_code == 404
    listed = zd.get("/api/v2/job_statuses/show_many.json", params={"ids": f"{first},{second}"}).json()
    assert [j["id"] for j in listed["job_statuses"]] == [first, second]


def test_job_works_for_job_working_ms_plus_job_ms_per_item_per_item(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(job_queued_ms=100, job_working_ms=200, job_ms_per_item=10)
    job_id = bulk(zd, [{"name": f"U{i}"} for i in range(50)]).json()["job_status"]["id"]  # 0.1 + 0.7 s
    sim.control.advance_clock(0.79)
    assert job(zd, job_id)["status"] == "working"
    sim.control.advance_clock(0.02)
    assert job(zd, job_id)["status"] == "completed"


def test_jobs_beyond_the_worker_count_stay_queued_until_a_worker_is_free(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(job_workers=1, job_queued_ms=100, job_working_ms=200, job_ms_per_item=0)
    first = bulk(zd, [{"name": "A"}]).json()["job_status"]["id"]
    second = bulk(zd, [{"name": "B"}]).json()["job_status"]["id"]
    sim.control.advance_clock(0.15)
    assert (job(zd, first)["status"], job(zd, second)["status"]) == ("working", "queued")
    sim.control.advance_clock(0.16)  # 0.31: the first ended at 0.3, the second runs until 0.5
    assert (job(zd, first)["status"], job(zd, second)["status"]) == ("completed", "working")
    sim.control.advance_clock(0.2)
    assert job(zd, second)["status"] == "completed"


def test_job_workers_0_runs_every_job_at_once(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(job_workers=0, job_ms_per_item=0)
    ids = [bulk(zd, [{"name": f"U{i}"}]).json()["job_status"]["id"] for i in range(10)]
    sim.control.advance_clock(0.3)
    assert {job(zd, job_id)["status"] for job_id in ids} == {"completed"}


def test_slow_setting_keeps_a_job_working_for_seconds(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.reset(rate_limits=False, manual_clock=True, job_working_ms=3000)
    job_id = bulk(zd, [{"name": "A"}]).json()["job_status"]["id"]
    sim.control.advance_clock(3.0)
    assert job(zd, job_id)["status"] == "working"
    sim.control.advance_clock(0.2)
    assert job(zd, job_id)["status"] == "completed"


def test_jobs_complete_in_schedule_order_and_items_apply_at_the_scheduled_end(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(job_workers=2, job_queued_ms=0, job_working_ms=0, job_ms_per_item=100)
    bulk(zd, [{"name": f"Long{i}", "external_id": f"long{i}"} for i in range(10)])  # ends at 1.0 s
    bulk(zd, [{"name": "Short", "external_id": "short"}])  # ends at 0.1 s
    start = sim.control.state()["clock"]
    sim.control.advance_clock(5)
    entries = sim.control.requests(method="JOB")
    assert [e["user_key"] for e in entries] == ["short"] + [f"long{i}" for i in range(10)]
    assert [round(e["at"] - start, 3) for e in (entries[0], entries[1])] == [0.1, 1.0]


def test_finished_jobs_show_in_control_calls_without_a_zendesk_request(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    bulk(zd, [{"name": "A", "external_id": "a"}])
    sim.control.advance_clock(1)
    assert [e["user_key"] for e in sim.control.requests(method="JOB")] == ["a"]


def test_jobs_complete_on_the_real_clock(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(manual_clock=False, job_queued_ms=10, job_working_ms=20)
    job_id = bulk(zd, [{"name": "A"}]).json()["job_status"]["id"]
    wait_for(lambda: job(zd, job_id)["status"] == "completed", timeout_s=5, what="the job to complete")
