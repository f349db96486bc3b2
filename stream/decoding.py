"""A record's value → the event object, in the topic's input format (`STREAM_INPUT_FORMAT`).

    json   every value is JSON (the default)
    avro   every value is Avro in the Confluent wire format: magic byte 0, the 4-byte big-endian schema id,
           the Avro binary written with that schema
    auto   a value starting with the magic byte 0 is Avro as above (JSON text never starts with a zero
           byte); any other is JSON

Decoding is synchronous and does no I/O: a schema that is not at hand raises `SchemaNotLoaded`, and the
caller awaits `load` (which asks the registry, `stream.schemas`) before it decodes again. Local schemas
are always at hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from importlib.resources.abc import Traversable
from typing import Any, Final

from stream.errors import InvalidEvent
from stream.events import CONFLUENT_MAGIC, confluent_frame, decode_json, read_avro
from stream.outcomes import DlqReason
from stream.schemas import LocalSchemas, RegistrySchemas, Schemas
from stream.secret import Secret
from stream.topics import definitions_dir

_MAGIC: Final = bytes([CONFLUENT_MAGIC])


class InputFormat(StrEnum):
    JSON = "json"
    AVRO = "avro"
    AUTO = "auto"


class SchemaNotLoaded(Exception):  # a signal between decode and load, not an error
    """The value's writer schema must be loaded (`Decoder.load`) before the value can be decoded."""

    def __init__(self, schema_id: int) -> None:
        super().__init__(f"schema id {schema_id} is not loaded")
        self.schema_id = schema_id


class Decoder:
    """Values of one input format; `schemas` serves the Avro writer schemas (needed unless JSON)."""

    def __init__(
        self, *, input_format: InputFormat = InputFormat.JSON, schemas: Schemas | None = None
    ) -> None:
        if input_format is not InputFormat.JSON and schemas is None:
            raise ValueError("Avro input needs schemas")
        self.input_format = input_format
        self._schemas = schemas

    def is_avro(self, value: bytes | None) -> bool:
        """Whether the value is read as Avro (by the format, or in `auto` by its first byte)."""
        if self.input_format is InputFormat.JSON:
            return False
        return self.input_format is InputFormat.AVRO or (value is not None and value[:1] == _MAGIC)

    def decode(self, value: bytes | None) -> dict[str, Any]:
        """The event object. Raises InvalidEvent (dead-letter it), or SchemaNotLoaded (load, then again)."""
        if not self.is_avro(value):
            try:
                return decode_json(value or b"")
            except InvalidEvent:
                if value is not None and value[:1] == _MAGIC and len(value) > 5:
                    raise InvalidEvent(
                        DlqReason.INVALID_PAYLOAD,
                        "value is not JSON but looks like Avro in the Confluent wire format (magic byte 0): "
                        "STREAM_INPUT_FORMAT=avro or auto reads it",
                    ) from None
                raise
        if value is None:
            raise InvalidEvent(DlqReason.INVALID_PAYLOAD, "record has no value (a tombstone?): expected Avro")
        frame = confluent_frame(value)
        if frame is None:
            raise InvalidEvent(
                DlqReason.INVALID_PAYLOAD,
                "value is not in the Confluent wire format (it does not start with the magic byte 0): "
                "Avro input carries its schema id in front of the Avro binary",
            )
        schema_id, body = frame
        assert self._schemas is not None
        schema = self._schemas.cached(schema_id)
        if schema is None:
            raise SchemaNotLoaded(schema_id)
        return read_avro(body, schema)

    def missing(self, value: bytes | None) -> int | None:
        """The schema id to `load` before the value can be decoded; None when nothing is missing."""
        if self._schemas is None or not self.is_avro(value) or value is None:
            return None
        try:
            frame = confluent_frame(value)
        except InvalidEvent:
            return None
        if frame is None or self._schemas.cached(frame[0]) is not None:
            return None
        return frame[0]

    async def load(self, schema_id: int) -> None:
        """Raises InvalidEvent (no such schema), SchemaUnavailable or SchemaRegistryRefused."""
        assert self._schemas is not None
        await self._schemas.load(schema_id)


@dataclass(frozen=True, kw_only=True)
class InputSettings:
    """STREAM_INPUT_FORMAT and the schema registry (`stream.config.input_settings_from_env`)."""

    input_format: InputFormat = InputFormat.JSON
    registry_url: str | None = None
    registry_user_info: Secret | None = None


def open_schemas(settings: InputSettings, *, local: Traversable | None = None) -> Schemas | None:
    """Where Avro schemas come from: the registry when SCHEMA_REGISTRY_URL is set, else the local
    schema files (`local`, default topics/schemas/); None for JSON input. Raises ConfigError."""
    if settings.input_format is InputFormat.JSON:
        return None
    if settings.registry_url is not None:
        return RegistrySchemas(url=settings.registry_url, user_info=settings.registry_user_info)
    return LocalSchemas.from_directory(local if local is not None else definitions_dir() / "schemas")
