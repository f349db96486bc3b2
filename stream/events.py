"""Segment events: decode (JSON, Avro) and validate into a typed, frozen `SegmentEvent`.

Pure: no I/O, no clock. Everything that makes an event unusable raises
``InvalidEvent(DlqReason.INVALID_PAYLOAD, message)``; the message names what is wrong in words a support
engineer can act on, and never quotes the event body (it holds personal data).

Decisions (docs/semantics.md, "Envelope"):

- The value must be a JSON object (UTF-8). Strict JSON is tried first; on failure the lenient standard
  library parser is tried, so ``NaN``/``Infinity`` literals and integers beyond 64 bits are read (the planner
  then drops such values) instead of dead-lettering the whole event.
- The type is ``type`` or else ``action``, compared case-insensitively. A missing, null, empty or
  non-string type is invalid (not a Segment event). Any other string is accepted here; the planner skips
  types it does not send.
- ``userId``, ``anonymousId``, ``groupId``, ``messageId`` and the track ``event`` name: a string is kept as
  it is (an empty or blank string counts as absent); an integer, or a float with an integral value, becomes
  its decimal string (``6789`` and ``6789.0`` → ``"6789"``). A boolean, object, array or fractional number
  is invalid for identify, track and group; for the types we skip it is ignored (read as absent), so a
  malformed page call is still skipped, never dead-lettered.
- ``traits``, ``properties``, ``context`` and ``context.traits`` must be objects when present (null counts
  as absent).
- Strings are made encodable: a lone UTF-16 surrogate becomes ``?``. Bytes (Avro) are read as UTF-8,
  Avro logical types (timestamps, decimals, UUIDs) become JSON values. Nesting deeper than `MAX_DEPTH` is
  invalid.
- The timestamp is ``timestamp``, else ``originalTimestamp``, else ``sentAt``: an ISO-8601 string (or an
  Avro timestamp). A time without an offset is read as UTC. An unparseable timestamp is kept as None
  (the track event is then sent without ``created_at`` and Zendesk stamps it on receipt).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

import fastavro
import orjson

from stream.errors import InvalidEvent
from stream.jsontypes import json_type
from stream.outcomes import DlqReason

__all__ = [
    "MAX_DEPTH",
    "SUPPORTED_TYPES",
    "SegmentEvent",
    "confluent_frame",
    "decode_avro",
    "decode_json",
    "event_key",
    "iso_timestamp",
    "parse_avro_schema",
    "parse_event",
    "read_avro",
    "validate",
]

MAX_DEPTH: Final = 64
SUPPORTED_TYPES: Final = frozenset({"identify", "track", "group"})
_TIMESTAMP_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt")
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_MAX_INT_DIGITS: Final = 300
_MAX_INT_BITS: Final = 996  # 2**996 < 10**300


def _invalid(message: str) -> InvalidEvent:
    return InvalidEvent(DlqReason.INVALID_PAYLOAD, message)


@dataclass(frozen=True, slots=True, kw_only=True)
class SegmentEvent:
    """A validated Segment event. Mappings are read-only by contract (plain dicts, for cheap JSON)."""

    type: str  # lower-case: identify, track, group, or a type the planner skips (page, screen, alias, …)
    message_id: str | None = None
    user_id: str | None = None
    anonymous_id: str | None = None
    group_id: str | None = None
    event: str | None = None  # the track event name
    traits: Mapping[str, Any] = field(default_factory=dict)
    context_traits: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None  # always time-zone aware
    timestamp_text: str | None = None  # as received, for messages
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def supported(self) -> bool:
        return self.type in SUPPORTED_TYPES


def delivery_id(event: SegmentEvent) -> bytes:
    """What identifies an event among those already delivered (`stream.engine.delivered`): its
    messageId, else a SHA-256 of its whole content (two events alike in every field are one event)."""
    if event.message_id:
        return b"m:" + event.message_id.encode()
    try:
        canonical: bytes = orjson.dumps(event.raw, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer too large for orjson, a Decimal
        canonical = json.dumps(event.raw, sort_keys=True, separators=(",", ":"), default=str).encode()
    return b"h:" + hashlib.sha256(canonical).hexdigest().encode()


# --- decoding -------------------------------------------------------------------------------------------


def decode_json(data: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """A Kafka record value → the event object. Raises InvalidEvent when it is not a JSON object."""
    if data is None:
        raise _invalid("record has no value (a tombstone?): expected a JSON object")
    if not isinstance(data, str):
        data = bytes(data)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as strict_error:
        value = _lenient_json(data, strict_error)
    if not isinstance(value, dict):
        raise _invalid(f"value is JSON but not an object (got {json_type(value)}): not a Segment event")
    return value


def _lenient_json(data: bytes | str, strict_error: Exception) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise _invalid(
            f"value is not UTF-8 text (bad byte at offset {exc.start}): expected a JSON object"
        ) from None
    if not text.strip():
        raise _invalid("value is empty: expected a JSON object")
    try:
        return json.loads(text)
    except RecursionError:
        raise _invalid(f"value is nested too deeply to read (more than {MAX_DEPTH} levels)") from None
    except ValueError:
        raise _invalid(f"value is not valid JSON ({strict_error})") from None


CONFLUENT_MAGIC: Final = 0
_FRAME_BYTES: Final = 5  # the magic byte and a 4-byte big-endian schema id
# Avro has no type for "any JSON value": the Segment schema carries these as JSON text (docs/semantics.md).
JSON_TEXT_FIELDS: Final = ("traits", "properties", "context")


def confluent_frame(data: bytes) -> tuple[int, memoryview] | None:
    """(schema id, Avro body) of a value in the Confluent wire format (magic byte 0, the schema id as a
    4-byte big-endian integer, then the Avro binary); None when the value does not start with the magic
    byte. Raises InvalidEvent when it does but is too short to hold a schema id."""
    if not data or data[0] != CONFLUENT_MAGIC:
        return None
    if len(data) < _FRAME_BYTES:
        raise _invalid(
            f"value starts with the Confluent magic byte but is {len(data)} bytes long: too short for a "
            "schema id"
        )
    return int.from_bytes(data[1:_FRAME_BYTES], "big"), memoryview(data)[_FRAME_BYTES:]


def parse_avro_schema(schema: Mapping[str, Any] | str) -> Any:
    """A writer schema (JSON text or its parsed form) → fastavro's parsed schema. Raises InvalidEvent."""
    try:
        return fastavro.parse_schema(json.loads(schema) if isinstance(schema, str) else dict(schema))
    except Exception as exc:
        raise _invalid(
            f"the Avro writer schema is unusable ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def read_avro(data: bytes | memoryview, parsed: Any) -> dict[str, Any]:
    """An Avro binary body read with a schema from `parse_avro_schema` → the event object.

    Fields that are null are left out (as if absent in JSON), and `traits`, `properties` and `context`
    given as strings are read as JSON text that must hold an object. Raises InvalidEvent."""
    try:
        value = fastavro.schemaless_reader(io.BytesIO(data), parsed, None)
    except Exception as exc:
        raise _invalid(
            f"value cannot be read with the Avro writer schema ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if not isinstance(value, dict):
        raise _invalid(f"Avro value is not a record (got {json_type(value)}): not a Segment event")
    event = {key: item for key, item in value.items() if item is not None}
    for key in JSON_TEXT_FIELDS:
        text = event.get(key)
        if isinstance(text, str):
            event[key] = _json_text_field(key, text)
    return event


def _json_text_field(key: str, text: str) -> dict[str, Any]:
    try:
        return decode_json(text)
    except InvalidEvent as err:
        raise _invalid(f'Avro field "{key}" is a string but not a JSON object: {err.message}') from None


def decode_avro(data: bytes, schema: Mapping[str, Any] | str) -> dict[str, Any]:
    """An Avro binary record (schemaless, i.e. no container/registry framing) with its writer schema.

    A Confluent Schema Registry frame (magic byte 0 and a 4-byte schema id) must be stripped by the caller
    (`confluent_frame`), which also resolves the schema id (`stream.decoding`). Raises InvalidEvent when
    the record cannot be read with `schema`."""
    return read_avro(data, parse_avro_schema(schema))


def parse_event(data: bytes) -> SegmentEvent:
    """`decode_json` then `validate`."""
    return validate(decode_json(data))


# --- validation -----------------------------------------------------------------------------------------


def _clean_str(text: str) -> str:
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


def _sanitize_dict(value: dict[Any, Any], depth: int) -> dict[str, Any]:
    """`_sanitize` of a decoded JSON object, its plain leaves copied here rather than by a call each."""
    copy: dict[str, Any] = {}
    for raw_key, item in value.items():
        key = raw_key if type(raw_key) is str and raw_key.isascii() else _clean_str(str(raw_key))
        kind = type(item)
        plain = (kind is str and item.isascii()) or item is None or kind is bool or kind is float
        copy[key] = item if plain else _sanitize(item, depth + 1)
    return copy


def _sanitize(value: Any, depth: int) -> Any:
    """A JSON-encodable copy: strings encodable, containers plain dicts/lists, Avro types converted."""
    kind = type(value)  # the types JSON decodes to first, by exact type: this runs for every value
    if kind is str:
        return value if value.isascii() else _clean_str(value)
    if kind is dict and depth < MAX_DEPTH:
        return _sanitize_dict(value, depth)
    if value is None or kind is bool or kind is float:
        return value
    if isinstance(value, int):
        if value.bit_length() > _MAX_INT_BITS:
            raise _invalid(f"event holds an integer of more than {_MAX_INT_DIGITS} digits")
        return value
    if isinstance(value, str):
        return _clean_str(value)
    if depth >= MAX_DEPTH:
        raise _invalid(f"event is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, Mapping):
        return {_clean_str(str(k)): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitize(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, uuid.UUID):
        return str(value)
    return _clean_str(str(value))


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond % 1000 == 0 else "microseconds")
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def iso_timestamp(moment: datetime) -> str:
    """ISO-8601 with an explicit offset (``Z`` for UTC), millisecond precision when exact."""
    return _iso(moment)


def _coerce_id(raw: Mapping[str, Any], key: str, *, strict: bool) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    if not strict:
        return None
    if isinstance(value, float):
        raise _invalid(f'"{key}" must be a string or a whole number, got a fractional or non-finite number')
    raise _invalid(f'"{key}" must be a string or a number, got {json_type(value)}')


def _object(raw: Mapping[str, Any], key: str, where: str, *, strict: bool) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return _EMPTY
    if type(value) is dict or isinstance(value, Mapping):  # the exact type first: ABC checks are slow
        return value
    if strict:
        raise _invalid(f'"{where}" must be an object, got {json_type(value)}')
    return _EMPTY


def _parse_timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and 10 <= len(value.strip()) <= 40:
        try:
            moment = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            return None
    else:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def validate(obj: object) -> SegmentEvent:
    """A decoded value → a SegmentEvent. Raises InvalidEvent(INVALID_PAYLOAD) when it is not usable."""
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise _invalid(f"event is not a JSON object (got {json_type(obj)})")
    type_value = obj.get("type")
    source_key = "type"
    if type_value is None:
        type_value, source_key = obj.get("action"), "action"
    if type_value is None:
        raise _invalid('event has no "type" (or "action") field: not a Segment event')
    if not isinstance(type_value, str):
        raise _invalid(f'"{source_key}" must be a string, got {json_type(type_value)}')
    event_type = type_value.strip().lower()
    if not event_type:
        raise _invalid(f'"{source_key}" is empty: not a Segment event')
    strict = event_type in SUPPORTED_TYPES

    data = _sanitize(obj, 0)
    context = _object(data, "context", "context", strict=strict)
    timestamp: datetime | None = None
    timestamp_text: str | None = None
    for key in _TIMESTAMP_FIELDS:
        if data.get(key) is not None:
            timestamp_text = str(data[key])[:64]
            timestamp = _parse_timestamp(obj.get(key))
            break

    return SegmentEvent(
        type=_clean_str(event_type),
        message_id=_coerce_id(data, "messageId", strict=False),
        user_id=_coerce_id(data, "userId", strict=strict),
        anonymous_id=_coerce_id(data, "anonymousId", strict=strict),
        group_id=_coerce_id(data, "groupId", strict=strict),
        event=_coerce_id(data, "event", strict=strict and event_type == "track"),
        traits=_object(data, "traits", "traits", strict=strict),
        context_traits=_object(context, "traits", "context.traits", strict=strict),
        properties=_object(data, "properties", "properties", strict=strict and event_type == "track"),
        timestamp=timestamp,
        timestamp_text=timestamp_text,
        raw=obj,
    )


# --- the Kafka key --------------------------------------------------------------------------------------


def event_key(record_key: bytes | None, event: Mapping[str, Any] | SegmentEvent) -> str | None:
    """The ordering key: the Kafka record key, else userId, else anonymousId, else None."""
    if record_key:
        return bytes(record_key).decode("utf-8", "replace")
    if isinstance(event, SegmentEvent):
        return event.user_id or event.anonymous_id
    for key in ("userId", "anonymousId"):
        value = _coerce_id(event, key, strict=False)
        if value is not None:
            return _clean_str(value)
    return None
