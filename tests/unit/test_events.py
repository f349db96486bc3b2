"""Decoding and validating Segment events (docs/semantics.md "Envelope")."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from stream.errors import InvalidEvent
from stream.events import (
    SegmentEvent,
    decode_avro,
    decode_json,
    delivery_id,
    event_key,
    parse_event,
    validate,
)
from stream.outcomes import DlqReason


def invalid(call: Any, *args: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        call(*args)
    assert caught.value.reason is DlqReason.INVALID_PAYLOAD
    return caught.value


# --- decode ----------------------------------------------------------------------------------------------


def test_decode_json_object() -> None:
    assert decode_json(b'{"type": "track", "event": "X"}') == {"type": "track", "event": "X"}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"   ", "empty"),
        (b"not json", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[1, 2]", "not an object (got an array)"),
        (b'"identify"', "not an object (got a string)"),
        (b"null", "not an object (got null)"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ],
)
def test_value_that_is_not_a_json_object_goes_to_dlq_invalid_payload(data: bytes, fragment: str) -> None:
    error = invalid(decode_json, data)
    assert fragment in error.message


def test_decode_json_tolerates_nan_and_huge_integers_for_the_planner_to_drop() -> None:
    value = decode_json(b'{"type": "identify", "traits": {"a": NaN, "b": 123456789012345678901234567890}}')
    assert value["traits"]["b"] == 123456789012345678901234567890


SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "SegmentEvent",
    "fields": [
        {"name": "type", "type": "string"},
        {"name": "userId", "type": ["null", "string"], "default": None},
        {"name": "traits", "type": {"type": "map", "values": ["null", "string", "long", "boolean"]}},
        {"name": "timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}


def test_decode_avro_with_writer_schema() -> None:
    buffer = io.BytesIO()
    moment = datetime(2024, 1, 25, 10, 0, tzinfo=UTC)
    record = {"type": "identify", "userId": "u1", "traits": {"name": "Ann", "logins": 5}, "timestamp": moment}
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(SCHEMA), record)
    value = decode_avro(buffer.getvalue(), SCHEMA)
    event = validate(value)
    assert (event.type, event.user_id, dict(event.traits)) == ("identify", "u1", {"name": "Ann", "logins": 5})
    assert event.timestamp == moment
    assert decode_avro(buffer.getvalue(), json.dumps(SCHEMA)) == value


def test_decode_avro_unreadable_value_goes_to_dlq_invalid_payload() -> None:
    assert "Avro" in invalid(decode_avro, b"\x02", SCHEMA).message
    assert "schema" in invalid(decode_avro, b"", {"type": "nonsense"}).message


# --- validate: the envelope ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"type": "identify"}, "identify"),
        ({"type": "Identify"}, "identify"),
        ({"action": "GROUP"}, "group"),
        ({"type": "track", "action": "identify"}, "track"),
        ({"type": " page "}, "page"),
        ({"type": "foo"}, "foo"),
    ],
)
def test_event_type_is_in_type_or_action_compared_case_insensitively(
    raw: dict[str, Any], expected: str
) -> None:
    assert validate(raw).type == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({}, 'no "type"'),
        ({"type": None}, 'no "type"'),
        ({"type": ""}, "empty"),
        ({"action": 5}, '"action" must be a string, got a number'),
        ({"type": ["identify"]}, '"type" must be a string, got an array'),
        ([1], "not a JSON object"),
        ("identify", "not a JSON object"),
    ],
)
def test_event_without_type_goes_to_dlq_invalid_payload(raw: Any, fragment: str) -> None:
    assert fragment in invalid(validate, raw).message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("abc", "abc"),
        (42, "42"),
        (6789.0, "6789"),
        (-1, "-1"),
        (2**70, str(2**70)),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_ids_that_arrive_as_numbers_become_strings(value: object, expected: str | None) -> None:
    event = validate(
        {"type": "identify", "userId": value, "anonymousId": value, "groupId": value, "messageId": value}
    )
    assert (event.user_id, event.anonymous_id, event.group_id, event.message_id) == (expected,) * 4


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("userId", True),
        ("anonymousId", {"id": 1}),
        ("groupId", [1]),
        ("userId", 1.5),
        ("userId", float("nan")),
    ],
)
def test_boolean_object_or_fractional_ids_go_to_dlq_invalid_payload(key: str, value: object) -> None:
    error = invalid(validate, {"type": "group", key: value})
    assert f'"{key}"' in error.message


def test_bad_ids_on_skipped_types_are_ignored_not_dead_lettered() -> None:
    event = validate({"type": "page", "userId": True, "traits": "x", "context": 5})
    assert (event.type, event.user_id, dict(event.traits)) == ("page", None, {})


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"type": "identify", "traits": "x"}, '"traits" must be an object, got a string'),
        ({"type": "track", "event": "E", "properties": [1]}, '"properties" must be an object, got an array'),
        ({"type": "identify", "context": "x"}, '"context" must be an object'),
        ({"type": "identify", "context": {"traits": 5}}, '"context.traits" must be an object, got a number'),
        ({"type": "track", "event": True}, '"event" must be a string'),
    ],
)
def test_traits_properties_and_context_must_be_objects(raw: dict[str, Any], fragment: str) -> None:
    assert fragment in invalid(validate, raw).message


def test_trait_locations_are_read() -> None:
    event = validate(
        {
            "type": "identify",
            "traits": {"a": 1},
            "context": {"traits": {"b": 2}},
            "properties": {"c": 3},
            "event": "E",
        }
    )
    assert (dict(event.traits), dict(event.context_traits), dict(event.properties)) == (
        {"a": 1},
        {"b": 2},
        {"c": 3},
    )


def test_timestamp_falls_back_to_original_timestamp_then_sent_at() -> None:
    assert validate({"type": "track", "sentAt": "2024-01-01T00:00:00Z"}).timestamp == datetime(
        2024, 1, 1, tzinfo=UTC
    )
    both = validate(
        {"type": "track", "originalTimestamp": "2024-01-02T00:00:00Z", "sentAt": "2024-01-01T00:00:00Z"}
    )
    assert both.timestamp == datetime(2024, 1, 2, tzinfo=UTC)
    assert validate({"type": "track", "timestamp": "garbage"}).timestamp is None


def test_lone_surrogates_are_made_encodable() -> None:
    event = validate({"type": "identify", "userId": "a\ud800b", "traits": {"k\udfff": "v\ud800"}})
    assert event.user_id == "a?b"
    assert dict(event.traits) == {"k?": "v?"}


def test_nesting_deeper_than_the_limit_goes_to_dlq_invalid_payload() -> None:
    deep: Any = "leaf"
    for _ in range(100):
        deep = {"x": deep}
    assert "nested more than" in invalid(validate, {"type": "identify", "traits": deep}).message


def test_parse_event_decodes_and_validates() -> None:
    event = parse_event(b'{"type":"track","event":"E","userId":7}')
    assert isinstance(event, SegmentEvent)
    assert (event.type, event.event, event.user_id) == ("track", "E", "7")


def test_invalid_event_messages_do_not_quote_the_body() -> None:
    error = invalid(validate, {"type": "identify", "userId": {"email": "secret@example.com"}})
    assert "secret" not in error.message


# --- the Kafka key ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record_key", "event", "expected"),
    [
        (b"kafka-key", {"userId": "u"}, "kafka-key"),
        (None, {"userId": "u", "anonymousId": "a"}, "u"),
        (b"", {"userId": 42}, "42"),
        (None, {"anonymousId": "a"}, "a"),
        (None, {"userId": "", "anonymousId": "a"}, "a"),
        (None, {"userId": True}, None),
        (None, {}, None),
    ],
)
def test_event_key_is_kafka_key_else_user_id_else_anonymous_id(
    record_key: bytes | None, event: dict[str, Any], expected: str | None
) -> None:
    assert event_key(record_key, event) == expected
    if not isinstance(event.get("userId"), bool):
        assert event_key(record_key, validate({"type": "identify", **event})) == expected


def test_absurdly_large_integers_go_to_dlq_invalid_payload() -> None:
    assert "more than 300 digits" in invalid(validate, {"type": "identify", "traits": {"n": 10**400}}).message
    huge = b'{"type": "identify", "n": ' + b"9" * 5000 + b"}"
    assert "not valid JSON" in invalid(decode_json, huge).message


# --- what identifies a delivered event ------------------------------------------------------------------


def test_a_track_is_identified_by_its_message_id() -> None:
    event = validate({"type": "track", "event": "Order", "userId": "u1", "messageId": "abc-1"})
    assert delivery_id(event) == b"m:abc-1"


def test_a_track_without_message_id_is_identified_by_its_whole_content_whatever_the_key_order() -> None:
    one = validate(json.loads('{"type":"track","event":"Order","userId":"u1","properties":{"a":1,"b":2}}'))
    same = validate(json.loads('{"properties":{"b":2,"a":1},"userId":"u1","event":"Order","type":"track"}'))
    other = validate(json.loads('{"type":"track","event":"Order","userId":"u1","properties":{"a":1,"b":3}}'))
    assert delivery_id(one) == delivery_id(same)
    assert delivery_id(one) != delivery_id(other)
    assert delivery_id(one).startswith(b"h:") and len(delivery_id(one)) == 2 + 64


def test_a_content_hash_takes_integers_too_large_for_orjson() -> None:
    event = validate(
        decode_json(b'{"type":"track","event":"E","userId":"u","properties":{"n":' + b"9" * 40 + b"}}")
    )
    assert delivery_id(event).startswith(b"h:")
