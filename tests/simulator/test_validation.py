"""Bad JSON, wrong envelopes and wrong types get Zendesk's 400/422, never a 500 (docs/zendesk-api.md §1.4)."""

from __future__ import annotations

import httpx
import pytest

BAD_BODIES = [
    ("/api/v2/users/create_or_update", b"{not json"),
    ("/api/v2/users/create_or_update", b'{"name": "no envelope"}'),
    ("/api/v2/users/create_or_update", b'{"user": "a string"}'),
    ("/api/v2/users/create_or_update", b'{"user": {"name": "A", "tags": "vip"}}'),
    ("/api/v2/users/create_or_update", b'{"user": {"name": 5}}'),
    ("/api/v2/users/create_or_update", b'{"user": {"name": "A", "user_fields": []}}'),
    ("/api/v2/users/create_or_update", b'{"user": {"name": "A", "external_id": {"x": 1}}}'),
    ("/api/v2/users/create_or_update", b'{"user": {"name": "A", "verified": "yes"}}'),
    ("/api/v2/users/create_or_update", b"[]"),
    ("/api/v2/users/create_or_update", b""),
    ("/api/v2/users/create_or_update_many", b'{"users": {"name": "A"}}'),
    ("/api/v2/users/create_or_update_many", b'{"users": ["A"]}'),
    ("/api/v2/organizations/create_or_update", b'{"organization": {"name": "A", "domain_names": "a.com"}}'),
    ("/api/v2/organizations/create_or_update", b'{"organization": []}'),
    ("/api/v2/organizations", b"null"),
    ("/api/v2/user_fields", b'{"user_field": 1}'),
    (
        "/api/v2/organization_memberships",
        b'{"organization_membership": {"user_id": "x", "organization_id": []}}',
    ),
    ("/api/v2/user_profiles/events", b"{"),
    ("/api/v2/user_profiles/events", b'{"profile": [], "event": {}}'),
    ("/api/v2/user_profiles/events", b'{"profile": {"source": 1, "type": "user"}, "event": {}}'),
]


@pytest.mark.parametrize(("path", "body"), BAD_BODIES)
def test_bad_body_gets_a_zendesk_shaped_400_or_422_never_500(
    zd: httpx.Client, path: str, body: bytes
) -> None:
    response = zd.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json() or "errors" in response.json()


def test_wrong_type_gives_400_invalid_attribute_naming_the_attribute(zd: httpx.Client) -> None:
    response = zd.post("/api/v2/users/create_or_update", json={"user": {"name": "A", "tags": "vip"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["title"] == "Invalid attribute"
    assert "user.tags must be an array" in error["message"]


def test_unknown_attributes_are_dropped_without_error(zd: httpx.Client) -> None:
    response = zd.post(
        "/api/v2/users/create_or_update", json={"user": {"name": "A", "favourite_colour": "red"}}
    )
    assert response.status_code == 201


def test_read_only_attributes_are_dropped_with_a_warning_header(zd: httpx.Client) -> None:
    body = {"user": {"name": "A", "url": "x", "created_at": "2001-01-01T00:00:00Z"}}
    response = zd.post("/api/v2/users/create_or_update", json=body)
    assert response.status_code == 201
    assert response.json()["user"]["created_at"] != "2001-01-01T00:00:00Z"
    assert response.headers["x-zendesk-api-warn"] == (
        'Removed restricted keys ["url", "created_at"] from parameters according to whitelist'
    )


def test_unknown_endpoint_gives_404_invalid_endpoint(zd: httpx.Client) -> None:
    for method, path in (("GET", "/api/v2/users.json.json"), ("PUT", "/api/v2/users/create_or_update")):
        response = zd.request(method, path)
        assert response.status_code == 404
        assert response.json() == {"error": "InvalidEndpoint", "description": "Not found"}


def test_paths_work_with_and_without_json_suffix(zd: httpx.Client) -> None:
    assert zd.get("/api/v2/user_fields.json").status_code == 200
    assert zd.get("/api/v2/user_fields").status_code == 200
