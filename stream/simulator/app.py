"""The ASGI application: a raw ASGI callable (no framework) because every request pays for the plumbing.

A Zendesk request goes through, in order: latency → injected failure → auth → route → account (or events)
bucket → handler → headers → request log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import random
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from stream.simulator import control, errors
from stream.simulator.core import Simulator
from stream.simulator.errors import ZendeskError
from stream.simulator.faults import Failure
from stream.simulator.messages import HTML_TYPE, Reply, Request, error_reply
from stream.simulator.oauth import OAuthServer
from stream.simulator.options import SimulatorOptions
from stream.simulator.ratelimit import TOO_MANY_REQUESTS_HTML
from stream.simulator.routes import ROUTER, Route, rate_limited
from stream.simulator.views import Urls

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

COULD_NOT_AUTHENTICATE: dict[str, Any] = {"error": "Couldn't authenticate you"}
INVALID_TOKEN: dict[str, Any] = {
    "error": "invalid_token",
    "error_description": (
        "The access token provided is expired, revoked, malformed or invalid for other reasons."
    ),
}
FAILURE_BODIES: dict[int, dict[str, str]] = {
    500: {"error": "InternalServerError", "description": "Something went wrong (simulated)"},
    502: {"error": "BadGateway", "description": "Bad gateway (simulated)"},
    503: {"error": "ServiceUnavailable", "description": "Zendesk is temporarily unavailable (simulated)"},
    504: {"error": "GatewayTimeout", "description": "Gateway timeout (simulated)"},
}


class Authenticator:
    """The launch credentials (API token as Basic ``email/token:token``, a static OAuth bearer) and the
    bearer tokens the simulator's own OAuth server issued."""

    def __init__(self, *, options: SimulatorOptions) -> None:
        self._accepted: dict[bytes, str] = {}
        if options.email and options.api_token:
            pair = f"{options.email}/token:{options.api_token}".encode()
            self._accepted[b"Basic " + base64.b64encode(pair)] = "api_token"
            self._email: str | None = options.email.lower()
            self._token: str | None = options.api_token
        else:
            self._email, self._token = None, None
        if options.oauth_token:
            self._accepted[f"Bearer {options.oauth_token}".encode()] = "oauth_token"
        self._allow_password = options.allow_password_auth

    def check(
        self, header: bytes | None, *, oauth: OAuthServer, now: float
    ) -> tuple[ZendeskError | None, str | None]:
        """(None, how it authenticated) when the header authenticates; else Zendesk's 401 for that kind
        of credential. Issued tokens are valid until they expire on the simulator clock or are revoked."""
        if header is not None and header in self._accepted:
            return None, self._accepted[header]
        scheme, _, credentials = (header or b"").decode("latin-1").partition(" ")
        if scheme.lower() == "bearer":
            token = oauth.authenticate(credentials.strip(), now)
            if token is not None:
                return None, f"oauth:{token.client_id}"
            return ZendeskError(401, INVALID_TOKEN), None
        if scheme.lower() == "basic":
            kind = self._basic_kind(credentials.strip())
            if kind is not None:
                return None, kind
        error = ZendeskError(
            401, COULD_NOT_AUTHENTICATE, headers=[("www-authenticate", 'Basic realm="Web Password"')]
        )
        return error, None

    def _basic_kind(self, credentials: str) -> str | None:
        try:
            user, _, secret = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if self._email is None or secret != self._token:
            return None
        if user.lower() == f"{self._email}/token":
            return "api_token"
        return "password" if self._allow_password and user.lower() == self._email else None


class SimulatorApp:
    def __init__(self, *, options: SimulatorOptions) -> None:
        options = options.with_default_credentials()
        self.sim = Simulator(options=options)
        self.auth = Authenticator(options=options)
        self._rng = random.Random(options.random_seed + 2)  # noqa: S311 - simulation, not security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        host, authorization, content_type = _headers_of_interest(scope)
        raw_path: str = scope["path"]
        method: str = scope["method"]
        if raw_path.startswith(control.CONTROL_PREFIX):
            urls = Urls(base=f"{scope['scheme']}://{host}", suffix=".json")
            query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
            reply = control.handle(self.sim, method=method, path=raw_path, query=query, body=body, urls=urls)
            await _send_reply(send, reply)
            return
        await self._zendesk(
            scope,
            send,
            method=method,
            raw_path=raw_path,
            body=body,
            host=host,
            auth=authorization,
            content_type=content_type,
        )

    async def _zendesk(
        self,
        scope: Scope,
        send: Send,
        *,
        method: str,
        raw_path: str,
        body: bytes,
        host: str,
        auth: bytes | None,
        content_type: str,
    ) -> None:
        sim = self.sim
        options = sim.options
        if options.latency_ms or options.jitter_ms:
            await asyncio.sleep((options.latency_ms + self._rng.uniform(0, options.jitter_ms)) / 1000.0)
        now = sim.now()
        sim.jobs.advance(now)
        path, suffix = (raw_path[:-5], ".json") if raw_path.endswith(".json") else (raw_path, "")
        query_string: bytes = scope["query_string"]
        failure = sim.faults.failure_for(
            method,
            raw_path,
            now,
            error_rate=options.error_rate,
            error_status=options.error_status,
            error_retry_after=options.error_retry_after,
        )
        query = query_string.decode("latin-1")
        if failure is not None and failure.action == "drop":
            self._log(now, method, raw_path, query, Reply(status=0, change={"kind": "fault.drop"}))
            await _drop_connection(send)
            return
        matched = ROUTER.match(method, path)
        route = matched[0] if matched is not None else None
        if failure is not None and failure.action == "status":
            reply = _failure_reply(failure)
            if route is None or not route.public:
                events_api = route is not None and route.events_api
                reply.headers[:0] = sim.limiter.account_headers(now, events_api=events_api)
        else:
            request = Request(
                method=method,
                path=path,
                query_string=query_string,
                body=body,
                urls=Urls(base=f"{scope['scheme']}://{host}", suffix=suffix),
                now=now,
                authorization=auth,
                content_type=content_type,
            )
            reply = self._serve(request, matched)
        if failure is not None and failure.action == "drop_after":
            reply.change = {**(reply.change or {}), "dropped": True}
            self._log(now, method, raw_path, query, reply)
            await _drop_connection(send)
            return
        self._log(now, method, raw_path, query, reply)
        await _send_reply(send, reply)

    def _log(self, now: float, method: str, path: str, query: str, reply: Reply) -> None:
        self.sim.log.append(
            at=now,
            method=method,
            path=path,
            query=query,
            status=reply.status,
            user_id=reply.user_id,
            user_key=reply.user_key,
            change=reply.change,
            auth=reply.auth,
        )

    def _serve(self, request: Request, matched: tuple[Route, tuple[str, ...]] | None) -> Reply:
        sim = self.sim
        if matched is not None and matched[0].public:
            return matched[0].handler(sim, request)
        events_api = matched is not None and matched[0].events_api
        unauthenticated, auth = self.auth.check(request.authorization, oauth=sim.oauth, now=request.now)
        if unauthenticated is not None:
            reply = error_reply(unauthenticated)
            reply.headers[:0] = sim.limiter.account_headers(request.now, events_api=events_api)
            return reply
        refusal = sim.limiter.take_account(request.now, events_api=events_api)
        account_headers = sim.limiter.account_headers(request.now, events_api=events_api)
        if refusal is not None:
            reply = rate_limited(refusal)
        elif matched is None:
            reply = error_reply(errors.invalid_endpoint())
        else:
            route, request.params = matched
            try:
                reply = route.handler(sim, request)
            except ZendeskError as error:
                reply = error_reply(error)
        reply.headers[:0] = account_headers
        reply.auth = auth
        return reply


def _failure_reply(failure: Failure) -> Reply:
    headers = [] if failure.retry_after is None else [("retry-after", str(failure.retry_after))]
    change = {"kind": "fault"}
    custom = {"error": failure.error, "description": failure.description}
    if failure.status == 429 and custom == {"error": None, "description": None}:
        return Reply(429, TOO_MANY_REQUESTS_HTML, headers, content_type=HTML_TYPE, change=change)
    generic = FAILURE_BODIES.get(failure.status, {"error": "Error", "description": "Simulated failure"})
    body = generic | {name: text for name, text in custom.items() if text is not None}
    return Reply(status=failure.status, body=body, headers=headers, change=change)


def _headers_of_interest(scope: Scope) -> tuple[str, bytes | None, str]:
    host = "127.0.0.1"
    authorization = None
    content_type = ""
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
        elif name == b"authorization":
            authorization = value
        elif name == b"content-type":
            content_type = value.decode("latin-1").lower()
    return host, authorization, content_type


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _send_reply(send: Send, reply: Reply) -> None:
    body = reply.encoded_body()
    headers = [(b"content-length", str(len(body)).encode())]
    if reply.status != 204:
        headers.append((b"content-type", reply.content_type.encode()))
    headers.extend((name.encode(), value.encode()) for name, value in reply.headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _drop_connection(send: Send) -> None:
    """Close the TCP connection without an answer.

    ASGI has no message for this, so we reach uvicorn's transport through its bound ``send``; without it
    (another server) we fall back to an exception, which servers answer with a 500.
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionAbortedError("simulated connection drop")
    transport.close()
    for _ in range(20):  # let connection_lost run, so uvicorn knows the client is gone
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
