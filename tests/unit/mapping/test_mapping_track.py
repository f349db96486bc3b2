"""Track → Sunshine event: one test per rule of docs/semantics.md "Track → Sunshine event"."""

from __future__ import annotations

from typing import Any

import pytest

from stream.errors import InvalidEvent
from stream.mapping import DestinationSettings, Known, Plan, SendEvent, Skip, UserRef, plan
from stream.outcomes import DlqReason, ErrorClass, SkipReason

ALL = DestinationSettings.parse({"events": ["*"]})


def track(name: object = "Order Completed", user_id: object = "u1", **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "track", "event": name, "timestamp": "2024-01-25T10:00:00.000Z"}
    if user_id is not None:
        event["userId"] = user_id
    event.update(extra)
    return event


def send_event(event: dict[str, Any], settings: DestinationSettings = ALL) -> SendEvent:
    result = plan(event, settings, Known())
    assert isinstance(result, Plan), result
    assert len(result.operations) == 1
    operation = result.operations[0]
    assert isinstance(operation, SendEvent)
    return operation


def dlq(event: dict[str, Any], settings: DestinationSettings = ALL) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        plan(event, settings, Known())
    return caught.value


def test_track_listed_in_events_is_sent() -> None:
    settings = DestinationSettings.parse({"events": ["Order Completed"]})
    assert send_event(track(), settings).event_type == "Order Completed"


@pytest.mark.parametrize("events", [[], ["Other"], ["order completed"], ["Order Completed "]])
def test_track_not_listed_in_events_is_skipped_event_not_enabled(events: list[str]) -> None:
    result = plan(track(), DestinationSettings.parse({"events": events}), Known())
    assert isinstance(result, Skip)
    assert result.reason is SkipReason.EVENT_NOT_ENABLED


def test_track_events_wildcard_sends_every_event() -> None:
    assert send_event(track("Anything At All")).event_type == "Anything At All"


@pytest.mark.parametrize("user_id", [None, "", "   "])
def test_track_without_user_id_is_skipped_missing_user_id(user_id: object) -> None:
    result = plan(track(user_id=user_id, anonymousId="a1"), ALL, Known())
    assert isinstance(result, Skip)
    assert result.reason is SkipReason.MISSING_USER_ID


def test_track_identifier_is_user_id_as_external_id_without_properties_email() -> None:
    operation = send_event(track(user_id="97980cfea0067", properties={"title": "x"}))
    assert operation.body["profile"]["identifiers"] == [{"type": "external_id", "value": "97980cfea0067"}]
    assert operation.user == UserRef(external_id="97980cfea0067")


def test_track_identifier_is_properties_email_when_present() -> None:
    operation = send_event(track(properties={"email": "user+1@example.com"}))
    assert operation.body["profile"]["identifiers"] == [{"type": "email", "value": "user+1@example.com"}]


def test_track_resolves_the_user_by_user_id_first_then_properties_email() -> None:
    operation = send_event(track(properties={"email": "user@example.com"}))
    assert operation.user.external_id == "u1"
    assert operation.user.email == "user@example.com"


def test_track_properties_email_nested_as_in_the_seed_example_is_read_too() -> None:
    operation = send_event(track(properties={"title": "t", "properties": {"email": "user@example.com"}}))
    assert operation.body["profile"]["identifiers"] == [{"type": "email", "value": "user@example.com"}]


@pytest.mark.parametrize("email", ["", "not-an-email", 42, None, {"a": 1}])
def test_track_unusable_properties_email_falls_back_to_user_id(email: object) -> None:
    operation = send_event(track(properties={"email": email}))
    assert operation.body["profile"]["identifiers"] == [{"type": "external_id", "value": "u1"}]


def test_track_identifier_of_60_characters_is_sent() -> None:
    assert send_event(track(user_id="x" * 60)).body["profile"]["identifiers"][0]["value"] == "x" * 60


@pytest.mark.parametrize(
    "event",
    [
        track(user_id="x" * 61),
        track(properties={"email": "a" * 50 + "@example.com"}),
    ],
)
def test_track_identifier_longer_than_60_characters_goes_to_dlq_identifier_too_long(
    event: dict[str, Any],
) -> None:
    error = dlq(event)
    assert error.reason is DlqReason.IDENTIFIER_TOO_LONG
    assert error.reason.error_class is ErrorClass.INVALID
    assert "60" in error.message
    assert "x" * 61 not in error.message and "aaaaaaaaaa" not in error.message  # no personal data


def test_track_long_user_id_is_fine_when_the_email_is_the_identifier() -> None:
    operation = send_event(track(user_id="x" * 80, properties={"email": "a@example.com"}))
    assert operation.body["profile"]["identifiers"] == [{"type": "email", "value": "a@example.com"}]


def test_track_event_name_longer_than_40_characters_goes_to_dlq_event_name_too_long() -> None:
    assert send_event(track("n" * 40)).event_type == "n" * 40
    error = dlq(track("n" * 41))
    assert error.reason is DlqReason.EVENT_NAME_TOO_LONG
    assert error.reason.error_class is ErrorClass.INVALID
    assert "41 characters" in error.message


def test_track_long_event_name_not_in_events_setting_is_skipped_not_dead_lettered() -> None:
    result = plan(track("n" * 41), DestinationSettings.parse({"events": ["Other"]}), Known())
    assert isinstance(result, Skip)


@pytest.mark.parametrize("name", [None, "", "  "])
def test_track_without_event_name_goes_to_dlq_invalid_payload(name: object) -> None:
    assert dlq(track(name)).reason is DlqReason.INVALID_PAYLOAD


def test_track_body_shape_is_exactly_profile_and_event() -> None:
    operation = send_event(track(properties={"title": "T", "nested": {"a": [1, 2]}}))
    assert operation.body == {
        "profile": {
            "source": "segment",
            "type": "user",
            "identifiers": [{"type": "external_id", "value": "u1"}],
        },
        "event": {
            "source": "segment",
            "type": "Order Completed",
            "description": "Order Completed",
            "properties": {"title": "T", "nested": {"a": [1, 2]}},
            "created_at": "2024-01-25T10:00:00.000Z",
        },
    }


@pytest.mark.parametrize("properties", [None, {}])
def test_track_properties_default_to_an_empty_object(properties: object) -> None:
    assert send_event(track(properties=properties)).body["event"]["properties"] == {}


def test_track_source_is_the_source_name_setting() -> None:
    settings = DestinationSettings.parse({"events": ["*"], "sourceName": "acme-web"})
    body = send_event(track(), settings).body
    assert body["profile"]["source"] == body["event"]["source"] == "acme-web"


@pytest.mark.parametrize(
    ("fields", "created_at"),
    [
        ({"timestamp": "2024-01-25T10:00:00Z"}, "2024-01-25T10:00:00.000Z"),
        ({"timestamp": "2024-01-25T12:00:00.123456+02:00"}, "2024-01-25T12:00:00.123456+02:00"),
        ({"timestamp": "2024-01-25T10:00:00"}, "2024-01-25T10:00:00.000Z"),
        ({"timestamp": None, "originalTimestamp": "2024-01-24T09:00:00.5Z"}, "2024-01-24T09:00:00.500Z"),
        ({"timestamp": None, "sentAt": "2024-01-23T08:00:00Z"}, "2024-01-23T08:00:00.000Z"),
    ],
)
def test_track_created_at_is_the_event_timestamp_in_iso_8601(fields: dict[str, Any], created_at: str) -> None:
    assert send_event(track(**fields)).body["event"]["created_at"] == created_at


@pytest.mark.parametrize("timestamp", [None, "yesterday", 1706176800000])
def test_track_without_usable_timestamp_leaves_created_at_to_zendesk(timestamp: object) -> None:
    assert "created_at" not in send_event(track(timestamp=timestamp)).body["event"]


def test_track_properties_values_json_cannot_carry_are_made_safe() -> None:
    properties = {
        "nan": float("nan"),
        "inf": float("-inf"),
        "big": 2**70,
        "ok": 1.5,
        "deep": [{"x": float("inf")}],
    }
    sent = send_event(track(properties=properties)).body["event"]["properties"]
    assert sent == {"nan": None, "inf": None, "big": str(2**70), "ok": 1.5, "deep": [{"x": None}]}


def test_track_summary_names_the_event_without_personal_data() -> None:
    result = plan(track(properties={"email": "secret@example.com"}), ALL, Known())
    assert isinstance(result, Plan)
    assert result.summary == "track: send_event 'Order Completed'"
    assert "secret" not in repr(result.operations)
