"""Group → organization upsert + membership: one test per rule of docs/semantics.md."""

from __future__ import annotations

from typing import Any

import pytest

from stream.errors import InvalidEvent
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
    Skip,
    UpsertOrganization,
    UserRef,
    plan,
)
from stream.outcomes import DlqReason, SkipReason

DEFAULT = DestinationSettings()


def group(traits: dict[str, Any] | None = None, user_id: object = "u1", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "group", "groupId": "g1"}
    if traits is not None:
        event["traits"] = traits
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


def organization_of(result: Plan) -> dict[str, Any]:
    upserts = [op for op in result.operations if isinstance(op, UpsertOrganization)]
    assert len(upserts) == 1
    organization: dict[str, Any] = upserts[0].body()["organization"]
    return organization


def test_group_upserts_the_organization_by_group_id_as_external_id() -> None:
    assert organization_of(planned(group({"name": "Acme"}))) == {"external_id": "g1", "name": "Acme"}


def test_group_numeric_group_id_becomes_a_string() -> None:
    assert organization_of(planned(group({"name": "A"}, groupId=908172409)))["external_id"] == "908172409"


@pytest.mark.parametrize("group_id", [None, "", "  "])
def test_group_without_group_id_goes_to_dlq_invalid_payload(group_id: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        plan(group({"name": "A"}, groupId=group_id), DEFAULT, Known())
    assert caught.value.reason is DlqReason.INVALID_PAYLOAD


def test_group_standard_mapping_of_name_domain_names_tags_url_deleted() -> None:
    traits = {
        "name": "Acme",
        "domainNames": ["acme.com", "acme.io"],
        "tags": ["vip", "b2b"],
        "url": "https://acme.com",
        "deleted": False,
    }
    assert organization_of(planned(group(traits))) == {
        "external_id": "g1",
        "name": "Acme",
        "domain_names": ["acme.com", "acme.io"],
        "tags": ["vip", "b2b"],
        "url": "https://acme.com",
        "deleted": False,
    }


def test_group_string_domain_names_or_tags_become_a_one_element_list() -> None:
    org = organization_of(planned(group({"domain_names": "acme.com", "tags": "vip"})))
    assert (org["domain_names"], org["tags"]) == (["acme.com"], ["vip"])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("name", ""),
        ("name", {"x": 1}),
        ("tags", {"a": 1}),
        ("tags", [["nested"]]),
        ("url", 5),
        ("deleted", "no"),
    ],
)
def test_group_unusable_standard_attribute_is_dropped_and_the_rest_sent(key: str, value: object) -> None:
    result = planned(group({key: value, "plan": "x"}), known=Known.of(organization_fields={"plan": "text"}))
    org = organization_of(result)
    assert key not in org
    assert org["organization_fields"] == {"plan": "x"}
    assert result.dropped == (Dropped(key, DropReason.INVALID_VALUE),)


def test_group_other_traits_go_to_organization_fields_with_snake_case_and_auto_create() -> None:
    known = Known.of(organization_fields={"industry": "text"})
    result = planned(group({"name": "Initech", "industry": "Tech", "total billed": 830}), known=known)
    assert [op for op in result.operations if isinstance(op, EnsureField)] == [
        EnsureField(kind=FieldKind.ORGANIZATION, key="total_billed", type="integer", title="Total billed")
    ]
    assert organization_of(result)["organization_fields"] == {"industry": "Tech", "total_billed": 830}


def test_group_organization_field_rules_match_user_field_rules() -> None:
    settings = DestinationSettings.parse({"fieldDenyList": ["secret"]})
    result = planned(group({"name": "A", "secret": "s", "address": {"x": 1}, "list": [1]}), settings)
    assert "organization_fields" not in organization_of(result)
    assert result.dropped == (
        Dropped("secret", DropReason.DENIED),
        Dropped("address", DropReason.OBJECT_NOT_SENT),
        Dropped("list", DropReason.ARRAY_NEEDS_MULTISELECT),
    )


@pytest.mark.parametrize("key", ["userId", "id", "anonymousId", "groupId", "domainNames", "tags"])
def test_group_identity_and_standard_traits_never_become_organization_fields(key: str) -> None:
    result = planned(group({"name": "A", key: "x"}))
    assert "organization_fields" not in organization_of(result)
    assert not [op for op in result.operations if isinstance(op, EnsureField)]


def test_group_links_the_user_to_the_organization_after_the_upsert() -> None:
    result = planned(group({"name": "A"}, user_id="6789"))
    assert [type(op) for op in result.operations] == [UpsertOrganization, EnsureMembership]
    assert result.operations[1] == EnsureMembership(
        user=UserRef(external_id="6789"), organization=OrgRef(external_id="g1")
    )


def test_group_user_is_found_by_user_id_then_context_traits_email() -> None:
    result = planned(group({"name": "A"}, context={"traits": {"email": "u@example.com", "name": "U"}}))
    membership = result.operations[-1]
    assert isinstance(membership, EnsureMembership)
    assert membership.user == UserRef(external_id="u1", email="u@example.com")


def test_group_without_user_id_is_skipped_missing_user_id_by_default() -> None:
    result = plan(group({"name": "A"}, user_id=None), DEFAULT, Known())
    assert isinstance(result, Skip)
    assert result.reason is SkipReason.MISSING_USER_ID


def test_group_without_user_id_with_allow_group_without_user_id_upserts_the_organization_only() -> None:
    settings = DestinationSettings.parse({"allowGroupWithoutUserId": True})
    result = planned(group({"name": "A"}, user_id=None), settings)
    assert [type(op) for op in result.operations] == [UpsertOrganization]


@pytest.mark.parametrize("traits", [None, {}])
def test_group_without_traits_sends_the_upsert_with_external_id_only(traits: dict[str, Any] | None) -> None:
    assert organization_of(planned(group(traits))) == {"external_id": "g1"}


def test_group_reads_traits_for_the_organization_not_context_traits() -> None:
    result = planned(group({}, context={"traits": {"name": "User Name", "plan": "x"}}))
    assert organization_of(result) == {"external_id": "g1"}
