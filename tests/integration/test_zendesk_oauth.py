"""OAuth that renews itself, against the simulator's real `/oauth/tokens` (a real HTTP server on loopback).

Client credentials: a token at the first request, renewal before expiry while requests keep succeeding,
up to two renewals for a token revoked or expired server-side, a stop (ZendeskConfigError) on a third 401.
Refresh-token mode: the rotated token is in the file before the new access token is used; a restart
works from the file. Secrets stay out of messages, logs and the file.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from stream.errors import ConfigError, FatalError, ZendeskConfigError
from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from stream.zendesk import Ok, Unavailable, ZendeskClient, connection_from
from stream.zendesk.connection import OAuthSettings

pytestmark = pytest.mark.anyio

CLIENT = "zendesk-stream"
SECRET = "cl1ent-s3cret-for-tests"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    with run_simulator_in_thread(SimulatorOptions(oauth_clients={CLIENT: SECRET})) as sim:
        yield sim


@pytest.fixture
def sim(simulator: RunningSimulator) -> RunningSimulator:
    simulator.control.reset(manual_clock=True, rate_limits=False)
    return simulator


@pytest.fixture
def real_time_sim(simulator: RunningSimulator) -> RunningSimulator:
    """Tokens of a few seconds that expire on the real clock (Zendesk's floor is 300 s)."""
    simulator.control.reset(manual_clock=False, rate_limits=False, oauth_min_expires_in_s=1)
    return simulator


def oauth_client(
    sim: RunningSimulator,
    *,
    secret: str = SECRET,
    ttl: int | None = None,
    refresh_file: Path | None = None,
    scopes: str | None = None,
) -> ZendeskClient:
    settings = OAuthSettings(
        client_id=CLIENT,
        client_secret=secret,
        scopes=scopes,
        token_ttl_s=None if ttl is None else str(ttl),
        refresh_token_file=None if refresh_file is None else str(refresh_file),
    )
    return ZendeskClient(connection=connection_from("acme", sim.base_url, None, None, None, oauth=settings))


def api_log(sim: RunningSimulator) -> list[tuple[int, str | None]]:
    """(status, how it authenticated) of every API request, oldest first (the token endpoint aside)."""
    return [(e["status"], e["auth"]) for e in sim.control.requests() if e["path"].startswith("/api/")]


def token_requests(sim: RunningSimulator) -> list[dict[str, Any]]:
    return sim.control.requests(path="^/oauth/tokens$")


# -- client credentials --------------------------------------------------------------------------------


async def test_client_credentials_get_a_token_at_the_first_request_and_use_it(sim: RunningSimulator) -> None:
    async with oauth_client(sim, scopes="users:read users:write") as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        assert isinstance(await zendesk.list_organization_fields(), Ok)
    tokens = sim.control.oauth_tokens(client_id=CLIENT)
    assert [(t["grant_type"], t["scope"], t["state"], t["uses"]) for t in tokens] == [
        ("client_credentials", "users:read users:write", "active", 2)
    ]
    assert api_log(sim) == [(200, f"oauth:{CLIENT}")] * 2


async def test_the_requested_lifetime_is_sent_as_expires_in(sim: RunningSimulator) -> None:
    async with oauth_client(sim, ttl=900) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
    (token,) = sim.control.oauth_tokens(client_id=CLIENT)
    assert token["expires_at"] - token["issued_at"] == 900


async def test_concurrent_first_requests_share_one_token_request(sim: RunningSimulator) -> None:
    async with oauth_client(sim) as zendesk:
        results = await asyncio.gather(*(zendesk.list_user_fields() for _ in range(30)))
    assert all(isinstance(r, Ok) for r in results)
    assert sim.control.oauth_grants()["client_credentials"] == 1
    assert len(token_requests(sim)) == 1


async def test_a_short_lived_token_is_renewed_before_it_expires_while_requests_keep_succeeding(
    real_time_sim: RunningSimulator,
) -> None:
    sim = real_time_sim
    lifetime = 3
    results: list[object] = []
    async with oauth_client(sim, ttl=lifetime) as zendesk:
        deadline = time.monotonic() + 6 * lifetime
        while sim.control.oauth_grants()["client_credentials"] < 4:
            assert time.monotonic() < deadline, "four tokens were not issued within six lifetimes"
            results.extend(await asyncio.gather(*(zendesk.list_user_fields() for _ in range(5))))
            await asyncio.sleep(0.05)
    assert results and all(isinstance(r, Ok) for r in results)
    assert {status for status, _ in api_log(sim)} == {200}  # no request ever met an expired token
    tokens = sim.control.oauth_tokens(client_id=CLIENT)
    assert len(tokens) >= 4
    for older, newer in itertools.pairwise(tokens):
        assert newer["issued_at"] < older["expires_at"], "renewed only after expiry"
        assert newer["issued_at"] >= older["issued_at"] + lifetime / 2 - 0.2, "renewed far too early"


async def test_a_token_revoked_server_side_is_renewed_once_and_the_request_succeeds(
    sim: RunningSimulator,
) -> None:
    async with oauth_client(sim) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        assert sim.control.revoke_oauth_tokens(client_id=CLIENT)["revoked_access_tokens"] == 1
        results = await asyncio.gather(*(zendesk.list_user_fields() for _ in range(10)))
    assert all(isinstance(r, Ok) for r in results)
    assert sim.control.oauth_grants()["client_credentials"] == 2  # one renewal for ten refused requests
    statuses = [status for status, _ in api_log(sim)]
    assert statuses.count(401) >= 1 and statuses.count(200) == 11
    assert [t["state"] for t in sim.control.oauth_tokens(client_id=CLIENT)] == ["revoked", "active"]


async def test_a_token_expired_server_side_before_we_expected_is_renewed_once(sim: RunningSimulator) -> None:
    async with oauth_client(sim) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        sim.control.advance_clock(1800)  # the simulator's clock, not ours: we still think it is fresh
        assert isinstance(await zendesk.list_user_fields(), Ok)
    assert api_log(sim) == [(200, f"oauth:{CLIENT}"), (401, None), (200, f"oauth:{CLIENT}")]
    assert [t["state"] for t in sim.control.oauth_tokens(client_id=CLIENT)] == ["expired", "active"]


async def test_credentials_revoked_stop_at_the_renewal_with_one_line_naming_the_settings(
    sim: RunningSimulator,
) -> None:
    async with oauth_client(sim) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        sim.control.set_options(oauth_clients={CLIENT: "a-new-secret"})  # the secret was rotated
        sim.control.revoke_oauth_tokens(client_id=CLIENT)
        with pytest.raises(ZendeskConfigError) as info:
            await zendesk.list_user_fields()
        assert info.value.status == 401
        message = str(info.value)
        assert message == (
            "Zendesk refused the OAuth client_credentials grant on POST /oauth/tokens (401 invalid_client: "
            "client authentication failed: unknown client or secret); check "
            "ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET"
        )
        with pytest.raises(ZendeskConfigError):  # and so is every later request, without asking again
            await zendesk.list_user_fields()
    assert sim.control.oauth()["failures"] == {"invalid_client": 1}
    assert [status for status, _ in api_log(sim)] == [200, 401]


async def test_a_token_refused_twice_is_renewed_twice_and_the_request_succeeds(sim: RunningSimulator) -> None:
    # What a revocation of every live token does under concurrency: the token fetched by the first renewal
    # may be one another request had already fetched, revoked too.
    async with oauth_client(sim) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        sim.control.inject_fault(path="^/api/v2/user_fields", status=401, count=2, error="invalid_token")
        assert isinstance(await zendesk.list_user_fields(), Ok)
    assert sim.control.oauth_grants()["client_credentials"] == 3
    assert [status for status, _ in api_log(sim)] == [200, 401, 401, 200]


async def test_a_third_401_after_two_renewals_takes_the_credentials_refused_path(
    sim: RunningSimulator,
) -> None:
    async with oauth_client(sim) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        sim.control.inject_fault(path="^/api/v2/user_fields", status=401, count=3, error="invalid_token")
        with pytest.raises(ZendeskConfigError) as info:
            await zendesk.list_user_fields()
    assert info.value.status == 401
    assert str(info.value).startswith("Zendesk refused the credentials on GET /api/v2/user_fields (401: ")
    assert str(info.value).endswith(
        ", again after renewing the access token; check ZENDESK_OAUTH_CLIENT_ID/ZENDESK_OAUTH_CLIENT_SECRET"
    )
    assert sim.control.oauth_grants()["client_credentials"] == 3  # renewed twice, not a third time


async def test_a_403_is_not_renewed(sim: RunningSimulator) -> None:
    async with oauth_client(sim) as zendesk:
        sim.control.inject_fault(path="^/api/v2/user_fields", status=403, count=1, error="Forbidden")
        with pytest.raises(ZendeskConfigError) as info:
            await zendesk.list_user_fields()
    assert info.value.status == 403
    assert sim.control.oauth_grants()["client_credentials"] == 1


@pytest.mark.parametrize(
    ("secret", "ttl", "status", "expected"),
    [
        (
            "wrong-secret",
            None,
            401,
            "(401 invalid_client: client authentication failed: unknown client or secret)",
        ),
        (
            SECRET,
            100,
            400,
            "(400 invalid_request: expires_in must be greater than 300 and less than 172800); "
            "check ZENDESK_OAUTH_TOKEN_TTL_S",
        ),
    ],
)
async def test_a_refused_first_token_request_names_the_setting_and_zendesks_answer(
    sim: RunningSimulator, secret: str, ttl: int | None, status: int, expected: str
) -> None:
    async with oauth_client(sim, secret=secret, ttl=ttl) as zendesk:
        with pytest.raises(ZendeskConfigError) as info:
            await zendesk.list_user_fields()
    assert info.value.status == status
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert secret not in str(info.value)
    assert api_log(sim) == []  # no API request went out without a token


async def test_a_token_error_body_quoting_our_secret_is_redacted(sim: RunningSimulator) -> None:
    sim.control.inject_fault(
        path="^/oauth/tokens",
        status=401,
        error="invalid_client",
        description=f"no client with secret {SECRET}",
    )
    async with oauth_client(sim) as zendesk:
        with pytest.raises(ZendeskConfigError) as info:
            await zendesk.list_user_fields()
    assert SECRET not in str(info.value)
    assert "(401 invalid_client: no client with secret ***)" in str(info.value)


async def test_a_token_endpoint_that_fails_is_a_transient_failure_not_a_stop(sim: RunningSimulator) -> None:
    sim.control.inject_fault(path="^/oauth/tokens", status=503, count=1)
    async with oauth_client(sim) as zendesk:
        failed = await zendesk.list_user_fields()
        assert isinstance(failed, Unavailable) and failed.status == 503
        assert failed.detail == "no OAuth access token: POST /oauth/tokens answered 503"
        assert isinstance(await zendesk.list_user_fields(), Ok)
    assert api_log(sim) == [(200, f"oauth:{CLIENT}")]


async def test_a_full_renewal_cycle_logs_no_secret(real_time_sim: RunningSimulator) -> None:
    sim = real_time_sim
    with structlog.testing.capture_logs() as logs:
        async with oauth_client(sim, ttl=2) as zendesk:
            assert isinstance(await zendesk.list_user_fields(), Ok)
            sim.control.revoke_oauth_tokens(client_id=CLIENT)  # a renewal after a 401
            assert isinstance(await zendesk.list_user_fields(), Ok)
            deadline = time.monotonic() + 10
            while sim.control.oauth_grants()["client_credentials"] < 4:  # and renewals before expiry
                assert time.monotonic() < deadline
                assert isinstance(await zendesk.list_user_fields(), Ok)
                await asyncio.sleep(0.05)
            held = zendesk._secrets  # the client secret and every token the client held
    assert len(held) >= 5 and SECRET in held
    text = repr(logs)
    for value in held:
        assert value not in text
    events = [entry["event"] for entry in logs]
    assert events.count("zendesk.oauth_token") >= 4 and "zendesk.oauth_token_invalid" in events


# -- refresh-token mode --------------------------------------------------------------------------------


def authorized(sim: RunningSimulator, tmp_path: Path, code: str = "code-1") -> tuple[Path, dict[str, Any]]:
    """What an operator does once: an authorization-code grant, its refresh token put in a file."""
    sim.control.add_oauth_code(code)
    pair = sim.request_oauth_token(CLIENT, grant_type="authorization_code", code=code)
    path = tmp_path / "zendesk-refresh-token"
    path.write_text(pair["refresh_token"] + "\n")
    return path, pair


async def test_refresh_mode_stores_the_rotated_token_and_a_restart_works_from_the_file(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    path, first = authorized(sim, tmp_path)
    async with oauth_client(sim, refresh_file=path) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        held = zendesk._secrets
    stored = path.read_text()
    rotated = stored.strip()
    assert stored == rotated + "\n" and rotated != first["refresh_token"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left behind
    access_tokens = [v for v in held if v not in (SECRET, rotated, first["refresh_token"])]
    assert access_tokens and all(v not in stored for v in access_tokens)  # never an access token on disk
    assert [r["state"] for r in sim.control.oauth()["refresh_tokens"]] == ["rotated", "active"]
    assert sim.control.oauth()["refresh_tokens"][1]["token"] == "***" + rotated[-4:]
    refused = sim.control.requests(path="^/oauth/tokens$")
    assert len(refused) == 2  # the operator's code grant, then our one refresh

    # The old refresh token is dead on the simulator; a restart starts from the file and rotates again.
    with pytest.raises(RuntimeError, match="invalid_grant"):
        sim.request_oauth_token(CLIENT, grant_type="refresh_token", refresh_token=first["refresh_token"])
    async with oauth_client(sim, refresh_file=path) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
    assert path.read_text().strip() not in (rotated, first["refresh_token"])
    assert [r["state"] for r in sim.control.oauth()["refresh_tokens"]] == ["rotated", "rotated", "active"]


async def test_refresh_mode_renews_after_a_revoked_access_token(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    path, _ = authorized(sim, tmp_path)
    async with oauth_client(sim, refresh_file=path) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        before = path.read_text()
        sim.control.revoke_oauth_tokens(client_id=CLIENT)
        assert isinstance(await zendesk.list_user_fields(), Ok)
    assert path.read_text() != before
    assert sim.control.oauth_grants()["refresh_token"] == 2


async def test_a_rotated_token_that_cannot_be_stored_is_never_used(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    path, _ = authorized(sim, tmp_path)
    async with oauth_client(sim, refresh_file=path) as zendesk:
        assert isinstance(await zendesk.list_user_fields(), Ok)
        path.unlink()
        (path / "in-the-way").mkdir(parents=True)  # a directory where the file was: the rename fails
        sim.control.revoke_oauth_tokens(client_id=CLIENT)
        with pytest.raises(FatalError, match="ZENDESK_OAUTH_REFRESH_TOKEN_FILE: cannot store the rotated"):
            await zendesk.list_user_fields()
    newest = sim.control.oauth_tokens(client_id=CLIENT)[-1]
    assert (newest["grant_type"], newest["state"], newest["uses"]) == ("refresh_token", "active", 0)
    assert os.listdir(tmp_path) == [path.name]  # the temporary file was removed


async def test_a_used_refresh_token_in_the_file_names_the_file(sim: RunningSimulator, tmp_path: Path) -> None:
    path, first = authorized(sim, tmp_path)
    sim.request_oauth_token(CLIENT, grant_type="refresh_token", refresh_token=first["refresh_token"])
    async with oauth_client(sim, refresh_file=path) as zendesk:
        with pytest.raises(ZendeskConfigError) as info:
            await zendesk.list_user_fields()
    assert "(400 invalid_grant: the refresh token is invalid, expired, revoked or already used)" in str(
        info.value
    )
    assert "check ZENDESK_OAUTH_REFRESH_TOKEN_FILE" in str(info.value)
    assert first["refresh_token"] not in str(info.value)


async def test_a_refresh_file_gone_before_the_first_request_is_a_config_error(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    path, _ = authorized(sim, tmp_path)
    zendesk = oauth_client(sim, refresh_file=path)
    path.unlink()
    async with zendesk:
        with pytest.raises(ConfigError, match=r"ZENDESK_OAUTH_REFRESH_TOKEN_FILE: .* does not exist"):
            await zendesk.list_user_fields()
