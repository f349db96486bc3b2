"""`zendesk-stream explain`: reading EVENT.json, a plan as calls, the printed explanation, the exit code."""

from __future__ import annotations

import io
from typing import Any

import pytest

from stream.errors import ConfigError, InvalidEvent
from stream.explain import (
    EXIT_DEAD_LETTER,
    EXIT_OK,
    EXIT_TRANSIENT,
    Explanation,
    FieldsSource,
    calls_for,
    exit_code,
    fields_header,
    format_explanation,
    headline,
    read_events,
    run_explain,
    verdict_of,
)
from stream.mapping.fields import Known
from stream.mapping.operations import Plan
from stream.mapping.settings import DestinationSettings
from stream.outcomes import DeadLetter, Delivered, DlqReason, Skipped, SkipReason, Transient
from stream.zendesk.client import Exchange
from tests.support.segment import group, identify, track

SETTINGS = DestinationSettings.parse(
    {"events": ["Article Completed"], "removeUsersFromOrganizations": True, "verified": True}
)


def planned(event: dict[str, Any], known: Known | None = None) -> Plan:
    verdict = verdict_of(event, SETTINGS, known or Known())
    assert isinstance(verdict, Plan), verdict
    return verdict


def explain(event: dict[str, Any] | InvalidEvent, **kwargs: Any) -> Explanation:
    return Explanation(
        position=1, total=1, headline=headline(event), verdict=verdict_of(event, SETTINGS, Known()), **kwargs
    )


# ------------------------------------------------------------------------------------------- reading


def test_read_events_takes_one_object_even_pretty_printed() -> None:
    assert read_events('{\n  "type": "identify",\n  "userId": "u1"\n}\n') == [
        {"type": "identify", "userId": "u1"}
    ]


def test_read_events_takes_an_array_and_keeps_items_that_are_not_objects_as_invalid() -> None:
    items = read_events('[{"type": "page"}, 7]')
    assert items[0] == {"type": "page"}
    assert isinstance(items[1], InvalidEvent) and items[1].reason is DlqReason.INVALID_PAYLOAD
    assert "item 2" in items[1].message


def test_read_events_takes_json_lines_and_keeps_a_broken_line_as_invalid() -> None:
    items = read_events('{"type": "page"}\n\n{"type": "screen"}\nnot json\n')
    assert items[:2] == [{"type": "page"}, {"type": "screen"}]
    assert isinstance(items[2], InvalidEvent) and items[2].reason is DlqReason.INVALID_PAYLOAD


@pytest.mark.parametrize("text", ["", "  \n", "[]", "[1,"])
def test_read_events_without_any_event_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        read_events(text)


def test_read_events_value_that_is_not_an_object_is_one_invalid_event() -> None:
    [item] = read_events('"identify"')
    assert isinstance(item, InvalidEvent)


def test_headline_names_the_type_and_identifiers_as_the_event_spells_them() -> None:
    assert headline(track("u1", "Article Completed")).startswith(
        'track event="Article Completed" userId="u1" messageId='
    )
    assert headline({"action": "identify", "userId": 12}) == 'identify userId="12"'
    assert headline({"userId": "u1"}) == '(no type) userId="u1"'
    assert headline(InvalidEvent(DlqReason.INVALID_PAYLOAD, "x")) == "not a usable event"


# ------------------------------------------------------------------------------------ plan as calls


def test_identify_calls_create_missing_fields_then_upsert_the_user_with_its_body() -> None:
    plan = planned(identify("u1", name="Peter", email="p@example.com", plan="premium"))
    calls = calls_for(plan)
    assert [(c.method, c.path) for c in calls] == [
        ("POST", "/api/v2/user_fields"),
        ("POST", "/api/v2/users/create_or_update"),
    ]
    assert calls[0].body == {
        "user_field": {
            "key": "plan",
            "title": "Plan",
            "type": "text",
            "description": "Created automatically by zendesk-stream from a Segment trait.",
        }
    }
    assert calls[1].body == {
        "user": {
            "name": "Peter",
            "email": "p@example.com",
            "external_id": "u1",
            "verified": True,
            "user_fields": {"plan": "premium"},
        }
    }


def test_identify_calls_against_known_fields_create_nothing() -> None:
    plan = planned(
        identify("u1", name="Peter", email="p@example.com", plan="premium"),
        Known.of(user_fields={"plan": "text"}),
    )
    assert [c.method + " " + c.path for c in calls_for(plan)] == ["POST /api/v2/users/create_or_update"]


def test_identify_removal_calls_find_the_organization_then_list_and_delete_the_membership() -> None:
    plan = planned(identify("u1", name="Peter", company={"id": "6789", "remove": True}))
    assert [(c.method, c.path) for c in calls_for(plan)] == [
        ("POST", "/api/v2/users/create_or_update"),
        ("GET", "/api/v2/organizations/search?external_id=6789"),
        ("GET", "/api/v2/organizations/6789"),
        ("GET", "/api/v2/users/{user_id}/organization_memberships"),
        ("DELETE", "/api/v2/users/{user_id}/organization_memberships/{membership_id}"),
    ]


def test_identify_time_zone_call_says_it_is_resent_without_a_refused_time_zone() -> None:
    [call] = calls_for(planned(identify("u1", name="Peter", timezone="Mars/Olympus")))
    assert "without time_zone" in call.note


def test_group_calls_upsert_the_organization_then_find_the_user_and_add_the_membership() -> None:
    plan = planned(group("u1", "g1", name="Initech"))
    calls = calls_for(plan)
    assert [(c.method, c.path) for c in calls] == [
        ("POST", "/api/v2/organizations/create_or_update"),
        ("GET", "/api/v2/users/search?external_id=u1"),
        ("POST", "/api/v2/organization_memberships"),
    ]
    assert calls[2].body == {
        "organization_membership": {"user_id": "{user_id}", "organization_id": "{organization_id}"}
    }


def test_track_calls_find_the_user_by_external_id_then_email_then_send_the_event() -> None:
    plan = planned(track("u1", "Article Completed", email="ann@example.com"))
    calls = calls_for(plan)
    assert [(c.method, c.path) for c in calls] == [
        ("GET", "/api/v2/users/search?external_id=u1"),
        ("GET", '/api/v2/users/search?query=email:"ann@example.com"'),
        ("POST", "/api/v2/user_profiles/events"),
    ]
    assert "user_not_found" in calls[0].note
    body = calls[2].body
    assert body is not None and body["profile"]["identifiers"] == [
        {"type": "email", "value": "ann@example.com"}
    ]


# -------------------------------------------------------------------------------------------- output


def test_dry_run_prints_numbered_calls_with_json_bodies_what_was_left_out_and_would_deliver() -> None:
    text = format_explanation(explain(identify("u1", name="Peter", address={"city": "Paris"})))
    lines = text.splitlines()
    assert lines[0].startswith('── event 1 of 1: identify userId="u1"')
    assert lines[1] == "would make 1 call:"
    assert lines[2] == "  1. POST /api/v2/users/create_or_update"
    assert '         "name": "Peter",' in lines
    assert 'left out: "address" (object_not_sent)' in lines
    assert lines[-1].startswith("result: would deliver (identify: upsert_user")


def test_dry_run_of_a_skipped_event_prints_the_reason_and_no_calls() -> None:
    text = format_explanation(explain(track("u1", "Order Completed")))
    assert text.splitlines()[1:] == [
        "result: would be skipped, reason event_not_enabled: "
        "track event 'Order Completed' is not listed in the events setting"
    ]


def test_dry_run_of_a_dead_letter_prints_the_reason_its_class_and_message() -> None:
    text = format_explanation(explain(track("u" * 61, "Article Completed")))
    assert text.splitlines()[1:] == [
        "result: would be dead-lettered, reason identifier_too_long (class invalid)",
        "  message: the external_id identifier (userId) is 61 characters long; "
        "Zendesk's events API accepts at most 60",
    ]


def test_sent_event_prints_each_exchange_with_its_status_and_excerpt_then_the_outcome() -> None:
    sent = (
        Exchange("GET", "/api/v2/users/search", 200, '{"users":[{"id":1}]}'),
        Exchange("POST", "/api/v2/user_profiles/events", 202, '{"status":"received"}'),
    )
    explanation = explain(
        track("u1", "Article Completed"), sent=sent, outcome=Delivered(operations=1, summary="track: x")
    )
    lines = format_explanation(explanation).splitlines()
    assert lines[1] == "planned 2 calls:"
    assert lines[-4:] == [
        "sent:",
        '  1. GET /api/v2/users/search → 200 {"users":[{"id":1}]}',
        '  2. POST /api/v2/user_profiles/events → 202 {"status":"received"}',
        "result: delivered (1 operation: track: x)",
    ]


def test_sent_event_that_got_no_answer_or_was_rejected_says_so() -> None:
    sent = (Exchange("POST", "/api/v2/organizations/create_or_update", None, "timeout"),)
    transient = explain(
        group("u1", "g1", name="I"), sent=sent, outcome=Transient(message="Zendesk timeout", http_status=None)
    )
    assert format_explanation(transient).splitlines()[-2:] == [
        "  1. POST /api/v2/organizations/create_or_update → no answer (timeout)",
        "result: transient failure, the consumer would retry it: Zendesk timeout",
    ]
    rejected = explain(
        group("u1", "g1", name="I"),
        sent=(),
        outcome=DeadLetter(reason=DlqReason.IDENTITY_CONFLICT, message="name taken", http_status=422),
    )
    assert format_explanation(rejected).splitlines()[-3:] == [
        "sent: nothing",
        "result: dead-lettered, reason identity_conflict (class rejected, HTTP 422)",
        "  message: name taken",
    ]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            FieldsSource(base_url="https://acme.zendesk.com", user_fields=1, organization_fields=2),
            "custom fields: read from Zendesk at https://acme.zendesk.com (GET only): "
            "1 user field, 2 organization fields",
        ),
        (
            FieldsSource(why_not="--offline: no request made"),
            "custom fields: none assumed to exist (--offline: no request made); "
            "a field the event needs is shown as created",
        ),
    ],
)
def test_fields_header_says_where_the_field_definitions_came_from(
    source: FieldsSource, expected: str
) -> None:
    assert fields_header(source) == expected


def test_exit_code_is_3_for_any_dead_letter_else_1_for_a_transient_failure_else_0() -> None:
    delivered = explain(identify("u1", name="Peter"))
    skipped = explain(track("u1", "Order Completed"))
    dead = explain(track("u" * 61, "Article Completed"))
    transient = explain(identify("u1", name="Peter"), sent=(), outcome=Transient(message="503"))
    rejected_on_send = explain(
        identify("u1", name="Peter"),
        sent=(),
        outcome=DeadLetter(reason=DlqReason.USER_NOT_FOUND, message="x"),
    )
    assert exit_code([delivered, skipped]) == EXIT_OK == 0
    assert exit_code([delivered, dead, transient]) == EXIT_DEAD_LETTER == 3
    assert exit_code([skipped, transient]) == EXIT_TRANSIENT == 1
    assert exit_code([rejected_on_send]) == EXIT_DEAD_LETTER
    assert isinstance(skipped.verdict, Skipped) and skipped.verdict.reason is SkipReason.EVENT_NOT_ENABLED


# --------------------------------------------------------------------------------- without Zendesk


def test_without_credentials_the_plan_assumes_no_fields_makes_no_request_and_says_why() -> None:
    out = io.StringIO()
    env = {"ZENDESK_SETTINGS": '{"events": ["*"]}'}
    stdin = io.StringIO('{"type": "identify", "userId": "u1", "traits": {"name": "P", "plan": "x"}}')
    assert run_explain("-", env, out=out, stdin=stdin) == EXIT_OK
    first, *rest = out.getvalue().splitlines()
    assert first.startswith("custom fields: none assumed to exist (no Zendesk credentials configured")
    assert "  1. POST /api/v2/user_fields" in rest


def test_offline_makes_no_request_even_with_credentials_and_exits_3_for_a_dead_letter() -> None:
    out = io.StringIO()
    env = {
        "ZENDESK_SUBDOMAIN": "acme",
        "ZENDESK_BASE_URL": "http://127.0.0.1:9",  # nothing listens there: a request would fail
        "ZENDESK_EMAIL": "admin@example.com",
        "ZENDESK_API_TOKEN": "s3cr3t-token",
    }
    stdin = io.StringIO('{"type": "group", "userId": "u1"}')
    assert run_explain("-", env, offline=True, out=out, stdin=stdin) == EXIT_DEAD_LETTER
    assert "reason invalid_payload" in out.getvalue()
    assert "s3cr3t-token" not in out.getvalue()


def test_send_without_credentials_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ZENDESK_SUBDOMAIN"):
        run_explain("-", {}, send=True, out=io.StringIO(), stdin=io.StringIO("{}"))
