"""The registry path against a real Confluent-compatible registry: Apicurio Registry (ops/registry).

Confluent's own client registers and fetches Avro schemas, and its AvroSerializer / AvroDeserializer
write and read the Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro binary), with
HTTP basic auth on. Needs the client's schema-registry extras (authlib, cachetools) installed.
"""

from __future__ import annotations

import io
import json
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from tests.support.registry import RunningRegistry, native_registry

IDENTIFY_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Identify",
        "namespace": "zendesk_stream.test",
        "fields": [
            {"name": "userId", "type": "string"},
            {"name": "email", "type": ["null", "string"], "default": None},
            {"name": "traits", "type": {"type": "map", "values": "string"}},
            {"name": "sentAt", "type": "long"},
        ],
    }
)
RECORD: dict[str, Any] = {
    "userId": "u-42",
    "email": "ada@example.com",
    "traits": {"name": "Ada", "plan": "pro"},
    "sentAt": 1_767_225_600_000,
}
TEST_USER = "stream-tests"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """One Apicurio Registry for the module, basic auth on."""
    password = f"pw-{uuid.uuid4().hex}"
    with native_registry(tmp_path_factory.mktemp("registry"), user=TEST_USER, password=password) as running:
        yield running


@pytest.fixture(autouse=True)
def _close_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every registry client a test makes is closed when it ends (their HTTP pools hold sockets)."""
    made: list[SchemaRegistryClient] = []

    def making(conf: dict[str, Any]) -> SchemaRegistryClient:
        client = SchemaRegistryClient(conf)
        made.append(client)
        return client

    monkeypatch.setitem(globals(), "registry_client", making)
    yield
    for client in made:
        client.close()


def registry_client(conf: dict[str, Any]) -> SchemaRegistryClient:
    raise AssertionError("replaced by the _close_clients fixture")


def new_subject(topic: str | None = None) -> str:
    return f"{topic or 't-' + uuid.uuid4().hex[:10]}-value"


def test_an_avro_schema_registered_under_a_subject_is_served_by_id_and_as_latest(
    registry: RunningRegistry,
) -> None:
    client = registry_client(registry.client_conf())
    subject = new_subject()

    schema_id = client.register_schema(subject, Schema(IDENTIFY_SCHEMA, schema_type="AVRO"))

    fresh = registry_client(registry.client_conf())  # no cache: every answer comes from the registry
    by_id = fresh.get_schema(schema_id)
    latest = fresh.get_latest_version(subject)
    assert json.loads(by_id.schema_str or "null") == json.loads(IDENTIFY_SCHEMA)
    assert by_id.schema_type in ("AVRO", None)  # Confluent omits the type for Avro, its default
    assert latest.schema_id == schema_id
    assert latest.version == 1
    assert latest.subject == subject
    assert subject in fresh.get_subjects()
    # The same schema again is the same id, not a new version.
    assert fresh.register_schema(subject, Schema(IDENTIFY_SCHEMA, schema_type="AVRO")) == schema_id


def test_avro_serializer_writes_the_confluent_wire_format_and_a_fresh_client_reads_it_back(
    registry: RunningRegistry,
) -> None:
    topic = f"t-{uuid.uuid4().hex[:10]}"
    ctx = SerializationContext(topic, MessageField.VALUE)
    serializer = AvroSerializer(registry_client(registry.client_conf()), IDENTIFY_SCHEMA)

    payload = serializer(RECORD, ctx)

    assert payload is not None
    magic, schema_id = struct.unpack(">bI", payload[:5])
    assert magic == 0
    lookup = registry_client(registry.client_conf())
    assert lookup.get_latest_version(new_subject(topic)).schema_id == schema_id  # auto-registered

    # The registry's own answer, over plain HTTP, decodes the Avro body: no client magic involved.
    answer = httpx.get(
        f"{registry.url}/schemas/ids/{schema_id}", auth=(TEST_USER, registry.password or ""), timeout=10
    )
    assert answer.status_code == 200
    writer = fastavro.parse_schema(json.loads(answer.json()["schema"]))
    assert fastavro.schemaless_reader(io.BytesIO(payload[5:]), writer, None) == RECORD

    deserializer = AvroDeserializer(registry_client(registry.client_conf()))
    assert deserializer(payload, ctx) == RECORD


def test_requests_without_the_right_credentials_are_refused(registry: RunningRegistry) -> None:
    subject = new_subject()
    anonymous = registry_client({"url": registry.url})
    wrong = registry_client({"url": registry.url, "basic.auth.user.info": f"{TEST_USER}:not-it"})

    for client in (anonymous, wrong):
        with pytest.raises(SchemaRegistryError) as refused:
            client.register_schema(subject, Schema(IDENTIFY_SCHEMA, schema_type="AVRO"))
        assert refused.value.http_status_code == 401
        with pytest.raises(SchemaRegistryError) as refused:
            client.get_subjects()
        assert refused.value.http_status_code == 401
    assert subject not in registry_client(registry.client_conf()).get_subjects()


def test_schema_ids_survive_a_restart_so_records_on_a_topic_still_resolve(tmp_path: Path) -> None:
    data_dir = tmp_path / "registry"
    subject = new_subject()
    with native_registry(data_dir) as first:
        schema_id = registry_client(first.client_conf()).register_schema(
            subject, Schema(IDENTIFY_SCHEMA, schema_type="AVRO")
        )

    with native_registry(data_dir) as again:
        client = registry_client(again.client_conf())
        assert json.loads(client.get_schema(schema_id).schema_str or "null") == json.loads(IDENTIFY_SCHEMA)
        other = client.register_schema(new_subject(), Schema('"string"', schema_type="AVRO"))
        assert other != schema_id  # a new schema never reuses an id from before the restart
