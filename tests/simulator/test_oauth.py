"""OAuth grants, expiry, rotation and revocation (docs/zendesk-api.md §11.2, §1.4). The clock is manual."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from stream.simulator.testing import RunningSimulator, run_simulator

CLIENT, SECRET = "svc", "svc-secret"
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": (
        "The access token provided is expired, revoked, malformed or invalid for other reasons."
    ),
}


@pytest.fixture
def oauth(sim: RunningSimulator) -> RunningSimulator:
    sim.control.add_oauth_client(CLIENT, SECRET)
    return sim


def token_request(sim: RunningSimulator, **fields: Any) -> httpx.Response:
    body = {"client_id": CLIENT, "client_secret": SECRET, **fields}
    return httpx.post(f"{sim.base_url}/oauth/tokens", json=body)


def granted(sim: RunningSimulator, **fields: Any) -> dict[str, Any]:
    response = token_request(sim, **fields)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def api_get(sim: RunningSimulator, access_token: str) -> httpx.Response:
    return httpx.get(
        f"{sim.base_url}/api/v2/user_fields.json", headers={"Authorization": f"Bearer {access_token}"}
    )


def oauth_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and isinstance(body["error_description"], str), body


# -- grants ----------------------------------------------------------------------------------------------


def test_client_credentials_grant_answers_a_bearer_token_with_scope_and_expires_in(
    oauth: RunningSimulator,
) -> None:
    body = granted(oauth, grant_type="client_credentials", scope="users:read users:write")
    assert set(body) == {"access_token", "token_type", "scope", "expires_in"}
    assert (body["token_type"], body["scope"], body["expires_in"]) == (
        "bearer",
        "users:read users:write",
        1800,
    )
    assert api_get(oauth, body["access_token"]).status_code == 200


def test_client_credentials_scope_defaults_to_read_write(oauth: RunningSimulator) -> None:
    assert granted(oauth, grant_type="client_credentials")["scope"] == "read write"


def test_authorization_code_grant_answers_a_refresh_token_and_its_lifetime(oauth: RunningSimulator) -> None:
    oauth.control.add_oauth_code("code-1")
    body = granted(oauth, grant_type="authorization_code", code="code-1")
    assert set(body) == {
        "access_token",
        "token_type",
        "scope",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
    }
    assert (body["expires_in"], body["refresh_token_expires_in"]) == (1800, 2_592_000)
    assert api_get(oauth, body["access_token"]).status_code == 200


def test_an_authorization_code_is_good_once_and_unknown_codes_are_invalid_grants(
    oauth: RunningSimulator,
) -> None:
    oauth.control.add_oauth_code("code-1")
    granted(oauth, grant_type="authorization_code", code="code-1")
    oauth_error(token_request(oauth, grant_type="authorization_code", code="code-1"), 400, "invalid_grant")
    oauth_error(token_request(oauth, grant_type="authorization_code", code="other"), 400, "invalid_grant")
    oauth_error(token_request(oauth, grant_type="authorization_code"), 400, "invalid_request")


def test_form_encoded_token_requests_are_accepted(oauth: RunningSimulator) -> None:
    response = httpx.post(
        f"{oauth.base_url}/oauth/tokens",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT,
            "client_secret": SECRET,
            "expires_in": "600",
        },
    )
    assert response.status_code == 200 and response.json()["expires_in"] == 600


# -- expiry ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expires_in", [301, 600, 172_799])
def test_requested_expires_in_is_honoured_inside_zendesks_range(
    oauth: RunningSimulator, expires_in: int
) -> None:
    assert granted(oauth, grant_type="client_credentials", expires_in=expires_in)["expires_in"] == expires_in


@pytest.mark.parametrize("expires_in", [300, 299, 172_800, 999_999, -1, "soon", 1.5])
def test_expires_in_outside_zendesks_range_gives_400_invalid_request(
    oauth: RunningSimulator, expires_in: Any
) -> None:
    oauth_error(
        token_request(oauth, grant_type="client_credentials", expires_in=expires_in), 400, "invalid_request"
    )


def test_expires_in_must_stay_below_the_refresh_tokens_lifetime(oauth: RunningSimulator) -> None:
    oauth.control.add_oauth_code("c")
    response = token_request(
        oauth, grant_type="authorization_code", code="c", expires_in=172_000, refresh_token_expires_in=604_800
    )
    assert response.status_code == 200  # 172,000 s is below 7 days
    oauth.control.add_oauth_code("d")
    oauth.control.set_options(oauth_min_refresh_expires_in_s=60)
    too_long = token_request(
        oauth, grant_type="authorization_code", code="d", expires_in=3600, refresh_token_expires_in=600
    )
    oauth_error(too_long, 400, "invalid_request")


def test_a_lowered_floor_gives_two_second_tokens_that_expire_on_the_simulator_clock(
    oauth: RunningSimulator,
) -> None:
    oauth.control.set_options(oauth_min_expires_in_s=1)
    body = granted(oauth, grant_type="client_credentials", expires_in=2)
    assert body["expires_in"] == 2
    oauth.control.advance_clock(1.9)
    assert api_get(oauth, body["access_token"]).status_code == 200
    oauth.control.advance_clock(0.1)
    expired = api_get(oauth, body["access_token"])
    assert expired.status_code == 401 and expired.json() == INVALID_TOKEN


def test_the_default_access_lifetime_is_an_option(oauth: RunningSimulator) -> None:
    oauth.control.set_options(oauth_access_ttl_s=5)
    body = granted(oauth, grant_type="client_credentials")
    assert body["expires_in"] == 5
    oauth.control.advance_clock(5)
    assert api_get(oauth, body["access_token"]).json() == INVALID_TOKEN


def test_non_expiring_tokens_come_without_expiry_or_refresh_token(oauth: RunningSimulator) -> None:
    oauth.control.set_options(oauth_expiring_tokens=False)
    oauth.control.add_oauth_code("c")
    body = granted(oauth, grant_type="authorization_code", code="c")
    assert set(body) == {"access_token", "token_type", "scope"}
    oauth.control.advance_clock(10**7)
    assert api_get(oauth, body["access_token"]).status_code == 200


# -- refresh and rotation --------------------------------------------------------------------------------


def code_grant(sim: RunningSimulator, code: str = "code-1", **fields: Any) -> dict[str, Any]:
    sim.control.add_oauth_code(code)
    return granted(sim, grant_type="authorization_code", code=code, **fields)


def test_a_refresh_rotates_both_tokens_and_invalidates_the_previous_pair(oauth: RunningSimulator) -> None:
    first = code_grant(oauth)
    second = granted(oauth, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert api_get(oauth, second["access_token"]).status_code == 200
    old_access = api_get(oauth, first["access_token"])
    assert old_access.status_code == 401 and old_access.json() == INVALID_TOKEN
    reused = token_request(oauth, grant_type="refresh_token", refresh_token=first["refresh_token"])
    oauth_error(reused, 400, "invalid_grant")
    third = granted(oauth, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert api_get(oauth, third["access_token"]).status_code == 200


def test_a_refresh_keeps_the_scope_and_honours_a_new_expires_in(oauth: RunningSimulator) -> None:
    first = code_grant(oauth, scope="users:write")
    second = granted(oauth, grant_type="refresh_token", refresh_token=first["refresh_token"], expires_in=900)
    assert (second["scope"], second["expires_in"]) == ("users:write", 900)


def test_a_refresh_still_works_after_the_access_token_expired(oauth: RunningSimulator) -> None:
    first = code_grant(oauth)
    oauth.control.advance_clock(1800)
    assert api_get(oauth, first["access_token"]).json() == INVALID_TOKEN
    second = granted(oauth, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert api_get(oauth, second["access_token"]).status_code == 200


def test_an_expired_refresh_token_is_an_invalid_grant(oauth: RunningSimulator) -> None:
    oauth.control.set_options(oauth_min_refresh_expires_in_s=1, oauth_min_expires_in_s=1)
    first = code_grant(oauth, expires_in=5, refresh_token_expires_in=10)
    assert first["refresh_token_expires_in"] == 10
    oauth.control.advance_clock(10)
    oauth_error(
        token_request(oauth, grant_type="refresh_token", refresh_token=first["refresh_token"]),
        400,
        "invalid_grant",
    )


def test_a_refresh_token_of_another_client_is_an_invalid_grant(oauth: RunningSimulator) -> None:
    first = code_grant(oauth)
    oauth.control.add_oauth_client("other", "other-secret")
    response = httpx.post(
        f"{oauth.base_url}/oauth/tokens",
        json={
            "grant_type": "refresh_token",
            "client_id": "other",
            "client_secret": "other-secret",
            "refresh_token": first["refresh_token"],
        },
    )
    oauth_error(response, 400, "invalid_grant")
    oauth_error(token_request(oauth, grant_type="refresh_token"), 400, "invalid_request")


# -- client and grant errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"client_id": CLIENT, "client_secret": "wrong"},
        {"client_id": "nobody", "client_secret": SECRET},
        {"client_id": CLIENT},
        {},
    ],
)
def test_wrong_or_missing_client_credentials_give_401_invalid_client(
    oauth: RunningSimulator, credentials: dict[str, str]
) -> None:
    response = httpx.post(
        f"{oauth.base_url}/oauth/tokens", json={"grant_type": "client_credentials", **credentials}
    )
    oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    "grant_type", ["password", "implicit", "urn:ietf:params:oauth:grant-type:device_code"]
)
def test_unsupported_grant_types_give_400_unsupported_grant_type(
    oauth: RunningSimulator, grant_type: str
) -> None:
    oauth_error(token_request(oauth, grant_type=grant_type), 400, "unsupported_grant_type")


def test_a_missing_grant_type_or_a_body_that_is_not_an_object_gives_400_invalid_request(
    oauth: RunningSimulator,
) -> None:
    oauth_error(token_request(oauth), 400, "invalid_request")
    for content in (b"[1, 2]", b"{nope", b'"text"'):
        response = httpx.post(
            f"{oauth.base_url}/oauth/tokens", content=content, headers={"Content-Type": "application/json"}
        )
        oauth_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "fields",
    [
        {"grant_type": ["client_credentials"]},
        {"grant_type": "authorization_code", "code": {"a": 1}},
        {"grant_type": "refresh_token", "refresh_token": [1]},
        {"grant_type": "client_credentials", "scope": ["read"]},
        {"grant_type": "client_credentials", "expires_in": True},
    ],
)
def test_wrongly_typed_token_request_fields_give_400_never_500(
    oauth: RunningSimulator, fields: dict[str, Any]
) -> None:
    response = token_request(oauth, **fields)
    assert response.status_code == 400 and response.json()["error"] in (
        "invalid_request",
        "unsupported_grant_type",
    )


# -- API requests, revocation, control API ---------------------------------------------------------------


def test_revoking_all_access_tokens_gives_invalid_token_but_refresh_still_works(
    oauth: RunningSimulator,
) -> None:
    pair = code_grant(oauth)
    machine = granted(oauth, grant_type="client_credentials")
    assert oauth.control.revoke_oauth_tokens() == {"revoked_access_tokens": 2, "revoked_refresh_tokens": 0}
    for token in (pair["access_token"], machine["access_token"]):
        response = api_get(oauth, token)
        assert response.status_code == 401 and response.json() == INVALID_TOKEN
    renewed = granted(oauth, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    assert api_get(oauth, renewed["access_token"]).status_code == 200


def test_revoking_refresh_tokens_too_forces_a_new_grant(oauth: RunningSimulator) -> None:
    pair = code_grant(oauth)
    assert oauth.control.revoke_oauth_tokens(refresh_tokens=True)["revoked_refresh_tokens"] == 1
    refused = token_request(oauth, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    oauth_error(refused, 400, "invalid_grant")


def test_revocation_can_target_one_client(oauth: RunningSimulator) -> None:
    mine = granted(oauth, grant_type="client_credentials")
    oauth.control.add_oauth_client("other", "other-secret")
    theirs = httpx.post(
        f"{oauth.base_url}/oauth/tokens",
        json={"grant_type": "client_credentials", "client_id": "other", "client_secret": "other-secret"},
    ).json()
    oauth.control.revoke_oauth_tokens(client_id="other")
    assert api_get(oauth, mine["access_token"]).status_code == 200
    assert api_get(oauth, theirs["access_token"]).status_code == 401


def test_control_lists_token_metadata_and_grant_counts_but_never_token_values(
    oauth: RunningSimulator,
) -> None:
    pair = code_grant(oauth)
    renewed = granted(oauth, grant_type="refresh_token", refresh_token=pair["refresh_token"])
    machine = granted(oauth, grant_type="client_credentials")
    api_get(oauth, machine["access_token"])
    api_get(oauth, machine["access_token"])
    dump = oauth.control.oauth()
    raw = orjson.dumps(dump).decode()
    for value in (
        pair["access_token"],
        pair["refresh_token"],
        renewed["access_token"],
        machine["access_token"],
    ):
        assert value not in raw
    assert SECRET not in raw and dump["clients"] == [{"client_id": CLIENT}]
    tokens = oauth.control.oauth_tokens(client_id=CLIENT)
    assert [(t["grant_type"], t["state"]) for t in tokens] == [
        ("authorization_code", "rotated"),
        ("refresh_token", "active"),
        ("client_credentials", "active"),
    ]
    assert tokens[2]["token"] == "***" + machine["access_token"][-4:]
    assert tokens[2]["uses"] == 2 and tokens[2]["expires_at"] - tokens[2]["issued_at"] == 1800
    assert [r["state"] for r in dump["refresh_tokens"]] == ["rotated", "active"]
    assert oauth.control.oauth_grants() == {
        "client_credentials": 1,
        "authorization_code": 1,
        "refresh_token": 1,
    }
    token_request(oauth, grant_type="password")
    assert oauth.control.oauth()["failures"] == {"unsupported_grant_type": 1}


def test_expired_tokens_show_as_expired_in_the_control_api(oauth: RunningSimulator) -> None:
    granted(oauth, grant_type="client_credentials")
    oauth.control.advance_clock(1800)
    assert [t["state"] for t in oauth.control.oauth_tokens()] == ["expired"]


def test_api_requests_log_how_they_authenticated(oauth: RunningSimulator) -> None:
    body = granted(oauth, grant_type="client_credentials")
    api_get(oauth, body["access_token"])
    with oauth.client() as zd:
        zd.get("/api/v2/user_fields")
    api_get(oauth, "not-a-token")
    log = oauth.control.requests(path="user_fields")
    assert [(e["auth"], e["status"]) for e in log] == [
        (f"oauth:{CLIENT}", 200),
        ("api_token", 200),
        (None, 401),
    ]
    assert [e["seq"] for e in oauth.control.requests(auth=f"oauth:{CLIENT}")] == [log[0]["seq"]]


def test_token_requests_are_logged_without_token_values(oauth: RunningSimulator) -> None:
    body = granted(oauth, grant_type="client_credentials")
    token_request(oauth, grant_type="client_credentials", client_secret="wrong")
    log = oauth.control.requests(path="^/oauth/tokens$")
    assert [(e["status"], e["change"]) for e in log] == [
        (200, {"kind": "oauth.token", "grant_type": "client_credentials", "client_id": CLIENT}),
        (401, {"kind": "oauth.token_refused", "error": "invalid_client"}),
    ]
    assert body["access_token"] not in orjson.dumps(log).decode()


def test_the_token_endpoint_is_outside_the_api_rate_limits(oauth: RunningSimulator) -> None:
    oauth.control.reset(manual_clock=True, plan="team", limit_scale=0.01)  # 2 requests per minute
    oauth.control.add_oauth_client(CLIENT, SECRET)
    responses = [token_request(oauth, grant_type="client_credentials") for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    assert "x-rate-limit" not in responses[0].headers
    assert api_get(oauth, responses[0].json()["access_token"]).headers["x-rate-limit-remaining"] == "1"


def test_faults_can_fail_the_token_endpoint(oauth: RunningSimulator) -> None:
    oauth.control.inject_fault(path="^/oauth/tokens", status=503, retry_after=3)
    failed = token_request(oauth, grant_type="client_credentials")
    assert failed.status_code == 503 and failed.headers["retry-after"] == "3"
    assert token_request(oauth, grant_type="client_credentials").status_code == 200


def test_reset_drops_runtime_clients_and_every_issued_token(oauth: RunningSimulator) -> None:
    body = granted(oauth, grant_type="client_credentials")
    oauth.control.reset(rate_limits=False, manual_clock=True)
    assert api_get(oauth, body["access_token"]).json() == INVALID_TOKEN
    oauth_error(token_request(oauth, grant_type="client_credentials"), 401, "invalid_client")
    assert oauth.control.oauth()["access_tokens"] == []


def test_oauth_clients_can_be_set_as_an_option(sim: RunningSimulator) -> None:
    sim.control.set_options(oauth_clients={CLIENT: SECRET}, oauth_codes=["c"])
    assert sim.control.options()["oauth_clients"] == {CLIENT: "***"}
    assert granted(sim, grant_type="authorization_code", code="c")["token_type"] == "bearer"


def test_launch_clients_static_bearer_and_issued_tokens_work_together() -> None:
    with run_simulator(
        extra_args=["--oauth-token", "static-token", "--manual-clock", "--oauth-client", "cli:cli-secret"],
        oauth_clients={CLIENT: SECRET},
        oauth_codes=["launch-code"],
    ) as running:
        machine = running.request_oauth_token(CLIENT)["access_token"]
        pair = running.request_oauth_token(CLIENT, grant_type="authorization_code", code="launch-code")
        from_flag = running.request_oauth_token("cli")["access_token"]
        with running.client() as static, running.bearer_client(machine) as issued:
            assert static.get("/api/v2/user_fields").status_code == 200
            assert issued.get("/api/v2/user_fields").status_code == 200
        assert api_get(running, pair["access_token"]).status_code == 200
        assert api_get(running, from_flag).status_code == 200
        running.control.reset()
        clients = [c["client_id"] for c in running.control.oauth()["clients"]]
        assert sorted(clients) == ["cli", CLIENT]  # launch clients survive a reset


def test_api_tokens_keep_working_alongside_oauth_clients(oauth: RunningSimulator) -> None:
    with oauth.client() as zd:
        assert zd.get("/api/v2/user_fields").status_code == 200
