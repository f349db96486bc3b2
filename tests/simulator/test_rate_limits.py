"""Rate limits and their headers (docs/zendesk-api.md §9, §2.2, §5.3, §8.2).

The clock is manual: no waiting."""

from __future__ import annotations

import httpx
import pytest

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import track, upsert_org, upsert_user

ACCOUNT_HEADERS = (
    "x-rate-limit",
    "x-rate-limit-remaining",
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
)


@pytest.fixture
def limited(sim: RunningSimulator) -> RunningSimulator:
    sim.control.reset(manual_clock=True)  # launch defaults: limits on, Enterprise
    return sim


@pytest.mark.parametrize(
    ("plan", "support_rpm"),
    [("team", 200), ("growth", 400), ("professional", 400), ("enterprise", 700), ("enterprise_plus", 2500)],
)
def test_account_limit_per_plan_is_reported_in_headers(
    sim: RunningSimulator, zd: httpx.Client, plan: str, support_rpm: int
) -> None:
    sim.control.reset(manual_clock=True, plan=plan)
    response = zd.get("/api/v2/user_fields.json")
    assert response.headers["x-rate-limit"] == str(support_rpm)
    assert response.headers["x-rate-limit-remaining"] == str(support_rpm - 1)


def test_every_response_carries_the_rate_limit_headers(limited: RunningSimulator, zd: httpx.Client) -> None:
    for response in (
        zd.get("/api/v2/users/1.json"),
        upsert_user(zd, email="no-name@example.com"),
        zd.get("/api/v2/nothing"),
        zd.get("/api/v2/user_fields"),
    ):
        assert all(name in response.headers for name in ACCOUNT_HEADERS), response.headers
        assert response.headers["ratelimit-reset"] == "60"


def test_401_and_injected_failures_carry_the_rate_limit_headers_too(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    limited.control.inject_fault(path="user_fields", status=500)
    unauthenticated = httpx.get(f"{limited.base_url}/api/v2/user_fields")
    failed = zd.get("/api/v2/user_fields")
    for response in (unauthenticated, failed):
        assert all(name in response.headers for name in ACCOUNT_HEADERS), response.headers


def test_over_the_account_limit_gives_429_with_retry_after(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    limited.control.set_options(plan="team", limit_scale=0.05)  # 10 requests per minute
    statuses = [zd.get("/api/v2/user_fields").status_code for _ in range(11)]
    refused = zd.get("/api/v2/user_fields")
    assert statuses == [200] * 10 + [429]
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert refused.headers["x-rate-limit-remaining"] == "0"
    assert refused.headers["content-type"].startswith("text/html")
    limited.control.advance_clock(60)
    assert zd.get("/api/v2/user_fields").status_code == 200


def test_create_or_update_user_allows_1_per_second_per_account(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    assert upsert_user(zd, name="A", external_id="a").status_code == 201
    refused = upsert_user(zd, name="B", external_id="b")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.headers["zendesk-ratelimit-create-update-user"] == "total=1; remaining=0; resets=1"
    limited.control.advance_clock(1)
    assert upsert_user(zd, name="B", external_id="b").status_code == 201


def test_create_or_update_user_allows_5_per_minute_per_user(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    statuses = []
    for _ in range(6):
        statuses.append(upsert_user(zd, name="A", external_id="a").status_code)
        limited.control.advance_clock(1)
    assert statuses == [201, 200, 200, 200, 200, 429]
    assert upsert_user(zd, name="Other", external_id="other").status_code == 201


def test_create_update_user_bucket_header_counts_down_per_user(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    first = upsert_user(zd, name="A", external_id="a")
    limited.control.advance_clock(1)
    second = upsert_user(zd, name="A", external_id="a")
    assert first.headers["zendesk-ratelimit-create-update-user"].startswith("total=5; remaining=4;")
    assert second.headers["zendesk-ratelimit-create-update-user"].startswith("total=5; remaining=3;")


def test_account_per_second_create_update_limit_is_configurable(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    limited.control.set_options(create_update_user_per_second=3)
    assert [upsert_user(zd, name=n, external_id=n).status_code for n in "abcd"] == [201, 201, 201, 429]


def test_organization_update_allows_5_per_minute_per_organization(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    org_id = upsert_org(zd, name="Acme").json()["organization"]["id"]
    statuses = [
        zd.put(f"/api/v2/organizations/{org_id}.json", json={"organization": {"notes": str(i)}}).status_code
        for i in range(6)
    ]
    refused = zd.put(f"/api/v2/organizations/{org_id}.json", json={"organization": {"notes": "x"}})
    assert statuses == [200] * 5 + [429]
    assert refused.json() == {"errors": [{"code": "TooManyRequests", "title": "Too many requests to update"}]}
    assert int(refused.headers["retry-after"]) > 0
    other = upsert_org(zd, name="Other").json()["organization"]["id"]
    assert zd.put(f"/api/v2/organizations/{other}", json={"organization": {"notes": "x"}}).status_code == 200


def test_organization_create_or_update_counts_toward_the_update_limit_by_switch(
    limited: RunningSimulator, zd: httpx.Client
) -> None:
    upsert_org(zd, name="Acme", external_id="g")
    assert [upsert_org(zd, external_id="g", notes=str(i)).status_code for i in range(6)] == [200] * 5 + [429]
    limited.control.set_options(org_update_limit_on_create_or_update=False)
    assert upsert_org(zd, external_id="g", notes="free").status_code == 200


def test_events_have_their_own_bucket(limited: RunningSimulator, zd: httpx.Client) -> None:
    limited.control.set_options(plan="professional", limit_scale=0.01)  # support 4/min, events 5/min
    while zd.get("/api/v2/user_fields").status_code != 429:
        pass
    event = track(zd, identifiers=[{"type": "external_id", "value": "x"}])
    assert event.status_code == 202
    assert event.headers["x-rate-limit"] == "5"
    events = [track(zd, identifiers=[{"type": "external_id", "value": "x"}]).status_code for _ in range(5)]
    assert events == [202] * 4 + [429]


def test_limits_off_never_gives_429(sim: RunningSimulator, zd: httpx.Client) -> None:
    statuses = {upsert_user(zd, name="A", external_id="a").status_code for _ in range(20)}
    assert 429 not in statuses
