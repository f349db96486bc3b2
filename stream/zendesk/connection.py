"""Where Zendesk lives and how we prove who we are.

`connection_from` turns the raw settings into a `ZendeskConnection` or raises `ConfigError` with one line
naming the setting. Secrets are wrapped in `Secret`, so they never show up in a repr, a log or a message.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class OAuthAuth:
    """OAuth bearer token."""

    token: Secret

    def authorization(self) -> Secret:
        return Secret("Bearer " + self.token.reveal())

    @property
    def settings(self) -> str:
        return "ZENDESK_OAUTH_TOKEN"


Auth = ApiTokenAuth | OAuthAuth


@dataclass(frozen=True, slots=True)
class ZendeskConnection:
    subdomain: str
    base_url: str  # no trailing slash; requests go to base_url + "/api/v2/..."
    auth: Auth

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction of anything we might echo (error excerpts)."""
        values = [self.auth.token.reveal(), self.auth.authorization().reveal().split(" ", 1)[1]]
        return tuple(v for v in values if v)


def connection_from(
    subdomain: str | None,
    base_url: str | None,
    email: str | None,
    api_token: str | None,
    oauth_token: str | None,
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
    auth = _auth_from(email, api_token, oauth_token)
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


def _auth_from(email: str | None, api_token: str | None, oauth_token: str | None) -> Auth:
    email, api_token, oauth_token = map(_blank_to_none, (email, api_token, oauth_token))
    basic = email is not None or api_token is not None
    if basic and oauth_token is not None:
        raise ConfigError("set either ZENDESK_EMAIL/ZENDESK_API_TOKEN or ZENDESK_OAUTH_TOKEN, not both")
    if oauth_token is not None:
        if not _TOKEN.fullmatch(oauth_token):
            raise ConfigError("ZENDESK_OAUTH_TOKEN contains characters a token cannot have")
        return OAuthAuth(token=Secret(oauth_token))
    if not basic:
        raise ConfigError(
            "Zendesk credentials missing: set ZENDESK_EMAIL and ZENDESK_API_TOKEN, or ZENDESK_OAUTH_TOKEN"
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
