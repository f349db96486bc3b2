"""Authentication (docs/zendesk-api.md §11, §1.4)."""

from __future__ import annotations

import base64

import httpx
import pytest

from stream.simulator.testing import RunningSimulator, run_simulator


def basic(user: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()}


def test_api_token_basic_auth_is_accepted(sim: RunningSimulator) -> None:
    headers = basic("admin@example.com/token", "simulator-token")
    assert httpx.get(f"{sim.base_url}/api/v2/user_fields.json", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("admin@example.com/token", "wrong"),
        basic("someone@example.com/token", "simulator-token"),
        basic("admin@example.com", "simulator-token"),
        {"Authorization": "Basic !!!"},
    ],
)
def test_bad_or_missing_credentials_give_401_couldnt_authenticate(
    sim: RunningSimulator, headers: dict[str, str]
) -> None:
    response = httpx.get(f"{sim.base_url}/api/v2/user_fields.json", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Couldn't authenticate you"}
    assert response.headers["www-authenticate"] == 'Basic realm="Web Password"'


def test_invalid_bearer_token_gives_401_invalid_token(sim: RunningSimulator) -> None:
    response = httpx.get(f"{sim.base_url}/api/v2/user_fields", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.json()["error_description"].startswith("The access token provided is expired")


def test_oauth_bearer_token_is_accepted_when_configured() -> None:
    with run_simulator(extra_args=["--oauth-token", "oauth-secret"]) as sim:
        ok = httpx.get(f"{sim.base_url}/api/v2/user_fields", headers={"Authorization": "Bearer oauth-secret"})
        token = httpx.get(f"{sim.base_url}/api/v2/user_fields", headers=basic("admin@example.com/token", "x"))
        assert ok.status_code == 200
        assert token.status_code == 401


def test_control_api_needs_no_auth(sim: RunningSimulator) -> None:
    assert httpx.get(f"{sim.base_url}/_simulator/health").json() == {"ok": True}
