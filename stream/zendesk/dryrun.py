"""A Zendesk that changes nothing, for `zendesk-stream explain`: the destination's own delivery code
runs over it, so what explain prints is what `run` does.

Reads go to Zendesk when a client for it is given (credentials configured, Zendesk answering);
otherwise nobody answers them, and the dry run says what it had to assume ("needs a Zendesk user with
external_id u-999"). Writes are never sent: each is recorded with its body and answered as Zendesk
answers a success, with ids that stand for the ones Zendesk would assign. What a write taught (a new
user's id, a field just created) is remembered, so later calls of the same run see it, as they would.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream.zendesk.api import ZendeskApi
from stream.zendesk.cache import ZendeskCache
from stream.zendesk.classify import Ok, Result

PLACEHOLDER_IDS = 900_000_000_001  # the first id a dry run hands out: no real Zendesk id looks like it


def is_placeholder(value: object) -> bool:
    """An id the dry run made up for one Zendesk would assign."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= PLACEHOLDER_IDS


@dataclass(frozen=True, slots=True)
class DryCall:
    """One request of the dry run: a write (never sent), or a read and who answered it."""

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    sent: bool = False  # True: a read Zendesk answered
    status: int | None = None  # Zendesk's status for a read it answered
    note: str = ""


@dataclass
class DryRunClient:
    reads: ZendeskApi | None = None  # a real client: reads go there; None: nothing answers reads
    cache: ZendeskCache = field(default_factory=ZendeskCache)
    calls: list[DryCall] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(PLACEHOLDER_IDS))
    _organizations: set[int] = field(default_factory=set)  # placeholder ids of organizations seen

    def begin_event(self) -> None:
        """The next event's calls and assumptions start empty; what earlier writes taught stays."""
        self.calls.clear()
        self.assumptions.clear()

    # --- writes: recorded, answered as a success --------------------------------------------------------

    async def create_or_update_user(self, user: Mapping[str, Any]) -> Result:
        note = "create or update the user (matched by email, else external_id)"
        if "time_zone" in user:
            note += "; if Zendesk refuses the time zone, sent again without time_zone"
        self._write("POST", "/api/v2/users/create_or_update", {"user": dict(user)}, note)
        known = self._known_user(user.get("external_id"), user.get("email"))
        answer = {
            "id": known or next(self._ids),
            **{k: user[k] for k in ("external_id", "email") if k in user},
        }
        self.cache.learn_user(answer)
        return Ok(200, {"user": answer})

    async def create_user_field(
        self, key: str, type: str, title: str, description: str | None = None
    ) -> Result:
        return self._new_field("user", key, type, title, description)

    async def create_organization_field(
        self, key: str, type: str, title: str, description: str | None = None
    ) -> Result:
        return self._new_field("organization", key, type, title, description)

    async def create_or_update_organization(self, organization: Mapping[str, Any]) -> Result:
        note = "create or update the organization (matched by external_id, never by name)"
        self._write(
            "POST", "/api/v2/organizations/create_or_update", {"organization": dict(organization)}, note
        )
        external_id = organization.get("external_id")
        known = (
            self.cache.organization_id_by_external_id(external_id) if isinstance(external_id, str) else None
        )
        org_id = known or next(self._ids)
        answer = {"id": org_id, "external_id": external_id}
        self._organizations.add(org_id)
        self.cache.learn_organization(answer)
        return Ok(200, {"organization": answer})

    async def create_membership(self, user_id: int, organization_id: int) -> Result:
        body = {"organization_membership": {"user_id": user_id, "organization_id": organization_id}}
        self._write("POST", "/api/v2/organization_memberships", body, "link the user to the organization")
        return Ok(
            201, {"organization_membership": {"id": next(self._ids), **body["organization_membership"]}}
        )

    async def delete_membership(self, user_id: int, membership_id: int) -> Result:
        note = "the user's membership in that organization"
        self._write("DELETE", "/api/v2/users/{user_id}/organization_memberships/{id}", None, note)
        return Ok(204, {})

    async def send_event(self, body: Mapping[str, Any]) -> Result:
        self._write("POST", "/api/v2/user_profiles/events", dict(body), "the Sunshine event")
        return Ok(202, {"status": "received"})

    # --- reads: Zendesk's answer, or an assumption ------------------------------------------------------

    async def list_user_fields(self) -> Result:
        return await self._read(
            "GET /api/v2/user_fields",
            lambda api: api.list_user_fields(),
            assume=lambda: Ok(200, {"user_fields": []}),
            assumption="no custom user field to exist (a field an event needs is shown as created)",
        )

    async def list_organization_fields(self) -> Result:
        return await self._read(
            "GET /api/v2/organization_fields",
            lambda api: api.list_organization_fields(),
            assume=lambda: Ok(200, {"organization_fields": []}),
            assumption="no custom organization field to exist",
        )

    async def list_user_events(self, user_id: int, params: Mapping[str, str]) -> Result:
        return await self._read(
            "GET /api/v2/users/{id}/events",
            lambda api: api.list_user_events(user_id, params),
            assume=lambda: Ok(200, {"events": [], "meta": {"has_more": False}}),
            assumption="the event not to be in Zendesk yet",
        )

    async def find_users_by_external_id(self, external_id: str) -> Result:
        return await self._read(
            "GET /api/v2/users/search?external_id=",
            lambda api: api.find_users_by_external_id(external_id),
            assume=lambda: self._someone("users", external_id=external_id),
            assumption=f"a Zendesk user with external_id {external_id}",
        )

    async def search_users_by_email(self, email: str) -> Result:
        return await self._read(
            "GET /api/v2/users/search?query=email:",
            lambda api: api.search_users_by_email(email),
            assume=lambda: self._someone("users", email=email),
            assumption=f"a Zendesk user with email {email}",
        )

    async def search_organizations_by_external_id(self, external_id: str) -> Result:
        return await self._read(
            "GET /api/v2/organizations/search?external_id=",
            lambda api: api.search_organizations_by_external_id(external_id),
            assume=lambda: self._someone("organizations", external_id=external_id),
            assumption=f"a Zendesk organization with external_id {external_id}",
        )

    async def show_organization(self, organization_id: int) -> Result:
        return await self._read(
            "GET /api/v2/organizations/{id}",
            lambda api: api.show_organization(organization_id),
            assume=lambda: Ok(200, {"organization": {"id": organization_id}}),
            assumption=f"a Zendesk organization with id {organization_id}",
        )

    async def list_user_memberships(self, user_id: int) -> Result:
        def everywhere() -> Result:
            memberships = [
                {"id": next(self._ids), "organization_id": org} for org in sorted(self._organizations)
            ]
            return Ok(200, {"organization_memberships": memberships})

        return await self._read(
            "GET /api/v2/users/{user_id}/organization_memberships",
            lambda api: api.list_user_memberships(user_id),
            assume=everywhere,
            assumption="the user to be a member of the organization (else there is nothing to delete)",
        )

    # --- plumbing ---------------------------------------------------------------------------------------

    def _write(self, method: str, path: str, body: Mapping[str, Any] | None, note: str) -> None:
        self.calls.append(DryCall(method, path, body, note=note))

    def _new_field(self, kind: str, key: str, type: str, title: str, description: str | None) -> Result:
        definition = {
            "key": key,
            "type": type,
            "title": title,
            **({"description": description} if description else {}),
        }
        note = f'create the {kind} field "{key}" ({type}): Zendesk does not have it'
        self._write("POST", f"/api/v2/{kind}_fields", {f"{kind}_field": definition}, note)
        return Ok(201, {f"{kind}_field": {"id": next(self._ids), "active": True, **definition}})

    def _known_user(self, external_id: object, email: object) -> int | None:
        if isinstance(external_id, str) and (found := self.cache.user_id_by_external_id(external_id)):
            return found
        if isinstance(email, str):
            return self.cache.user_id_by_email(email)
        return None

    def _someone(self, envelope: str, **identity: str) -> Result:
        record_id = next(self._ids)
        if envelope == "organizations":
            self._organizations.add(record_id)
        return Ok(200, {envelope: [{"id": record_id, **identity}]})

    async def _read(
        self,
        call: str,
        ask: Callable[[ZendeskApi], Awaitable[Result]],
        *,
        assume: Callable[[], Result],
        assumption: str,
    ) -> Result:
        method, path = call.split(" ", 1)
        if self.reads is None:
            self.calls.append(
                DryCall(method, path, note=f"not asked (no Zendesk to ask); needs {assumption}")
            )
            self.assumptions.append(assumption)
            return assume()
        result = await ask(self.reads)
        status = result.status if isinstance(result, Ok) else getattr(result, "status", None)
        self.calls.append(DryCall(method, path, sent=True, status=status))
        return result
