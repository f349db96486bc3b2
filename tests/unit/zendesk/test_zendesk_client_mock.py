from __future__ import annotations

import base64
import itertools
import json
import math
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest

from stream.errors import InvalidEvent, ZendeskConfigError
from stream.zendesk import (
    Ok,
    RateLimited,
    Rejected,
    Unavailable,
    UnavailableReason,
    ZendeskClient,
    connection_from,
    is_already_member,
    is_duplicate_field_key,
)
from stream.zendesk.governor import Governor

pytestmark = pytest.mark.anyio

TOKEN = "api-T0KEN-value"
OAUTH = "oauth-T0KEN-value"
BASE = "https://acme.zendesk.com"
Handler = Callable[[httpx.Request], httpx.Response]


def jr(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(
        status,
        content=content,
        headers={"content-type": "application/json; charset=utf-8", **(headers or {})},
    )


class Recorder:
    """A MockTransport that records requests and answers from a handler."""

    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._handler = handler
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self._handler(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make_client(
    handler: Handler,
    *,
    base_url: str | None = None,
    oauth: bool = False,
    max_pages: int = 100,
    governor: Governor | None = None,
) -> tuple[ZendeskClient, Recorder]:
    conn = (
        connection_from("acme", base_url, None, None, OAUTH)
        if oauth
        else connection_from("acme", base_url, "ops@example.com", TOKEN, None)
    )
    rec = Recorder(handler)
    ticks: Iterator[float] = itertools.count(0.0, 0.25)
    client = ZendeskClient(
        connection=conn,
        transport=rec.transport,
        clock=lambda: next(ticks),
        max_pages=max_pages,
        governor=governor,
    )
    return client, rec


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


USER = {
    "id": 6164039664282,
    "name": "Jane",
    "email": "jane@example.com",
    "external_id": "U-1",
    "active": True,
}


# --- headers and auth -----------------------------------------------------------------------------


async def test_headers_and_basic_auth() -> None:
    client, rec = make_client(lambda r: jr(201, {"user": USER}))
    async with client:
        result = await client.create_or_update_user({"name": "Jane", "email": "jane@example.com"})
    assert result == Ok(201, {"user": USER})
    req = rec.last
    assert req.method == "POST" and str(req.url) == f"{BASE}/api/v2/users/create_or_update"
    assert req.headers["accept"] == "application/json"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"].startswith("zendesk-stream/")
    scheme, _, encoded = req.headers["authorization"].partition(" ")
    assert scheme == "Basic" and base64.b64decode(encoded).decode() == f"ops@example.com/token:{TOKEN}"
    assert body_of(req) == {"user": {"name": "Jane", "email": "jane@example.com"}}


async def test_bearer_auth_and_no_content_type_on_get() -> None:
    client, rec = make_client(lambda r: jr(200, {"user": USER}), oauth=True)
    async with client:
        await client.show_user(6164039664282)
    assert rec.last.headers["authorization"] == f"Bearer {OAUTH}"
    assert "content-type" not in rec.last.headers
    assert rec.last.url.path == "/api/v2/users/6164039664282"


async def test_base_url_with_path_prefix_and_loopback() -> None:
    client, rec = make_client(lambda r: jr(200, {"user": USER}), base_url="http://127.0.0.1:8080/zd/")
    async with client:
        await client.show_user(1)
    assert str(rec.last.url) == "http://127.0.0.1:8080/zd/api/v2/users/1"


async def test_nan_and_infinity_rejected_before_sending() -> None:
    client, rec = make_client(lambda r: jr(201, {"user": USER}))
    async with client:
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(InvalidEvent) as info:
                await client.create_or_update_user({"name": "x", "user_fields": {"score": bad}})
            assert info.value.reason == "invalid_payload"
        with pytest.raises(InvalidEvent):
            await client.send_event({"event": {"properties": {"s": "\ud800"}}})
    assert rec.requests == []


async def test_unicode_is_sent_as_utf8() -> None:
    client, rec = make_client(lambda r: jr(202, {"status": "received"}))
    async with client:
        await client.send_event({"event": {"type": "Café ☕"}})
    assert rec.last.content == '{"event":{"type":"Café ☕"}}'.encode()


# --- users and the cache --------------------------------------------------------------------------


async def test_create_or_update_user_teaches_the_cache() -> None:
    answer = {**USER, "email": "primary@example.com", "external_id": "u-1"}
    client, _ = make_client(lambda r: jr(200, {"user": answer}))
    async with client:
        await client.create_or_update_user(
            {"name": "Jane", "email": "Second@Example.com", "external_id": "U-1"}
        )
    assert client.cache.user_id_by_external_id("u-1") == USER["id"]
    assert client.cache.user_id_by_email("primary@example.com") == USER["id"]
    assert client.cache.user_id_by_email("second@example.com") == USER["id"]


async def test_rejected_upsert_teaches_nothing() -> None:
    dup = {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {
            "email": [
                {
                    "description": "Email: a@b.c is already being used by another user",
                    "error": "DuplicateValue",
                }
            ]
        },
    }
    client, _ = make_client(lambda r: jr(422, dup))
    async with client:
        result = await client.create_or_update_user({"name": "A", "email": "a@b.c", "external_id": "x"})
    assert isinstance(result, Rejected) and result.status == 422 and result.error_code == "RecordInvalid"
    assert client.cache.user_id_by_external_id("x") is None


async def test_show_user_404_forgets_the_user() -> None:
    client, _ = make_client(lambda r: jr(404, {"error": "RecordNotFound", "description": "Not found"}))
    client.cache.remember_user_id(5, external_id="gone")
    async with client:
        result = await client.show_user(5)
    assert isinstance(result, Rejected) and result.error_code == "RecordNotFound"
    assert client.cache.user_id_by_external_id("gone") is None


@pytest.mark.parametrize("bad_id", [0, -1, True])
async def test_ids_are_validated(bad_id: int) -> None:
    client, rec = make_client(lambda r: jr(200, {}))
    async with client:
        with pytest.raises(ValueError, match="not a Zendesk id"):
            await client.show_user(bad_id)
    assert rec.requests == []


async def test_search_users_by_email_encodes_plus_and_hash() -> None:
    email = "Jane+tag#1@example.com"
    client, rec = make_client(lambda r: jr(200, {"users": [{**USER, "email": email.lower()}], "count": 1}))
    async with client:
        await client.search_users_by_email(email)
    url = rec.last.url
    assert url.path == "/api/v2/users/search"
    assert b"%2B" in url.query and b"%23" in url.query and b"+" not in url.query
    assert url.params["query"] == f'email:"{email}"'
    assert client.cache.user_id_by_email(email) == USER["id"]


async def test_search_users_by_email_escapes_quotes() -> None:
    client, rec = make_client(lambda r: jr(200, {"users": [], "count": 0}))
    async with client:
        await client.search_users_by_email('a"b@example.com')
    assert rec.last.url.params["query"] == 'email:"a\\"b@example.com"'


async def test_search_with_several_or_inexact_results_is_not_cached() -> None:
    users = [{**USER, "id": 1, "email": "x@example.com"}, {**USER, "id": 2, "email": "x@example.com"}]
    client, _ = make_client(lambda r: jr(200, {"users": users}))
    async with client:
        await client.search_users_by_email("x@example.com")
    assert client.cache.user_id_by_email("x@example.com") is None

    client, _ = make_client(lambda r: jr(200, {"users": [{**USER, "email": "xx@example.com"}]}))
    async with client:
        await client.search_users_by_email("x@example.com")
    assert client.cache.user_id_by_email("x@example.com") is None


async def test_find_users_by_external_id() -> None:
    client, rec = make_client(lambda r: jr(200, {"users": [{**USER, "external_id": "abc-1"}], "count": 1}))
    async with client:
        result = await client.find_users_by_external_id("ABC-1")
    assert isinstance(result, Ok)
    assert rec.last.url.params["external_id"] == "ABC-1"
    assert client.cache.user_id_by_external_id("abc-1") == USER["id"]


# --- pagination -----------------------------------------------------------------------------------


def field(i: int) -> dict[str, Any]:
    return {"id": i, "key": f"f{i}", "type": "text", "title": f"F{i}", "active": True}


def cursor_pages(envelope: str, pages: list[list[dict[str, Any]]]) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["page[size]"] == "100"
        index = int(request.url.params.get("page[after]", "c0").removeprefix("c"))
        more = index + 1 < len(pages)
        return jr(
            200,
            {
                envelope: pages[index],
                "meta": {
                    "has_more": more,
                    "after_cursor": f"c{index + 1}" if more else None,
                    "before_cursor": None,
                },
                "links": {
                    "next": f"{BASE}/api/v2/x?page%5Bafter%5D=c{index + 1}" if more else None,
                    "prev": None,
                },
            },
        )

    return handler


async def test_list_user_fields_reads_every_page_and_keeps_no_copy() -> None:
    pages = [[field(1), field(2)], [field(3)], [field(4)]]
    client, rec = make_client(cursor_pages("user_fields", pages))
    async with client:
        result = await client.list_user_fields()
        assert result == Ok(200, {"user_fields": [field(i) for i in range(1, 5)]})
        assert [r.url.params.get("page[after]") for r in rec.requests] == [None, "c1", "c2"]
        assert all(r.url.path == "/api/v2/user_fields" for r in rec.requests)

        await client.list_user_fields()  # the caller keeps the definitions: every call lists again
        assert len(rec.requests) == 6


async def test_list_organization_fields_path() -> None:
    client, rec = make_client(cursor_pages("organization_fields", [[field(1)]]))
    async with client:
        result = await client.list_organization_fields()
    assert result == Ok(200, {"organization_fields": [field(1)]})
    assert rec.last.url.path == "/api/v2/organization_fields"


async def test_pagination_follows_same_origin_links_next() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "page[after]" not in request.url.params:
            return jr(
                200,
                {
                    "user_fields": [field(1)],
                    "meta": {"has_more": True},
                    "links": {"next": f"{BASE}/api/v2/user_fields?page%5Bafter%5D=zz&page%5Bsize%5D=100"},
                },
            )
        return jr(200, {"user_fields": [field(2)], "meta": {"has_more": False}, "links": {"next": None}})

    client, rec = make_client(handler)
    async with client:
        result = await client.list_user_fields()
    assert result == Ok(200, {"user_fields": [field(1), field(2)]})
    assert rec.last.url.params["page[after]"] == "zz"


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.com/api/v2/user_fields?page%5Bafter%5D=zz",
        "http://acme.zendesk.com/api/v2/user_fields?page%5Bafter%5D=zz",
        "https://acme.zendesk.com:444/api/v2/user_fields",
        "https://acme.zendesk.com.evil.com/api/v2/user_fields",
        "https://u:p@acme.zendesk.com/api/v2/user_fields",
        "https://acme.zendesk.com/oauth/tokens",
        "/api/v2/user_fields",
        None,
    ],
)
async def test_pagination_never_follows_foreign_links(link: str | None) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return jr(200, {"user_fields": [field(1)], "meta": {"has_more": True}, "links": {"next": link}})

    client, rec = make_client(handler)
    async with client:
        result = await client.list_user_fields()
    assert result == Unavailable(UnavailableReason.BAD_PAGINATION, 200)
    assert len(rec.requests) == 1


async def test_offset_pagination_fallback() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("page") == "2":
            return jr(200, {"user_fields": [field(2)], "next_page": None, "count": 2})
        return jr(
            200,
            {"user_fields": [field(1)], "next_page": f"{BASE}/api/v2/user_fields.json?page=2", "count": 2},
        )

    client, rec = make_client(handler)
    async with client:
        result = await client.list_user_fields()
    assert result == Ok(200, {"user_fields": [field(1), field(2)]})
    assert rec.last.url.path == "/api/v2/user_fields.json"


async def test_pagination_loop_and_page_cap() -> None:
    looping = lambda r: jr(200, {"user_fields": [], "meta": {"has_more": True, "after_cursor": "same"}})  # noqa: E731
    client, rec = make_client(looping)
    async with client:
        assert await client.list_user_fields() == Unavailable(UnavailableReason.BAD_PAGINATION, 200)
    assert len(rec.requests) == 2

    counter = itertools.count()

    def endless(request: httpx.Request) -> httpx.Response:
        return jr(200, {"user_fields": [], "meta": {"has_more": True, "after_cursor": f"c{next(counter)}"}})

    client, rec = make_client(endless, max_pages=5)
    async with client:
        assert await client.list_user_fields() == Unavailable(UnavailableReason.BAD_PAGINATION)
    assert len(rec.requests) == 5


async def test_pagination_missing_envelope() -> None:
    client, _ = make_client(lambda r: jr(200, {"something": []}))
    async with client:
        assert await client.list_user_fields() == Unavailable(UnavailableReason.BAD_PAGINATION, 200)


async def test_pagination_failure_midway_returns_the_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "page[after]" in request.url.params:
            return jr(503, None, {"retry-after": "5"})
        return jr(200, {"user_fields": [field(1)], "meta": {"has_more": True, "after_cursor": "c1"}})

    client, _ = make_client(handler)
    async with client:
        assert await client.list_user_fields() == Unavailable(UnavailableReason.SERVER_ERROR, 503, 5.0)


# --- fields, organizations, memberships, events, jobs ----------------------------------------------


async def test_create_user_field_body_and_key_taken() -> None:
    answers = iter(
        [
            jr(201, {"user_field": field(2)}),
            jr(422, {"error": "RecordInvalid", "details": {"key": [{"description": "Key: taken",
                                                                    "error": "DuplicateValue"}]}}),
        ]
    )  # fmt: skip
    client, rec = make_client(lambda r: next(answers))
    async with client:
        assert isinstance(await client.create_user_field("f2", "text", "F2"), Ok)
        assert rec.last.method == "POST" and rec.last.url.path == "/api/v2/user_fields"
        assert body_of(rec.last) == {"user_field": {"key": "f2", "type": "text", "title": "F2"}}
        taken = await client.create_user_field("f3", "text", "F3")
        assert isinstance(taken, Rejected) and is_duplicate_field_key(taken)


async def test_create_organization_field_body() -> None:
    client, rec = make_client(lambda r: jr(201, {"organization_field": field(7)}))
    async with client:
        await client.create_organization_field("tier", "integer", "Tier")
    assert rec.last.url.path == "/api/v2/organization_fields"
    assert body_of(rec.last) == {"organization_field": {"key": "tier", "type": "integer", "title": "Tier"}}


async def test_organizations() -> None:
    org = {"id": 42, "name": "Acme", "external_id": "G-1"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v2/organizations/search":
            return jr(200, {"organizations": [org], "next_page": None, "previous_page": None, "count": 1})
        return jr(201 if request.method == "POST" else 200, {"organization": org})

    client, rec = make_client(handler)
    async with client:
        assert await client.create_or_update_organization({"external_id": "G-1", "name": "Acme"}) == Ok(
            201, {"organization": org}
        )
        assert body_of(rec.last) == {"organization": {"external_id": "G-1", "name": "Acme"}}
        assert rec.last.url.path == "/api/v2/organizations/create_or_update"
        assert client.cache.organization_id_by_external_id("g-1") == 42
        client.cache.clear()
        await client.search_organizations_by_external_id("G-1")
        assert rec.last.url.params["external_id"] == "G-1"
        assert client.cache.organization_id_by_external_id("G-1") == 42
        await client.show_organization(42)
        assert rec.last.url.path == "/api/v2/organizations/42"


async def test_memberships() -> None:
    already = {
        "error": "RecordInvalid",
        "description": "Record validation errors",
        "details": {"user_id": [{"description": "User has already been taken", "error": "DuplicateValue"}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return jr(422, already)
        if request.method == "DELETE":
            return httpx.Response(204)
        after = request.url.params.get("page[after]")
        return jr(
            200,
            {
                "organization_memberships": [{"id": 2 if after else 1, "organization_id": 42, "user_id": 7}],
                "meta": {"has_more": after is None, "after_cursor": None if after else "m2"},
            },
        )

    client, rec = make_client(handler)
    async with client:
        created = await client.create_membership(7, 42)
        assert isinstance(created, Rejected) and is_already_member(created)
        assert rec.last.url.path == "/api/v2/organization_memberships"
        assert body_of(rec.last) == {"organization_membership": {"user_id": 7, "organization_id": 42}}

        listed = await client.list_user_memberships(7)
        assert isinstance(listed, Ok) and [m["id"] for m in listed.json["organization_memberships"]] == [1, 2]
        assert rec.last.url.path == "/api/v2/users/7/organization_memberships"

        assert await client.delete_membership(7, 2) == Ok(204, {})
        assert (
            rec.last.method == "DELETE" and rec.last.url.path == "/api/v2/users/7/organization_memberships/2"
        )


async def test_send_event_and_job_status() -> None:
    event = {
        "profile": {
            "source": "segment",
            "type": "user",
            "identifiers": [{"type": "external_id", "value": "U-1"}],
        },
        "event": {"source": "segment", "type": "Order Completed", "properties": {}},
    }
    accepted = {"profile_id": "01E1DPYAA7HW7645KMJEY9CXRJ", "status": "received", "user_id": "123456"}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return jr(202, accepted)
        return jr(200, {"job_status": {"id": "V3-abc", "status": "queued"}})

    client, rec = make_client(handler)
    async with client:
        assert await client.send_event(event) == Ok(202, accepted)
        assert rec.last.url.path == "/api/v2/user_profiles/events" and body_of(rec.last) == event
        await client.show_job_status("V3-abc/../x")
        assert rec.last.url.raw_path == b"/api/v2/job_statuses/V3-abc%2F..%2Fx"


# --- failures -------------------------------------------------------------------------------------


async def test_redirects_are_never_followed() -> None:
    client, rec = make_client(lambda r: httpx.Response(302, headers={"location": "https://evil.com/steal"}))
    async with client:
        with pytest.raises(ZendeskConfigError) as info:
            await client.show_user(1)
    assert len(rec.requests) == 1
    assert info.value.status == 302 and "ZENDESK_BASE_URL" in str(info.value)


@pytest.mark.parametrize(
    ("status", "body", "oauth", "expected"),
    [
        (401, {"error": "Couldn't authenticate you"}, False, "ZENDESK_EMAIL/ZENDESK_API_TOKEN"),
        (401, {"error": "invalid_token", "error_description": "expired"}, True, "ZENDESK_OAUTH_TOKEN"),
        (403, {"error": "Forbidden", "description": "You do not have access"}, False, "permissions"),
    ],
)
async def test_auth_problems_raise_config_error_without_secrets(
    status: int, body: dict[str, Any], oauth: bool, expected: str, logs: list[MutableMapping[str, Any]]
) -> None:
    client, _ = make_client(lambda r: jr(status, body), oauth=oauth)
    async with client:
        with pytest.raises(ZendeskConfigError) as info:
            await client.create_or_update_user({"name": "x"})
    message = str(info.value)
    assert info.value.status == status and expected in message and "\n" not in message
    assert "POST /api/v2/users/create_or_update" in message
    assert TOKEN not in message and OAUTH not in message
    assert TOKEN not in repr(logs) and OAUTH not in repr(logs)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (httpx.ConnectError("refused"), UnavailableReason.CONNECT_ERROR),
        (httpx.ReadTimeout("slow"), UnavailableReason.TIMEOUT),
        (httpx.RemoteProtocolError("eof"), UnavailableReason.NETWORK_ERROR),
    ],
)
async def test_transport_errors_become_transient(exc: httpx.HTTPError, reason: UnavailableReason) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    client, _ = make_client(handler)
    async with client:
        assert await client.show_user(1) == Unavailable(reason)


async def test_rate_limited_and_headers_observed() -> None:
    headers = {"retry-after": "12", "x-rate-limit": "700", "x-rate-limit-remaining": "0",
               "zendesk-ratelimit-create-update-user": "total=5; remaining=0; resets=12"}  # fmt: skip
    client, _ = make_client(lambda r: jr(429, None, headers))
    async with client:
        result = await client.create_or_update_user({"name": "x"})
    assert result == RateLimited(12.0, "create-update-user")
    bucket = client.rate_limits.latest("create-update-user")
    account = client.rate_limits.latest()
    assert bucket is not None and bucket.bucket.total == 5 and bucket.bucket.remaining == 0
    assert account is not None and account.bucket.total == 700


async def test_context_manager_closes_the_pool() -> None:
    client, _ = make_client(lambda r: jr(200, {}))
    async with client:
        pass
    assert client._http.is_closed


# --- logging --------------------------------------------------------------------------------------


async def test_logs_are_key_values_without_secrets_or_personal_data(
    logs: list[MutableMapping[str, Any]],
) -> None:
    answers = iter(
        [
            jr(200, {"user": USER}),
            jr(
                422,
                {"error": "RecordInvalid", "description": "Email: jane@example.com is already being used"},
            ),
            jr(200, {"users": [USER]}),
        ]
    )
    # Unpaced: the default governor would hold the second write to the same user for 12.5 s (4.8/min).
    client, _ = make_client(lambda r: next(answers), governor=Governor(plan="unlimited"))
    async with client:
        await client.create_or_update_user({"name": "Jane", "email": "jane@example.com"})
        await client.create_or_update_user({"name": "Jane", "email": "jane@example.com"})
        await client.search_users_by_email("jane@example.com")
    requests = [e for e in logs if e["event"] == "zendesk.request"]
    assert [(e["method"], e["path"], e["status"], e["outcome"]) for e in requests] == [
        ("POST", "/api/v2/users/create_or_update", 200, "ok"),
        ("POST", "/api/v2/users/create_or_update", 422, "rejected"),
        ("GET", "/api/v2/users/search", 200, "ok"),
    ]
    assert all(e["duration_ms"] == 250.0 for e in requests)
    assert requests[1]["error_code"] == "RecordInvalid" and requests[1]["log_level"] == "info"
    everything = repr(logs)
    assert TOKEN not in everything and "authorization" not in everything.lower()
    info_and_up = repr([e for e in logs if e["log_level"] != "debug"])
    assert "jane@example.com" not in info_and_up


async def test_repr_hides_secrets() -> None:
    client, _ = make_client(lambda r: jr(200, {}))
    async with client:
        text = repr(client) + repr(client.connection)
    assert TOKEN not in text
