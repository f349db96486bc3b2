"""`zendesk-stream explain`: reading EVENT.json, a plan as calls, the printed explanation, the exit code."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from stream.errors import ConfigError, InvalidEvent
from stream.explain import (
    EXIT_DEAD_LETTER,
    EXIT_OK,
    EXIT_TRANSIENT,
    Explanation,
    FieldsSource,
    exit_code,
    fields_header,
    format_explanation,
    headline,
    read_events,
    run_explain,
)
from stream.outcomes import DeadLetter, Delivered, DlqReason, Outcome, Skipped, SkipReason, Transient
from stream.zendesk.client import Exchange
from tests.support.segment import group, identify, track

SETTINGS = {"events": ["Article Completed"], "removeUsersFromOrganizations": True, "verified": True}


def offline(events: object, *, as_json: bool = False) -> tuple[int, str]:
    """explain with no Zendesk to ask: the destination's own code over the dry run."""
    out = io.StringIO()
    env = {"ZENDESK_SETTINGS": json.dumps(SETTINGS)}
    code = run_explain("-", env, out=out, stdin=io.StringIO(json.dumps(events)), as_json=as_json)
    return code, out.getvalue()


def dry_calls(events: object) -> list[dict[str, Any]]:
    _, text = offline(events, as_json=True)
    return [call for event in json.loads(text)["events"] for call in event["calls"]]


def explain(event: dict[str, Any] | InvalidEvent, outcome: Outcome, **kwargs: Any) -> Explanation:
    return Explanation(position=1, total=1, headline=headline(event), outcome=outcome, **kwargs)


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


# ------------------------------------------------------------------------- the calls the destination makes


def test_identify_creates_missing_fields_then_upserts_the_user_with_its_body() -> None:
    calls = dry_calls(identify("u1", name="Peter", email="p@example.com", plan="premium"))
    assert [(c["method"], c["path"]) for c in calls] == [
        ("POST", "/api/v2/user_fields"),
        ("POST", "/api/v2/users/create_or_update"),
    ]
    assert calls[0]["body"] == {
        "user_field": {
            "key": "plan",
            "title": "Plan",
            "type": "text",
            "description": "Created automatically by zendesk-stream from a Segment trait.",
        }
    }
    assert calls[1]["body"] == {
        "user": {
            "name": "Peter",
            "email": "p@example.com",
            "external_id": "u1",
            "verified": True,
            "user_fields": {"plan": "premium"},
        }
    }
    assert not any(c["asked_zendesk"] for c in calls)


def test_a_field_created_by_an_earlier_event_of_the_run_is_not_created_again() -> None:
    calls = dry_calls([identify("u1", name="A", plan="x"), identify("u2", name="B", plan="y")])
    assert [c["path"] for c in calls].count("/api/v2/user_fields") == 1


def test_a_track_for_a_user_nobody_can_confirm_says_what_it_needs() -> None:
    code, text = offline(track("u-999", "Article Completed"))
    assert code == EXIT_OK
    assert "needs: a Zendesk user with external_id u-999" in text
    assert "POST /api/v2/user_profiles/events (not sent)" in text
    assert "result: would deliver" in text


def test_a_track_after_the_identify_that_creates_its_user_needs_nothing() -> None:
    _, text = offline([identify("u1", name="Ann"), track("u1", "Article Completed")])
    assert "needs:" not in text
    assert "GET /api/v2/users/search" not in text  # the upsert's answer taught the user's id


def test_group_upserts_the_organization_then_links_the_user_shown_with_the_ids_zendesk_assigns() -> None:
    _, text = offline(group("u1", "g1", name="Initech"))
    assert text.index("POST /api/v2/organizations/create_or_update") < text.index(
        "POST /api/v2/organization_memberships"
    )
    assert '"user_id": "<id Zendesk assigns or holds>"' in text
    assert "needs: a Zendesk user with external_id u1" in text


def test_removal_from_an_organization_lists_the_memberships_then_deletes_one() -> None:
    calls = dry_calls(identify("u1", name="P", company={"id": "g9", "remove": True}))
    assert [(c["method"], c["path"]) for c in calls] == [
        ("POST", "/api/v2/users/create_or_update"),
        ("GET", "/api/v2/organizations/search?external_id="),
        ("GET", "/api/v2/users/{user_id}/organization_memberships"),
        ("DELETE", "/api/v2/users/{user_id}/organization_memberships/{id}"),
    ]


def test_a_time_zone_write_says_it_is_resent_without_a_refused_time_zone() -> None:
    _, text = offline(identify("u1", name="P", timezone="Mars/Olympus"))
    assert "if Zendesk refuses the time zone, sent again without time_zone" in text


def test_skips_and_dead_letters_make_no_call_and_say_why() -> None:
    code, text = offline([{"type": "page", "userId": "u1"}, track("u" * 61, "Article Completed")])
    assert code == EXIT_DEAD_LETTER
    assert "result: would be skipped, reason unsupported_type" in text
    assert "result: would be dead-lettered, reason identifier_too_long (class invalid)" in text
    assert "would make" not in text


def test_the_json_report_carries_the_same_outcomes_as_the_text() -> None:
    events = [identify("u1", name="Ann"), {"type": "page"}, track("u1", "Article Completed")]
    _, document = offline(events, as_json=True)
    results = [e["result"] for e in json.loads(document)["events"]]
    assert [r["outcome"] for r in results] == ["delivered", "skipped", "delivered"]
    assert results[1]["reason"] == "unsupported_type"


# ------------------------------------------------------------------------------------------- output


def test_sent_event_prints_each_exchange_with_its_status_and_excerpt_then_the_outcome() -> None:
    sent = (
        Exchange("GET", "/api/v2/users/search", 200, '{"users":[{"id":7}]}'),
        Exchange("POST", "/api/v2/user_profiles/events", 202, '{"status":"received"}'),
    )
    text = format_explanation(
        explain(
            track("u1", "Article Completed"),
            Delivered(operations=1, summary="track: x"),
            sent=True,
            exchanges=sent,
        )
    )
    assert "  1. GET /api/v2/users/search → 200" in text
    assert "  2. POST /api/v2/user_profiles/events → 202" in text
    assert text.endswith("result: delivered (1 operation: track: x)")


def test_sent_event_that_got_no_answer_or_was_rejected_says_so() -> None:
    lost = explain(
        group("u1", "g1", name="I"),
        Transient(message="Zendesk timeout", http_status=None),
        sent=True,
        exchanges=(Exchange("POST", "/api/v2/organizations/create_or_update", None, "timeout"),),
    )
    assert "no answer (timeout)" in format_explanation(lost)
    assert "the consumer would retry it" in format_explanation(lost)
    rejected = explain(
        group("u1", "g1", name="I"),
        DeadLetter(reason=DlqReason.IDENTITY_CONFLICT, message="name taken", http_status=422),
        sent=True,
    )
    assert "sent: nothing" in format_explanation(rejected)
    assert "result: dead-lettered, reason identity_conflict (class rejected, HTTP 422)" in format_explanation(
        rejected
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            FieldsSource(base_url="https://a.zendesk.com", user_fields=1),
            "read from Zendesk at https://a.zendesk.com",
        ),
        (FieldsSource(why_not="--offline: no request made"), "none assumed to exist (--offline"),
    ],
)
def test_fields_header_says_where_the_field_definitions_came_from(
    source: FieldsSource, expected: str
) -> None:
    assert expected in fields_header(source)


def test_exit_code_is_3_for_any_dead_letter_else_1_for_a_transient_failure_else_0() -> None:
    skipped = explain({"type": "page"}, Skipped(reason=SkipReason.UNSUPPORTED_TYPE))
    transient = explain(identify("u1", name="Peter"), Transient(message="503"))
    dead = explain(track("u1", "x"), DeadLetter(reason=DlqReason.USER_NOT_FOUND, message="x"))
    assert exit_code([skipped]) == EXIT_OK
    assert exit_code([skipped, transient]) == EXIT_TRANSIENT
    assert exit_code([transient, dead]) == EXIT_DEAD_LETTER


# --------------------------------------------------------------------------------- without Zendesk


def test_without_credentials_the_plan_assumes_no_fields_makes_no_request_and_says_why() -> None:
    out = io.StringIO()
    env = {"ZENDESK_SETTINGS": '{"events": ["*"]}'}
    stdin = io.StringIO('{"type": "identify", "userId": "u1", "traits": {"name": "P", "plan": "x"}}')
    assert run_explain("-", env, out=out, stdin=stdin) == EXIT_OK
    first, *rest = out.getvalue().splitlines()
    assert first.startswith("custom fields: none assumed to exist (no Zendesk credentials configured")
    assert "  1. POST /api/v2/user_fields (not sent)" in rest


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
