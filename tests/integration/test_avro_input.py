"""Avro input against the real parts: Apicurio Registry (basic auth on), Kafka, the Zendesk simulator.

Records are written with Confluent's own client (SchemaRegistryClient, AvroSerializer), so the wire format
and the registry API we read are the ones Confluent producers use.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from stream.decoding import Decoder, InputFormat
from stream.delivery import Destination
from stream.engine.records import InboundRecord
from stream.errors import ConfigError, InvalidEvent, SchemaRegistryRefused, SchemaUnavailable
from stream.events import validate
from stream.mapping.settings import DestinationSettings
from stream.outcomes import Transient
from stream.schemas import RegistrySchemas
from stream.secret import Secret
from stream.simulator.testing import RunningSimulator
from stream.topics import definitions_dir
from stream.zendesk import ZendeskClient, connection_from
from tests.support.kafka import (
    consume,
    create_service_topics,
    dlq_topic_of,
    headers_of,
    produce,
    unique_topic,
)
from tests.support.registry import RunningRegistry, load_registry_launcher, native_registry
from tests.support.segment import group, identify, track
from tests.support.service import log_events, run_to_end, service_env

SCHEMA_TEXT = (definitions_dir() / "schemas" / "1-segment-event.avsc").read_text()
SCHEMA = json.loads(SCHEMA_TEXT)
JSON_FIELDS = ("traits", "properties", "context")
USER = "stream-tests"
SETTINGS = {"events": ["Article Completed"]}


def in_schema_shape(event: dict[str, Any]) -> dict[str, Any]:
    """The shipped schema writes traits, properties and context as JSON text."""
    return {k: json.dumps(v) if k in JSON_FIELDS else v for k, v in event.items()}


def local_frame(event: dict[str, Any], schema_id: int = 1) -> bytes:
    """What a producer without a registry writes: the frame with a local schema's id, then Avro."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(SCHEMA), in_schema_shape(event))
    return b"\x00" + schema_id.to_bytes(4, "big") + buffer.getvalue()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    password = f"pw-{uuid.uuid4().hex}"
    with native_registry(tmp_path_factory.mktemp("registry"), user=USER, password=password) as running:
        yield running


class Confluent:
    """Confluent's registry client and Avro serializer for one topic: what a Confluent producer writes."""

    def __init__(self, registry: RunningRegistry, topic: str) -> None:
        self.client = SchemaRegistryClient(registry.client_conf())
        self.serializer = AvroSerializer(self.client, SCHEMA_TEXT)
        self.context = SerializationContext(topic, MessageField.VALUE)

    def __call__(self, event: dict[str, Any]) -> bytes:
        payload = self.serializer(in_schema_shape(event), self.context)
        assert isinstance(payload, bytes)
        return payload

    def close(self) -> None:
        self.client.close()


def registry_schemas(registry: RunningRegistry, *, password: str | None = None) -> RegistrySchemas:
    return RegistrySchemas(
        url=registry.url,
        user_info=Secret(f"{USER}:{password if password is not None else registry.password}"),
    )


def unused_url() -> str:
    return f"http://127.0.0.1:{load_registry_launcher().free_port()}/apis/ccompat/v7"


def record(value: bytes, offset: int = 0) -> InboundRecord:
    return InboundRecord(topic="t", partition=0, offset=offset, key=b"u-1", value=value)


# --- the seam ---------------------------------------------------------------------------------------


def test_a_record_confluents_serializer_wrote_decodes_through_the_registry_once_per_schema_id(
    registry: RunningRegistry,
) -> None:
    confluent = Confluent(registry, unique_topic("avro"))
    event = identify("u-1", name="Ada", email="ada@example.com", plan="pro", logins=5)
    payload = confluent(event)
    confluent.close()
    schema_id = int.from_bytes(payload[1:5], "big")

    async def scenario() -> tuple[dict[str, Any], int, int | None]:
        schemas = registry_schemas(registry)
        decoder = Decoder(input_format=InputFormat.AVRO, schemas=schemas)
        try:
            missing = decoder.missing(payload)
            await asyncio.gather(*(decoder.load(schema_id) for _ in range(5)))  # one request for all
            decoded = decoder.decode(payload)
            return decoded, schemas.requests, missing
        finally:
            await schemas.close()

    decoded, requests, missing = asyncio.run(scenario())

    assert missing == schema_id
    assert validate(decoded) == validate(event)
    assert requests == 1


def test_an_id_the_registry_does_not_know_is_invalid_payload_and_says_why(registry: RunningRegistry) -> None:
    async def scenario() -> InvalidEvent:
        schemas = registry_schemas(registry)
        try:
            with pytest.raises(InvalidEvent) as caught:
                await schemas.load(987_654)
            return caught.value
        finally:
            await schemas.close()

    error = asyncio.run(scenario())

    assert "schema id 987654 is not known to the schema registry" in error.message
    assert "cannot be decoded later either" in error.message


def test_wrong_credentials_stop_start_up_and_a_refusal_during_the_run_is_fatal(
    registry: RunningRegistry,
) -> None:
    async def scenario() -> tuple[str, str]:
        schemas = registry_schemas(registry, password="not-it")
        try:
            with pytest.raises(ConfigError) as at_start:
                await schemas.check()
            with pytest.raises(SchemaRegistryRefused) as later:
                await schemas.load(1)
            return str(at_start.value), str(later.value)
        finally:
            await schemas.close()

    at_start, later = asyncio.run(scenario())

    assert at_start.startswith("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO: ")
    assert "refused the credentials (401)" in at_start
    assert "refused our credentials (401)" in later
    assert "not-it" not in at_start + later


def test_a_url_without_the_api_path_is_refused_at_start_up_and_never_dead_letters(
    registry: RunningRegistry,
) -> None:
    root = registry.url.removesuffix("/apis/ccompat/v7")

    async def scenario() -> tuple[str, str]:
        schemas = RegistrySchemas(url=root, user_info=Secret(f"{USER}:{registry.password}"))
        try:
            with pytest.raises(ConfigError) as at_start:
                await schemas.check()
            with pytest.raises(SchemaUnavailable) as later:  # a 404 without 40403: not an unknown id
                await schemas.load(1)
            return str(at_start.value), str(later.value)
        finally:
            await schemas.close()

    at_start, later = asyncio.run(scenario())

    assert at_start.startswith("SCHEMA_REGISTRY_URL: ")
    assert "not the root of a Confluent-compatible registry API" in at_start
    assert "answered 404 for schema id 1" in later


def test_an_unreachable_registry_makes_the_record_transient_not_a_dead_letter() -> None:
    event = track("u-1", "Article Completed", title="Tracking")
    value = local_frame(event)  # schema id 1, which this registry cannot be asked about

    async def scenario() -> tuple[Any, Any]:
        schemas = RegistrySchemas(url=unused_url(), timeout_s=2)
        decoder = Decoder(input_format=InputFormat.AVRO, schemas=schemas)
        connection = connection_from("acme", "http://127.0.0.1:9", "a@example.com", "token", None)
        try:
            async with ZendeskClient(connection=connection) as client:  # never called
                destination = Destination(
                    client=client, settings=DestinationSettings.parse(SETTINGS), decoder=decoder
                )
                outcome, _ = await destination.process([record(value)], None)
                held = await destination.was_delivered(record(value), since_s=0)
                return outcome, held
        finally:
            await schemas.close()

    outcome, held = asyncio.run(scenario())

    assert isinstance(outcome, Transient), outcome
    assert "did not answer for schema id 1" in outcome.message
    assert isinstance(held, Transient)


def test_a_track_whose_schema_was_not_loaded_for_its_delivery_id_is_tried_again_then_identified(
    registry: RunningRegistry,
) -> None:
    confluent = Confluent(registry, unique_topic("avro"))
    payload = confluent(track("u-1", "Article Completed", title="Tracking"))
    confluent.close()

    async def scenario() -> tuple[bytes | None, Any, bytes | None]:
        schemas = registry_schemas(registry)
        connection = connection_from("acme", "http://127.0.0.1:9", "a@example.com", "token", None)
        try:
            async with ZendeskClient(connection=connection) as client:
                destination = Destination(
                    client=client,
                    settings=DestinationSettings.parse(SETTINGS),
                    decoder=Decoder(input_format=InputFormat.AVRO, schemas=schemas),
                )
                before = destination.delivery_id(record(payload))
                outcome, _ = await destination.process([record(payload)], None)
                return before, outcome, destination.delivery_id(record(payload))
        finally:
            await schemas.close()

    before, outcome, after = asyncio.run(scenario())

    assert before is None
    assert isinstance(outcome, Transient)
    assert "tried again, so that the check against tracks already delivered sees it" in outcome.message
    assert after is not None and after.startswith(b"m:")


# --- end to end ---------------------------------------------------------------------------------------


def zendesk_state(simulator: RunningSimulator) -> dict[str, Any]:
    """What Zendesk holds, without the ids it assigned."""
    state = simulator.control.state()
    users = {u["id"]: u["external_id"] for u in state["users"]}
    orgs = {o["id"]: o["external_id"] for o in state["organizations"]}
    return {
        "users": sorted(
            (u["external_id"], u["name"], u["email"], json.dumps(u["user_fields"], sort_keys=True))
            for u in state["users"]
        ),
        "organizations": sorted(
            (o["external_id"], o["name"], json.dumps(o["organization_fields"], sort_keys=True))
            for o in state["organizations"]
        ),
        "memberships": sorted(
            (users[m["user_id"]], orgs[m["organization_id"]]) for m in state["organization_memberships"]
        ),
        "events": sorted(
            json.dumps({k: e.get(k) for k in ("type", "source", "properties", "created_at")}, sort_keys=True)
            for e in state["events"]
        ),
    }


def outcomes(stderr: str) -> list[tuple[str, str | None]]:
    return sorted(
        (line["outcome"], line.get("reason")) for line in log_events(stderr) if line.get("event") == "event"
    )


EVENTS = [
    identify("u-1", name="Ada Lovelace", email="ada@example.com", plan="premium", logins=5, vip=True),
    identify("u-2", name="Bo", email="bo@example.com", tags=["a", "b"]),
    group("u-1", "org-9", name="Initech", employees=329, **{"total billed": 830}),
    track("u-1", "Article Completed", title="How to Create a Tracking Plan", score=9.5),
    track("u-2", "Article Completed", title="Second", nested={"deep": [1, 2]}),
    track("u-1", "Signed Out"),  # not listed in events: skipped
    {"type": "page", "userId": "u-1", "name": "Home", "messageId": str(uuid.uuid4())},  # skipped
]


@pytest.mark.kafka
def test_the_same_events_in_json_in_avro_through_the_registry_and_with_local_schemas_leave_the_same_zendesk(
    kafka_bootstrap: str, fast_simulator: RunningSimulator, registry: RunningRegistry, tmp_path: Path
) -> None:
    keyed = [(event["userId"], event) for event in EVENTS]
    runs: dict[str, tuple[dict[str, Any], list[tuple[str, str | None]]]] = {}
    dead: dict[str, Any] = {}
    loaded: dict[str, int] = {}

    def run(name: str, values: list[bytes], broken: bytes, **env: str) -> None:
        fast_simulator.control.reset()
        topic = unique_topic(f"avro-{name}")
        create_service_topics(kafka_bootstrap, topic)
        produce(kafka_bootstrap, topic, [(key, value) for (key, _), value in zip(keyed, values, strict=True)])
        produce(kafka_bootstrap, topic, [("u-9", broken)])
        result = run_to_end(service_env(kafka_bootstrap, topic, fast_simulator, SETTINGS, **env))
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = (zendesk_state(fast_simulator), outcomes(result.stderr))
        loaded[name] = sum(line.get("event") == "schema loaded" for line in log_events(result.stderr))
        dead[name] = headers_of(consume(kafka_bootstrap, dlq_topic_of(topic), count=1)[0])

    run("json", [json.dumps(event).encode() for _, event in keyed], b"{not json")
    confluent = Confluent(registry, unique_topic("subject"))
    try:
        registered = [confluent(event) for _, event in keyed]
    finally:
        confluent.close()
    run(
        "registry",
        registered,
        b"\x00" + (987_654).to_bytes(4, "big") + b"\x02",  # an id the registry never issued
        STREAM_INPUT_FORMAT="avro",
        SCHEMA_REGISTRY_URL=registry.url,
        SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=f"{USER}:{registry.password}",
    )
    run(
        "local",
        [local_frame(event) for _, event in keyed],
        local_frame(EVENTS[0])[:9],
        STREAM_INPUT_FORMAT="auto",
    )

    state, outcome = runs["json"]
    assert [name for name, (s, o) in runs.items() if (s, o) != (state, outcome)] == []
    assert (
        len(state["users"]) == 2 and len(state["events"]) == 2 and state["memberships"] == [("u-1", "org-9")]
    )
    assert outcome == sorted(
        [("delivered", None)] * 5
        + [
            ("skipped", "event_not_enabled"),
            ("skipped", "unsupported_type"),
            ("dead_lettered", "invalid_payload"),
        ]
    )
    assert {name: headers["zs.error.reason"] for name, headers in dead.items()} == dict.fromkeys(
        runs, b"invalid_payload"
    )
    assert loaded == {"json": 0, "registry": 1, "local": 0}  # one request for the schema, none per record
    assert b"not known to the schema registry" in dead["registry"]["zs.error.message"]
    assert b"cannot be read with the Avro writer schema" in dead["local"]["zs.error.message"]


@pytest.mark.kafka
def test_an_unreachable_registry_stops_start_up_with_one_line(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    topic = unique_topic("avro-down")
    create_service_topics(kafka_bootstrap, topic)
    env = service_env(
        kafka_bootstrap,
        topic,
        fast_simulator,
        SETTINGS,
        STREAM_INPUT_FORMAT="avro",
        SCHEMA_REGISTRY_URL=unused_url(),
    )

    result = run_to_end(env)

    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("zendesk-stream: SCHEMA_REGISTRY_URL: the schema registry at http://127.0.0.1:")
    assert "did not answer" in last
