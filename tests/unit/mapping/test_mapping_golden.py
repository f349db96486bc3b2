"""The seed's own examples, as golden cases: the exact operations and bodies."""

from __future__ import annotations

from typing import Any

from stream.mapping import (
    DestinationSettings,
    Dropped,
    DropReason,
    EnsureField,
    EnsureMembership,
    FieldKind,
    Known,
    OrgRef,
    Plan,
    RemoveMembership,
    SendEvent,
    UpsertOrganization,
    UpsertUser,
    UserRef,
    plan,
)

PETER: dict[str, Any] = {
    "type": "identify",
    "userId": "97980cfea0067",
    "traits": {"name": "Peter Gibbons", "email": "peter@example.com", "plan": "premium", "logins": 5},
}


def planned(event: dict[str, Any], settings: DestinationSettings, known: Known | None = None) -> Plan:
    result = plan(event, settings, known or Known())
    assert isinstance(result, Plan), result
    return result


def test_golden_peter_gibbons_identify_creates_missing_fields_then_upserts() -> None:
    result = planned(PETER, DestinationSettings())
    assert result.operations == (
        EnsureField(kind=FieldKind.USER, key="plan", type="text", title="Plan"),
        EnsureField(kind=FieldKind.USER, key="logins", type="integer", title="Logins"),
        UpsertUser(
            user={
                "name": "Peter Gibbons",
                "email": "peter@example.com",
                "external_id": "97980cfea0067",
                "user_fields": {"plan": "premium", "logins": 5},
            },
            ref=UserRef(external_id="97980cfea0067", email="peter@example.com"),
        ),
    )
    assert result.dropped == ()
    assert result.operations[0].body() == {
        "user_field": {
            "key": "plan",
            "title": "Plan",
            "type": "text",
            "description": "Created automatically by zendesk-stream from a Segment trait.",
        }
    }


def test_golden_peter_gibbons_identify_with_existing_fields_and_verified() -> None:
    known = Known.of(user_fields={"plan": "dropdown", "logins": "integer"})
    result = planned(PETER, DestinationSettings.parse({"verified": True}), known)
    assert result.operations == (
        UpsertUser(
            user={
                "name": "Peter Gibbons",
                "email": "peter@example.com",
                "external_id": "97980cfea0067",
                "verified": True,
                "user_fields": {"plan": "premium", "logins": 5},
            },
            ref=UserRef(external_id="97980cfea0067", email="peter@example.com"),
        ),
    )
    assert result.summary == "identify: upsert_user [email,external_id,name,verified] user_fields=2"


PIKACHU: dict[str, Any] = {
    "action": "identify",
    "userId": "12345",
    "traits": {
        "name": "Pikachu",
        "email": "pikachu@pakemon.com",
        "timezone": "America/Los_Angeles",
        "organizationId": 6789,
        "phone": "763-555-2342",
    },
}


def test_golden_pikachu_identify() -> None:
    result = planned(PIKACHU, DestinationSettings())
    assert result.operations == (
        UpsertUser(
            user={
                "name": "Pikachu",
                "email": "pikachu@pakemon.com",
                "external_id": "12345",
                "organization_id": 6789,
                "time_zone": "America/Los_Angeles",
                "phone": "763-555-2342",
            },
            ref=UserRef(external_id="12345", email="pikachu@pakemon.com"),
        ),
    )
    assert result.dropped == ()


PIKACHU_REMOVE: dict[str, Any] = {
    "action": "identify",
    "userId": "12345",
    "traits": {
        "name": "Pikachu",
        "email": "pikachu@pokemon.com",
        "timezone": "America/Los_Angeles",
        "organizationId": 6789,
        "phone": "763-555-2342",
        "company": {"id": "6789", "remove": True},
    },
}


def test_golden_pikachu_with_company_remove_and_the_setting_on() -> None:
    result = planned(PIKACHU_REMOVE, DestinationSettings.parse({"removeUsersFromOrganizations": True}))
    ref = UserRef(external_id="12345", email="pikachu@pokemon.com")
    assert result.operations == (
        UpsertUser(
            user={
                "name": "Pikachu",
                "email": "pikachu@pokemon.com",
                "external_id": "12345",
                "time_zone": "America/Los_Angeles",
                "phone": "763-555-2342",
            },
            ref=ref,
        ),
        RemoveMembership(user=ref, organization=OrgRef(external_id="6789", id=6789)),
    )
    assert result.dropped == (Dropped("organizationId", DropReason.ORGANIZATION_BEING_REMOVED),)


def test_golden_pikachu_with_company_remove_and_the_setting_off() -> None:
    result = planned(PIKACHU_REMOVE, DestinationSettings())
    assert result.operations == (
        UpsertUser(
            user={
                "name": "Pikachu",
                "email": "pikachu@pokemon.com",
                "external_id": "12345",
                "organization_id": 6789,
                "time_zone": "America/Los_Angeles",
                "phone": "763-555-2342",
            },
            ref=UserRef(external_id="12345", email="pikachu@pokemon.com"),
        ),
    )


def test_golden_la_lakers_group() -> None:
    event = {
        "action": "group",
        "groupId": "908172409",
        "userId": "6789",
        "traits": {"name": "LA Lakers", "url": "https://lakers.com", "deleted": False},
    }
    result = planned(event, DestinationSettings())
    assert result.operations == (
        UpsertOrganization(
            organization={
                "external_id": "908172409",
                "name": "LA Lakers",
                "url": "https://lakers.com",
                "deleted": False,
            }
        ),
        EnsureMembership(user=UserRef(external_id="6789"), organization=OrgRef(external_id="908172409")),
    )
    assert result.operations[0].body() == {
        "organization": {
            "external_id": "908172409",
            "name": "LA Lakers",
            "url": "https://lakers.com",
            "deleted": False,
        }
    }


def test_golden_initech_group_with_total_billed() -> None:
    event = {
        "type": "group",
        "groupId": "0e8c78ea9d97a7b8185e8632",
        "userId": "97980cfea0067",
        "traits": {
            "name": "Initech",
            "industry": "Technology",
            "employees": 329,
            "plan": "enterprise",
            "total billed": 830,
        },
    }
    result = planned(event, DestinationSettings(), Known.of(organization_fields={"industry": "text"}))
    assert result.operations == (
        EnsureField(kind=FieldKind.ORGANIZATION, key="employees", type="integer", title="Employees"),
        EnsureField(kind=FieldKind.ORGANIZATION, key="plan", type="text", title="Plan"),
        EnsureField(kind=FieldKind.ORGANIZATION, key="total_billed", type="integer", title="Total billed"),
        UpsertOrganization(
            organization={
                "external_id": "0e8c78ea9d97a7b8185e8632",
                "name": "Initech",
                "organization_fields": {
                    "industry": "Technology",
                    "employees": 329,
                    "plan": "enterprise",
                    "total_billed": 830,
                },
            }
        ),
        EnsureMembership(
            user=UserRef(external_id="97980cfea0067"),
            organization=OrgRef(external_id="0e8c78ea9d97a7b8185e8632"),
        ),
    )
    assert result.operations[0].path == "/api/v2/organization_fields"


ARTICLE: dict[str, Any] = {
    "type": "track",
    "event": "Article Completed",
    "userId": "97980cfea0067",
    "timestamp": "2024-01-25T10:00:00.000Z",
    "properties": {"title": "How to Create a Tracking Plan", "course": "Intro to Analytics"},
}
ARTICLE_SETTINGS = DestinationSettings.parse({"events": ["Article Completed"]})


def test_golden_article_completed_track_by_external_id() -> None:
    result = planned(ARTICLE, ARTICLE_SETTINGS)
    assert result.operations == (
        SendEvent(
            user=UserRef(external_id="97980cfea0067"),
            body={
                "profile": {
                    "source": "segment",
                    "type": "user",
                    "identifiers": [{"type": "external_id", "value": "97980cfea0067"}],
                },
                "event": {
                    "source": "segment",
                    "type": "Article Completed",
                    "description": "Article Completed",
                    "properties": {"title": "How to Create a Tracking Plan", "course": "Intro to Analytics"},
                    "created_at": "2024-01-25T10:00:00.000Z",
                },
            },
        ),
    )


def test_golden_article_completed_track_by_properties_email() -> None:
    event = {**ARTICLE, "properties": {**ARTICLE["properties"], "email": "user@example.com"}}
    result = planned(event, ARTICLE_SETTINGS)
    assert result.operations == (
        SendEvent(
            user=UserRef(external_id="97980cfea0067", email="user@example.com"),
            body={
                "profile": {
                    "source": "segment",
                    "type": "user",
                    "identifiers": [{"type": "email", "value": "user@example.com"}],
                },
                "event": {
                    "source": "segment",
                    "type": "Article Completed",
                    "description": "Article Completed",
                    "properties": {
                        "title": "How to Create a Tracking Plan",
                        "course": "Intro to Analytics",
                        "email": "user@example.com",
                    },
                    "created_at": "2024-01-25T10:00:00.000Z",
                },
            },
        ),
    )
