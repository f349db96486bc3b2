"""user_fields and organization_fields (docs/zendesk-api.md §3, §4)."""

from __future__ import annotations

import httpx
import pytest

FIELD_KEYS = [
    "url",
    "id",
    "type",
    "key",
    "title",
    "description",
    "raw_title",
    "raw_description",
    "position",
    "active",
    "system",
    "regexp_for_validation",
    "created_at",
    "updated_at",
]
KINDS = ["user_field", "organization_field"]


def create(zd: httpx.Client, kind: str, **field: object) -> httpx.Response:
    return zd.post(f"/api/v2/{kind}s.json", json={kind: field})


@pytest.mark.parametrize("kind", KINDS)
def test_field_create_returns_201_with_location_and_text_default(zd: httpx.Client, kind: str) -> None:
    response = create(zd, kind, key="plan_name", title="Plan name")
    assert response.status_code == 201
    field = response.json()[kind]
    assert list(field) == FIELD_KEYS
    assert (field["type"], field["position"], field["active"], field["system"]) == ("text", 9999, True, False)
    assert response.headers["location"].endswith(f"/api/v2/{kind}s/{field['id']}.json")


@pytest.mark.parametrize("kind", KINDS)
def test_duplicate_field_key_gives_422_duplicate_value(zd: httpx.Client, kind: str) -> None:
    create(zd, kind, key="plan", title="Plan")
    response = create(zd, kind, key="plan", title="Plan again")
    assert response.status_code == 422
    assert response.json()["details"]["key"][0]["error"] == "DuplicateValue"


@pytest.mark.parametrize("key", ["has space", "dash-key", "12345", ""])
def test_field_key_must_be_letters_digits_underscores_and_not_all_digits(zd: httpx.Client, key: str) -> None:
    response = create(zd, "user_field", key=key, title="T")
    assert response.status_code == 422
    assert "key" in response.json()["details"]


def test_user_and_organization_field_keys_are_unique_per_kind(zd: httpx.Client) -> None:
    assert create(zd, "user_field", key="plan", title="Plan").status_code == 201
    assert create(zd, "organization_field", key="plan", title="Plan").status_code == 201


def test_field_without_title_gives_422(zd: httpx.Client) -> None:
    assert create(zd, "user_field", key="plan").status_code == 422


def test_dropdown_field_needs_options(zd: httpx.Client) -> None:
    assert create(zd, "user_field", key="tier", title="Tier", type="dropdown").status_code == 422


def test_field_list_offset_form_without_page_size(zd: httpx.Client) -> None:
    for index in range(3):
        create(zd, "user_field", key=f"f{index}", title=f"F{index}")
    body = zd.get("/api/v2/user_fields.json").json()
    assert [f["key"] for f in body["user_fields"]] == ["f0", "f1", "f2"]
    assert (body["count"], body["next_page"], body["previous_page"]) == (3, None, None)


def test_field_list_cursor_pagination_walks_every_page(zd: httpx.Client) -> None:
    for index in range(5):
        create(zd, "organization_field", key=f"f{index}", title=f"F{index}")
    keys: list[str] = []
    url: str | None = "/api/v2/organization_fields.json?page[size]=2"
    pages = 0
    while url:
        body = zd.get(url).json()
        pages += 1
        keys += [f["key"] for f in body["organization_fields"]]
        assert set(body["meta"]) == {"has_more", "after_cursor", "before_cursor"}
        url = body["links"]["next"] if body["meta"]["has_more"] else None
    assert keys == ["f0", "f1", "f2", "f3", "f4"]
    assert pages == 3


def test_field_show_by_id_or_key_and_404(zd: httpx.Client) -> None:
    field_id = create(zd, "user_field", key="plan", title="Plan").json()["user_field"]["id"]
    assert zd.get(f"/api/v2/user_fields/{field_id}.json").json()["user_field"]["key"] == "plan"
    assert zd.get("/api/v2/user_fields/plan").json()["user_field"]["id"] == field_id
    assert zd.get("/api/v2/user_fields/nope").json() == {
        "error": "RecordNotFound",
        "description": "Not found",
    }


def test_field_delete_returns_204(zd: httpx.Client) -> None:
    field_id = create(zd, "user_field", key="plan", title="Plan").json()["user_field"]["id"]
    response = zd.delete(f"/api/v2/user_fields/{field_id}")
    assert response.status_code == 204 and response.content == b""
    assert zd.get(f"/api/v2/user_fields/{field_id}").status_code == 404


def test_offset_pagination_past_10000_records_gives_400(zd: httpx.Client) -> None:
    assert zd.get("/api/v2/user_fields.json", params={"page": 101, "per_page": 100}).status_code == 400
