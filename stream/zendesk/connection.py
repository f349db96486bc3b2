"""Where Zendesk lives and how we prove who we are.

`connection_from` turns the raw settings into a `ZendeskConnection` or raises `ConfigError` with one line
naming the setting. Secrets are wrapped in `Secret`, so they never show up in a repr, a log or a message.

Four ways to authenticate, exactly one configured:

    mode                 settings                                               header
    ───────────────────  ─────────────────────────────────────────────────────  ─────────────────────────
    client credentials   ZENDESK_OAUTH_CLIENT_ID + _SECRET (+ _SCOPES, _TTL_S)   Bearer, renewed (oauth.py)
    refresh token        ZENDESK_OAUTH_REFRESH_TOKEN_FILE + client id/secret    Bearer, renewed (oauth.py)
    static bearer        ZENDESK_OAUTH_TOKEN                                    Bearer, fixed
    API token            ZENDESK_EMAIL + ZENDESK_API_TOKEN (retired 2027-04-30)  Basic, fixed
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from stream.errors import ConfigError
from stream.secret import Secret

# One DNS label: letters, digits and inner hyphens. No dots, slashes, '@' or ports, so the subdomain
# cannot point the client at another host.
_SUBDOMAIN: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Visible ASCII only: anything else could smuggle a header or break Basic auth.
_TOKEN: Final = re.compile(r"[\x21-\x7e]+")
_EMAIL: Final = re.compile(r"[^\s@:]+@[^\s@:]+")
# OAuth scopes: space-separated names such as `read`, `write`, `users:write` (RFC 6749 scope-token chars).
_SCOPES: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")

DEFAULT_SCOPES: Final = "read write"
# Zendesk retires API tokens: none can be created since the first date; all stop working on the second.
API_TOKEN_CREATION_ENDED_ON: Final = "2026-10-27"  # noqa: S105 (a date)
API_TOKEN_SHUTDOWN_ON: Final = "2027-04-30"  # noqa: S105 (a date)


@dataclass(frozen=True, slots=True)
class ApiTokenAuth:
    """HTTP Basic with `{email}/token:{api_token}`."""

    email: str
    token: Secret

    def authorization(self) -> Secret:
        raw = f"{self.email}/token:{self.token.reveal()}".encode()
        return Secret("Basic " + base64.b64encode(raw).decode("ascii"))

    @property
    def settings(self) -> str:
        return "ZENDESK_EMAIL/ZENDESK_API_TOKEN"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token.reveal(), self.authorization().reveal().removeprefix("Basic "))


@dataclass(frozen=True, slots=True)
class OAuthAuth:
    """OAuth bearer token."""

    token: Secret

    def authorization(self) -> Secret:
        return Secret("Bearer " + self.token.reveal())

    @property
    def settings(self) -> str:
        return "ZENDESK_OAUTH_TOKEN"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token.reveal(),)


@dataclass(frozen=True, slots=True)
class ClientCredentialsAuth:
    """OAuth client credentials: the service asks `<base>/oauth/tokens` for its own access tokens and
    renews them before they expire (`stream.zendesk.oauth`). Each replica holds its own token."""

    client_id: str
    client_secret: Secret
    scopes: str = DEFAULT_SCOPES
    token_ttl_s: int | None = None  # the `expires_in` to ask for; None: Zendesk's default

    @property
    def settings(self) -> str:
        return "ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret.reveal(),)


@dataclass(frozen=True, slots=True)
class RefreshTokenAuth:
    """OAuth refresh-token grant for a single replica: the refresh token lives in `refresh_token_file`,
    which is rewritten (atomically, durably) with the rotated token after every refresh."""

    client_id: str
    client_secret: Secret
    refresh_token_file: Path
    token_ttl_s: int | None = None

    @property
    def settings(self) -> str:
        return "ZENDESK_OAUTH_REFRESH_TOKEN_FILE/ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET"

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret.reveal(),)


StaticAuth = ApiTokenAuth | OAuthAuth
RenewingAuth = ClientCredentialsAuth | RefreshTokenAuth
Auth = StaticAuth | RenewingAuth


@dataclass(frozen=True, slots=True)
class ZendeskConnection:
    subdomain: str
    base_url: str  # no trailing slash; requests go to base_url + "/api/v2/..."
    auth: Auth

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction of anything we might echo (error excerpts)."""
        return tuple(v for v in self.auth.secrets if v)

    def startup_warning(self) -> str | None:
        """What start-up should warn about the configured auth mode, once: API tokens are on their way out."""
        if not isinstance(self.auth, ApiTokenAuth):
            return None
        return (
            f"Zendesk API tokens stop working on {API_TOKEN_SHUTDOWN_ON} (none can be created since "
            f"{API_TOKEN_CREATION_ENDED_ON}); move to OAuth client credentials: set ZENDESK_OAUTH_CLIENT_ID "
            "and ZENDESK_OAUTH_CLIENT_SECRET instead of ZENDESK_EMAIL/ZENDESK_API_TOKEN"
        )


@dataclass(frozen=True, slots=True)
class OAuthSettings:
    """The raw ZENDESK_OAUTH_* client settings (None or blank: unset)."""

    client_id: str | None = None
    client_secret: str | None = None
    scopes: str | None = None
    token_ttl_s: str | None = None
    refresh_token_file: str | None = None

    def __repr__(self) -> str:
        return f"OAuthSettings(client_id={self.client_id!r}, refresh_token_file={self.refresh_token_file!r})"


def connection_from(
    subdomain: str | None,
    base_url: str | None,
    email: str | None,
    api_token: str | None,
    oauth_token: str | None,
    *,
    oauth: OAuthSettings | None = None,
) -> ZendeskConnection:
    """Validate the Zendesk settings. Empty strings count as unset (an empty environment variable)."""
    sub = _blank_to_none(subdomain)
    if sub is None:
        raise ConfigError("ZENDESK_SUBDOMAIN is required")
    if not _SUBDOMAIN.fullmatch(sub):
        raise ConfigError(
            "ZENDESK_SUBDOMAIN must be a single name of letters, digits and hyphens (e.g. 'acme', not a URL)"
        )
    base = _blank_to_none(base_url)
    url = _validate_base_url(base) if base is not None else f"https://{sub.lower()}.zendesk.com"
    auth = _auth_from(email, api_token, oauth_token, oauth or OAuthSettings())
    return ZendeskConnection(subdomain=sub.lower(), base_url=url, auth=auth)


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _validate_base_url(raw: str) -> str:
    try:
        parts = urlsplit(raw)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise ConfigError("ZENDESK_BASE_URL is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigError("ZENDESK_BASE_URL must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("ZENDESK_BASE_URL must not contain credentials")
    if parts.query or parts.fragment or raw.endswith(("?", "#")):
        raise ConfigError("ZENDESK_BASE_URL must not have a query or fragment")
    if any(c.isspace() or ord(c) < 0x20 for c in raw):
        raise ConfigError("ZENDESK_BASE_URL must not contain whitespace or control characters")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ConfigError("ZENDESK_BASE_URL must use https (plain http is allowed only on loopback)")
    return raw.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth_from(
    email: str | None, api_token: str | None, oauth_token: str | None, oauth: OAuthSettings
) -> Auth:
    email, api_token, oauth_token = map(_blank_to_none, (email, api_token, oauth_token))
    client_id, client_secret, scopes, ttl, refresh_file = map(
        _blank_to_none,
        (oauth.client_id, oauth.client_secret, oauth.scopes, oauth.token_ttl_s, oauth.refresh_token_file),
    )
    modes = {
        "ZENDESK_EMAIL/ZENDESK_API_TOKEN": email is not None or api_token is not None,
        "ZENDESK_OAUTH_TOKEN": oauth_token is not None,
        "ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET": client_id is not None
        or client_secret is not None,
    }
    chosen = [names for names, given in modes.items() if given]
    if len(chosen) > 1:
        raise ConfigError(f"set exactly one Zendesk auth mode; found both {' and '.join(chosen)}")
    oauth_extras = {
        "ZENDESK_OAUTH_SCOPES": scopes,
        "ZENDESK_OAUTH_TOKEN_TTL_S": ttl,
        "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": refresh_file,
    }
    if not modes["ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET"]:
        for name, value in oauth_extras.items():
            if value is not None:
                raise ConfigError(f"{name} needs ZENDESK_OAUTH_CLIENT_ID and ZENDESK_OAUTH_CLIENT_SECRET")
    if chosen == ["ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET"]:
        return _oauth_client_auth(client_id, client_secret, scopes, ttl, refresh_file)
    if oauth_token is not None:
        if not _TOKEN.fullmatch(oauth_token):
            raise ConfigError("ZENDESK_OAUTH_TOKEN contains characters a token cannot have")
        return OAuthAuth(token=Secret(oauth_token))
    if not chosen:
        raise ConfigError(
            "Zendesk credentials missing: set ZENDESK_OAUTH_CLIENT_ID and ZENDESK_OAUTH_CLIENT_SECRET "
            "(recommended), or ZENDESK_OAUTH_TOKEN, or ZENDESK_EMAIL and ZENDESK_API_TOKEN"
        )
    if api_token is None:
        raise ConfigError("ZENDESK_API_TOKEN is required when ZENDESK_EMAIL is set")
    if email is None:
        raise ConfigError("ZENDESK_EMAIL is required when ZENDESK_API_TOKEN is set")
    if not _EMAIL.fullmatch(email):
        raise ConfigError("ZENDESK_EMAIL is not an email address")
    if not _TOKEN.fullmatch(api_token):
        raise ConfigError("ZENDESK_API_TOKEN contains characters a token cannot have")
    return ApiTokenAuth(email=email, token=Secret(api_token))


def _oauth_client_auth(
    client_id: str | None,
    client_secret: str | None,
    scopes: str | None,
    ttl: str | None,
    refresh_file: str | None,
) -> RenewingAuth:
    if client_id is None:
        raise ConfigError("ZENDESK_OAUTH_CLIENT_ID is required when ZENDESK_OAUTH_CLIENT_SECRET is set")
    if client_secret is None:
        raise ConfigError("ZENDESK_OAUTH_CLIENT_SECRET is required when ZENDESK_OAUTH_CLIENT_ID is set")
    if not _TOKEN.fullmatch(client_id):
        raise ConfigError("ZENDESK_OAUTH_CLIENT_ID contains characters a client id cannot have")
    if not _TOKEN.fullmatch(client_secret):
        raise ConfigError("ZENDESK_OAUTH_CLIENT_SECRET contains characters a secret cannot have")
    token_ttl_s = _token_ttl(ttl)
    secret = Secret(client_secret)
    if refresh_file is not None:
        if scopes is not None:
            raise ConfigError(
                "ZENDESK_OAUTH_SCOPES does not apply with ZENDESK_OAUTH_REFRESH_TOKEN_FILE: a refresh keeps "
                "the scopes the refresh token was granted with"
            )
        path = Path(refresh_file).expanduser()
        read_refresh_token(path)  # fails start-up now rather than at the first request
        if not os.access(path.parent, os.W_OK | os.X_OK):
            raise ConfigError(
                f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: the directory {path.parent} is not writable; every "
                "refresh rotates the token and the new one is written next to the old"
            )
        return RefreshTokenAuth(
            client_id=client_id, client_secret=secret, refresh_token_file=path, token_ttl_s=token_ttl_s
        )
    scope = " ".join((scopes or DEFAULT_SCOPES).split())
    if not _SCOPES.fullmatch(scope):
        raise ConfigError(
            "ZENDESK_OAUTH_SCOPES: expected space-separated scopes such as 'read write' or 'users:write'"
        )
    return ClientCredentialsAuth(
        client_id=client_id, client_secret=secret, scopes=scope, token_ttl_s=token_ttl_s
    )


def _token_ttl(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or int(raw) <= 0:
        raise ConfigError(
            f"ZENDESK_OAUTH_TOKEN_TTL_S: expected a positive whole number of seconds, got {raw!r}"
        )
    return int(raw)


def read_refresh_token(path: Path) -> Secret:
    """The refresh token stored in `path` (ZENDESK_OAUTH_REFRESH_TOKEN_FILE), or ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) and err.strerror else "not UTF-8 text"
        raise ConfigError(f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: cannot read {path} ({why})") from None
    token = text.strip()
    if not token:
        raise ConfigError(f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: {path} is empty")
    if not _TOKEN.fullmatch(token):
        raise ConfigError(
            f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: {path} holds characters a refresh token cannot have"
        )
    return Secret(token)
