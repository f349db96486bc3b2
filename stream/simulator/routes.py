"""The Zendesk endpoints the service uses: routing table and handlers (HTTP shape around :mod:`state`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stream.simulator import bulk, errors
from stream.simulator.bulk import MAX_BULK, PARAMETER_TOO_MANY, check_bulk_size
from stream.simulator.core import Simulator
from stream.simulator.errors import ZendeskError
from stream.simulator.jobs import job_json
from stream.simulator.messages import HTML_TYPE, Reply, Request
from stream.simulator.pagination import paginate
from stream.simulator.ratelimit import Refusal
from stream.simulator.state import (
    CustomField,
    FieldKind,
    Membership,
    Organization,
    User,
    check_organization_attributes,
    check_user_attributes,
    envelope_object,
)
from stream.simulator.views import field_json, membership_json, organization_json, user_json

Handler = Callable[[Simulator, Request], Reply]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    events_api: bool = False
    public: bool = False  # no API authentication, no account bucket, no rate-limit headers (OAuth)


class Router:
    """Exact paths by dictionary lookup, parameterised ones by regular expression (ids are digits)."""

    def __init__(self, routes: Sequence[Route]) -> None:
        self._exact: dict[tuple[str, str], Route] = {}
        self._patterns: list[tuple[Route, re.Pattern[str]]] = []
        for route in routes:
            if "(" not in route.pattern:
                self._exact[(route.method, route.pattern)] = route
            else:
                self._patterns.append((route, re.compile(f"^{route.pattern}$")))

    def match(self, method: str, path: str) -> tuple[Route, tuple[str, ...]] | None:
        route = self._exact.get((method, path))
        if route is not None:
            return route, ()
        for candidate, pattern in self._patterns:
            if candidate.method == method:
                found = pattern.match(path)
                if found is not None:
                    return candidate, found.groups()
        return None


# -- helpers ---------------------------------------------------------------------------------------------


def rate_limited(refusal: Refusal) -> Reply:
    return Reply(
        status=429,
        body=refusal.body,
        headers=[*refusal.headers, ("retry-after", str(refusal.retry_after))],
        content_type=HTML_TYPE if isinstance(refusal.body, str) else "application/json; charset=utf-8",
    )


def _user_reply(sim: Simulator, req: Request, user: User, *, status: int = 200, **extra: Any) -> Reply:
    return Reply(
        status=status,
        body={"user": user_json(sim.state, user, req.urls)},
        user_id=user.id,
        user_key=user.key,
        **extra,
    )


def _page_url(req: Request) -> str:
    return f"{req.urls.base}{req.path}{req.urls.suffix}"


READ_ONLY_KEYS = ("url", "created_at", "updated_at")


def _restricted_keys_warning(attrs: dict[str, Any]) -> list[tuple[str, str]]:
    """Read-only attributes are dropped without error, with a warning header (docs/zendesk-api.md §1.2)."""
    removed = [key for key in READ_ONLY_KEYS if key in attrs]
    if not removed:
        return []
    listed = ", ".join(f'"{key}"' for key in removed)
    return [
        ("x-zendesk-api-warn", f"Removed restricted keys [{listed}] from parameters according to whitelist")
    ]


# -- users -----------------------------------------------------------------------------------------------

CREATE_OR_UPDATE = "api/v2/users/create_or_update"


def create_or_update_user(sim: Simulator, req: Request) -> Reply:
    attrs = check_user_attributes(envelope_object(req.json(), "user", CREATE_OR_UPDATE), CREATE_OR_UPDATE)
    bucket_key = sim.state.rate_limit_key(attrs)
    refusal, bucket = sim.limiter.take_create_update_user(req.now, user_key=bucket_key)
    if refusal is not None:
        return rate_limited(refusal)
    try:
        write = sim.state.create_or_update_user(attrs, req.now)
    except ZendeskError as error:
        error.headers.append(bucket)
        raise
    sim.limiter.alias_user(bucket_key, f"id:{write.user.id}")
    location = req.urls.of(f"users/{write.user.id}")
    kind = "user.create" if write.created else "user.update"
    return _user_reply(
        sim,
        req,
        write.user,
        status=201 if write.created else 200,
        headers=[bucket, ("location", location), *_restricted_keys_warning(attrs)],
        change={"kind": kind, "fields": list(write.changed)},
    )


def create_user(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/users/create"
    attrs = check_user_attributes(envelope_object(req.json(), "user", endpoint), endpoint)
    user = sim.state.create_user(attrs, req.now)
    return _user_reply(
        sim,
        req,
        user,
        status=201,
        headers=[("location", req.urls.of(f"users/{user.id}"))],
        change={"kind": "user.create", "fields": sorted(attrs)},
    )


def update_user(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/users/update"
    user = sim.state.get_user(req.id_param())
    attrs = check_user_attributes(envelope_object(req.json(), "user", endpoint), endpoint)
    refusal, bucket = sim.limiter.take_create_update_user(req.now, user_key=f"id:{user.id}")
    if refusal is not None:
        return rate_limited(refusal)
    changed = sim.state.update_user(user, attrs, req.now)
    return _user_reply(
        sim, req, user, headers=[bucket], change={"kind": "user.update", "fields": list(changed)}
    )


def show_user(sim: Simulator, req: Request) -> Reply:
    return _user_reply(sim, req, sim.state.get_user(req.id_param()))


def search_users(sim: Simulator, req: Request) -> Reply:
    """``external_id=`` is an exact lookup; ``query=`` goes through the (optionally lagging) search index."""
    if "external_id" in req.query:
        user = sim.state.user_by_external_id(req.query["external_id"])
        found = [user] if user is not None else []
    else:
        found = sim.state.search_users(req.query.get("query", ""), req.now)
    body = paginate(
        found,
        name="users",
        render=lambda u: user_json(sim.state, u, req.urls),
        query=req.query,
        page_url=_page_url(req),
        allow_cursor=False,
    )
    return Reply(status=200, body=body)


def show_many_users(sim: Simulator, req: Request) -> Reply:
    ids, external_ids = req.id_list("ids"), req.string_list("external_ids")
    check_bulk_size(len(ids) + len(external_ids), "Maximum 100 users may be requested per call")
    users = sim.state.show_many_users(ids=ids, external_ids=external_ids)
    return Reply(status=200, body={"users": [user_json(sim.state, u, req.urls) for u in users]})


def list_users(sim: Simulator, req: Request) -> Reply:
    users: list[User] = list(sim.state.users.values())
    if "external_id" in req.query:
        match = sim.state.user_by_external_id(req.query["external_id"])
        users = [match] if match is not None else []
    body = paginate(
        users,
        name="users",
        render=lambda u: user_json(sim.state, u, req.urls),
        query=req.query,
        page_url=_page_url(req),
    )
    return Reply(status=200, body=body)


# -- organizations ---------------------------------------------------------------------------------------


def _org_reply(sim: Simulator, req: Request, org: Organization, *, status: int = 200, **extra: Any) -> Reply:
    return Reply(status=status, body={"organization": organization_json(sim.state, org, req.urls)}, **extra)


def _created_org(sim: Simulator, req: Request, org: Organization) -> Reply:
    return _org_reply(
        sim,
        req,
        org,
        status=201,
        headers=[("location", req.urls.of(f"organizations/{org.id}"))],
        change={"kind": "organization.create", "organization_id": org.id},
    )


def create_organization(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/organizations/create"
    attrs = check_organization_attributes(envelope_object(req.json(), "organization", endpoint), endpoint)
    return _created_org(sim, req, sim.state.create_organization(attrs, req.now))


def create_or_update_organization(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/organizations/create_or_update"
    attrs = check_organization_attributes(envelope_object(req.json(), "organization", endpoint), endpoint)
    org = sim.state.resolve_organization(attrs)
    warning = _restricted_keys_warning(attrs)
    if org is None:
        reply = _created_org(sim, req, sim.state.create_organization(attrs, req.now))
        reply.headers.extend(warning)
        return reply
    if sim.options.org_update_limit_on_create_or_update:
        refusal = sim.limiter.take_org_update(req.now, organization_id=org.id)
        if refusal is not None:
            return rate_limited(refusal)
    changed = sim.state.update_organization(org, attrs, req.now)
    return _org_reply(
        sim,
        req,
        org,
        headers=warning,
        change={"kind": "organization.update", "organization_id": org.id, "fields": list(changed)},
    )


def update_organization(sim: Simulator, req: Request) -> Reply:
    endpoint = "api/v2/organizations/update"
    org = sim.state.get_organization(req.id_param())
    attrs = check_organization_attributes(envelope_object(req.json(), "organization", endpoint), endpoint)
    refusal = sim.limiter.take_org_update(req.now, organization_id=org.id)
    if refusal is not None:
        return rate_limited(refusal)
    changed = sim.state.update_organization(org, attrs, req.now)
    return _org_reply(
        sim,
        req,
        org,
        change={"kind": "organization.update", "organization_id": org.id, "fields": list(changed)},
    )


def show_organization(sim: Simulator, req: Request) -> Reply:
    return _org_reply(sim, req, sim.state.get_organization(req.id_param()))


def search_organizations(sim: Simulator, req: Request) -> Reply:
    """``external_id=`` or ``name=``, not both; both match exactly, case-insensitively (§5.5)."""
    external_id, name = req.query.get("external_id"), req.query.get("name")
    if (external_id is None) == (name is None):
        raise ZendeskError(
            400, {"error": "InvalidParameter", "description": "Supply either external_id or name, not both"}
        )
    if external_id is not None:
        org = sim.state.organization_by_external_id(external_id)
        found = [org] if org is not None else []
    else:
        found = sim.state.organizations_by_name(name or "")
    body = paginate(
        found,
        name="organizations",
        render=lambda o: organization_json(sim.state, o, req.urls),
        query=req.query,
        page_url=_page_url(req),
        allow_cursor=False,
    )
    return Reply(status=200, body=body)


def show_many_organizations(sim: Simulator, req: Request) -> Reply:
    ids, external_ids = req.id_list("ids"), req.string_list("external_ids")
    check_bulk_size(len(ids) + len(external_ids), PARAMETER_TOO_MANY, max_count=MAX_BULK)
    found = [sim.state.organizations[i] for i in ids if i in sim.state.organizations]
    found += [o for e in external_ids if (o := sim.state.organization_by_external_id(e)) is not None]
    return Reply(
        status=200,
        body=paginate(
            found,
            name="organizations",
            render=lambda o: organization_json(sim.state, o, req.urls),
            query={},
            page_url=_page_url(req),
            allow_cursor=False,
        ),
    )


# -- custom fields ---------------------------------------------------------------------------------------


def field_handlers(kind: FieldKind) -> dict[str, Handler]:
    plural, single = f"{kind}_fields", f"{kind}_field"

    def render(definition: CustomField, req: Request) -> dict[str, Any]:
        return field_json(definition, req.urls)

    def list_fields(sim: Simulator, req: Request) -> Reply:
        body = paginate(
            sim.state.list_fields(kind),
            name=plural,
            render=lambda d: render(d, req),
            query=req.query,
            page_url=_page_url(req),
        )
        return Reply(status=200, body=body)

    def show_field(sim: Simulator, req: Request) -> Reply:
        return Reply(status=200, body={single: render(sim.state.get_field(kind, req.params[0]), req)})

    def create_field(sim: Simulator, req: Request) -> Reply:
        attrs = envelope_object(req.json(), single, f"api/v2/{plural}/create")
        definition = sim.state.create_field(kind, attrs, req.now)
        return Reply(
            status=201,
            body={single: render(definition, req)},
            headers=[("location", req.urls.of(f"{plural}/{definition.id}"))],
            change={"kind": f"{single}.create", "key": definition.key},
        )

    def delete_field(sim: Simulator, req: Request) -> Reply:
        definition = sim.state.delete_field(kind, req.params[0])
        return Reply(status=204, change={"kind": f"{single}.delete", "key": definition.key})

    return {"list": list_fields, "show": show_field, "create": create_field, "delete": delete_field}


# -- organization memberships ----------------------------------------------------------------------------


def _membership_reply(sim: Simulator, req: Request, membership: Membership) -> Reply:
    user = sim.state.users[membership.user_id]
    return Reply(
        status=201,
        body={"organization_membership": membership_json(sim.state, membership, req.urls)},
        headers=[("location", req.urls.of(f"organization_memberships/{membership.id}"))],
        user_id=user.id,
        user_key=user.key,
        change={"kind": "membership.create", "organization_id": membership.organization_id},
    )


def create_membership(sim: Simulator, req: Request) -> Reply:
    attrs = envelope_object(req.json(), "organization_membership", "api/v2/organization_memberships/create")
    membership = sim.state.create_membership(
        user_id=attrs.get("user_id"),
        organization_id=attrs.get("organization_id"),
        default=attrs.get("default"),
        now=req.now,
    )
    return _membership_reply(sim, req, membership)


def create_user_membership(sim: Simulator, req: Request) -> Reply:
    user = sim.state.get_user(req.id_param())
    attrs = envelope_object(req.json(), "organization_membership", "api/v2/organization_memberships/create")
    membership = sim.state.create_membership(
        user_id=user.id,
        organization_id=attrs.get("organization_id"),
        default=attrs.get("default"),
        now=req.now,
    )
    return _membership_reply(sim, req, membership)


def _membership_list(sim: Simulator, req: Request, memberships: list[Membership]) -> Reply:
    body = paginate(
        memberships,
        name="organization_memberships",
        render=lambda m: membership_json(sim.state, m, req.urls),
        query=req.query,
        page_url=_page_url(req),
    )
    return Reply(status=200, body=body)


def list_user_memberships(sim: Simulator, req: Request) -> Reply:
    user = sim.state.get_user(req.id_param())
    return _membership_list(sim, req, sim.state.memberships_of_user(user.id))


def list_memberships(sim: Simulator, req: Request) -> Reply:
    return _membership_list(sim, req, sorted(sim.state.memberships.values(), key=lambda m: m.id))


def list_organization_memberships(sim: Simulator, req: Request) -> Reply:
    org = sim.state.get_organization(req.id_param())
    mine = [m for m in sim.state.memberships.values() if m.organization_id == org.id]
    return _membership_list(sim, req, sorted(mine, key=lambda m: m.id))


def show_membership(sim: Simulator, req: Request) -> Reply:
    membership = sim.state.get_membership(req.id_param())
    return Reply(
        status=200, body={"organization_membership": membership_json(sim.state, membership, req.urls)}
    )


def _deleted(sim: Simulator, req: Request, membership: Membership) -> Reply:
    sim.state.delete_membership(membership, req.now)
    user = sim.state.users.get(membership.user_id)
    return Reply(
        status=204,
        user_id=membership.user_id,
        user_key=user.key if user else None,
        change={"kind": "membership.delete", "organization_id": membership.organization_id},
    )


def delete_membership(sim: Simulator, req: Request) -> Reply:
    return _deleted(sim, req, sim.state.get_membership(req.id_param()))


def delete_user_membership(sim: Simulator, req: Request) -> Reply:
    membership = sim.state.get_membership(req.id_param(1))
    if membership.user_id != req.id_param(0):
        raise errors.record_not_found()
    return _deleted(sim, req, membership)


def delete_user_organization(sim: Simulator, req: Request) -> Reply:
    return _deleted(sim, req, sim.state.membership_for(req.id_param(0), req.id_param(1)))


# -- job statuses ----------------------------------------------------------------------------------------


def show_job(sim: Simulator, req: Request) -> Reply:
    job = sim.jobs.poll(req.params[0], req.now)
    if job is None:
        raise errors.record_not_found()
    return Reply(status=200, body={"job_status": job_json(job, req.urls.of(f"job_statuses/{job.id}"))})


def list_jobs(sim: Simulator, req: Request) -> Reply:
    """Newest first (docs/zendesk-api.md §7.1)."""
    jobs = sorted(sim.jobs.jobs.values(), key=lambda j: j.created_at, reverse=True)
    body = paginate(
        jobs,
        name="job_statuses",
        render=lambda j: job_json(j, req.urls.of(f"job_statuses/{j.id}")),
        query=req.query,
        page_url=_page_url(req),
    )
    return Reply(status=200, body=body)


# -- events ----------------------------------------------------------------------------------------------


def _event_reply(sim: Simulator, req: Request, *, user_id: int | None) -> Reply:
    event = sim.state.record_event(req.json(), req.now, user_id=user_id)
    user = sim.state.users[event.user_id]
    return Reply(
        status=202,
        body={"profile_id": event.profile_id, "status": "received", "user_id": str(event.user_id)},
        user_id=user.id,
        user_key=user.key,
        change={"kind": "event", "type": event.type, "source": event.source, "event_id": event.id},
    )


def post_profile_event(sim: Simulator, req: Request) -> Reply:
    return _event_reply(sim, req, user_id=None)


def post_user_event(sim: Simulator, req: Request) -> Reply:
    return _event_reply(sim, req, user_id=req.id_param())


def post_legacy_sunshine_event(sim: Simulator, req: Request) -> Reply:
    if not sim.options.serve_legacy_sunshine_events:
        raise errors.invalid_endpoint()
    return _event_reply(sim, req, user_id=None)


def list_user_events(sim: Simulator, req: Request) -> Reply:
    """The user's events, oldest first: `filter[source]`, `filter[type]` (only with a source),
    `filter[start_time]`/`filter[end_time]` on `created_at` (our reading: the docs do not say which
    time), cursor pages with `page[size]`; `links` is an array here, unlike the Support API."""
    user = sim.state.get_user(req.id_param())
    query = req.query
    if "filter[type]" in query and "filter[source]" not in query:
        raise errors.events_error("InvalidParameter", "filter[type] needs filter[source]")
    start, end = (_event_time(query, name) for name in ("filter[start_time]", "filter[end_time]"))
    events = [
        e
        for e in sim.state.events
        if e.user_id == user.id
        and query.get("filter[source]", e.source) == e.source
        and query.get("filter[type]", e.type) == e.type
        and (start is None or _event_time_of(e.created_at) >= start)
        and (end is None or _event_time_of(e.created_at) <= end)
    ]
    page = paginate(
        events,
        name="events",
        render=_event_json,
        query={"page[size]": "100", **query},
        page_url=_page_url(req),
    )
    page["links"] = [page["links"]] if page["links"].get("next") else []
    return Reply(status=200, body=page)


def _event_json(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "source": e.source,
        "type": e.type,
        "description": e.description,
        "properties": e.properties,
        "created_at": e.created_at,
        "received_at": e.received_at,
        "user_id": str(e.user_id),
    }


def _event_time(query: dict[str, str], name: str) -> float | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        return _event_time_of(raw)
    except ValueError:
        raise errors.events_error("InvalidParameter", f"{name} is not an ISO-8601 time") from None


def _event_time_of(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the table -------------------------------------------------------------------------------------------

ID = r"(\d+)"
KEY = r"([A-Za-z0-9_]+)"
V2 = "/api/v2/"


def _field_routes(kind: FieldKind) -> list[Route]:
    handlers = field_handlers(kind)
    base = f"{V2}{kind}_fields"
    return [
        Route("GET", base, handlers["list"]),
        Route("POST", base, handlers["create"]),
        Route("GET", f"{base}/{KEY}", handlers["show"]),
        Route("DELETE", f"{base}/{KEY}", handlers["delete"]),
    ]


def oauth_tokens(sim: Simulator, req: Request) -> Reply:
    return sim.oauth.token_endpoint(req)


ROUTES: list[Route] = [
    Route("POST", "/oauth/tokens", oauth_tokens, public=True),
    Route("POST", f"{V2}users/create_or_update", create_or_update_user),
    Route("POST", f"{V2}users/create_or_update_many", bulk.create_or_update_many_users),
    Route("POST", f"{V2}users", create_user),
    Route("GET", f"{V2}users", list_users),
    Route("GET", f"{V2}users/search", search_users),
    Route("GET", f"{V2}users/show_many", show_many_users),
    Route("GET", f"{V2}users/{ID}", show_user),
    Route("PUT", f"{V2}users/{ID}", update_user),
    Route("GET", f"{V2}users/{ID}/organization_memberships", list_user_memberships),
    Route("POST", f"{V2}users/{ID}/organization_memberships", create_user_membership),
    Route("DELETE", f"{V2}users/{ID}/organization_memberships/{ID}", delete_user_membership),
    Route("DELETE", f"{V2}users/{ID}/organizations/{ID}", delete_user_organization),
    Route("POST", f"{V2}users/{ID}/events", post_user_event, events_api=True),
    Route("GET", f"{V2}users/{ID}/events", list_user_events, events_api=True),
    Route("POST", f"{V2}user_profiles/events", post_profile_event, events_api=True),
    Route("POST", "/api/sunshine/events", post_legacy_sunshine_event, events_api=True),
    *_field_routes("user"),
    *_field_routes("organization"),
    Route("POST", f"{V2}organizations", create_organization),
    Route("POST", f"{V2}organizations/create_or_update", create_or_update_organization),
    Route("POST", f"{V2}organizations/create_many", bulk.create_many_organizations),
    Route("PUT", f"{V2}organizations/update_many", bulk.update_many_organizations),
    Route("GET", f"{V2}organizations/search", search_organizations),
    Route("GET", f"{V2}organizations/show_many", show_many_organizations),
    Route("GET", f"{V2}organizations/{ID}", show_organization),
    Route("PUT", f"{V2}organizations/{ID}", update_organization),
    Route("GET", f"{V2}organizations/{ID}/organization_memberships", list_organization_memberships),
    Route("POST", f"{V2}organization_memberships", create_membership),
    Route("POST", f"{V2}organization_memberships/create_many", bulk.create_many_memberships),
    Route("GET", f"{V2}organization_memberships", list_memberships),
    Route("GET", f"{V2}organization_memberships/{ID}", show_membership),
    Route("DELETE", f"{V2}organization_memberships/{ID}", delete_membership),
    Route("GET", f"{V2}job_statuses", list_jobs),
    Route("GET", f"{V2}job_statuses/show_many", bulk.show_many_jobs),
    Route("GET", f"{V2}job_statuses/([A-Za-z0-9-]+)", show_job),
]

ROUTER = Router(ROUTES)
