"""The four auth modes from the environment: each one parsed, every bad combination one line naming it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream.config import load_zendesk_connection, zendesk_credentials_given
from stream.environment import ENVIRONMENT, check_environment
from stream.errors import ConfigError
from stream.mapping.settings import DestinationSettings
from stream.zendesk import ApiTokenAuth, OAuthAuth, Secret, ZendeskConnection
from stream.zendesk.connection import ClientCredentialsAuth, RefreshTokenAuth

SECRET = "cl1ent-s3cret-VALUE"
REFRESH = "r3fresh-t0ken-VALUE"
OAUTH_NAMES = (
    "ZENDESK_OAUTH_CLIENT_ID",
    "ZENDESK_OAUTH_CLIENT_SECRET",
    "ZENDESK_OAUTH_SCOPES",
    "ZENDESK_OAUTH_TOKEN_TTL_S",
    "ZENDESK_OAUTH_REFRESH_TOKEN_FILE",
)
CLIENT = {"ZENDESK_OAUTH_CLIENT_ID": "stream-svc", "ZENDESK_OAUTH_CLIENT_SECRET": SECRET}
API_TOKEN = {"ZENDESK_EMAIL": "ops@example.com", "ZENDESK_API_TOKEN": "api-t0ken-VALUE"}
STATIC = {"ZENDESK_OAUTH_TOKEN": "static-b3arer-VALUE"}


def load(env: dict[str, str]) -> ZendeskConnection:
    return load_zendesk_connection({"ZENDESK_SUBDOMAIN": "acme", **env}, DestinationSettings.parse("{}"))


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as info:
        load(env)
    message = str(info.value)
    assert "\n" not in message
    for secret in (SECRET, REFRESH, "api-t0ken-VALUE", "static-b3arer-VALUE"):
        assert secret not in message
    return message


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "refresh-token"
    path.write_text(REFRESH + "\n")
    return path


def test_client_credentials_with_defaults() -> None:
    auth = load(CLIENT).auth
    assert auth == ClientCredentialsAuth(
        client_id="stream-svc", client_secret=Secret(SECRET), scopes="read write", token_ttl_s=None
    )


def test_client_credentials_with_scopes_and_ttl() -> None:
    auth = load(
        {**CLIENT, "ZENDESK_OAUTH_SCOPES": " users:read   users:write ", "ZENDESK_OAUTH_TOKEN_TTL_S": "900"}
    ).auth
    assert isinstance(auth, ClientCredentialsAuth)
    assert (auth.scopes, auth.token_ttl_s) == ("users:read users:write", 900)


def test_refresh_token_mode(token_file: Path) -> None:
    auth = load(
        {**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(token_file), "ZENDESK_OAUTH_TOKEN_TTL_S": "600"}
    ).auth
    assert isinstance(auth, RefreshTokenAuth)
    assert (auth.refresh_token_file, auth.token_ttl_s, auth.client_id) == (token_file, 600, "stream-svc")


def test_static_bearer_and_api_token_modes_stay() -> None:
    assert isinstance(load(STATIC).auth, OAuthAuth)
    assert isinstance(load(API_TOKEN).auth, ApiTokenAuth)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "Zendesk credentials missing: set ZENDESK_OAUTH_CLIENT_ID and ZENDESK_OAUTH_CLIENT_SECRET"),
        ({"ZENDESK_OAUTH_CLIENT_ID": "stream-svc"}, "ZENDESK_OAUTH_CLIENT_SECRET is required"),
        ({"ZENDESK_OAUTH_CLIENT_SECRET": SECRET}, "ZENDESK_OAUTH_CLIENT_ID is required"),
        ({**CLIENT, "ZENDESK_OAUTH_CLIENT_ID": "a b"}, "ZENDESK_OAUTH_CLIENT_ID contains"),
        ({**CLIENT, "ZENDESK_OAUTH_CLIENT_SECRET": "x\r\ny"}, "ZENDESK_OAUTH_CLIENT_SECRET contains"),
        (
            {**CLIENT, **API_TOKEN},
            "exactly one Zendesk auth mode; found both ZENDESK_EMAIL/ZENDESK_API_TOKEN and "
            "ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET",
        ),
        ({**CLIENT, **STATIC}, "found both ZENDESK_OAUTH_TOKEN and ZENDESK_OAUTH_CLIENT_ID"),
        ({**API_TOKEN, **STATIC}, "found both ZENDESK_EMAIL/ZENDESK_API_TOKEN and ZENDESK_OAUTH_TOKEN"),
        ({"ZENDESK_EMAIL": "ops@example.com", **CLIENT}, "exactly one Zendesk auth mode"),
        ({"ZENDESK_OAUTH_CLIENT_SECRET": SECRET, **STATIC}, "exactly one Zendesk auth mode"),
        ({**STATIC, "ZENDESK_OAUTH_SCOPES": "read"}, "ZENDESK_OAUTH_SCOPES needs ZENDESK_OAUTH_CLIENT_ID"),
        (
            {**API_TOKEN, "ZENDESK_OAUTH_TOKEN_TTL_S": "900"},
            "ZENDESK_OAUTH_TOKEN_TTL_S needs ZENDESK_OAUTH_CLIENT_ID",
        ),
        (
            {"ZENDESK_OAUTH_REFRESH_TOKEN_FILE": "/x"},
            "ZENDESK_OAUTH_REFRESH_TOKEN_FILE needs ZENDESK_OAUTH_CLIENT_ID",
        ),
        (
            {**CLIENT, "ZENDESK_OAUTH_TOKEN_TTL_S": "0"},
            "ZENDESK_OAUTH_TOKEN_TTL_S: expected a positive whole",
        ),
        (
            {**CLIENT, "ZENDESK_OAUTH_TOKEN_TTL_S": "-5"},
            "ZENDESK_OAUTH_TOKEN_TTL_S: expected a positive whole",
        ),
        (
            {**CLIENT, "ZENDESK_OAUTH_TOKEN_TTL_S": "1.5"},
            "ZENDESK_OAUTH_TOKEN_TTL_S: expected a positive whole",
        ),
        (
            {**CLIENT, "ZENDESK_OAUTH_TOKEN_TTL_S": "30m"},
            "ZENDESK_OAUTH_TOKEN_TTL_S: expected a positive whole",
        ),
        (
            {**CLIENT, "ZENDESK_OAUTH_TOKEN_TTL_S": "١٢"},
            "ZENDESK_OAUTH_TOKEN_TTL_S: expected a positive whole",
        ),
        (
            {**CLIENT, "ZENDESK_OAUTH_SCOPES": 'read "write"'},
            "ZENDESK_OAUTH_SCOPES: expected space-separated",
        ),
        ({**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": "/nonexistent/zs-refresh"}, "does not exist"),
    ],
)
def test_bad_auth_settings_are_one_line_naming_the_variable(env: dict[str, str], expected: str) -> None:
    assert expected in refused(env)


def test_blank_values_count_as_unset() -> None:
    env = {**API_TOKEN, **dict.fromkeys(OAUTH_NAMES, " "), "ZENDESK_OAUTH_TOKEN": ""}
    assert isinstance(load(env).auth, ApiTokenAuth)


def test_scopes_do_not_apply_to_a_refresh(token_file: Path) -> None:
    env = {**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(token_file), "ZENDESK_OAUTH_SCOPES": "read"}
    assert refused(env).startswith(
        "ZENDESK_OAUTH_SCOPES does not apply with ZENDESK_OAUTH_REFRESH_TOKEN_FILE"
    )


def test_an_empty_or_unreadable_refresh_token_file_is_named(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    line = refused({**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(empty)})
    assert line == f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: {empty} is empty"
    line = refused({**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(tmp_path)})  # a directory
    assert line.startswith(f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: cannot read {tmp_path}")
    garbled = tmp_path / "garbled"
    garbled.write_text("two words\n")
    assert "holds characters" in refused({**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(garbled)})
    if os.geteuid() != 0:  # root reads any file
        locked = tmp_path / "locked"
        locked.write_text(REFRESH)
        locked.chmod(0)
        line = refused({**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(locked)})
        assert line.startswith(f"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: cannot read {locked}")


def test_secrets_stay_out_of_reprs(token_file: Path) -> None:
    for env in (
        {**CLIENT, "ZENDESK_OAUTH_TOKEN_TTL_S": "900"},
        {**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(token_file)},
    ):
        conn = load(env)
        text = repr(conn) + str(conn) + repr(conn.auth) + str(conn.auth)
        assert SECRET not in text and REFRESH not in text
        assert "Secret('***')" in text
        assert conn.secrets == (SECRET,)  # what the client redacts from excerpts, tokens added as issued


def test_only_the_api_token_mode_warns_and_names_the_dates_and_the_way_out(token_file: Path) -> None:
    warning = load(API_TOKEN).startup_warning()
    assert warning is not None
    assert "2027-04-30" in warning and "2026-10-27" in warning
    assert "ZENDESK_OAUTH_CLIENT_ID" in warning and "ZENDESK_OAUTH_CLIENT_SECRET" in warning
    assert "api-t0ken-VALUE" not in warning
    for env in (CLIENT, STATIC, {**CLIENT, "ZENDESK_OAUTH_REFRESH_TOKEN_FILE": str(token_file)}):
        assert load(env).startup_warning() is None


def test_the_oauth_variables_are_known_settings_and_count_as_credentials() -> None:
    for name in OAUTH_NAMES:
        assert ENVIRONMENT.get(name)
    check_environment(dict.fromkeys(OAUTH_NAMES, "x"))
    assert zendesk_credentials_given(CLIENT)
    with pytest.raises(ConfigError, match="did you mean ZENDESK_OAUTH_CLIENT_SECRET"):
        check_environment({"ZENDESK_OAUTH_CLIENT_SECRT": "x"})
