"""Events API (docs/zendesk-api.md §8)."""

from __future__ import annotations

import httpx
import pytest

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import track, upsert_user


def test_event_post_returns_202_with_string_user_id_and_ulid_profile_id(zd: httpx.Client) -> None:
    user_id = upsert_user(zd, name="A", external_id="u1").json()["user"]["id"]
    response = track(zd, identifiers=[{"type": "external_id", "value": "u1"}])
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "received" and body["user_id"] == str(user_id)
    assert len(body["profile_id"]) == 26


def test_event_for_unknown_identifier_creates_an_anonymous_user(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    response = track(zd, identifiers=[{"type": "external_id", "value": "ghost"}])
    users = sim.control.state()["users"]
    assert response.status_code == 202
    assert [(u["name"], u["external_id"], str(u["id"])) for u in users] == [
        ("User ghost", "ghost", response.json()["user_id"])
    ]


def test_event_email_identifier_is_lowercased_and_matches_the_user(zd: httpx.Client) -> None:
    user_id = upsert_user(zd, name="A", email="ann@example.com").json()["user"]["id"]
    response = track(zd, identifiers=[{"type": "email", "value": "ANN@Example.com"}])
    assert response.json()["user_id"] == str(user_id)


def test_same_identifier_reuses_the_profile(zd: httpx.Client) -> None:
    identifiers = [{"type": "external_id", "value": "u1"}]
    assert (
        track(zd, identifiers=identifiers).json()["profile_id"]
        == track(zd, identifiers=identifiers).json()["profile_id"]
    )


def test_user_events_path_returns_202_or_404_for_unknown_user(zd: httpx.Client) -> None:
    user_id = upsert_user(zd, name="A").json()["user"]["id"]
    identifiers = [{"type": "email", "value": "a@example.com"}]
    ok = track(zd, identifiers=identifiers, path=f"/api/v2/users/{user_id}/events")
    assert ok.status_code == 202 and ok.json()["user_id"] == str(user_id)
    assert track(zd, identifiers=identifiers, path="/api/v2/users/1/events.json").status_code == 404


@pytest.mark.parametrize(
    ("identifiers", "event_type", "source"),
    [
        ([{"type": "external_id", "value": "x" * 61}], "checkout", "segment"),
        ([{"type": "t" * 61, "value": "x"}], "checkout", "segment"),
        ([{"type": "external_id", "value": "x"}], "e" * 41, "segment"),
        ([{"type": "external_id", "value": "x"}], "checkout", "s" * 41),
        ([{"type": "external_id", "value": str(i)} for i in range(21)], "checkout", "segment"),
        ([], "checkout", "segment"),
    ],
)
def test_event_over_the_length_limits_gives_400_errors(
    zd: httpx.Client, identifiers: list[dict[str, str]], event_type: str, source: str
) -> None:
    response = track(zd, identifiers=identifiers, event_type=event_type, source=source)
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert set(error) == {"code", "id", "title"}


def test_event_at_the_length_limits_is_accepted(zd: httpx.Client) -> None:
    identifiers = [{"type": "external_id", "value": "x" * 60}]
    assert track(zd, identifiers=identifiers, event_type="e" * 40, source="s" * 40).status_code == 202


def test_zendesk_source_is_reserved(zd: httpx.Client) -> None:
    response = track(zd, identifiers=[{"type": "external_id", "value": "x"}], source="zendesk")
    assert response.status_code == 400
    assert "reserved" in response.json()["errors"][0]["title"]


def test_event_properties_must_be_an_object(zd: httpx.Client) -> None:
    body = {
        "profile": {"source": "s", "type": "user", "identifiers": [{"type": "external_id", "value": "x"}]},
        "event": {"source": "s", "type": "t", "properties": ["a"]},
    }
    assert zd.post("/api/v2/user_profiles/events", json=body).status_code == 400


def test_event_created_at_defaults_to_receipt_time(sim: RunningSimulator, zd: httpx.Client) -> None:
    track(zd, identifiers=[{"type": "external_id", "value": "x"}])
    track(zd, identifiers=[{"type": "external_id", "value": "x"}], created_at="2020-01-31T00:44:07+00:00")
    events = sim.control.state()["events"]
    assert events[0]["created_at"] == events[0]["received_at"]
    assert events[1]["created_at"] == "2020-01-31T00:44:07+00:00"


def test_legacy_sunshine_events_path_is_served_by_switch(sim: RunningSimulator, zd: httpx.Client) -> None:
    identifiers = [{"type": "external_id", "value": "x"}]
    assert track(zd, identifiers=identifiers, path="/api/sunshine/events").status_code == 202
    sim.control.set_options(serve_legacy_sunshine_events=False)
    assert track(zd, identifiers=identifiers, path="/api/sunshine/events").status_code == 404
