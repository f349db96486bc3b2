"""Users: create_or_update matching rules, show, search, show_many (docs/zendesk-api.md §2)."""

from __future__ import annotations

import httpx

from stream.simulator.testing import RunningSimulator
from tests.simulator.conftest import detail, upsert_user

USER_KEYS = [
    "id",
    "url",
    "name",
    "email",
    "created_at",
    "updated_at",
    "time_zone",
    "iana_time_zone",
    "phone",
    "shared_phone_number",
    "photo",
    "locale_id",
    "locale",
    "organization_id",
    "role",
    "verified",
    "external_id",
    "tags",
    "alias",
    "active",
    "shared",
    "shared_agent",
    "last_login_at",
    "two_factor_auth_enabled",
    "signature",
    "details",
    "notes",
    "role_type",
    "custom_role_id",
    "moderator",
    "ticket_restriction",
    "only_private_comments",
    "restricted_agent",
    "suspended",
    "default_group_id",
    "report_csv",
    "user_fields",
]


def test_create_or_update_returns_201_on_create_and_200_on_update(zd: httpx.Client) -> None:
    created = upsert_user(zd, name="Ann", email="ann@example.com", external_id="u1")
    updated = upsert_user(zd, name="Ann B", external_id="u1")
    assert created.status_code == 201
    assert updated.status_code == 200
    assert updated.json()["user"]["id"] == created.json()["user"]["id"]
    assert updated.json()["user"]["name"] == "Ann B"


def test_user_has_the_live_key_order_and_fresh_end_user_defaults(zd: httpx.Client) -> None:
    user = upsert_user(zd, name="Ann").json()["user"]
    assert list(user) == USER_KEYS
    assert user["email"] is None and user["role"] == "end-user" and user["verified"] is False
    assert user["time_zone"] == "America/New_York" and user["ticket_restriction"] == "requested"
    assert user["user_fields"] == {} and user["tags"] == [] and user["active"] is True


def test_create_sets_location_header_and_url_with_the_json_suffix_of_the_request(zd: httpx.Client) -> None:
    with_suffix = upsert_user(zd, name="A", external_id="a")
    without_suffix = zd.post(
        "/api/v2/users/create_or_update", json={"user": {"name": "B", "external_id": "b"}}
    )
    user_id = with_suffix.json()["user"]["id"]
    assert with_suffix.headers["location"].endswith(f"/api/v2/users/{user_id}.json")
    assert with_suffix.json()["user"]["url"].endswith(".json")
    assert not without_suffix.json()["user"]["url"].endswith(".json")


def test_user_ids_are_large_integers(zd: httpx.Client) -> None:
    assert upsert_user(zd, name="A").json()["user"]["id"] > 2**32


def test_existing_user_is_matched_by_email(zd: httpx.Client) -> None:
    first = upsert_user(zd, name="Ann", email="ann@example.com").json()["user"]
    second = upsert_user(zd, name="Ann 2", email="ANN@example.com")
    assert second.status_code == 200
    assert second.json()["user"]["id"] == first["id"]


def test_email_match_with_an_unknown_external_id_sets_the_external_id(zd: httpx.Client) -> None:
    first = upsert_user(zd, name="Ann", email="ann@example.com").json()["user"]
    second = upsert_user(zd, name="Ann", email="ann@example.com", external_id="u-77").json()["user"]
    assert second["id"] == first["id"]
    assert second["external_id"] == "u-77"


def test_external_id_match_is_case_insensitive_and_rewrites_the_casing(zd: httpx.Client) -> None:
    first = upsert_user(zd, name="Ian", external_id="ian1").json()["user"]
    second = upsert_user(zd, name="Ian", external_id="IAN1")
    assert second.status_code == 200
    assert second.json()["user"]["id"] == first["id"]
    assert second.json()["user"]["external_id"] == "IAN1"


def test_email_owned_by_another_user_than_the_external_id_gives_422_duplicate_value(zd: httpx.Client) -> None:
    upsert_user(zd, name="A", email="x@example.com")
    upsert_user(zd, name="B", external_id="x@example.com")
    response = upsert_user(zd, name="B", email="x@example.com", external_id="x@example.com")
    assert response.status_code == 422
    assert detail(response, "email") == {
        "description": "Email: x@example.com is already being used by another user",
        "error": "DuplicateValue",
    }


def test_email_conflict_changes_nothing(sim: RunningSimulator, zd: httpx.Client) -> None:
    upsert_user(zd, name="A", email="x@example.com")
    upsert_user(zd, name="B", external_id="b")
    upsert_user(zd, name="Renamed", email="x@example.com", external_id="b")
    names = sorted(u["name"] for u in sim.control.state()["users"])
    assert names == ["A", "B"]


def test_email_first_precedence_is_a_switch(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(email_external_id_precedence="email_first")
    upsert_user(zd, name="A", email="x@example.com")
    upsert_user(zd, name="B", external_id="b")
    response = upsert_user(zd, name="A", email="x@example.com", external_id="b")
    assert response.status_code == 422
    assert detail(response, "external_id")["error"] == "DuplicateValue"


def test_create_without_name_gives_422_name_too_short(zd: httpx.Client) -> None:
    response = upsert_user(zd, email="new@example.com")
    assert response.status_code == 422
    assert detail(response, "name")["description"] == "Name: is too short (minimum is 1 characters)"


def test_update_does_not_need_a_name(zd: httpx.Client) -> None:
    upsert_user(zd, name="Ann", external_id="u1")
    response = upsert_user(zd, external_id="u1", notes="vip")
    assert response.status_code == 200
    assert response.json()["user"]["name"] == "Ann"


def test_only_a_name_creates_a_new_user_every_time(zd: httpx.Client) -> None:
    first = upsert_user(zd, name="Same").json()["user"]["id"]
    second = upsert_user(zd, name="Same").json()["user"]["id"]
    assert first != second


def test_new_email_on_update_becomes_a_secondary_identity(sim: RunningSimulator, zd: httpx.Client) -> None:
    upsert_user(zd, name="Ann", email="ann@example.com", external_id="u1")
    response = upsert_user(zd, external_id="u1", email="ann.other@example.com")
    assert response.json()["user"]["email"] == "ann@example.com"
    identities = sim.control.state()["users"][0]["identities"]
    assert [(i["value"], i["primary"], i["verified"]) for i in identities] == [
        ("ann@example.com", True, False),
        ("ann.other@example.com", False, False),
    ]


def test_secondary_email_matches_the_user(zd: httpx.Client) -> None:
    user_id = upsert_user(zd, name="Ann", email="a@example.com", external_id="u1").json()["user"]["id"]
    upsert_user(zd, external_id="u1", email="b@example.com")
    assert upsert_user(zd, name="Ann", email="B@example.com").json()["user"]["id"] == user_id


def test_verified_alone_verifies_the_primary_email(zd: httpx.Client) -> None:
    upsert_user(zd, name="Ann", email="ann@example.com", external_id="u1")
    assert upsert_user(zd, external_id="u1", verified=True).json()["user"]["verified"] is True


def test_welcome_email_is_recorded_unless_skipped_or_verified(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    upsert_user(zd, name="A", email="a@example.com")
    upsert_user(zd, name="B", email="b@example.com", skip_verify_email=True)
    upsert_user(zd, name="C", email="c@example.com", verified=True)
    sent = {u["email"]: u["welcome_emails_sent"] for u in sim.control.state()["users"]}
    assert sent == {"a@example.com": 1, "b@example.com": 0, "c@example.com": 0}


def test_rails_and_iana_time_zones_are_accepted(zd: httpx.Client) -> None:
    rails = upsert_user(zd, name="A", time_zone="Eastern Time (US & Canada)").json()["user"]
    iana = upsert_user(zd, name="B", time_zone="Europe/Berlin").json()["user"]
    assert (rails["time_zone"], rails["iana_time_zone"]) == ("Eastern Time (US & Canada)", "America/New_York")
    assert (iana["time_zone"], iana["iana_time_zone"]) == ("Europe/Berlin", "Europe/Berlin")


def test_unknown_time_zone_gives_422_invalid_value(zd: httpx.Client) -> None:
    response = upsert_user(zd, name="A", time_zone="Mars/Olympus")
    assert response.status_code == 422
    assert detail(response, "time_zone")["error"] == "InvalidValue"


def test_unknown_time_zone_can_be_ignored_by_switch(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.set_options(invalid_time_zone="ignore")
    response = upsert_user(zd, name="A", time_zone="Mars/Olympus")
    assert response.status_code == 201
    assert response.json()["user"]["time_zone"] == "America/New_York"


def test_organization_id_write_replaces_all_memberships(sim: RunningSimulator, zd: httpx.Client) -> None:
    seeded = sim.control.seed(organizations=[{"name": "One"}, {"name": "Two"}])
    one, two = (o["id"] for o in seeded["organizations"])
    upsert_user(zd, name="A", external_id="u1", organization_id=one)
    user = upsert_user(zd, external_id="u1", organization_id=two).json()["user"]
    assert user["organization_id"] == two
    memberships = zd.get(f"/api/v2/users/{user['id']}/organization_memberships").json()
    assert [m["organization_id"] for m in memberships["organization_memberships"]] == [two]


def test_shared_phone_number_when_another_user_has_the_number(zd: httpx.Client) -> None:
    first = upsert_user(zd, name="A", phone="+15550001").json()["user"]
    second = upsert_user(zd, name="B", phone="+15550001").json()["user"]
    assert first["shared_phone_number"] is False
    assert second["shared_phone_number"] is True


def test_show_user_returns_200_or_404_record_not_found(zd: httpx.Client) -> None:
    user_id = upsert_user(zd, name="A").json()["user"]["id"]
    assert zd.get(f"/api/v2/users/{user_id}.json").json()["user"]["id"] == user_id
    missing = zd.get("/api/v2/users/1")
    assert missing.status_code == 404
    assert missing.json() == {"error": "RecordNotFound", "description": "Not found"}


def test_search_by_external_id_is_exact_and_case_insensitive(zd: httpx.Client) -> None:
    upsert_user(zd, name="A", external_id="abc")
    upsert_user(zd, name="B", external_id="abcd")
    body = zd.get("/api/v2/users/search.json", params={"external_id": "ABC"}).json()
    assert [u["external_id"] for u in body["users"]] == ["abc"]
    assert body["count"] == 1 and body["next_page"] is None and body["previous_page"] is None


def test_search_query_by_email_and_by_plain_value(zd: httpx.Client) -> None:
    upsert_user(zd, name="Jane Smith", email="jane@example.com")
    upsert_user(zd, name="John", email="john@example.com")
    by_email = zd.get("/api/v2/users/search", params={"query": "email:jane@example.com"}).json()["users"]
    by_value = zd.get("/api/v2/users/search", params={"query": "smith"}).json()["users"]
    assert [u["name"] for u in by_email] == ["Jane Smith"]
    assert [u["name"] for u in by_value] == ["Jane Smith"]


def test_search_query_lags_behind_writes_when_the_lag_knob_is_set(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.set_options(search_lag_ms=2000.0)
    upsert_user(zd, name="Late", email="late@example.com", external_id="late")
    query = {"query": "email:late@example.com"}
    assert zd.get("/api/v2/users/search", params=query).json()["users"] == []
    assert len(zd.get("/api/v2/users/search", params={"external_id": "late"}).json()["users"]) == 1
    sim.control.advance_clock(2)
    assert len(zd.get("/api/v2/users/search", params=query).json()["users"]) == 1


def test_show_many_by_ids_and_by_external_ids(zd: httpx.Client) -> None:
    a = upsert_user(zd, name="A", external_id="a").json()["user"]["id"]
    upsert_user(zd, name="B", external_id="b")
    by_ids = zd.get("/api/v2/users/show_many.json", params={"ids": f"{a},1"}).json()["users"]
    by_external = zd.get("/api/v2/users/show_many", params={"external_ids": "b,zzz"}).json()["users"]
    assert [u["id"] for u in by_ids] == [a]
    assert [u["external_id"] for u in by_external] == ["b"]


def test_user_fields_in_response_list_every_field_key_with_null_for_unset(
    sim: RunningSimulator, zd: httpx.Client
) -> None:
    sim.control.seed(
        user_fields=[{"key": "plan", "title": "Plan"}, {"key": "seats", "title": "Seats", "type": "integer"}]
    )
    user = upsert_user(zd, name="A", user_fields={"plan": "pro", "unknown_key": 1}).json()["user"]
    assert user["user_fields"] == {"plan": "pro", "seats": None}


def test_user_field_values_are_coerced_by_type(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.seed(
        user_fields=[
            {"key": "since", "title": "Since", "type": "date"},
            {
                "key": "tier",
                "title": "Tier",
                "type": "dropdown",
                "custom_field_options": [{"name": "Gold", "value": "gold"}],
            },
        ]
    )
    user = upsert_user(zd, name="A", user_fields={"since": "2024-03-01", "tier": "platinum"}).json()["user"]
    assert user["user_fields"] == {"since": "2024-03-01T00:00:00Z", "tier": None}


def test_null_user_field_value_clears_it(sim: RunningSimulator, zd: httpx.Client) -> None:
    sim.control.seed(user_fields=[{"key": "plan", "title": "Plan"}])
    upsert_user(zd, name="A", external_id="u1", user_fields={"plan": "pro"})
    assert upsert_user(zd, external_id="u1", user_fields={"plan": None}).json()["user"]["user_fields"] == {
        "plan": None
    }


def test_put_user_updates_and_unknown_id_is_404(zd: httpx.Client) -> None:
    user_id = upsert_user(zd, name="A").json()["user"]["id"]
    updated = zd.put(f"/api/v2/users/{user_id}.json", json={"user": {"name": "B"}})
    assert updated.status_code == 200 and updated.json()["user"]["name"] == "B"
    assert zd.put("/api/v2/users/1.json", json={"user": {"name": "B"}}).status_code == 404
