"""Property-based: random Segment-shaped JSON with hostile values.

Planning never raises anything but InvalidEvent, and never produces a request Zendesk would reject for its
shape: valid field keys, source/type ≤ 40, identifiers ≤ 60, properties an object, names non-empty
strings, everything JSON-serialisable, integers within int64 for integer fields.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.errors import InvalidEvent
from stream.events import decode_json, event_key, validate
from stream.mapping import (
    DestinationSettings,
    EnsureField,
    EnsureMembership,
    FieldKind,
    FieldOption,
    FieldType,
    Known,
    KnownField,
    Plan,
    RemoveMembership,
    SendEvent,
    Skip,
    UpsertOrganization,
    UpsertUser,
    plan,
)
from stream.mapping.fields import INT64_MAX, INT64_MIN
from stream.mapping.identify import valid_email
from stream.mapping.keys import is_valid_field_key

PROFILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

huge_text = st.one_of(st.text(max_size=30), st.text(min_size=200, max_size=300).map(lambda t: t * 20))
hostile_numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
)
emails = st.one_of(
    st.emails(),
    st.sampled_from(["peter+tag@example.com", "pe#ter@example.com", "a@b", "@", "x@", "no at", "é@ü.de"]),
    st.text(max_size=70).map(lambda t: t + "@example.com"),
)
scalars = st.one_of(st.none(), st.booleans(), hostile_numbers, huge_text, emails)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
ids = st.one_of(
    st.none(),
    st.text(max_size=80),
    hostile_numbers,
    st.booleans(),
    st.just({"id": 1}),
    st.just([1]),
    st.just(""),
)
trait_keys = st.one_of(
    st.sampled_from(
        [
            "name",
            "firstName",
            "lastName",
            "first_name",
            "last_name",
            "email",
            "organizationId",
            "organization_id",
            "timezone",
            "phone",
            "userId",
            "id",
            "anonymousId",
            "company",
            "planName",
            "plan_name",
            "total billed",
            "logins",
            "123",
            "",
            "domainNames",
            "tags",
            "url",
            "deleted",
            "groupId",
            "user_id",
            "verified",
        ]
    ),
    st.text(max_size=20),
)
company = st.fixed_dictionaries({}, optional={"id": ids, "remove": st.one_of(st.booleans(), st.just("true"))})
traits = st.dictionaries(trait_keys, st.one_of(json_values, company), max_size=10)


@st.composite
def segment_events(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {}
    type_value = draw(
        st.one_of(
            st.sampled_from(["identify", "track", "group", "IDENTIFY", "page", "alias"]),
            st.text(max_size=8),
            st.none(),
            st.integers(),
        )
    )
    event[draw(st.sampled_from(["type", "action"]))] = type_value
    for key in ("userId", "anonymousId", "groupId", "messageId"):
        if draw(st.booleans()):
            event[key] = draw(ids)
    if draw(st.booleans()):
        event["event"] = draw(
            st.one_of(st.sampled_from(["Article Completed", "Order Completed"]), st.text(max_size=50), ids)
        )
    if draw(st.booleans()):
        event["traits"] = draw(st.one_of(traits, st.none(), st.just({}), st.just("x")))
    if draw(st.booleans()):
        props = draw(
            st.one_of(st.dictionaries(st.text(max_size=10), json_values, max_size=6), st.none(), st.just([]))
        )
        if isinstance(props, dict) and draw(st.booleans()):
            props["email"] = draw(emails)
        event["properties"] = props
    if draw(st.booleans()):
        event["context"] = {"traits": draw(traits)}
    for key in ("timestamp", "originalTimestamp", "sentAt"):
        if draw(st.booleans()):
            event[key] = draw(
                st.one_of(st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30), hostile_numbers)
            )
    return event


good_ids = st.one_of(st.text(min_size=1, max_size=70), st.integers(min_value=-(2**70), max_value=2**70))
plausible_traits = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.text(max_size=20), huge_text),
            "email": emails,
            "firstName": st.text(max_size=10),
            "organizationId": st.one_of(hostile_numbers, st.text(max_size=5)),
            "timezone": st.text(max_size=20),
            "phone": st.one_of(st.text(max_size=15), st.integers()),
            "company": company,
            "plan": json_values,
            "logins": hostile_numbers,
            "total billed": hostile_numbers,
            "domainNames": json_values,
            "tags": json_values,
        },
    ),
    traits,
)


@st.composite
def plausible_events(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed envelopes, so that hostile values reach the planners."""
    event_type = draw(st.sampled_from(["identify", "track", "group"]))
    event: dict[str, Any] = {"type": event_type, "traits": draw(plausible_traits)}
    if draw(st.integers(0, 4)):
        event["userId"] = draw(good_ids)
    if draw(st.integers(0, 4)):
        event["groupId"] = draw(good_ids)
    event["event"] = draw(
        st.one_of(st.sampled_from(["Article Completed", "n" * 41]), st.text(min_size=1, max_size=45))
    )
    props = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5))
    if draw(st.booleans()):
        props["email"] = draw(emails)
    event["properties"] = props
    if draw(st.booleans()):
        event["context"] = {"traits": draw(plausible_traits)}
    event["timestamp"] = draw(st.one_of(st.datetimes().map(lambda d: d.isoformat()), st.text(max_size=30)))
    return event


any_events = st.one_of(plausible_events(), plausible_events(), plausible_events(), segment_events())

field_types = st.sampled_from([t.value for t in FieldType] + ["future_type"])
options = st.one_of(
    st.none(),
    st.lists(st.builds(FieldOption, name=st.text(max_size=8), value=st.text(max_size=8)), max_size=3).map(
        tuple
    ),
)
known_fields = st.dictionaries(
    st.sampled_from(["plan", "plan_name", "logins", "user_id", "total_billed", "industry", "employees", "x"]),
    st.tuples(field_types, options, st.booleans(), st.booleans()),
    max_size=5,
).map(
    lambda spec: {
        key: KnownField(key=key, type=t, options=o, active=a, auto_created=c)
        for key, (t, o, a, c) in spec.items()
    }
)
knowns = st.builds(lambda u, o: Known(user_fields=u, organization_fields=o), known_fields, known_fields)
destination_settings = st.builds(
    DestinationSettings,
    events=st.sampled_from([(), ("*",), ("Article Completed",)]),
    allow_group_without_user_id=st.booleans(),
    remove_users_from_organizations=st.booleans(),
    verified=st.booleans(),
    source_name=st.sampled_from(["segment", "s" * 40]),
    auto_create_fields=st.booleans(),
    max_auto_created_fields=st.integers(min_value=0, max_value=3),
    field_deny_list=st.sampled_from([frozenset(), frozenset({"plan"})]),
)


def _check_field_values(values: object, kind: FieldKind, known: Known, created: dict[str, str]) -> None:
    assert isinstance(values, dict)
    for key, value in values.items():
        assert is_valid_field_key(key), key
        field_type = created.get(key) or known.fields(kind)[key].type
        if field_type in ("integer", "lookup") and value is not None:
            assert isinstance(value, int) and not isinstance(value, bool)
            assert INT64_MIN <= value <= INT64_MAX
        if isinstance(value, float):
            assert math.isfinite(value)
        assert not isinstance(value, dict)
        if isinstance(value, list):
            assert field_type == "multiselect"
            assert all(isinstance(item, str) for item in value)


def _check_plan(result: Plan, known: Known, config: DestinationSettings) -> None:
    created: dict[FieldKind, dict[str, str]] = {FieldKind.USER: {}, FieldKind.ORGANIZATION: {}}
    for operation in result.operations:
        if isinstance(operation, EnsureField):
            assert is_valid_field_key(operation.key)
            assert operation.key not in known.fields(operation.kind)
            assert operation.key not in config.field_deny_list
            assert operation.key not in created[operation.kind], "a field is ensured once"
            assert operation.type in {"checkbox", "integer", "decimal", "date", "text"}
            assert operation.title.strip()
            created[operation.kind][operation.key] = operation.type
            orjson.dumps(operation.body())
        elif isinstance(operation, UpsertUser):
            user = operation.body()["user"]
            assert isinstance(user["name"], str) and user["name"].strip()
            assert "email" in user or "external_id" in user
            if "email" in user:
                assert valid_email(user["email"]) == user["email"]
            if "organization_id" in user:
                assert isinstance(user["organization_id"], int) and 0 < user["organization_id"] <= INT64_MAX
            assert user.get("verified", True) is True
            _check_field_values(user.get("user_fields", {}), FieldKind.USER, known, created[FieldKind.USER])
            orjson.dumps(user)
        elif isinstance(operation, UpsertOrganization):
            org = operation.body()["organization"]
            assert isinstance(org["external_id"], str) and org["external_id"].strip()
            for key in ("domain_names", "tags"):
                if key in org:
                    assert all(isinstance(item, str) and item for item in org[key])
            if "name" in org:
                assert isinstance(org["name"], str) and org["name"].strip()
            _check_field_values(
                org.get("organization_fields", {}),
                FieldKind.ORGANIZATION,
                known,
                created[FieldKind.ORGANIZATION],
            )
            orjson.dumps(org)
        elif isinstance(operation, SendEvent):
            profile, event = operation.body["profile"], operation.body["event"]
            for part in (profile, event):
                assert 0 < len(part["source"]) <= 40 and part["source"] != "zendesk"
                assert 0 < len(part["type"]) <= 40
            assert profile["type"] == "user"
            assert event["description"] == event["type"]
            assert isinstance(event["properties"], dict)
            (identifier,) = profile["identifiers"]
            assert identifier["type"] in ("email", "external_id")
            assert 0 < len(identifier["value"]) <= 60
            orjson.dumps(operation.body)
        else:
            assert isinstance(operation, RemoveMembership | EnsureMembership)
            assert operation.user.external_id or operation.user.email
            assert operation.organization.external_id or operation.organization.id
    assert result.summary


@PROFILE
@given(any_events, destination_settings, knowns)
def test_planning_raises_only_invalid_event_and_never_produces_a_request_of_the_wrong_shape(
    raw: dict[str, Any], config: DestinationSettings, known: Known
) -> None:
    try:
        result = plan(raw, config, known)
    except InvalidEvent as error:
        assert error.message and "\n" not in error.message
        return
    if isinstance(result, Plan):
        _check_plan(result, known, config)
    else:
        assert isinstance(result, Skip) and result.detail


@settings(max_examples=100, deadline=None)
@given(any_events)
def test_a_planned_event_planned_again_gives_the_same_plan(raw: dict[str, Any]) -> None:
    config = DestinationSettings(events=("*",), allow_group_without_user_id=True)
    try:
        first = plan(raw, config)
    except InvalidEvent:
        return
    assert plan(raw, config) == first


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        json_values.map(
            lambda v: orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY) if not _has_bad(v) else b"{}"
        ),
    )
)
def test_decoding_any_bytes_raises_only_invalid_event(data: bytes) -> None:
    try:
        event = validate(decode_json(data))
    except InvalidEvent:
        return
    event_key(None, event)


def _has_bad(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return True
    return False
