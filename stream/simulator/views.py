"""JSON shapes of Zendesk resources, key order as recorded live.

Facts: docs/zendesk-api.md §2.1, §3.1, §5.1, §6.1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream.simulator.state import CustomField, Membership, Organization, User, ZendeskState


@dataclass(frozen=True, slots=True)
class Urls:
    """Builds resource URLs the way the request was written: with ``.json`` when the request had it."""

    base: str
    suffix: str

    def of(self, path: str) -> str:
        return f"{self.base}/api/v2/{path}{self.suffix}"


def user_json(state: ZendeskState, user: User, urls: Urls) -> dict[str, Any]:
    fields = user.user_fields
    if state.options.user_fields_show_all_keys:
        fields = {f.key: user.user_fields.get(f.key) for f in state.list_fields("user")}
    return {
        "id": user.id,
        "url": urls.of(f"users/{user.id}"),
        "name": user.name,
        "email": user.email,
        "created_at": user.created_at,
        "updated_at": user.updated_at,
        "time_zone": user.time_zone,
        "iana_time_zone": user.iana_time_zone,
        "phone": user.phone,
        "shared_phone_number": user.shared_phone_number,
        "photo": None,
        "locale_id": 1,
        "locale": user.locale,
        "organization_id": state.user_organization_id(user.id),
        "role": user.role,
        "verified": user.verified,
        "external_id": user.external_id,
        "tags": list(user.tags),
        "alias": user.alias,
        "active": True,
        "shared": False,
        "shared_agent": False,
        "last_login_at": None,
        "two_factor_auth_enabled": False,
        "signature": user.signature,
        "details": user.details,
        "notes": user.notes,
        "role_type": 4 if user.role == "admin" else None,
        "custom_role_id": None,
        "moderator": user.role == "admin",
        "ticket_restriction": "requested" if user.role == "end-user" else None,
        "only_private_comments": False,
        "restricted_agent": user.role == "end-user",
        "suspended": user.suspended,
        "default_group_id": None,
        "report_csv": user.role == "admin",
        "user_fields": dict(fields),
    }


def organization_json(state: ZendeskState, org: Organization, urls: Urls) -> dict[str, Any]:
    return {
        "url": urls.of(f"organizations/{org.id}"),
        "id": org.id,
        "name": org.name,
        "shared_tickets": org.shared_tickets,
        "shared_comments": org.shared_comments,
        "external_id": org.external_id,
        "created_at": org.created_at,
        "updated_at": org.updated_at,
        "domain_names": list(org.domain_names),
        "details": org.details,
        "notes": org.notes,
        "group_id": org.group_id,
        "tags": list(org.tags),
        "organization_fields": dict(org.organization_fields),
    }


def field_json(definition: CustomField, urls: Urls) -> dict[str, Any]:
    body: dict[str, Any] = {
        "url": urls.of(f"{definition.kind}_fields/{definition.id}"),
        "id": definition.id,
        "type": definition.type,
        "key": definition.key,
        "title": definition.title,
        "description": definition.description,
        "raw_title": definition.title,
        "raw_description": definition.description,
        "position": definition.position,
        "active": definition.active,
        "system": False,
        "regexp_for_validation": definition.regexp_for_validation,
        "created_at": definition.created_at,
        "updated_at": definition.updated_at,
    }
    if definition.type == "checkbox":
        body["tag"] = definition.tag
    if definition.custom_field_options is not None:
        body["custom_field_options"] = [dict(option) for option in definition.custom_field_options]
    return body


def membership_json(state: ZendeskState, membership: Membership, urls: Urls) -> dict[str, Any]:
    return {
        "id": membership.id,
        "url": urls.of(f"organization_memberships/{membership.id}"),
        "user_id": membership.user_id,
        "organization_id": membership.organization_id,
        "default": True if membership.default else None,  # null, not false, for non-default (§6.1)
        "organization_name": state.organizations[membership.organization_id].name,
        "view_tickets": True,
        "created_at": membership.created_at,
        "updated_at": membership.updated_at,
    }
