"""The client's OAuth logic over httpx.MockTransport, with a clock the test moves: what the token request
carries, and that requests keep going on the current token while its renewal is under way."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from stream.zendesk import Ok, ZendeskClient, connection_from
from stream.zendesk.connection import OAuthSettings

pytestmark = pytest.mark.anyio

SECRET = "cl1ent-s3cret"
BASE = "https://acme.zendesk.com"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeZendesk:
    """Issues token-1, token-2, ... (lifetime `expires_in`); a grant can be held until released."""

    def __init__(self, *, expires_in: int = 1000) -> None:
        self.expires_in = expires_in
        self.grants: list[dict[str, Any]] = []
        self.api_tokens: list[str] = []  # the bearer token of each API request, in order
        self.hold = asyncio.Event()
        self.hold.set()
        self.grant_started = asyncio.Event()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if request.url.path == "/oauth/tokens":
            assert "authorization" not in request.headers
            self.grants.append(json.loads(request.content))
            self.grant_started.set()
            await self.hold.wait()
            body = {
                "access_token": f"token-{len(self.grants)}",
                "token_type": "bearer",
                "scope": "read write",
                "expires_in": self.expires_in,
            }
            return httpx.Response(200, json=body)
        self.api_tokens.append(request.headers["authorization"].removeprefix("Bearer "))
        return httpx.Response(200, json={"user_fields": [], "meta": {"has_more": False}})


def client_for(fake: FakeZendesk, clock: list[float], **settings: str) -> ZendeskClient:
    oauth = OAuthSettings(client_id="svc", client_secret=SECRET, **settings)
    return ZendeskClient(
        connection=connection_from("acme", None, None, None, None, oauth=oauth),
        transport=httpx.MockTransport(fake.handle),
        token_clock=lambda: clock[0],
    )


async def test_the_token_request_is_a_client_credentials_grant_to_the_same_base() -> None:
    fake, clock = FakeZendesk(), [0.0]
    async with client_for(fake, clock, scopes="users:write", token_ttl_s="900") as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
    assert fake.grants == [
        {
            "grant_type": "client_credentials",
            "client_id": "svc",
            "client_secret": SECRET,
            "scope": "users:write",
            "expires_in": 900,
        }
    ]
    assert fake.api_tokens == ["token-1"]


async def test_requests_keep_the_current_token_while_one_renewal_is_in_flight() -> None:
    fake, clock = FakeZendesk(expires_in=1000), [0.0]
    async with client_for(fake, clock) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        clock[0] = 950.0  # past the renewal time (at most 90 %), before expiry
        fake.hold.clear()
        fake.grant_started.clear()
        assert isinstance(await zendesk.list_user_fields(), Ok)  # starts the renewal, does not wait for it
        await asyncio.wait_for(fake.grant_started.wait(), timeout=5)
        during = await asyncio.wait_for(
            asyncio.gather(*(zendesk.list_user_fields() for _ in range(5))), timeout=5
        )
        assert all(isinstance(r, Ok) for r in during)
        assert len(fake.grants) == 2  # one renewal however many requests saw it was due
        fake.hold.set()
        deadline = asyncio.get_running_loop().time() + 5
        while fake.api_tokens[-1] != "token-2":
            assert asyncio.get_running_loop().time() < deadline, "the renewed token was never used"
            await zendesk.list_user_fields()
            await asyncio.sleep(0.01)
    assert fake.api_tokens[:7] == ["token-1"] * 7
    assert len(fake.grants) == 2


async def test_an_expired_token_waits_for_its_renewal() -> None:
    fake, clock = FakeZendesk(expires_in=1000), [0.0]
    async with client_for(fake, clock) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        clock[0] = 1000.0  # expired: no request may go out with it
        assert isinstance(await zendesk.list_user_fields(), Ok)
    assert fake.api_tokens == ["token-1", "token-2"]


async def test_the_client_repr_shows_no_secret() -> None:
    fake, clock = FakeZendesk(), [0.0]
    async with client_for(fake, clock) as zendesk:
        await zendesk.list_user_fields()
        text = repr(zendesk) + repr(zendesk.connection) + repr(zendesk._tokens)
    assert SECRET not in text and "token-1" not in text
