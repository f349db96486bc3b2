"""The seam to Zendesk: the only code in the project that touches httpx.

Every method returns a classified `Result` (`Ok | RateLimited | Unavailable | Rejected`, see `classify`);
no httpx exception escapes. 401/403 (and answers that show the base URL is wrong) raise
`ZendeskConfigError` instead: nothing can succeed until a human fixes the settings, and an exception
stops the consumer without every call site having to pass the problem up.

Every request first waits for the rate governor (`stream.zendesk.governor`), so none is fired to
bounce. A 429 that happens all the same is answered as `RateLimited` and pauses its bucket in the
governor; the executor (`stream.delivery.Destination`) sends the request again, which then waits for the
bucket. Retries of `Unavailable` answers are the engine's, with one exception in the transport: a GET,
PUT or DELETE that went out on a kept-alive connection found closed is retried once by aiohttp.
`rate_limits` records the last rate-limit headers seen, per bucket.

Authentication: the Authorization header is taken per request. API-token and static-bearer modes send
the same header always; the OAuth modes ask their `TokenKeeper` (`stream.zendesk.oauth`), which obtains
and renews the access token through `POST <base>/oauth/tokens` on this same httpx client. A request
answered 401 `invalid_token` in those modes renews the token and is sent again (twice at most); only a
third 401 raises `ZendeskConfigError`, the same stop as a 401 in the other modes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import quote

import httpx
import structlog
from httpx_aiohttp import AiohttpTransport

from stream import __version__
from stream.errors import InvalidEvent, ZendeskConfigError
from stream.handover import interruptible
from stream.outcomes import DlqReason
from stream.secret import Secret
from stream.zendesk.cache import ZendeskCache
from stream.zendesk.classify import (
    AuthProblem,
    Classified,
    Ok,
    RateLimited,
    Rejected,
    Result,
    Unavailable,
    UnavailableReason,
    classify,
    classify_exception,
    excerpt,
    is_record_not_found,
    parse_error_body,
)
from stream.zendesk.connection import ClientCredentialsAuth, RefreshTokenAuth, ZendeskConnection
from stream.zendesk.governor import Governor, need_for
from stream.zendesk.oauth import TOKEN_PATH, TokenAnswer, TokenKeeper
from stream.zendesk.ratelimit import RateLimitInfo, RateLimitState, parse_rate_limit

PAGE_SIZE: Final = 100
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0, pool=10.0)
DEFAULT_CONNECTIONS: Final = 20

EXCHANGE_EXCERPT_CHARS: Final = 300

_Step = tuple[str | httpx.URL, dict[str, str] | None]  # (url, params) of the next page


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and its answer, for tools that show the calls (`zendesk-stream explain --send`)."""

    method: str
    path: str  # the template, e.g. /api/v2/users/{id}: no query string, no body
    status: int | None  # None: no answer (timeout, connection error)
    excerpt: str  # the start of the answer's body, secrets blanked; without an answer, why (timeout…)


class ZendeskClient:
    def __init__(
        self,
        *,
        connection: ZendeskConnection,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
        cache: ZendeskCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_pages: int = 100,
        on_exchange: Callable[[Exchange], None] | None = None,
        governor: Governor | None = None,
        token_clock: Callable[[], float] = time.monotonic,
        on_request: Callable[[str, str, float], None] | None = None,
    ) -> None:
        """`on_exchange`, when given, is called after every request with what was asked and answered.
        `on_request` (the metrics) after every request that went out, OAuth token requests included, with
        its path template, its status (or, without an answer, why: `timeout`, `connect_error`, …) and
        its duration in seconds.
        `governor` paces every request against Zendesk's limits (by default: the Enterprise plan's,
        corrected by what Zendesk's headers say). `token_clock` times OAuth token lifetimes."""
        self.governor = governor or Governor()
        self.connection = connection
        self._on_exchange = on_exchange
        self._on_request = on_request
        self.cache = cache if cache is not None else ZendeskCache()
        self.rate_limits = RateLimitState()
        self._logger = structlog.get_logger(__name__)
        self._clock = clock
        self._max_pages = max_pages
        auth = connection.auth
        self._tokens: TokenKeeper | None = None
        self._static_authorization: Secret | None = None
        if isinstance(auth, ClientCredentialsAuth | RefreshTokenAuth):
            self._tokens = TokenKeeper(auth=auth, post=self._post_token, clock=token_clock)
        else:
            self._static_authorization = auth.authorization()
        self._origin = httpx.URL(connection.base_url)
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=30.0
        )
        self._http = httpx.AsyncClient(
            base_url=connection.base_url,
            headers={
                "Accept": "application/json",
                "User-Agent": f"zendesk-stream/{__version__}",
            },
            timeout=timeout,
            limits=limits,
            # aiohttp's connection pool: httpcore's costs O(queued x connections) per request state
            # change, which made the pool, not Zendesk, our bottleneck at 50+ requests in flight.
            transport=transport or AiohttpTransport(limits=limits),
            follow_redirects=False,
        )

    async def __aenter__(self) -> ZendeskClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._tokens is not None:
            await self._tokens.aclose()
        await self._http.aclose()

    @property
    def _secrets(self) -> tuple[str, ...]:
        """What must never be echoed: the configured secrets and, with OAuth, the tokens held."""
        return self._tokens.secrets if self._tokens is not None else self.connection.secrets

    def __repr__(self) -> str:
        return f"ZendeskClient(base_url={self.connection.base_url!r})"

    def token_expires_in_s(self) -> float | None:
        """OAuth modes: seconds the access token held now has left; None in the other modes, or before
        the first token."""
        return self._tokens.expires_in_s() if self._tokens is not None else None

    # --- users ---------------------------------------------------------------------------------------

    async def create_or_update_user(self, user: Mapping[str, Any]) -> Result:
        """POST /api/v2/users/create_or_update: 201 created, 200 updated. The answer's id is cached under
        the external_id and email (both sent and returned)."""
        result = await self._send(
            "POST", "/api/v2/users/create_or_update", body={"user": user}, limit_key=_user_key(user)
        )
        if isinstance(result, Ok):
            user_id = self.cache.learn_user(result.json.get("user"))
            if user_id is not None:
                self.cache.remember_user_id(
                    user_id, external_id=user.get("external_id"), email=user.get("email")
                )
        return result

    async def show_user(self, user_id: int) -> Result:
        result = await self._send("GET", "/api/v2/users/{id}", _path("/api/v2/users/{}", user_id))
        if isinstance(result, Ok):
            self.cache.learn_user(result.json.get("user"))
        elif isinstance(result, Rejected) and is_record_not_found(result):
            self.cache.forget_user(user_id)
        return result

    async def find_users_by_external_id(self, external_id: str) -> Result:
        """GET /api/v2/users/search?external_id=: an exact (case-insensitive) match, not search syntax."""
        result = await self._send("GET", "/api/v2/users/search", params={"external_id": external_id})
        if isinstance(result, Ok):
            self._learn_single(result, "users", "external_id", external_id, self.cache.learn_user)
        return result

    async def search_users_by_email(self, email: str) -> Result:
        """GET /api/v2/users/search?query=email:"…". Search can lag behind writes; only an exact primary
        email match is cached."""
        escaped = email.replace("\\", "\\\\").replace('"', '\\"')
        result = await self._send("GET", "/api/v2/users/search", params={"query": f'email:"{escaped}"'})
        if isinstance(result, Ok):
            self._learn_single(result, "users", "email", email, self.cache.learn_user)
        return result

    # --- custom fields -------------------------------------------------------------------------------

    async def list_user_fields(self) -> Result:
        """All user fields (every page) as `Ok(200, {"user_fields": [...]})`. Not cached here: the
        caller (`Destination.known()`) keeps the one copy of the field definitions."""
        return await self._list_all("/api/v2/user_fields", "user_fields")

    async def list_organization_fields(self) -> Result:
        """All organization fields (every page) as `Ok(200, {"organization_fields": [...]})`."""
        return await self._list_all("/api/v2/organization_fields", "organization_fields")

    async def create_user_field(
        self, key: str, type: str, title: str, description: str | None = None
    ) -> Result:
        """POST /api/v2/user_fields. A 422 "key taken" (`is_duplicate_field_key`): someone else created it."""
        body = {"user_field": _new_field(key, type, title, description)}
        return await self._send("POST", "/api/v2/user_fields", body=body)

    async def create_organization_field(
        self, key: str, type: str, title: str, description: str | None = None
    ) -> Result:
        body = {"organization_field": _new_field(key, type, title, description)}
        return await self._send("POST", "/api/v2/organization_fields", body=body)

    # --- organizations and memberships ---------------------------------------------------------------

    async def create_or_update_organization(self, organization: Mapping[str, Any]) -> Result:
        """POST /api/v2/organizations/create_or_update (matched on id or external_id, never on name)."""
        path = "/api/v2/organizations/create_or_update"
        key = organization.get("external_id")
        result = await self._send(
            "POST", path, body={"organization": organization}, limit_key=key if isinstance(key, str) else None
        )
        if isinstance(result, Ok):
            self.cache.learn_organization(result.json.get("organization"))
        return result

    async def search_organizations_by_external_id(self, external_id: str) -> Result:
        path = "/api/v2/organizations/search"
        result = await self._send("GET", path, params={"external_id": external_id})
        if isinstance(result, Ok):
            self._learn_single(
                result, "organizations", "external_id", external_id, self.cache.learn_organization
            )
        return result

    async def show_organization(self, organization_id: int) -> Result:
        path = _path("/api/v2/organizations/{}", organization_id)
        result = await self._send("GET", "/api/v2/organizations/{id}", path)
        if isinstance(result, Ok):
            self.cache.learn_organization(result.json.get("organization"))
        elif isinstance(result, Rejected) and is_record_not_found(result):
            self.cache.forget_organization(organization_id)
        return result

    async def create_membership(self, user_id: int, organization_id: int) -> Result:
        """POST /api/v2/organization_memberships. "Already a member" is a 422: see `is_already_member`."""
        membership = {"user_id": _id(user_id), "organization_id": _id(organization_id)}
        return await self._send(
            "POST", "/api/v2/organization_memberships", body={"organization_membership": membership}
        )

    async def list_user_memberships(self, user_id: int) -> Result:
        """All of a user's memberships (every page) as `Ok(200, {"organization_memberships": [...]})`."""
        path = _path("/api/v2/users/{}/organization_memberships", user_id)
        template = "/api/v2/users/{user_id}/organization_memberships"
        return await self._list_all(path, "organization_memberships", template=template)

    async def delete_membership(self, user_id: int, membership_id: int) -> Result:
        """204 on success. A 404 means it is already gone (the caller decides whether that is success)."""
        path = _path("/api/v2/users/{}/organization_memberships/{}", user_id, membership_id)
        return await self._send("DELETE", "/api/v2/users/{user_id}/organization_memberships/{id}", path)

    # --- events and jobs -----------------------------------------------------------------------------

    async def send_event(self, body: Mapping[str, Any]) -> Result:
        """POST /api/v2/user_profiles/events: 202 `{"profile_id", "status": "received", "user_id"}`.
        Not idempotent in Zendesk: the caller must not resend an event whose answer was Ok."""
        return await self._send("POST", "/api/v2/user_profiles/events", body=body)

    async def list_user_events(self, user_id: int, params: Mapping[str, str]) -> Result:
        """GET /api/v2/users/{id}/events with `filter[source]`, `filter[type]`, `filter[start_time]`,
        `filter[end_time]`, `page[size]`, `page[after]`: `{"events": [...], "meta": {"has_more",
        "after_cursor"}}`."""
        path = _path("/api/v2/users/{}/events", user_id)
        return await self._send("GET", "/api/v2/users/{id}/events", path, params=params)

    async def show_job_status(self, job_id: str) -> Result:
        path = "/api/v2/job_statuses/" + quote(job_id, safe="")
        return await self._send("GET", "/api/v2/job_statuses/{id}", path)

    async def show_many_job_statuses(self, job_ids: Sequence[str]) -> Result:
        """GET /api/v2/job_statuses/show_many?ids=a,b (at most 100): `{"job_statuses": [...]}`."""
        params = {"ids": ",".join(job_ids)}
        return await self._send("GET", "/api/v2/job_statuses/show_many", params=params)

    # --- bulk ----------------------------------------------------------------------------------------

    async def create_or_update_many_users(self, users: Sequence[Mapping[str, Any]]) -> Result:
        """POST /api/v2/users/create_or_update_many (at most 100): 200 `{"job_status": {...}}`. It takes
        a job slot; the caller frees it when the job ends (`governor.job_done`)."""
        body = {"users": [dict(user) for user in users]}
        return await self._send("POST", "/api/v2/users/create_or_update_many", body=body)

    async def create_many_memberships(self, pairs: Sequence[tuple[int, int]]) -> Result:
        """POST /api/v2/organization_memberships/create_many (at most 100 (user, organization) pairs)."""
        items = [{"user_id": _id(user), "organization_id": _id(org)} for user, org in pairs]
        body = {"organization_memberships": items}
        return await self._send("POST", "/api/v2/organization_memberships/create_many", body=body)

    async def show_many_users_by_external_id(self, external_ids: Sequence[str]) -> Result:
        """GET /api/v2/users/show_many?external_ids=a,b (at most 100): the users that exist, cached."""
        params = {"external_ids": ",".join(external_ids)}
        result = await self._send("GET", "/api/v2/users/show_many", params=params)
        if isinstance(result, Ok):
            for user in result.json.get("users", []):
                self.cache.learn_user(user)
        return result

    # --- plumbing ------------------------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        template: str,
        url: str | httpx.URL | None = None,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        limit_key: str | None = None,
    ) -> Result:
        """One request, one classified answer, one log line. `template` (e.g. /api/v2/users/{id}) is what
        gets logged: never the query (emails) nor a body (personal data). The request first waits for
        the governor (`limit_key`: the user or organization a per-record limit counts)."""
        content = _encode(body) if body is not None else None
        need = need_for(method, template, user_key=limit_key, org_key=limit_key)
        renewals = 0
        while True:
            with interruptible():  # nothing of this request is sent while it waits for its tokens
                await self.governor.acquire(need)
                authorization = await self._authorization()
            if isinstance(authorization, Unavailable):
                self.governor.answered(need, RateLimitInfo(account=None), status=None)
                self._log_failure(method, template, authorization, 0.0)
                return authorization
            headers = {"Authorization": authorization.reveal()}
            if content is not None:
                headers["Content-Type"] = "application/json"
            started = self._clock()
            try:
                response = await self._http.request(
                    method,
                    url if url is not None else template,
                    params=params,
                    content=content,
                    headers=headers,
                )
            except httpx.HTTPError as exc:
                failure = classify_exception(exc)
                took = self._clock() - started
                self._counted(template, str(failure.reason), took)
                self.governor.answered(need, RateLimitInfo(account=None), status=None)
                self._log_failure(method, template, failure, _ms(took))
                return failure
            finished = self._clock()
            self._counted(template, str(response.status_code), finished - started)
            limits = parse_rate_limit(response.headers)
            self.rate_limits.observe(limits, at=finished)
            result = classify(response.status_code, response.headers, response.content, secrets=self._secrets)
            limited = result if isinstance(result, RateLimited) else None
            self.governor.answered(
                need,
                limits,
                status=response.status_code,
                retry_after_s=limited.retry_after_s if limited else None,
                bucket=limited.bucket if limited else None,
            )
            if self._on_exchange is not None:
                shown = excerpt(response.content, self._secrets, EXCHANGE_EXCERPT_CHARS)
                self._on_exchange(Exchange(method, template, response.status_code, shown))
            if (
                self._tokens is not None
                and renewals < MAX_TOKEN_RENEWALS
                and isinstance(result, AuthProblem)
                and _invalid_token(response.status_code, response.content)
            ):
                # The access token expired or was revoked under us: renew it and send again.
                self._logger.info(
                    "zendesk.request",
                    method=method,
                    path=template,
                    status=response.status_code,
                    duration_ms=_ms(finished - started),
                    outcome="token_renewal",
                )
                self._tokens.invalid(authorization)
                renewals += 1
                continue
            self._log_answer(method, template, response.status_code, _ms(finished - started), result)
            if isinstance(result, AuthProblem):
                raise ZendeskConfigError(
                    result.status, self._config_message(method, template, result, renewed=renewals > 0)
                )
            return result

    async def _authorization(self) -> Secret | Unavailable:
        if self._tokens is not None:
            return await self._tokens.authorization()
        assert self._static_authorization is not None
        return self._static_authorization

    def _counted(self, template: str, status: str, seconds: float) -> None:
        if self._on_request is not None:
            self._on_request(template, status, seconds)

    async def _post_token(self, body: Mapping[str, Any]) -> TokenAnswer | Unavailable:
        """POST <base>/oauth/tokens for the `TokenKeeper`: outside the rate governor (the token endpoint
        is not an API rate bucket), never logged with its body, no Authorization header."""
        started = self._clock()
        try:
            response = await self._http.post(
                TOKEN_PATH, content=_encode(body), headers={"Content-Type": "application/json"}
            )
            self._counted(TOKEN_PATH, str(response.status_code), self._clock() - started)
        except httpx.HTTPError as exc:
            failure = classify_exception(exc)
            self._counted(TOKEN_PATH, str(failure.reason), self._clock() - started)
            detail = f"POST {TOKEN_PATH}: {failure.detail}" if failure.detail else f"POST {TOKEN_PATH}"
            return Unavailable(failure.reason, detail=detail)
        return TokenAnswer(response.status_code, response.content)

    def _log_failure(self, method: str, template: str, failure: Unavailable, duration_ms: float) -> None:
        self._logger.info(
            "zendesk.request",
            method=method,
            path=template,
            outcome="transient",
            reason=str(failure.reason),
            error=failure.detail,
            duration_ms=duration_ms,
        )
        if self._on_exchange is not None:
            self._on_exchange(Exchange(method, template, None, f"{failure.reason}: {failure.detail}"))

    async def _list_all(self, path: str, envelope: str, *, template: str | None = None) -> Result:
        """GET every page of a cursor-paginated list (page[size]=100, then page[after]=<after_cursor>).
        `links.next` and offset `next_page` are followed only when they stay on our origin and API."""
        template = template or path
        items: list[Any] = []
        url: str | httpx.URL = path
        params: dict[str, str] | None = {"page[size]": str(PAGE_SIZE)}
        seen: set[str] = set()
        for _ in range(self._max_pages):
            result = await self._send("GET", template, url, params=params)
            if not isinstance(result, Ok):
                return result
            page = result.json.get(envelope)
            if not isinstance(page, list):
                return Unavailable(UnavailableReason.BAD_PAGINATION, result.status)
            items.extend(page)
            step = self._next_page(path, result.json)
            if step is None:
                return Ok(200, {envelope: items})
            if step == "broken":
                self._logger.warning("zendesk.unsafe_pagination", path=template)
                return Unavailable(UnavailableReason.BAD_PAGINATION, result.status)
            url, params = step
            marker = f"{url}?{params}"
            if marker in seen:
                return Unavailable(UnavailableReason.BAD_PAGINATION, result.status)
            seen.add(marker)
        self._logger.warning("zendesk.pagination_limit", path=template, max_pages=self._max_pages)
        return Unavailable(UnavailableReason.BAD_PAGINATION)

    def _next_page(self, path: str, page: Mapping[str, Any]) -> _Step | Literal["broken"] | None:
        """Where the next page is: None after the last page; "broken" when it cannot be followed safely."""
        meta = page.get("meta")
        links = page.get("links")
        if isinstance(meta, Mapping) and "has_more" in meta:
            if meta.get("has_more") is not True:
                return None
            cursor = meta.get("after_cursor")
            if isinstance(cursor, str) and cursor:
                return path, {"page[size]": str(PAGE_SIZE), "page[after]": cursor}
            nxt = links.get("next") if isinstance(links, Mapping) else None
        else:
            nxt = page.get("next_page")
            if nxt is None:
                return None
        link = self._safe_link(nxt)
        return "broken" if link is None else (link, None)

    def _safe_link(self, link: object) -> httpx.URL | None:
        """A pagination link we may follow: same scheme, host and port as the base URL, under its /api/v2/."""
        if not isinstance(link, str):
            return None
        try:
            url = httpx.URL(link)
        except httpx.InvalidURL:
            return None
        origin = self._origin
        api_root = origin.path.rstrip("/") + "/api/v2/"
        same = (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port)
        return url if same and url.path.startswith(api_root) and not url.userinfo else None

    def _learn_single(
        self, result: Ok, envelope: str, attribute: str, wanted: str, learn: Callable[[object], int | None]
    ) -> None:
        """Cache the answer of a lookup only when exactly one record matches exactly (case-insensitively)."""
        found = result.json.get(envelope)
        if not isinstance(found, list):
            return
        matching = [r for r in found if isinstance(r, Mapping) and _same(r.get(attribute), wanted)]
        if len(found) == 1 and len(matching) == 1:
            learn(matching[0])

    def _log_answer(
        self, method: str, template: str, status: int, duration_ms: float, result: Classified
    ) -> None:
        fields: dict[str, Any] = {
            "method": method,
            "path": template,
            "status": status,
            "duration_ms": duration_ms,
        }
        match result:
            case Ok():
                self._logger.debug("zendesk.request", outcome="ok", **fields)
            case RateLimited(retry_after_s=wait, bucket=bucket):
                self._logger.info(
                    "zendesk.request", outcome="rate_limited", retry_after_s=wait, bucket=bucket, **fields
                )
            case Unavailable(reason=reason):
                self._logger.info("zendesk.request", outcome="transient", reason=str(reason), **fields)
            case Rejected(error_code=code, body_excerpt=excerpt):
                self._logger.info("zendesk.request", outcome="rejected", error_code=code, **fields)
                self._logger.debug(
                    "zendesk.rejected_body", path=template, status=status, body_excerpt=excerpt
                )
            case AuthProblem(message=message):
                self._logger.error("zendesk.request", outcome="config_problem", message=message, **fields)

    def _config_message(
        self, method: str, template: str, problem: AuthProblem, *, renewed: bool = False
    ) -> str:
        call = f"{method} {template}"
        if problem.status == 401:
            settings = self._auth_settings
            again = ", again after renewing the access token" if renewed else ""
            return (
                f"Zendesk refused the credentials on {call} (401: {problem.message}){again}; check {settings}"
            )
        if problem.status == 403:
            return (
                f"Zendesk refused {call} (403: {problem.message}); check the permissions of "
                f"{self._auth_settings} and the account's plan"
            )
        return f"{problem.message} on {call}; check ZENDESK_SUBDOMAIN/ZENDESK_BASE_URL"

    @property
    def _auth_settings(self) -> str:
        return self.connection.auth.settings


# Twice: a token revoked under us may be replaced by one another request had already fetched, and that
# one may be revoked too (every live token of the client was); a third refusal is the credential's.
MAX_TOKEN_RENEWALS = 2


def _invalid_token(status: int, body: bytes) -> bool:
    """Zendesk's answer to an expired or revoked bearer token (docs/zendesk-api.md §1.4)."""
    return status == 401 and parse_error_body(body).code == "invalid_token"


def _encode(body: Mapping[str, Any]) -> bytes:
    """Strict JSON: NaN and Infinity are not JSON and Zendesk would refuse them; the event is unusable."""
    try:
        return json.dumps(body, allow_nan=False, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except ValueError as exc:
        if "Out of range float" in str(exc):
            raise InvalidEvent(
                DlqReason.INVALID_PAYLOAD, "a value is NaN or Infinity, which JSON cannot carry"
            ) from None
        if isinstance(exc, UnicodeEncodeError):
            raise InvalidEvent(
                DlqReason.INVALID_PAYLOAD, "a string is not valid Unicode (lone surrogate)"
            ) from None
        raise


def _new_field(key: str, type: str, title: str, description: str | None) -> dict[str, str]:
    field = {"key": key, "type": type, "title": title}
    if description is not None:
        field["description"] = description
    return field


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _id(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"not a Zendesk id: {value!r}")
    return value


def _path(pattern: str, *ids: int) -> str:
    return pattern.format(*(_id(i) for i in ids))


def _user_key(user: Mapping[str, Any]) -> str | None:
    """The identity Zendesk's per-user limit counts a write against: external_id, else email."""
    for attribute in ("external_id", "email"):
        value = user.get(attribute)
        if isinstance(value, str) and value:
            return value
    return None


def _same(value: object, wanted: str) -> bool:
    return isinstance(value, str) and value.lower() == wanted.lower()
