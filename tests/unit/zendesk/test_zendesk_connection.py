from __future__ import annotations

import base64
import pickle

import pytest

from stream.errors import ConfigError
from stream.zendesk import ApiTokenAuth, OAuthAuth, Secret, connection_from

TOKEN = "s3cr3t-T0ken"


def basic(subdomain: str = "acme", base_url: str | None = None) -> tuple[str, str | None, str, str, None]:
    return (subdomain, base_url, "ops@example.com", TOKEN, None)


@pytest.mark.parametrize("subdomain", ["acme", "ACME-support", "a", "a1-b2", "x" * 63, " acme "])
def test_valid_subdomains(subdomain: str) -> None:
    conn = connection_from(*basic(subdomain))
    assert conn.subdomain == subdomain.strip().lower()
    assert conn.base_url == f"https://{subdomain.strip().lower()}.zendesk.com"


@pytest.mark.parametrize(
    "subdomain",
    [
        "evil.com/",
        "sub.evil.com",
        "a@b",
        "acme:443",
        "acme/",
        "https://acme.zendesk.com",
        "-acme",
        "acme-",
        "ac me",
        "ac\nme",
        "acmé",
        "x" * 64,
        "acme#",
        "acme?x=1",
    ],
)
def test_invalid_subdomains(subdomain: str) -> None:
    with pytest.raises(ConfigError, match="ZENDESK_SUBDOMAIN"):
        connection_from(*basic(subdomain))


@pytest.mark.parametrize("subdomain", [None, "", "   "])
def test_missing_subdomain(subdomain: str | None) -> None:
    with pytest.raises(ConfigError, match="ZENDESK_SUBDOMAIN is required"):
        connection_from(subdomain, None, "ops@example.com", TOKEN, None)


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://x", "https://x"),
        ("https://proxy.internal:8443/zendesk/", "https://proxy.internal:8443/zendesk"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.5.6.7:8080/", "http://127.5.6.7:8080"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://LOCALHOST:1", "http://LOCALHOST:1"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("", "https://acme.zendesk.com"),
    ],
)
def test_valid_base_urls(base_url: str, expected: str) -> None:
    assert connection_from(*basic(base_url=base_url)).base_url == expected


@pytest.mark.parametrize(
    "base_url",
    [
        "http://10.0.0.1",
        "http://acme.zendesk.com",
        "http://localhost.evil.com",
        "http://127.0.0.1.evil.com",
        "http://[::2]:80",
        "ftp://127.0.0.1",
        "acme.zendesk.com",
        "//acme.zendesk.com",
        "https://user:pw@acme.zendesk.com",
        "https://user@acme.zendesk.com",
        "https://acme.zendesk.com/?x=1",
        "https://acme.zendesk.com/#frag",
        "https://acme.zendesk.com:notaport",
        "https://acme.zendesk.com/a b",
        "https://",
    ],
)
def test_invalid_base_urls(base_url: str) -> None:
    with pytest.raises(ConfigError, match="ZENDESK_BASE_URL"):
        connection_from(*basic(base_url=base_url))


@pytest.mark.parametrize(
    ("email", "api_token", "oauth", "setting"),
    [
        (None, None, None, "ZENDESK_OAUTH_TOKEN"),
        ("", "", "", "ZENDESK_OAUTH_TOKEN"),
        ("ops@example.com", None, None, "ZENDESK_API_TOKEN is required"),
        (None, TOKEN, None, "ZENDESK_EMAIL is required"),
        ("ops@example.com", TOKEN, "oauth-tok", "exactly one Zendesk auth mode"),
        (None, TOKEN, "oauth-tok", "exactly one Zendesk auth mode"),
        ("ops@example.com", None, "oauth-tok", "exactly one Zendesk auth mode"),
        ("not-an-email", TOKEN, None, "ZENDESK_EMAIL is not"),
        ("a:b@example.com", TOKEN, None, "ZENDESK_EMAIL is not"),
        ("ops@example.com", "tok\r\nX-Evil: 1", None, "ZENDESK_API_TOKEN contains"),
        (None, None, "tok en", "ZENDESK_OAUTH_TOKEN contains"),
    ],
)
def test_auth_settings_errors(
    email: str | None, api_token: str | None, oauth: str | None, setting: str
) -> None:
    with pytest.raises(ConfigError, match=setting) as info:
        connection_from("acme", None, email, api_token, oauth)
    message = str(info.value)
    assert "\n" not in message
    assert TOKEN not in message and "oauth-tok" not in message and "tok en" not in message


def test_api_token_auth_header() -> None:
    conn = connection_from("acme", None, "ops@example.com", TOKEN, None)
    assert isinstance(conn.auth, ApiTokenAuth)
    header = conn.auth.authorization().reveal()
    assert header.startswith("Basic ")
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == f"ops@example.com/token:{TOKEN}"


def test_oauth_header() -> None:
    conn = connection_from("acme", None, None, None, "oauth-tok")
    assert isinstance(conn.auth, OAuthAuth)
    assert conn.auth.authorization().reveal() == "Bearer oauth-tok"


def test_secrets_hidden_from_repr_and_str() -> None:
    for conn in (connection_from(*basic()), connection_from("acme", None, None, None, "oauth-tok")):
        assert isinstance(conn.auth, ApiTokenAuth | OAuthAuth)
        text = repr(conn) + str(conn) + repr(conn.auth) + str(conn.auth.authorization())
        assert TOKEN not in text and "oauth-tok" not in text
        assert "Secret('***')" in repr(conn)
        assert base64.b64encode(f"ops@example.com/token:{TOKEN}".encode()).decode() not in text


def test_secret_value_semantics() -> None:
    s = Secret("abc")
    assert repr(s) == str(s) == f"{s}" == "Secret('***')"
    assert s.reveal() == "abc"
    assert s == Secret("abc") and s != Secret("abd")
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_connection_is_frozen() -> None:
    conn = connection_from(*basic())
    with pytest.raises(AttributeError):
        conn.subdomain = "other"  # type: ignore[misc]
