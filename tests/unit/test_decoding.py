"""Input formats (`stream.decoding`), the Confluent frame and the Segment Avro schema (`stream.events`),
local schema files (`stream.schemas.LocalSchemas`) and the settings that choose them (`stream.config`)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import pytest

from stream.config import input_settings_from_env
from stream.decoding import Decoder, InputFormat, SchemaNotLoaded, open_schemas
from stream.errors import ConfigError, InvalidEvent
from stream.events import confluent_frame, read_avro, validate
from stream.outcomes import DlqReason
from stream.schemas import LocalSchemas
from stream.topics import definitions_dir
from tests.support.segment import group, identify, track

SEGMENT_SCHEMA = json.loads((definitions_dir() / "schemas" / "1-segment-event.avsc").read_text())


def as_avro(event: dict[str, Any], schema: dict[str, Any] = SEGMENT_SCHEMA) -> bytes:
    """A Segment event in the shipped schema's shape: traits, properties and context as JSON text."""
    record = {k: (json.dumps(v) if k in ("traits", "properties", "context") else v) for k, v in event.items()}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


def framed(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def local() -> LocalSchemas:
    return LocalSchemas.from_directory(definitions_dir() / "schemas")


def invalid_message(decoder: Decoder, value: bytes | None) -> str:
    with pytest.raises(InvalidEvent) as caught:
        decoder.decode(value)
    assert caught.value.reason is DlqReason.INVALID_PAYLOAD
    return caught.value.message


EVENTS = [
    identify("u-1", name="Ada", email="ada@example.com", plan="pro", logins=5, tags=["a", "b"], vip=True),
    track("u-1", "Article Completed", title="Tracking", score=9.5, nested={"deep": {"deeper": [1, None]}}),
    group("u-1", "org-9", name="Initech", employees=329, **{"total billed": 830}),
    {**identify("u-2", name="Bo"), "context": {"traits": {"email": "bo@example.com"}}, "anonymousId": "a-2"},
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e["type"])
def test_an_event_in_the_shipped_avro_schema_validates_to_the_same_segment_event_as_its_json(
    event: dict[str, Any],
) -> None:
    decoder = Decoder(input_format=InputFormat.AVRO, schemas=local())

    from_avro = validate(decoder.decode(framed(1, as_avro(event))))

    assert from_avro == validate(Decoder().decode(json.dumps(event).encode()))
    assert from_avro.raw == event  # nulls left out, JSON text read back: the same content (and delivery id)


def test_the_confluent_frame_is_the_magic_byte_and_a_big_endian_schema_id() -> None:
    frame = confluent_frame(b"\x00\x00\x01\x00\x02body")
    assert frame is not None
    assert (frame[0], bytes(frame[1])) == (65538, b"body")
    assert confluent_frame(b'{"type":"identify"}') is None
    with pytest.raises(InvalidEvent, match="too short for a schema id"):
        confluent_frame(b"\x00\x00\x01")


def test_traits_given_as_an_avro_map_are_read_as_an_object_too() -> None:
    schema = {
        "type": "record",
        "name": "Identify",
        "fields": [
            {"name": "type", "type": "string"},
            {"name": "userId", "type": "string"},
            {"name": "traits", "type": {"type": "map", "values": ["null", "string", "long", "boolean"]}},
        ],
    }
    buffer = io.BytesIO()
    record = {"type": "identify", "userId": "u1", "traits": {"name": "Ann", "logins": 5, "vip": True}}
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)

    event = validate(read_avro(buffer.getvalue(), fastavro.parse_schema(schema)))

    assert dict(event.traits) == {"name": "Ann", "logins": 5, "vip": True}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (b'{"type":"identify"}', "not in the Confluent wire format"),
        (b"\x00\x00\x00", "too short for a schema id"),
        (framed(1, b"\x02"), "cannot be read with the Avro writer schema"),
        (framed(1, b""), "cannot be read with the Avro writer schema"),
        (None, "no value (a tombstone?)"),
    ],
    ids=["json-in-avro", "short-frame", "truncated-body", "empty-body", "tombstone"],
)
def test_an_undecodable_avro_record_is_invalid_payload_with_a_specific_message(
    value: bytes | None, words: str
) -> None:
    assert words in invalid_message(Decoder(input_format=InputFormat.AVRO, schemas=local()), value)


def test_traits_as_json_text_that_is_not_an_object_is_invalid_payload() -> None:
    body = as_avro({"type": "identify", "userId": "u1"})
    broken = io.BytesIO()
    fastavro.schemaless_writer(
        broken, fastavro.parse_schema(SEGMENT_SCHEMA), {"type": "identify", "userId": "u1", "traits": "[1]"}
    )
    decoder = Decoder(input_format=InputFormat.AVRO, schemas=local())
    assert validate(decoder.decode(framed(1, body))).user_id == "u1"
    assert 'Avro field "traits" is a string but not a JSON object' in invalid_message(
        decoder, framed(1, broken.getvalue())
    )


def test_auto_reads_avro_by_the_magic_byte_and_json_otherwise() -> None:
    decoder = Decoder(input_format=InputFormat.AUTO, schemas=local())
    event = identify("u-1", name="Ada")

    assert decoder.decode(framed(1, as_avro(event))) == decoder.decode(json.dumps(event).encode())
    assert decoder.is_avro(framed(1, b"")) and not decoder.is_avro(b"{}")
    assert "not valid JSON" in invalid_message(decoder, b"{not json")


def test_json_input_names_the_setting_when_it_meets_a_framed_avro_record() -> None:
    message = invalid_message(Decoder(), framed(1, as_avro(identify("u-1", name="Ada"))))
    assert "looks like Avro in the Confluent wire format" in message
    assert "STREAM_INPUT_FORMAT" in message


def test_a_schema_not_at_hand_is_named_for_loading_and_an_unknown_local_id_is_invalid() -> None:
    schemas = local()
    decoder = Decoder(input_format=InputFormat.AVRO, schemas=schemas)
    assert decoder.missing(framed(1, b"")) is None  # local schemas are always at hand

    class Empty(LocalSchemas):
        def cached(self, schema_id: int) -> Any | None:
            return None

    lazy = Decoder(input_format=InputFormat.AVRO, schemas=Empty(schemas={}, description="none"))
    with pytest.raises(SchemaNotLoaded) as caught:
        lazy.decode(framed(7, b""))
    assert caught.value.schema_id == 7
    assert lazy.missing(framed(7, b"")) == 7
    with pytest.raises(
        InvalidEvent, match=r"schema id 7 has no local schema file topics/schemas/7-<name>\.avsc"
    ):
        asyncio.run(decoder.load(7))


def test_local_schema_files_are_named_by_id_and_a_bad_one_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "12-segment.avsc").write_text(json.dumps(SEGMENT_SCHEMA))
    (tmp_path / "README.txt").write_text("not a schema")
    assert LocalSchemas.from_directory(tmp_path).ids == [12]

    (tmp_path / "segment.avsc").write_text("{}")
    with pytest.raises(ConfigError, match=r"expected the name <id>-<name>\.avsc"):
        LocalSchemas.from_directory(tmp_path)
    (tmp_path / "segment.avsc").unlink()
    (tmp_path / "12-other.avsc").write_text(json.dumps(SEGMENT_SCHEMA))
    with pytest.raises(ConfigError, match="have the same id 12"):
        LocalSchemas.from_directory(tmp_path)
    (tmp_path / "12-other.avsc").unlink()
    (tmp_path / "13-broken.avsc").write_text('{"type": "nonsense"}')
    with pytest.raises(ConfigError, match=r"13-broken\.avsc: the Avro writer schema is unusable"):
        LocalSchemas.from_directory(tmp_path)


def test_avro_without_a_registry_or_local_schemas_says_so_at_start_up(tmp_path: Path) -> None:
    settings = input_settings_from_env({"STREAM_INPUT_FORMAT": "avro"})
    schemas = open_schemas(settings, local=tmp_path / "missing")
    assert schemas is not None
    with pytest.raises(ConfigError, match="needs SCHEMA_REGISTRY_URL or schema files in topics/schemas/"):
        asyncio.run(schemas.check())
    assert open_schemas(input_settings_from_env({})) is None  # JSON needs none


def test_the_shipped_schema_is_found_when_no_registry_is_set() -> None:
    schemas = open_schemas(input_settings_from_env({"STREAM_INPUT_FORMAT": "auto"}))
    assert isinstance(schemas, LocalSchemas)
    assert schemas.ids == [1]


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"STREAM_INPUT_FORMAT": "protobuf"},
            "STREAM_INPUT_FORMAT: expected json, avro or auto, got 'protobuf'",
        ),
        ({"SCHEMA_REGISTRY_URL": "registry:8081"}, "SCHEMA_REGISTRY_URL: expected http(s)://host"),
        ({"SCHEMA_REGISTRY_URL": "ftp://registry"}, "SCHEMA_REGISTRY_URL: expected http(s)://host"),
        ({"SCHEMA_REGISTRY_URL": "http://registry:port"}, "SCHEMA_REGISTRY_URL: not a URL"),
        ({"SCHEMA_REGISTRY_URL": "http://u:p@registry"}, "credentials in the URL"),
        ({"SCHEMA_REGISTRY_URL": "http://a:8081,http://b:8081"}, "one registry URL"),
        ({"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "u:p"}, "set, but SCHEMA_REGISTRY_URL is not"),
        (
            {"SCHEMA_REGISTRY_URL": "http://r", "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "nocolon"},
            "expected user:password",
        ),
    ],
)
def test_a_bad_input_setting_is_one_line_naming_it(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        input_settings_from_env(env)
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_input_settings_keep_the_registry_password_hidden() -> None:
    settings = input_settings_from_env(
        {
            "STREAM_INPUT_FORMAT": " AVRO ",
            "SCHEMA_REGISTRY_URL": "https://registry.internal:8081/apis/ccompat/v7/",
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "svc:s3cret",
        }
    )
    assert settings.input_format is InputFormat.AVRO
    assert settings.registry_url == "https://registry.internal:8081/apis/ccompat/v7"
    assert "s3cret" not in repr(settings)
