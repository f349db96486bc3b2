"""The request and reply types handlers work with (the ASGI plumbing lives in :mod:`app`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from stream.simulator import errors
from stream.simulator.errors import ZendeskError
from stream.simulator.views import Urls

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass(slots=True)
class Request:
    method: str
    path: str  # without the ``.json`` suffix
    query_string: bytes
    body: bytes
    urls: Urls
    now: float
    authorization: bytes | None = None
    content_type: str = ""
    params: tuple[str, ...] = ()
    _query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        if self._query is None:
            self._query = dict(parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True))
        return self._query

    def json(self) -> Any:
        """The parsed body; a body that is not JSON gets Zendesk's 400."""
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as error:
            raise errors.invalid_json() from error

    def id_param(self, index: int = 0) -> int:
        return int(self.params[index])

    def id_list(self, name: str) -> list[int]:
        """A comma-separated list of numeric ids in the query (``ids=1,2``); anything else is a 400."""
        raw = self.string_list(name)
        if not all(part.isascii() and part.isdigit() for part in raw):
            raise ZendeskError(
                400, {"error": "InvalidValue", "description": f"{name} must be comma-separated ids"}
            )
        return [int(part) for part in raw]

    def string_list(self, name: str) -> list[str]:
        return [part for part in self.query.get(name, "").split(",") if part]


@dataclass(slots=True)
class Reply:
    status: int
    body: Any = None  # dict/list → JSON, str → as is, None → empty
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON_TYPE
    # For the request log: who the request was about and what it changed.
    user_id: int | None = None
    user_key: str | None = None
    change: dict[str, Any] | None = None
    auth: str | None = None  # how the request authenticated: "api_token", "oauth_token", "oauth:<client>"

    def encoded_body(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return orjson.dumps(self.body)


def error_reply(error: errors.ZendeskError) -> Reply:
    return Reply(
        status=error.status, body=error.body, headers=list(error.headers), content_type=error.content_type
    )
