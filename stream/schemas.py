"""Avro writer schemas by id: the schema-registry seam, and the local schemas shipped in `topics/schemas/`.

    Schemas                  cached(id): the parsed schema or None, no I/O; load(id): fetch it (async)
    ├── RegistrySchemas      GET <SCHEMA_REGISTRY_URL>/schemas/ids/<id> (Confluent's REST API), basic auth
    └── LocalSchemas         the files topics/schemas/<id>-<name>.avsc, all read at start-up

Both serve the Confluent wire format's schema id (magic byte 0, 4-byte big-endian id, Avro binary): a
producer without a registry frames its records with the id of a local file (docs/semantics.md, "Avro").

The registry's answers, translated here (nothing above this module sees an httpx type):

    answer                                           becomes                      the record
    ───────────────────────────────────────────────  ───────────────────────────  ─────────────────────────
    200 with an Avro schema                          the parsed schema, cached     decoded
    404 with error_code 40403 (no such schema id)    InvalidEvent(invalid_payload) dead-lettered
    200 with a JSON/Protobuf schema, references,     InvalidEvent(invalid_payload) dead-lettered
      or an unusable schema
    no answer, timeout, 5xx, 429, any other 404      SchemaUnavailable             retried (Transient)
    401, 403                                         SchemaRegistryRefused (fatal) the service stops

An id the registry does not know is permanent: ids are issued by the registry and never reused, so an id
it never issued will not resolve later either (a record written against another registry, or garbage after
a zero byte). A 404 without 40403 is a wrong path in SCHEMA_REGISTRY_URL, not an unknown id: dead-lettering
on it would empty the topic into the dead-letter topic, so it is transient (and start-up refuses such a URL).

Why not confluent-kafka's AsyncSchemaRegistryClient: it keeps every schema it fetched in plain dicts (no
bound), and retries each request itself with waits, while the engine owns retries. The one endpoint we need
is small; the tests write records with Confluent's own AvroSerializer to show the formats agree.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from importlib.resources.abc import Traversable
from typing import Any, Final, Protocol

import httpx
import structlog

from stream.errors import ConfigError, InvalidEvent, SchemaRegistryRefused, SchemaUnavailable
from stream.events import parse_avro_schema
from stream.outcomes import DlqReason
from stream.secret import Secret
from stream.zendesk.cache import LruCache

log = structlog.get_logger("stream.schemas")

DEFAULT_CACHE_SIZE: Final = 1000  # parsed schemas kept; a topic rarely sees more than a few ids
TIMEOUT_S: Final = 10.0
STARTUP_DELAYS_S: Final = (1.0, 3.0)  # between the attempts to reach the registry at start-up
NOT_FOUND: Final = 40403  # Confluent's error_code for "Schema not found"
MAX_SCHEMA_ID: Final = 2**31 - 1
LOCAL_FILE: Final = re.compile(r"(?P<id>[0-9]{1,10})-(?P<name>[A-Za-z0-9_.-]+)\.avsc")
_ACCEPT: Final = (
    "application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json, application/json"
)


def _invalid(message: str) -> InvalidEvent:
    return InvalidEvent(DlqReason.INVALID_PAYLOAD, message)


class Schemas(Protocol):
    """Where the writer schemas of Avro records come from."""

    description: str  # for logs and messages: the registry's URL, or the local directory

    def cached(self, schema_id: int) -> Any | None:
        """The parsed schema when it is at hand; None when `load` must fetch it first."""
        ...

    async def load(self, schema_id: int) -> Any:
        """The parsed schema. Raises InvalidEvent (no such id, not Avro), SchemaUnavailable (try again
        later) or SchemaRegistryRefused (credentials)."""
        ...

    async def check(self) -> None:
        """Start-up: raises ConfigError when the source cannot serve schemas."""
        ...

    async def close(self) -> None: ...


class LocalSchemas:
    """Schemas from files named `<id>-<name>.avsc`, the id being what records carry in their frame."""

    def __init__(self, *, schemas: Mapping[int, Any], description: str) -> None:
        self._schemas = dict(schemas)
        self.description = description

    @classmethod
    def from_directory(cls, directory: Traversable) -> LocalSchemas:
        """Every `.avsc` file of `directory` (none when it does not exist). Raises ConfigError for a file
        not named `<id>-<name>.avsc`, two files with one id, or a file that is not an Avro schema."""
        schemas: dict[int, Any] = {}
        names: dict[int, str] = {}
        files = sorted(directory.iterdir(), key=lambda f: f.name) if directory.is_dir() else []
        for file in files:
            if not file.name.endswith(".avsc"):
                continue
            named = LOCAL_FILE.fullmatch(file.name)
            if named is None or not 0 < int(named["id"]) <= MAX_SCHEMA_ID:
                raise ConfigError(
                    f"local Avro schema {file.name}: expected the name <id>-<name>.avsc, the id a whole "
                    f"number from 1 to {MAX_SCHEMA_ID}"
                )
            schema_id = int(named["id"])
            if schema_id in schemas:
                raise ConfigError(
                    f"local Avro schemas {names[schema_id]} and {file.name} have the same id {schema_id}"
                )
            try:
                schemas[schema_id] = parse_avro_schema(file.read_text(encoding="utf-8"))
            except InvalidEvent as err:
                raise ConfigError(f"local Avro schema {file.name}: {err.message}") from None
            names[schema_id] = file.name
        return cls(schemas=schemas, description=f"local schemas ({', '.join(names.values()) or 'none'})")

    @property
    def ids(self) -> list[int]:
        return sorted(self._schemas)

    def cached(self, schema_id: int) -> Any | None:
        return self._schemas.get(schema_id)

    async def load(self, schema_id: int) -> Any:
        schema = self._schemas.get(schema_id)
        if schema is None:
            raise _invalid(
                f"schema id {schema_id} has no local schema file topics/schemas/{schema_id}-<name>.avsc "
                f"(there are: {', '.join(map(str, self.ids)) or 'none'})"
            )
        return schema

    async def check(self) -> None:
        if not self._schemas:
            raise ConfigError(
                "STREAM_INPUT_FORMAT: Avro input needs SCHEMA_REGISTRY_URL or schema files in "
                "topics/schemas/, and there are neither"
            )

    async def close(self) -> None:
        return None


class RegistrySchemas:
    """A Confluent-compatible schema registry (Confluent's, Apicurio's `/apis/ccompat/v7`, Redpanda's…),
    its answers kept in a bounded LRU cache; concurrent loads of one id share one request."""

    def __init__(
        self,
        *,
        url: str,
        user_info: Secret | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
        timeout_s: float = TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.description = f"the schema registry at {self.url}"
        self._has_credentials = user_info is not None
        auth = None
        if user_info is not None:
            user, _, password = user_info.reveal().partition(":")
            auth = httpx.BasicAuth(user, password)
        self._http = httpx.AsyncClient(
            base_url=self.url + "/",
            auth=auth,
            timeout=timeout_s,
            headers={"Accept": _ACCEPT},
            transport=transport,
        )
        self._cache: LruCache[int, Any] = LruCache(cache_size)
        self._loading: dict[int, asyncio.Future[Any]] = {}
        self.requests = 0

    def cached(self, schema_id: int) -> Any | None:
        return self._cache.get(schema_id)

    async def load(self, schema_id: int) -> Any:
        schema = self._cache.get(schema_id)
        if schema is not None:
            return schema
        loading = self._loading.get(schema_id)
        if loading is None:
            loading = self._loading[schema_id] = asyncio.ensure_future(self._fetch(schema_id))
            loading.add_done_callback(lambda done: self._settled(schema_id, done))
        return await asyncio.shield(loading)

    def _settled(self, schema_id: int, done: asyncio.Future[Any]) -> None:
        self._loading.pop(schema_id, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter has it (or was cancelled)

    async def _fetch(self, schema_id: int) -> Any:
        self.requests += 1
        try:
            response = await self._http.get(f"schemas/ids/{schema_id}")
        except httpx.HTTPError as err:
            raise SchemaUnavailable(
                f"{self.description} did not answer for schema id {schema_id} ({type(err).__name__}: {err})"
            ) from None
        status = response.status_code
        if status in (401, 403):
            raise SchemaRegistryRefused(
                f"{self.description} refused our credentials ({status}): "
                + ("check" if self._has_credentials else "set")
                + " SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
            )
        body = _json_object(response)
        if status == 404 and body.get("error_code") == NOT_FOUND:
            raise _invalid(
                f"schema id {schema_id} is not known to {self.description} (40403): a registry never "
                "reuses or back-fills ids, so this record cannot be decoded later either"
            )
        if status != 200:
            raise SchemaUnavailable(
                f"{self.description} answered {status} for schema id {schema_id}"
                + (f": {str(body.get('message'))[:200]}" if body.get("message") else "")
            )
        kind = body.get("schemaType") or "AVRO"
        if kind != "AVRO":
            raise _invalid(f"schema id {schema_id} is a {str(kind)[:20]} schema, not Avro")
        if body.get("references"):
            raise _invalid(
                f"schema id {schema_id} refers to other schemas (schema references), which this service "
                "does not resolve"
            )
        text = body.get("schema")
        if not isinstance(text, str):
            raise SchemaUnavailable(f"{self.description} answered 200 without a schema for id {schema_id}")
        try:
            parsed = parse_avro_schema(text)
        except InvalidEvent as err:
            raise _invalid(f"schema id {schema_id}: {err.message}") from None
        self._cache.put(schema_id, parsed)
        log.info("schema loaded", schema_id=schema_id, registry=self.url)
        return parsed

    async def check(self) -> None:
        """The registry answers Confluent's `GET /schemas/types` and accepts our credentials; a few tries
        over seconds, then one line naming the setting (start-up stops rather than retry every record)."""
        for delay in (*STARTUP_DELAYS_S, None):
            try:
                response = await self._http.get("schemas/types")
            except httpx.HTTPError as err:
                problem = f"did not answer ({type(err).__name__}: {err})"
            else:
                status = response.status_code
                if status in (401, 403):
                    setting = "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO"
                    raise ConfigError(
                        f"{setting}: {self.description} refused "
                        + ("the credentials" if self._has_credentials else "a request without credentials")
                        + f" ({status})"
                    )
                if status == 200 and isinstance(_json(response), list):
                    return
                if status < 500 and status != 429:
                    raise ConfigError(
                        f"SCHEMA_REGISTRY_URL: {self.url} answered {status} to GET schemas/types: not the "
                        "root of a Confluent-compatible registry API (Apicurio serves it under "
                        "/apis/ccompat/v7)"
                    )
                problem = f"answered {status}"
            if delay is None:
                raise ConfigError(f"SCHEMA_REGISTRY_URL: {self.description} {problem}")
            log.warning("schema registry not reachable yet, trying again", problem=problem, in_s=delay)
            await asyncio.sleep(delay)

    async def close(self) -> None:
        await self._http.aclose()


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    body = _json(response)
    return body if isinstance(body, dict) else {}
