"""Identify → user upsert: one test per rule of docs/semantics.md "Identify → user upsert"."""

from __future__ import annotations

from typing import Any

import pytest

from stream.mapping import (
    DestinationSettings,
    Dropped,
    DropReason,
    EnsureField,
    FieldKind,
    FieldOption,
    Known,
    KnownField,
    OrgRef,
    Plan,
    RemoveMembership,
    Skip,
    UpsertUser,
    UserRef,
    plan,
)
from stream.mapping.fields import AUTO_CREATED_MARKER
from stream.outcomes import SkipReason

DEFAULT = DestinationSettings()


def identify(
    traits: dict[str, Any] | None = None, user_id: str | None = "u1", **extra: Any
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "identify", "traits": traits if traits is not None else {}}
    if user_id is not None:
        event["userId"] = user_id
    event.update(extra)
    return event


def planned(
    event: dict[str, Any], settings: DestinationSettings = DEFAULT, known: Known | None = None
) -> Plan:
    result = plan(event, settings, known or Known())
    assert isinstance(result, Plan), result
    return result


def upsert_of(result: Plan) -> dict[str, Any]:
    upserts = [op for op in result.operations if isinstance(op, UpsertUser)]
    assert len(upserts) == 1
    user: dict[str, Any] = upserts[0].body()["user"]
    return user


def fields_created(result: Plan) -> list[tuple[str, str]]:
    return [(op.key, op.type) for op in result.operations if isinstance(op, EnsureField)]


# --- identity --------------------------------------------------------------------------------------------


def test_identify_matches_by_email_and_user_id_becomes_external_id() -> None:
    result = planned(identify({"name": "Ann", "email": "ann@example.com"}, user_id="42"))
    user = upsert_of(result)
    assert user == {"name": "Ann", "email": "ann@example.com", "external_id": "42"}
    assert result.operations[-1] == UpsertUser(
        user=user, ref=UserRef(external_id="42", email="ann@example.com")
    )


def test_identify_numeric_user_id_is_sent_as_string_external_id() -> None:
    assert upsert_of(planned(identify({"name": "Ann"}, user_id=None, userId=42)))["external_id"] == "42"


def test_identify_with_email_only_upserts_by_email() -> None:
    user = upsert_of(
        planned(identify({"name": "Ann", "email": "ann@example.com"}, user_id=None, anonymousId="a"))
    )
    assert user == {"name": "Ann", "email": "ann@example.com"}


def test_identify_with_user_id_only_upserts_by_external_id() -> None:
    assert upsert_of(planned(identify({"name": "Ann"}))) == {"name": "Ann", "external_id": "u1"}


@pytest.mark.parametrize(
    "event",
    [
        identify({"name": "Ann"}, user_id=None),
        identify({"name": "Ann"}, user_id=None, anonymousId="anon-1"),
        identify({"name": "Ann", "email": None}, user_id=None),
        identify({"name": "Ann", "email": "not-an-email"}, user_id=None),
        identify({"name": "Ann", "userId": "trait-ids-do-not-count"}, user_id=None),
    ],
)
def test_identify_without_email_and_user_id_is_skipped_no_identity(event: dict[str, Any]) -> None:
    result = plan(event, DEFAULT, Known())
    assert isinstance(result, Skip)
    assert result.reason is SkipReason.NO_IDENTITY


@pytest.mark.parametrize("email", ["peter+tag@example.com", "pe#ter@example.com", "o'neil@example.co.uk"])
def test_identify_emails_with_plus_and_hash_are_sent_unchanged(email: str) -> None:
    assert upsert_of(planned(identify({"name": "P", "email": email})))["email"] == email


@pytest.mark.parametrize(
    "email", ["not-an-email", "two@@example.com", "a b@example.com", 12345, True, {"x": 1}]
)
def test_identify_invalid_email_is_dropped_and_the_rest_sent_by_user_id(email: object) -> None:
    result = planned(identify({"name": "P", "email": email}))
    assert upsert_of(result) == {"name": "P", "external_id": "u1"}
    assert result.dropped == (Dropped("email", DropReason.INVALID_VALUE),)


# --- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "traits",
    [
        {"email": "a@example.com"},
        {"name": ""},
        {"name": "   "},
        {"name": None, "firstName": None},
        {"name": {"first": "x"}},
        {"first_name": ""},
    ],
)
def test_identify_without_name_is_skipped_missing_name(traits: dict[str, Any]) -> None:
    result = plan(identify(traits), DEFAULT, Known())
    assert isinstance(result, Skip)
    assert result.reason is SkipReason.MISSING_NAME


@pytest.mark.parametrize(
    ("traits", "name"),
    [
        ({"name": "Peter Gibbons"}, "Peter Gibbons"),
        ({"name": "  Peter  "}, "Peter"),
        ({"firstName": "Peter", "lastName": "Gibbons"}, "Peter Gibbons"),
        ({"first_name": "Peter", "last_name": "Gibbons"}, "Peter Gibbons"),
        ({"firstName": "Peter"}, "Peter"),
        ({"first_name": "Peter"}, "Peter"),
        ({"lastName": "Gibbons"}, "Gibbons"),
        ({"name": "Full Name", "firstName": "A", "lastName": "B"}, "Full Name"),
        ({"name": 1337}, "1337"),
    ],
)
def test_identify_name_from_name_or_first_and_last_name(traits: dict[str, Any], name: str) -> None:
    assert upsert_of(planned(identify(traits)))["name"] == name


def test_identify_names_never_become_custom_fields() -> None:
    traits = {"name": "A B", "firstName": "A", "lastName": "B", "first_name": "A", "last_name": "B"}
    result = planned(identify(traits))
    assert "user_fields" not in upsert_of(result)
    assert fields_created(result) == []
    assert result.dropped == ()


# --- standard mapping ------------------------------------------------------------------------------------


def test_identify_standard_mapping_of_email_name_organization_timezone_phone() -> None:
    traits = {
        "name": "Pikachu",
        "email": "pikachu@pakemon.com",
        "timezone": "America/Los_Angeles",
        "organizationId": 6789,
        "phone": "763-555-2342",
    }
    assert upsert_of(planned(identify(traits, user_id="12345"))) == {
        "name": "Pikachu",
        "email": "pikachu@pakemon.com",
        "external_id": "12345",
        "organization_id": 6789,
        "time_zone": "America/Los_Angeles",
        "phone": "763-555-2342",
    }


@pytest.mark.parametrize(("value", "expected"), [("6789", 6789), (6789, 6789), (6789.0, 6789)])
def test_identify_organization_id_is_sent_as_an_integer(value: object, expected: int) -> None:
    assert upsert_of(planned(identify({"name": "A", "organizationId": value})))["organization_id"] == expected


@pytest.mark.parametrize("value", ["acme", -1, 0, 2**70, True, [1], 1.5])
def test_identify_unusable_organization_id_is_dropped_not_sent(value: object) -> None:
    result = planned(identify({"name": "A", "organizationId": value}))
    assert "organization_id" not in upsert_of(result)
    assert result.dropped == (Dropped("organizationId", DropReason.INVALID_VALUE),)


def test_identify_snake_case_standard_traits_map_too() -> None:
    traits = {"name": "A", "organization_id": "5", "time_zone": "Berlin", "phone": 5550100}
    user = upsert_of(planned(identify(traits)))
    assert (user["organization_id"], user["time_zone"], user["phone"]) == (5, "Berlin", "5550100")


def test_identify_user_id_custom_field_is_set_only_when_the_field_exists() -> None:
    without = planned(identify({"name": "A"}, user_id="42"))
    assert "user_fields" not in upsert_of(without)
    known = Known.of(user_fields={"user_id": "text"})
    with_field = planned(identify({"name": "A"}, user_id="42"), known=known)
    assert upsert_of(with_field)["user_fields"] == {"user_id": "42"}
    assert fields_created(with_field) == []


@pytest.mark.parametrize("key", ["userId", "user_id", "id", "anonymousId", "anonymous_id", "company"])
def test_identify_identity_traits_and_company_never_become_custom_fields(key: str) -> None:
    result = planned(identify({"name": "A", key: {"id": "1"} if key == "company" else "x"}))
    assert "user_fields" not in upsert_of(result)
    assert fields_created(result) == []


# --- custom fields ---------------------------------------------------------------------------------------


def test_identify_other_traits_go_to_user_fields_with_snake_case_keys() -> None:
    known = Known.of(user_fields={"plan_name": "text", "total_billed": "integer"})
    result = planned(identify({"name": "A", "planName": "pro", "total billed": 5}), known=known)
    assert upsert_of(result)["user_fields"] == {"plan_name": "pro", "total_billed": 5}
    assert fields_created(result) == []


@pytest.mark.parametrize(
    ("value", "field_type", "sent"),
    [
        (True, "checkbox", True),
        (5, "integer", 5),
        (2.5, "decimal", 2.5),
        ("2024-01-25", "date", "2024-01-25"),
        ("2024-01-25T10:00:00.000Z", "date", "2024-01-25"),
        ("premium", "text", "premium"),
        ("2024-13-45", "text", "2024-13-45"),
    ],
)
def test_identify_missing_field_is_created_with_inferred_type(
    value: object, field_type: str, sent: object
) -> None:
    result = planned(identify({"name": "A", "someTrait": value}))
    assert result.operations[0] == EnsureField(
        kind=FieldKind.USER, key="some_trait", type=field_type, title="Some trait"
    )
    assert result.operations[0].description == AUTO_CREATED_MARKER
    assert upsert_of(result)["user_fields"] == {"some_trait": sent}


def test_identify_fields_are_ensured_before_the_upsert() -> None:
    result = planned(identify({"name": "A", "plan": "pro", "logins": 3}))
    kinds = [type(op).__name__ for op in result.operations]
    assert kinds == ["EnsureField", "EnsureField", "UpsertUser"]


def test_identify_two_traits_with_the_same_key_create_one_field_and_the_exact_key_wins() -> None:
    result = planned(identify({"name": "A", "planName": "camel", "plan_name": "snake"}))
    assert fields_created(result) == [("plan_name", "text")]
    assert upsert_of(result)["user_fields"] == {"plan_name": "snake"}
    assert result.dropped == (Dropped("planName", DropReason.DUPLICATE_KEY),)


def test_identify_field_creation_respects_the_cap() -> None:
    settings = DestinationSettings.parse({"maxAutoCreatedFields": 2})
    already = KnownField(key="old", type="text", auto_created=True)
    known = Known.of(user_fields={"old": already})
    result = planned(identify({"name": "A", "a": 1, "b": 2, "c": 3}), settings, known)
    assert fields_created(result) == [("a", "integer")]
    assert upsert_of(result)["user_fields"] == {"a": 1}
    assert result.dropped == (
        Dropped("b", DropReason.FIELD_CAP_REACHED),
        Dropped("c", DropReason.FIELD_CAP_REACHED),
    )


def test_identify_fields_created_by_others_do_not_count_against_the_cap() -> None:
    settings = DestinationSettings.parse({"maxAutoCreatedFields": 1})
    known = Known.of(user_fields={"admin_made": "text"})
    assert fields_created(planned(identify({"name": "A", "x": 1}), settings, known)) == [("x", "integer")]


def test_identify_deny_list_keys_are_never_sent_nor_created() -> None:
    settings = DestinationSettings.parse({"fieldDenyList": ["ssn", "creditCard"]})
    known = Known.of(user_fields={"ssn": "text"})
    result = planned(identify({"name": "A", "ssn": "1", "credit_card": "4111"}), settings, known)
    assert "user_fields" not in upsert_of(result)
    assert fields_created(result) == []
    assert {d.reason for d in result.dropped} == {DropReason.DENIED}


def test_identify_auto_create_off_sends_only_existing_fields() -> None:
    settings = DestinationSettings.parse({"autoCreateFields": False})
    known = Known.of(user_fields={"plan": "text"})
    result = planned(identify({"name": "A", "plan": "pro", "logins": 3}), settings, known)
    assert fields_created(result) == []
    assert upsert_of(result)["user_fields"] == {"plan": "pro"}
    assert result.dropped == (Dropped("logins", DropReason.FIELD_NOT_FOUND),)


def test_identify_object_traits_are_not_sent_and_are_counted() -> None:
    result = planned(identify({"name": "A", "address": {"city": "Paris"}}))
    assert "user_fields" not in upsert_of(result)
    assert result.dropped == (Dropped("address", DropReason.OBJECT_NOT_SENT),)


def test_identify_array_trait_without_multiselect_field_is_not_sent_and_counted() -> None:
    known = Known.of(user_fields={"tags_text": "text"})
    result = planned(identify({"name": "A", "interests": ["a"], "tagsText": ["b"]}), known=known)
    assert "user_fields" not in upsert_of(result)
    assert result.dropped == (
        Dropped("interests", DropReason.ARRAY_NEEDS_MULTISELECT),
        Dropped("tagsText", DropReason.ARRAY_NEEDS_MULTISELECT),
    )


def test_identify_array_of_strings_goes_to_an_existing_multiselect_field() -> None:
    options = (FieldOption(name="Red", value="red"), FieldOption(name="Blue", value="blue"))
    known = Known.of(user_fields={"colors": KnownField(key="colors", type="multiselect", options=options)})
    assert upsert_of(planned(identify({"name": "A", "colors": ["red", "Blue"]}), known=known))[
        "user_fields"
    ] == {"colors": ["red", "blue"]}
    bad = planned(identify({"name": "A", "colors": ["red", "green"]}), known=known)
    assert "user_fields" not in upsert_of(bad)
    assert bad.dropped == (Dropped("colors", DropReason.NOT_AN_OPTION),)


def test_identify_null_clears_an_existing_field_and_means_nothing_for_a_missing_one() -> None:
    known = Known.of(user_fields={"plan": "text"})
    result = planned(identify({"name": "A", "plan": None, "ghost": None}), known=known)
    assert upsert_of(result)["user_fields"] == {"plan": None}
    assert fields_created(result) == []
    assert result.dropped == ()


@pytest.mark.parametrize(
    ("field_type", "value", "sent"),
    [
        ("text", 5, "5"),
        ("text", True, "true"),
        ("text", 2.5, "2.5"),
        ("textarea", "long", "long"),
        ("integer", "42", 42),
        ("integer", 42.0, 42),
        ("decimal", "2.5", 2.5),
        ("decimal", 3, 3),
        ("checkbox", "true", True),
        ("checkbox", 0, False),
        ("date", "2024-01-25T23:30:00-05:00", "2024-01-25"),
        ("dropdown", "gold", "gold"),
        ("lookup", "123", 123),
    ],
)
def test_identify_value_is_coerced_to_the_existing_field_type(
    field_type: str, value: object, sent: object
) -> None:
    known = Known.of(user_fields={"x": field_type})
    assert upsert_of(planned(identify({"name": "A", "x": value}), known=known))["user_fields"] == {"x": sent}


@pytest.mark.parametrize(
    ("field_type", "value", "reason"),
    [
        ("integer", "forty-two", DropReason.TYPE_MISMATCH),
        ("integer", 1.5, DropReason.TYPE_MISMATCH),
        ("integer", 2**63, DropReason.NUMBER_OUT_OF_RANGE),
        ("integer", True, DropReason.TYPE_MISMATCH),
        ("decimal", float("nan"), DropReason.NOT_FINITE),
        ("decimal", float("inf"), DropReason.NOT_FINITE),
        ("checkbox", "maybe", DropReason.TYPE_MISMATCH),
        ("date", "yesterday", DropReason.TYPE_MISMATCH),
        ("text", {"a": 1}, DropReason.OBJECT_NOT_SENT),
        ("text", float("nan"), DropReason.NOT_FINITE),
    ],
)
def test_identify_value_that_cannot_fit_the_field_is_dropped_and_the_rest_is_sent(
    field_type: str, value: object, reason: DropReason
) -> None:
    known = Known.of(user_fields={"x": field_type, "plan": "text"})
    result = planned(identify({"name": "A", "x": value, "plan": "pro"}), known=known)
    assert upsert_of(result)["user_fields"] == {"plan": "pro"}
    assert result.dropped == (Dropped("x", reason),)


def test_identify_dropdown_value_matches_option_tag_or_name() -> None:
    options = (FieldOption(name="Gold Tier", value="gold"),)
    known = Known.of(user_fields={"tier": KnownField(key="tier", type="dropdown", options=options)})
    assert upsert_of(planned(identify({"name": "A", "tier": "gold tier"}), known=known))["user_fields"] == {
        "tier": "gold"
    }
    bad = planned(identify({"name": "A", "tier": "silver"}), known=known)
    assert bad.dropped == (Dropped("tier", DropReason.NOT_AN_OPTION),)


def test_identify_inactive_field_is_not_written_nor_recreated() -> None:
    known = Known.of(user_fields={"plan": KnownField(key="plan", type="text", active=False)})
    result = planned(identify({"name": "A", "plan": "pro"}), known=known)
    assert fields_created(result) == []
    assert result.dropped == (Dropped("plan", DropReason.FIELD_INACTIVE),)


@pytest.mark.parametrize("key", ["123", "!!!", "", "日本語"])
def test_identify_trait_key_empty_or_all_digits_after_conversion_is_not_sent(key: str) -> None:
    result = planned(identify({"name": "A", key: "v"}))
    assert "user_fields" not in upsert_of(result)
    assert result.dropped == (Dropped(key, DropReason.INVALID_KEY),)


def test_identify_huge_integer_is_not_used_to_create_a_field() -> None:
    result = planned(identify({"name": "A", "big": 2**64}))
    assert fields_created(result) == []
    assert result.dropped == (Dropped("big", DropReason.NUMBER_OUT_OF_RANGE),)


def test_identify_engage_audience_boolean_becomes_a_checkbox_field() -> None:
    result = planned(identify({"name": "A", "order_completed_last_30days": True}))
    assert fields_created(result) == [("order_completed_last_30days", "checkbox")]
    assert upsert_of(result)["user_fields"] == {"order_completed_last_30days": True}
    known = Known.of(user_fields={"order_completed_last_30days": "checkbox"})
    left = planned(identify({"name": "A", "order_completed_last_30days": False}), known=known)
    assert upsert_of(left)["user_fields"] == {"order_completed_last_30days": False}


# --- verified --------------------------------------------------------------------------------------------


def test_identify_verified_true_is_sent_only_when_the_setting_is_on() -> None:
    on = DestinationSettings.parse({"verified": True})
    assert upsert_of(planned(identify({"name": "A"}), on))["verified"] is True
    assert "verified" not in upsert_of(planned(identify({"name": "A"})))


def test_identify_verified_trait_cannot_override_the_setting() -> None:
    result = planned(
        identify({"name": "A", "verified": False}), DestinationSettings.parse({"verified": True})
    )
    assert upsert_of(result)["verified"] is True


# --- traits location -------------------------------------------------------------------------------------


@pytest.mark.parametrize("traits", [None, {}])
def test_identify_empty_or_missing_traits_fall_back_to_context_traits(traits: dict[str, Any] | None) -> None:
    event: dict[str, Any] = {"type": "identify", "userId": "u1", "context": {"traits": {"name": "Ctx"}}}
    if traits is not None:
        event["traits"] = traits
    assert upsert_of(planned(event))["name"] == "Ctx"


def test_identify_traits_win_over_context_traits() -> None:
    event = identify({"name": "Top"}, context={"traits": {"name": "Ctx", "email": "c@example.com"}})
    assert upsert_of(planned(event)) == {"name": "Top", "external_id": "u1"}


# --- removal from an organization ------------------------------------------------------------------------

REMOVE_ON = DestinationSettings.parse({"removeUsersFromOrganizations": True})


def test_identify_company_remove_true_removes_the_membership_after_the_upsert() -> None:
    traits = {"name": "Pikachu", "email": "p@example.com", "company": {"id": "acme-1", "remove": True}}
    result = planned(identify(traits, user_id="12345"), REMOVE_ON)
    assert [type(op) for op in result.operations] == [UpsertUser, RemoveMembership]
    assert result.operations[1] == RemoveMembership(
        user=UserRef(external_id="12345", email="p@example.com"), organization=OrgRef(external_id="acme-1")
    )
    assert "company" not in str(upsert_of(result))


def test_identify_company_numeric_id_is_looked_up_by_external_id_then_zendesk_id() -> None:
    result = planned(identify({"name": "A", "company": {"id": 6789, "remove": True}}), REMOVE_ON)
    assert result.operations[-1] == RemoveMembership(
        user=UserRef(external_id="u1"), organization=OrgRef(external_id="6789", id=6789)
    )


@pytest.mark.parametrize(
    "company",
    [
        {"id": "6789"},
        {"id": "6789", "remove": False},
        {"id": "6789", "remove": "true"},
        {"remove": True},
        {"id": None, "remove": True},
        {"id": "", "remove": True},
        "6789",
        None,
    ],
)
def test_identify_removal_setting_on_but_traits_not_matching_is_a_plain_identify(company: object) -> None:
    result = planned(identify({"name": "A", "company": company}), REMOVE_ON)
    assert [type(op) for op in result.operations] == [UpsertUser]
    assert upsert_of(result) == {"name": "A", "external_id": "u1"}


def test_identify_removal_setting_off_ignores_company_remove() -> None:
    result = planned(identify({"name": "A", "company": {"id": "6789", "remove": True}}))
    assert [type(op) for op in result.operations] == [UpsertUser]


def test_identify_organization_id_of_the_organization_being_removed_is_not_written() -> None:
    traits = {"name": "A", "organizationId": 6789, "company": {"id": "6789", "remove": True}}
    result = planned(identify(traits), REMOVE_ON)
    assert "organization_id" not in upsert_of(result)
    assert result.dropped == (Dropped("organizationId", DropReason.ORGANIZATION_BEING_REMOVED),)
    other = planned(identify({**traits, "organizationId": 1}), REMOVE_ON)
    assert upsert_of(other)["organization_id"] == 1
