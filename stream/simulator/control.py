"""The control API for tests, under ``/_simulator/``: no auth, no rate limits, not in the request log.

Endpoints (JSON in and out; see docs/simulator.md for the bodies):

- ``GET /_simulator/health``: ``{"ok": true}``.
- ``POST /_simulator/reset``: empty account; body ``{"options": {...}}`` applies options over the launch ones.
- ``POST /_simulator/seed``: create users, organizations, fields and memberships directly; returns their ids.
- ``GET /_simulator/state``: dump of everything, including identities, side effects and jobs.
- ``GET /_simulator/requests`` (filters ``since``, ``user_id``, ``user_key``, ``method``, ``path``).
- ``POST /_simulator/faults``: fail the next N requests matching method/path; ``GET``/``DELETE`` list/clear.
- ``POST /_simulator/outages``: a window during which every Zendesk request fails.
- ``GET``/``PATCH /_simulator/options``: read or change options at runtime.
- ``GET /_simulator/clock``; ``POST /_simulator/clock/advance`` ``{"seconds": n}`` moves the manual clock.
- ``POST /_simulator/jobs/complete``: complete every in-flight job now.
- ``GET /_simulator/oauth``: OAuth clients, issued tokens (values masked), grant counts.
- ``POST /_simulator/oauth/clients`` ``{"client_id", "client_secret"}``; ``POST /_simulator/oauth/codes``
  ``{"code"}``; ``POST /_simulator/oauth/revoke`` ``{"client_id"?, "refresh_tokens"?}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson

from stream.simulator.clock import ManualClock
from stream.simulator.core import Simulator
from stream.simulator.errors import ZendeskError
from stream.simulator.jobs import job_json
from stream.simulator.messages import Reply
from stream.simulator.state import (
    User,
    check_organization_attributes,
    check_user_attributes,
)
from stream.simulator.views import Urls, field_json, membership_json, organization_json, user_json

CONTROL_PREFIX = "/_simulator/"

ControlHandler = Callable[[Simulator, Any, dict[str, str], Urls], Reply]


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _ok(body: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=body)


def _object(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ControlError("the body must be a JSON object")
    return body


def health(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    return _ok({"ok": True})


def reset(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    options = _object(body).get("options") or {}
    try:
        sim.reset(options)
    except ValueError as error:
        raise ControlError(str(error)) from error
    return _ok({"options": sim.options.public_dict()})


def seed(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    """Create records directly, bypassing rate limits; a record may carry its own ``id``."""
    data = _object(body)
    now = sim.now()
    state = sim.state
    created: dict[str, list[dict[str, Any]]] = {}
    try:
        for kind in ("user", "organization"):
            created[f"{kind}_fields"] = [
                {"id": d.id, "key": d.key}
                for d in (state.create_field(kind, attrs, now) for attrs in data.get(f"{kind}_fields", []))
            ]
        created["organizations"] = []
        for attrs in data.get("organizations", []):
            clean = check_organization_attributes(attrs, "simulator/seed")
            org = state.create_organization(clean, now, forced_id=clean.get("id"))
            created["organizations"].append({"id": org.id, "external_id": org.external_id, "name": org.name})
        created["users"] = []
        for attrs in data.get("users", []):
            clean = check_user_attributes(attrs, "simulator/seed")
            user = state.create_user(clean, now, forced_id=clean.get("id"))
            created["users"].append({"id": user.id, "external_id": user.external_id, "email": user.email})
        created["memberships"] = [
            {"id": m.id, "user_id": m.user_id, "organization_id": m.organization_id}
            for m in (_seed_membership(sim, attrs, now) for attrs in data.get("memberships", []))
        ]
    except ZendeskError as error:
        raise ControlError(f"seed rejected: {error.status} {orjson.dumps(error.body).decode()}") from error
    except (TypeError, AttributeError) as error:
        raise ControlError(f"seed body has the wrong shape: {error}") from error
    return _ok(created, status=201)


def _seed_membership(sim: Simulator, attrs: dict[str, Any], now: float) -> Any:
    """A membership names its user by ``user_id`` or ``user_external_id``, its org likewise."""
    user_id = attrs.get("user_id")
    if user_id is None and attrs.get("user_external_id"):
        user = sim.state.user_by_external_id(attrs["user_external_id"])
        user_id = user.id if user else None
    org_id = attrs.get("organization_id")
    if org_id is None and attrs.get("organization_external_id"):
        org = sim.state.organization_by_external_id(attrs["organization_external_id"])
        org_id = org.id if org else None
    return sim.state.create_membership(
        user_id=user_id, organization_id=org_id, default=attrs.get("default"), now=now
    )


def _user_dump(sim: Simulator, user: User, urls: Urls) -> dict[str, Any]:
    body = user_json(sim.state, user, urls)
    body["identities"] = [
        {"type": i.type, "value": i.value, "verified": i.verified, "primary": i.primary}
        for i in user.identities
    ]
    body["welcome_emails_sent"] = user.welcome_emails_sent
    return body


def dump_state(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    state = sim.state
    return _ok(
        {
            "users": [_user_dump(sim, u, urls) for u in state.users.values()],
            "organizations": [organization_json(state, o, urls) for o in state.organizations.values()],
            "user_fields": [field_json(d, urls) for d in state.list_fields("user")],
            "organization_fields": [field_json(d, urls) for d in state.list_fields("organization")],
            "organization_memberships": [membership_json(state, m, urls) for m in state.memberships.values()],
            "profiles": [
                {
                    "id": p.id,
                    "source": p.source,
                    "type": p.type,
                    "name": p.name,
                    "user_id": p.user_id,
                    "identifiers": p.identifiers,
                }
                for p in state.profiles.values()
            ],
            "events": [
                {
                    "id": e.id,
                    "profile_id": e.profile_id,
                    "user_id": e.user_id,
                    "source": e.source,
                    "type": e.type,
                    "description": e.description,
                    "properties": e.properties,
                    "created_at": e.created_at,
                    "received_at": e.received_at,
                }
                for e in state.events
            ],
            "job_statuses": [job_json(j, urls.of(f"job_statuses/{j.id}")) for j in sim.jobs.jobs.values()],
            "side_effects": list(state.side_effects),
            "clock": sim.now(),
        }
    )


def request_log(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    entries = list(sim.log.entries)
    if query.get("since"):
        since = _int_param(query, "since")
        entries = [e for e in entries if e.seq > since]
    if query.get("user_id"):
        user_id = _int_param(query, "user_id")
        entries = [e for e in entries if e.user_id == user_id]
    if query.get("user_key"):
        entries = [e for e in entries if e.user_key == query["user_key"]]
    if query.get("method"):
        entries = [e for e in entries if e.method == query["method"].upper()]
    if query.get("auth"):
        entries = [e for e in entries if e.auth == query["auth"]]
    if query.get("path"):
        pattern = re.compile(query["path"])
        entries = [e for e in entries if pattern.search(e.path)]
    return _ok({"requests": [e.to_json() for e in entries]})


def _int_param(query: dict[str, str], name: str) -> int:
    try:
        return int(query[name])
    except ValueError as error:
        raise ControlError(f"{name} must be an integer") from error


def clear_request_log(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    sim.log.entries.clear()
    return _ok({"cleared": True})


def add_fault(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    try:
        rule = sim.faults.add_rule(_object(body))
    except ValueError as error:
        raise ControlError(str(error)) from error
    return _ok({"fault": rule.to_json()}, status=201)


def list_faults(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    return _ok(
        {
            "faults": [r.to_json() for r in sim.faults.rules],
            "outages": [o.to_json() for o in sim.faults.outages],
        }
    )


def clear_faults(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    sim.faults.clear()
    return _ok({"cleared": True})


def add_outage(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    try:
        outage = sim.faults.add_outage(_object(body), sim.now())
    except ValueError as error:
        raise ControlError(str(error)) from error
    return _ok({"outage": outage.to_json()}, status=201)


def get_options(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    return _ok({"options": sim.options.public_dict()})


def change_options(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    try:
        sim.change_options(_object(body))
    except (ValueError, TypeError) as error:
        raise ControlError(str(error)) from error
    return _ok({"options": sim.options.public_dict()})


def get_clock(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    return _ok({"now": sim.now(), "manual": isinstance(sim.clock, ManualClock)})


def advance_clock(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    if not isinstance(sim.clock, ManualClock):
        raise ControlError("the clock is not manual; set the manual_clock option first", status=409)
    seconds = _object(body).get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ControlError("seconds must be a non-negative number")
    sim.clock.advance(float(seconds))
    sim.jobs.advance(sim.now())
    return _ok({"now": sim.now(), "manual": True})


def complete_jobs(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    sim.jobs.complete_all(sim.now())
    return _ok({"completed": True})


def oauth_dump(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    return _ok(sim.oauth.dump(sim.now()))


def add_oauth_client(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    """A confidential client, until the next reset (launch clients survive resets)."""
    data = _object(body)
    client_id, secret = data.get("client_id"), data.get("client_secret")
    if not isinstance(client_id, str) or not client_id or not isinstance(secret, str) or not secret:
        raise ControlError("client_id and client_secret must be non-empty strings")
    sim.change_options({"oauth_clients": {**sim.options.oauth_clients, client_id: secret}})
    return _ok({"client_id": client_id}, status=201)


def add_oauth_code(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    """An authorization code any client can exchange once, until the next reset."""
    code = _object(body).get("code")
    if not isinstance(code, str) or not code:
        raise ControlError("code must be a non-empty string")
    sim.change_options({"oauth_codes": [*sim.options.oauth_codes, code]})
    return _ok({"added": True}, status=201)


def revoke_oauth_tokens(sim: Simulator, body: Any, query: dict[str, str], urls: Urls) -> Reply:
    """End every live access token (of ``client_id`` when given; refresh tokens too if asked)."""
    data = _object(body)
    client_id, refresh_tokens = data.get("client_id"), data.get("refresh_tokens", False)
    if client_id is not None and not isinstance(client_id, str):
        raise ControlError("client_id must be a string")
    if not isinstance(refresh_tokens, bool):
        raise ControlError("refresh_tokens must be true or false")
    return _ok(sim.oauth.revoke(client_id=client_id, refresh_tokens=refresh_tokens))


CONTROL_ROUTES: dict[tuple[str, str], ControlHandler] = {
    ("GET", "health"): health,
    ("POST", "reset"): reset,
    ("POST", "seed"): seed,
    ("GET", "state"): dump_state,
    ("GET", "requests"): request_log,
    ("DELETE", "requests"): clear_request_log,
    ("POST", "faults"): add_fault,
    ("GET", "faults"): list_faults,
    ("DELETE", "faults"): clear_faults,
    ("POST", "outages"): add_outage,
    ("GET", "options"): get_options,
    ("PATCH", "options"): change_options,
    ("POST", "options"): change_options,
    ("GET", "clock"): get_clock,
    ("POST", "clock/advance"): advance_clock,
    ("POST", "jobs/complete"): complete_jobs,
    ("GET", "oauth"): oauth_dump,
    ("POST", "oauth/clients"): add_oauth_client,
    ("POST", "oauth/codes"): add_oauth_code,
    ("POST", "oauth/revoke"): revoke_oauth_tokens,
}


def handle(
    sim: Simulator, *, method: str, path: str, query: dict[str, str], body: bytes, urls: Urls
) -> Reply:
    handler = CONTROL_ROUTES.get((method, path.removeprefix(CONTROL_PREFIX).strip("/")))
    if handler is None:
        return Reply(status=404, body={"error": f"no control endpoint {method} {path}"})
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return Reply(status=400, body={"error": "the body is not JSON"})
    # Jobs whose scheduled end has passed complete before any control call looks at the account.
    sim.jobs.advance(sim.now())
    try:
        return handler(sim, parsed, query, urls)
    except ControlError as error:
        return Reply(status=error.status, body={"error": str(error)})
