"""OAuth token grants (docs/zendesk-api.md §11.2): ``POST /oauth/tokens`` and the bearer tokens it issues.

Grants: ``client_credentials`` (access token only), ``authorization_code`` (codes configured up front,
each good once) and ``refresh_token`` (rotation: the new pair invalidates the old access token and the old
refresh token). Clients are the ``oauth_clients`` option (id → secret). Expiry follows the simulator clock,
so ``manual_clock`` + ``/_simulator/clock/advance`` expire tokens deterministically.

Error bodies are RFC 6749's ``{"error", "error_description"}`` with its codes and statuses [I: Zendesk
documents none; its documented 401 ``invalid_token`` body has that shape]: 400 ``invalid_request``,
``invalid_grant``, ``unsupported_grant_type``; 401 ``invalid_client``.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from stream.simulator.clock import iso_timestamp
from stream.simulator.messages import Reply, Request
from stream.simulator.options import SimulatorOptions

GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description


def _invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", description)


@dataclass(slots=True)
class AccessToken:
    id: str  # "at-1": how the control API names it; the value itself is never shown
    value: str
    client_id: str
    grant_type: str
    scope: str
    issued_at: float
    expires_at: float | None
    refresh_token_id: str | None = None
    ended: str | None = None  # "revoked" (control API) or "rotated" (its refresh token was used)
    uses: int = 0
    last_used_at: float | None = None

    def state(self, now: float) -> str:
        if self.ended is not None:
            return self.ended
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@dataclass(slots=True)
class RefreshToken:
    id: str
    value: str
    client_id: str
    scope: str
    issued_at: float
    expires_at: float
    access_token_id: str
    ended: str | None = None  # "rotated" (used once) or "revoked"

    def state(self, now: float) -> str:
        if self.ended is not None:
            return self.ended
        return "expired" if now >= self.expires_at else "active"


def _masked(value: str) -> str:
    return f"***{value[-4:]}"


class OAuthServer:
    def __init__(self, *, options: SimulatorOptions) -> None:
        self.options = options
        self.access_tokens: dict[str, AccessToken] = {}  # by value
        self.refresh_tokens: dict[str, RefreshToken] = {}  # by value
        self._used_codes: set[str] = set()
        self.grants: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._seq = 0

    # -- API requests ------------------------------------------------------------------------------------

    def authenticate(self, value: str, now: float) -> AccessToken | None:
        """The active access token with this value, counting the use; None when unknown or ended."""
        token = self.access_tokens.get(value)
        if token is None or token.state(now) != "active":
            return None
        token.uses += 1
        token.last_used_at = now
        return token

    # -- POST /oauth/tokens ------------------------------------------------------------------------------

    def token_endpoint(self, req: Request) -> Reply:
        try:
            params = _parameters(req)
            body = self._grant(params, req.now)
        except OAuthError as error:
            self.failures[error.error] += 1
            return Reply(
                status=error.status,
                body={"error": error.error, "error_description": error.description},
                headers=[("cache-control", "no-store")],
                change={"kind": "oauth.token_refused", "error": error.error},
            )
        grant_type = str(params["grant_type"])
        self.grants[grant_type] += 1
        return Reply(
            status=200,
            body=body,
            headers=[("cache-control", "no-store")],
            change={"kind": "oauth.token", "grant_type": grant_type, "client_id": params["client_id"]},
        )

    def _grant(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        grant_type = params.get("grant_type")
        if not grant_type:
            raise _invalid_request("grant_type is required")
        if grant_type not in GRANT_TYPES:
            raise OAuthError(
                400,
                "unsupported_grant_type",
                f"grant_type {grant_type!r} is not supported; use one of {', '.join(GRANT_TYPES)}",
            )
        client_id = self._authenticated_client(params)
        if params.get("scope") is not None and not isinstance(params["scope"], str):
            raise _invalid_request("scope is a space-separated string")
        access_ttl, refresh_ttl = self._lifetimes(params)
        if grant_type == "client_credentials":
            scope = str(params.get("scope") or self.options.oauth_default_scope)
            return self._issue(
                client_id,
                grant_type=grant_type,
                scope=scope,
                now=now,
                access_ttl=access_ttl,
                refresh_ttl=None,
            )
        if grant_type == "authorization_code":
            code = params.get("code")
            if not code or not isinstance(code, str):
                raise _invalid_request("code is required")
            if code not in self.options.oauth_codes or code in self._used_codes:
                raise OAuthError(400, "invalid_grant", "the authorization code is invalid or was used")
            self._used_codes.add(code)
            scope = str(params.get("scope") or self.options.oauth_default_scope)
            return self._issue(
                client_id,
                grant_type=grant_type,
                scope=scope,
                now=now,
                access_ttl=access_ttl,
                refresh_ttl=refresh_ttl,
            )
        return self._refresh(params, client_id, now=now, access_ttl=access_ttl, refresh_ttl=refresh_ttl)

    def _refresh(
        self,
        params: dict[str, Any],
        client_id: str,
        *,
        now: float,
        access_ttl: float | None,
        refresh_ttl: float,
    ) -> dict[str, Any]:
        value = params.get("refresh_token")
        if not value or not isinstance(value, str):
            raise _invalid_request("refresh_token is required")
        old = self.refresh_tokens.get(value)
        if old is None or old.client_id != client_id or old.state(now) != "active":
            raise OAuthError(
                400, "invalid_grant", "the refresh token is invalid, expired, revoked or already used"
            )
        old.ended = "rotated"
        for token in self.access_tokens.values():
            if token.id == old.access_token_id and token.ended is None:
                token.ended = "rotated"
        return self._issue(
            client_id,
            grant_type="refresh_token",
            scope=old.scope,
            now=now,
            access_ttl=access_ttl,
            refresh_ttl=refresh_ttl,
        )

    def _authenticated_client(self, params: dict[str, Any]) -> str:
        client_id, secret = params.get("client_id"), params.get("client_secret")
        expected = self.options.oauth_clients.get(str(client_id)) if client_id else None
        if expected is None or not isinstance(secret, str) or not secrets.compare_digest(secret, expected):
            raise OAuthError(401, "invalid_client", "client authentication failed: unknown client or secret")
        return str(client_id)

    def _lifetimes(self, params: dict[str, Any]) -> tuple[float | None, float]:
        """(access, refresh) lifetimes in seconds; access None for a non-expiring token."""
        options = self.options
        refresh_ttl: float = options.oauth_refresh_ttl_s
        if params.get("refresh_token_expires_in") is not None:
            refresh_ttl = _seconds(params, "refresh_token_expires_in")
            low, high = options.oauth_min_refresh_expires_in_s, options.oauth_max_refresh_expires_in_s
            if not low <= refresh_ttl <= high:
                raise _invalid_request(f"refresh_token_expires_in must be between {low} and {high}")
        if params.get("expires_in") is None:
            if not options.oauth_expiring_tokens:
                return None, refresh_ttl
            return float(min(options.oauth_access_ttl_s, refresh_ttl)), refresh_ttl
        access_ttl = _seconds(params, "expires_in")
        low, high = options.oauth_min_expires_in_s, options.oauth_max_expires_in_s
        if not low < access_ttl < high:
            raise _invalid_request(f"expires_in must be greater than {low} and less than {high}")
        if params.get("grant_type") != "client_credentials" and access_ttl >= refresh_ttl:
            raise _invalid_request("expires_in must be less than the refresh token's lifetime")
        return access_ttl, refresh_ttl

    def _issue(
        self,
        client_id: str,
        *,
        grant_type: str,
        scope: str,
        now: float,
        access_ttl: float | None,
        refresh_ttl: float | None,
    ) -> dict[str, Any]:
        self._seq += 1
        access = AccessToken(
            id=f"at-{self._seq}",
            value=secrets.token_hex(32),
            client_id=client_id,
            grant_type=grant_type,
            scope=scope,
            issued_at=now,
            expires_at=None if access_ttl is None else now + access_ttl,
        )
        self.access_tokens[access.value] = access
        body: dict[str, Any] = {"access_token": access.value, "token_type": "bearer", "scope": scope}
        if access_ttl is None:
            return body  # a non-expiring token comes without expiry and without a refresh token
        body["expires_in"] = int(access_ttl) if float(access_ttl).is_integer() else access_ttl
        if refresh_ttl is not None:
            refresh = RefreshToken(
                id=f"rt-{self._seq}",
                value=secrets.token_hex(32),
                client_id=client_id,
                scope=scope,
                issued_at=now,
                expires_at=now + refresh_ttl,
                access_token_id=access.id,
            )
            self.refresh_tokens[refresh.value] = refresh
            access.refresh_token_id = refresh.id
            body["refresh_token"] = refresh.value
            body["refresh_token_expires_in"] = int(refresh_ttl)
        return body

    # -- control API -------------------------------------------------------------------------------------

    def revoke(self, *, client_id: str | None = None, refresh_tokens: bool = False) -> dict[str, int]:
        """End every live access token (of one client, when given), and the refresh tokens if asked."""
        access = refresh = 0
        for token in self.access_tokens.values():
            if token.ended is None and client_id in (None, token.client_id):
                token.ended = "revoked"
                access += 1
        if refresh_tokens:
            for rt in self.refresh_tokens.values():
                if rt.ended is None and client_id in (None, rt.client_id):
                    rt.ended = "revoked"
                    refresh += 1
        return {"revoked_access_tokens": access, "revoked_refresh_tokens": refresh}

    def dump(self, now: float) -> dict[str, Any]:
        """Clients, tokens and grant counts; token values only as their last four characters."""
        return {
            "clients": [{"client_id": client_id} for client_id in self.options.oauth_clients],
            "codes": {
                "configured": len(self.options.oauth_codes),
                "unused": len(set(self.options.oauth_codes) - self._used_codes),
            },
            "access_tokens": [
                {
                    "id": t.id,
                    "token": _masked(t.value),
                    "client_id": t.client_id,
                    "grant_type": t.grant_type,
                    "scope": t.scope,
                    "issued_at": t.issued_at,
                    "expires_at": t.expires_at,
                    "expires_at_time": None if t.expires_at is None else iso_timestamp(t.expires_at),
                    "state": t.state(now),
                    "refresh_token_id": t.refresh_token_id,
                    "uses": t.uses,
                    "last_used_at": t.last_used_at,
                }
                for t in self.access_tokens.values()
            ],
            "refresh_tokens": [
                {
                    "id": r.id,
                    "token": _masked(r.value),
                    "client_id": r.client_id,
                    "scope": r.scope,
                    "issued_at": r.issued_at,
                    "expires_at": r.expires_at,
                    "state": r.state(now),
                    "access_token_id": r.access_token_id,
                }
                for r in self.refresh_tokens.values()
            ],
            "grants": {grant: self.grants[grant] for grant in GRANT_TYPES},
            "failures": dict(self.failures),
        }


def _parameters(req: Request) -> dict[str, Any]:
    """The token request's fields: a JSON object [D], or a form-encoded body [I: what RFC 6749 specifies]."""
    if "application/x-www-form-urlencoded" in req.content_type:
        return dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    if not req.body:
        return {}
    try:
        parsed = orjson.loads(req.body)
    except orjson.JSONDecodeError as error:
        raise _invalid_request(
            "the body must be a JSON object or a form-encoded list of parameters"
        ) from error
    if not isinstance(parsed, dict):
        raise _invalid_request("the body must be a JSON object")
    return parsed


def _seconds(params: dict[str, Any], name: str) -> float:
    """A whole number of seconds, as a JSON number or a (form) string of digits."""
    value = params[name]
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise _invalid_request(f"{name} must be a whole number of seconds")
