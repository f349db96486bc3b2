"""The simulated account: users, organizations, custom fields, memberships, profiles and events.

Plain Python, no HTTP: every Zendesk rule we rely on lives here and raises :class:`ZendeskError` with the
body Zendesk would send. A failing call changes nothing (all checks run before the first write).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from stream.simulator import errors
from stream.simulator.clock import iso_timestamp
from stream.simulator.errors import ZendeskError
from stream.simulator.options import SimulatorOptions
from stream.simulator.timezones import iana_for

FIRST_ID = 10_000_000_000_000  # Zendesk ids are large; clients must use 64-bit integers
ACCOUNT_TIME_ZONE = "America/New_York"
ROLES = frozenset({"end-user", "agent", "admin"})
FIELD_TYPES = frozenset(
    {
        "text",
        "textarea",
        "checkbox",
        "date",
        "integer",
        "decimal",
        "regexp",
        "dropdown",
        "lookup",
        "multiselect",
    }
)
FIELD_KEY = re.compile(r"^[A-Za-z0-9_]+$")
DATE_VALUE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T[0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$")
STANDARD_IDENTIFIERS = frozenset(
    {"email", "external_id", "phone_number", "facebook", "twitter", "sdk", "google"}
)
MAX_SOURCE_OR_TYPE = 40
MAX_IDENTIFIER = 60
MAX_IDENTIFIERS = 20
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

FieldKind = Literal["user", "organization"]


@dataclass(slots=True)
class Identity:
    type: str
    value: str
    verified: bool
    primary: bool


@dataclass(slots=True)
class User:
    id: int
    name: str
    created_at: str
    updated_at: str
    external_id: str | None = None
    identities: list[Identity] = field(default_factory=list)
    phone: str | None = None
    shared_phone_number: bool | None = None
    time_zone: str = ACCOUNT_TIME_ZONE
    iana_time_zone: str = ACCOUNT_TIME_ZONE
    locale: str = "en-US"
    role: str = "end-user"
    tags: list[str] = field(default_factory=list)
    alias: str | None = None
    details: str | None = None
    notes: str | None = None
    signature: str | None = None
    suspended: bool = False
    user_fields: dict[str, Any] = field(default_factory=dict)
    welcome_emails_sent: int = 0

    @property
    def email(self) -> str | None:
        for identity in self.identities:
            if identity.type == "email" and identity.primary:
                return identity.value
        return None

    @property
    def emails(self) -> list[Identity]:
        return [identity for identity in self.identities if identity.type == "email"]

    @property
    def verified(self) -> bool:
        return any(identity.verified for identity in self.identities)

    @property
    def key(self) -> str:
        """How the request log names this user: external_id, else email, else id."""
        return self.external_id or self.email or str(self.id)


@dataclass(slots=True)
class Organization:
    id: int
    name: str
    created_at: str
    updated_at: str
    external_id: str | None = None
    domain_names: list[str] = field(default_factory=list)
    details: str | None = None
    notes: str | None = None
    group_id: int | None = None
    tags: list[str] = field(default_factory=list)
    shared_tickets: bool = False
    shared_comments: bool = False
    organization_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CustomField:
    id: int
    kind: FieldKind
    key: str
    title: str
    type: str
    created_at: str
    updated_at: str
    description: str = ""
    position: int = 9999
    active: bool = True
    regexp_for_validation: str | None = None
    tag: str | None = None
    custom_field_options: list[dict[str, Any]] | None = None


@dataclass(slots=True)
class Membership:
    id: int
    user_id: int
    organization_id: int
    default: bool
    created_at: str
    updated_at: str


@dataclass(slots=True)
class Profile:
    id: str
    source: str
    type: str
    name: str
    user_id: int
    identifiers: list[dict[str, str]]


@dataclass(slots=True)
class Event:
    id: str
    profile_id: str
    user_id: int
    source: str
    type: str
    description: str | None
    properties: dict[str, Any]
    created_at: str
    received_at: str


@dataclass(frozen=True, slots=True)
class UserWrite:
    """What create_or_update did, for the response code and the request log."""

    user: User
    created: bool
    changed: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------
# Type checks: a wrong JSON type is a 400 "Invalid attribute" (docs/zendesk-api.md §1.4), never a 500.

USER_STRINGS = (
    "name",
    "email",
    "phone",
    "time_zone",
    "locale",
    "alias",
    "details",
    "notes",
    "signature",
    "role",
)
USER_BOOLS = ("verified", "skip_verify_email", "suspended")
ORG_STRINGS = ("name", "details", "notes")
ORG_BOOLS = ("shared_tickets", "shared_comments")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def envelope_object(body: Any, envelope: str, endpoint: str) -> dict[str, Any]:
    """The object under ``envelope`` in a request body, or the 400 Zendesk gives for a wrong envelope."""
    if not isinstance(body, dict) or not isinstance(body.get(envelope), dict):
        raise errors.invalid_attribute(envelope, "a Hash", endpoint)
    inner: dict[str, Any] = body[envelope]
    return inner


def _check_string_list(attrs: dict[str, Any], name: str, prefix: str, endpoint: str) -> None:
    value = attrs.get(name)
    if (
        name in attrs
        and value is not None
        and not (isinstance(value, list) and all(isinstance(item, str) for item in value))
    ):
        raise errors.invalid_attribute(f"{prefix}.{name}", "an array", endpoint)


def _check_common(
    attrs: dict[str, Any], *, prefix: str, strings: tuple[str, ...], bools: tuple[str, ...], endpoint: str
) -> dict[str, Any]:
    clean = dict(attrs)
    for name in strings:
        if name in clean and clean[name] is not None and not isinstance(clean[name], str):
            raise errors.invalid_attribute(f"{prefix}.{name}", "a string", endpoint)
    for name in bools:
        if name in clean and clean[name] is not None and not isinstance(clean[name], bool):
            raise errors.invalid_attribute(f"{prefix}.{name}", "a boolean", endpoint)
    external_id = clean.get("external_id")
    if external_id is not None:
        if _is_int(external_id):
            clean["external_id"] = str(external_id)
        elif not isinstance(external_id, str):
            raise errors.invalid_attribute(f"{prefix}.external_id", "a string", endpoint)
    if "id" in clean and clean["id"] is not None and not _is_int(clean["id"]):
        if isinstance(clean["id"], str) and clean["id"].isascii() and clean["id"].isdigit():
            clean["id"] = int(clean["id"])
        else:
            raise errors.invalid_attribute(f"{prefix}.id", "an integer", endpoint)
    _check_string_list(clean, "tags", prefix, endpoint)
    return clean


def check_user_attributes(attrs: dict[str, Any], endpoint: str) -> dict[str, Any]:
    clean = _check_common(attrs, prefix="user", strings=USER_STRINGS, bools=USER_BOOLS, endpoint=endpoint)
    if (
        "user_fields" in clean
        and clean["user_fields"] is not None
        and not isinstance(clean["user_fields"], dict)
    ):
        raise errors.invalid_attribute("user.user_fields", "a Hash", endpoint)
    org_id = clean.get("organization_id")
    if org_id is not None and not _is_int(org_id):
        raise errors.invalid_attribute("user.organization_id", "an integer", endpoint)
    organization = clean.get("organization")
    if organization is not None and not (
        isinstance(organization, dict) and isinstance(organization.get("name"), str)
    ):
        raise errors.invalid_attribute("user.organization", "a Hash with a name", endpoint)
    return clean


def check_organization_attributes(attrs: dict[str, Any], endpoint: str) -> dict[str, Any]:
    clean = _check_common(
        attrs, prefix="organization", strings=ORG_STRINGS, bools=ORG_BOOLS, endpoint=endpoint
    )
    _check_string_list(clean, "domain_names", "organization", endpoint)
    fields = clean.get("organization_fields")
    if fields is not None and not isinstance(fields, dict):
        raise errors.invalid_attribute("organization.organization_fields", "a Hash", endpoint)
    group_id = clean.get("group_id")
    if group_id is not None and not _is_int(group_id):
        raise errors.invalid_attribute("organization.group_id", "an integer", endpoint)
    return clean


# ---------------------------------------------------------------------------------------------------------


class ZendeskState:
    def __init__(self, *, options: SimulatorOptions) -> None:
        self.options = options
        self._next_id = FIRST_ID
        self._rng = random.Random(options.random_seed)  # noqa: S311 - simulation, not security
        self.users: dict[int, User] = {}
        self.organizations: dict[int, Organization] = {}
        self.fields: dict[FieldKind, dict[int, CustomField]] = {"user": {}, "organization": {}}
        self.memberships: dict[int, Membership] = {}
        self.profiles: dict[str, Profile] = {}
        self.events: list[Event] = []
        self.side_effects: list[dict[str, Any]] = []
        self._user_by_external_id: dict[str, int] = {}
        self._user_by_email: dict[str, int] = {}
        self._user_by_phone: dict[str, int] = {}
        self._org_by_external_id: dict[str, int] = {}
        self._org_by_name: dict[str, int] = {}
        self._profile_by_identifier: dict[tuple[str, str, str, str], str] = {}
        # Search index snapshots, kept only while a search lag is configured: user id → [(visible_at, doc)].
        self._search_snapshots: dict[int, list[tuple[float, tuple[str, ...]]]] = {}

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _claim_id(self, wanted: int | None) -> int:
        if wanted is None:
            return self.new_id()
        if wanted in self.users or wanted in self.organizations:
            raise errors.record_invalid("id", f"Id: {wanted} has already been taken", "DuplicateValue")
        self._next_id = max(self._next_id, wanted)
        return wanted

    # -- users -------------------------------------------------------------------------------------------

    def get_user(self, user_id: int) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise errors.record_not_found()
        return user

    def user_by_external_id(self, external_id: str) -> User | None:
        user_id = self._user_by_external_id.get(external_id.lower())
        return None if user_id is None else self.users[user_id]

    def user_by_email(self, email: str) -> User | None:
        user_id = self._user_by_email.get(email.lower())
        return None if user_id is None else self.users[user_id]

    def resolve_user(self, attrs: dict[str, Any]) -> User | None:
        """The user a create_or_update body names (docs/zendesk-api.md §2.2): id, then external_id and
        email in the configured precedence [I]."""
        if attrs.get("id") is not None:
            return self.get_user(attrs["id"])
        by_external_id = self.user_by_external_id(attrs["external_id"]) if attrs.get("external_id") else None
        by_email = self.user_by_email(attrs["email"]) if attrs.get("email") else None
        if self.options.email_external_id_precedence == "email_first":
            return by_email or by_external_id
        return by_external_id or by_email

    def rate_limit_key(self, attrs: dict[str, Any]) -> str:
        """The per-user bucket key of a create_or_update body: the matched user, else its identifier."""
        try:
            user = self.resolve_user(attrs)
        except ZendeskError:
            user = None
        if user is not None:
            return f"id:{user.id}"
        for name in ("external_id", "email"):
            if attrs.get(name):
                return f"{name}:{str(attrs[name]).lower()}"
        return f"new:{self._next_id + 1}"

    def create_or_update_user(self, attrs: dict[str, Any], now: float) -> UserWrite:
        user = self.resolve_user(attrs)
        if user is None:
            return UserWrite(user=self.create_user(attrs, now), created=True, changed=tuple(sorted(attrs)))
        return UserWrite(user=user, created=False, changed=self.update_user(user, attrs, now))

    def create_user(self, attrs: dict[str, Any], now: float, *, forced_id: int | None = None) -> User:
        name = attrs.get("name")
        if not name or not name.strip():
            # The live body (2013) has no "error" code key here.
            raise errors.record_invalid("name", "Name: is too short (minimum is 1 characters)", None)
        self._check_unique_user_keys(None, attrs)
        time_zone = self._checked_time_zone(attrs)
        role = self._checked_role(attrs)
        fields = self._coerced_fields("user", attrs.get("user_fields"))
        membership_org = self._organization_for_user(attrs, now)
        stamp = iso_timestamp(now)
        user = User(id=self._claim_id(forced_id), name=name, created_at=stamp, updated_at=stamp)
        if time_zone is not None:
            user.time_zone, user.iana_time_zone = time_zone
        if role is not None:
            user.role = role
        self._apply_plain_user_attributes(user, attrs)
        user.user_fields = {k: v for k, v in fields.items() if v is not None}
        if attrs.get("external_id"):
            self._set_external_id(user, attrs["external_id"])
        if attrs.get("email"):
            verified = attrs.get("verified") is True
            self._add_email(user, attrs["email"], verified=verified, primary=True)
            if not verified and not attrs.get("skip_verify_email"):
                user.welcome_emails_sent += 1
        if attrs.get("phone"):
            self._set_phone(user, attrs["phone"])
        self.users[user.id] = user
        if membership_org is not None:
            self._replace_memberships(user, membership_org, now)
        self._index_for_search(user, now)
        return user

    def update_user(self, user: User, attrs: dict[str, Any], now: float) -> tuple[str, ...]:
        self._check_unique_user_keys(user, attrs)
        time_zone = self._checked_time_zone(attrs)
        role = self._checked_role(attrs)
        fields = self._coerced_fields("user", attrs.get("user_fields"))
        membership_org = self._organization_for_user(attrs, now)
        changed: list[str] = []
        if time_zone is not None and (user.time_zone, user.iana_time_zone) != time_zone:
            user.time_zone, user.iana_time_zone = time_zone
            changed.append("time_zone")
        if role is not None and role != user.role:
            user.role = role
            changed.append("role")
        changed.extend(self._apply_plain_user_attributes(user, attrs))
        for key, value in fields.items():
            if value is None and key in user.user_fields:
                del user.user_fields[key]
                changed.append(f"user_fields.{key}")
            elif value is not None and user.user_fields.get(key) != value:
                user.user_fields[key] = value
                changed.append(f"user_fields.{key}")
        external_id = attrs.get("external_id")
        if external_id and external_id != user.external_id:
            self._set_external_id(user, external_id)  # also rewrites the casing on a case-insensitive match
            changed.append("external_id")
        changed.extend(self._apply_email_and_verified(user, attrs))
        if attrs.get("phone") and attrs["phone"] != user.phone:
            self._set_phone(user, attrs["phone"])
            changed.append("phone")
        if membership_org is not None and self._replace_memberships(user, membership_org, now):
            changed.append("organization_id")
        if changed:
            user.updated_at = iso_timestamp(now)
            self._index_for_search(user, now)
        return tuple(changed)

    def _check_unique_user_keys(self, user: User | None, attrs: dict[str, Any]) -> None:
        email = attrs.get("email")
        if email:
            owner = self.user_by_email(email)
            if owner is not None and owner is not user:
                raise errors.duplicate_email(email)
        external_id = attrs.get("external_id")
        if external_id:
            owner = self.user_by_external_id(external_id)
            if owner is not None and owner is not user:
                raise errors.record_invalid(
                    "external_id", f"External: {external_id} has already been taken", "DuplicateValue"
                )

    def _checked_time_zone(self, attrs: dict[str, Any]) -> tuple[str, str] | None:
        name = attrs.get("time_zone")
        if not name:
            return None
        iana = iana_for(name)
        if iana is not None:
            return name, iana
        if self.options.invalid_time_zone == "ignore":
            return None
        raise errors.record_invalid(
            "time_zone", f"Time zone: {name} is not included in the list", "InvalidValue"
        )

    @staticmethod
    def _checked_role(attrs: dict[str, Any]) -> str | None:
        role = attrs.get("role")
        if role is None:
            return None
        if role not in ROLES:
            raise errors.record_invalid("role", f"Role: {role} is not included in the list", "InvalidValue")
        return str(role)

    def _organization_for_user(self, attrs: dict[str, Any], now: float) -> Organization | None:
        """The organization a user write names through ``organization_id`` or ``organization: {name}``."""
        if attrs.get("organization_id") is not None:
            org = self.organizations.get(attrs["organization_id"])
            if org is None:
                raise errors.record_invalid("organization_id", "Organization is invalid", "InvalidValue")
            return org
        named = attrs.get("organization")
        if named is None:
            return None
        existing = self._org_by_name.get(named["name"].strip().lower())
        if existing is not None:
            return self.organizations[existing]
        if not self.options.create_organization_named_on_user:
            raise errors.record_invalid("organization", "Organization is invalid", "InvalidValue")
        return self.create_organization({"name": named["name"]}, now)

    @staticmethod
    def _apply_plain_user_attributes(user: User, attrs: dict[str, Any]) -> list[str]:
        changed: list[str] = []
        for name in ("name", "locale", "alias", "details", "notes", "signature", "suspended", "tags"):
            if name in attrs and attrs[name] is not None and getattr(user, name) != attrs[name]:
                setattr(user, name, list(attrs[name]) if name == "tags" else attrs[name])
                changed.append(name)
        return changed

    def _apply_email_and_verified(self, user: User, attrs: dict[str, Any]) -> list[str]:
        """Email on update adds a secondary identity; ``verified`` alone verifies the primary (§2.5)."""
        email, verified = attrs.get("email"), attrs.get("verified")
        if email:
            existing = next((i for i in user.emails if i.value.lower() == email.lower()), None)
            if existing is None:
                self._add_email(user, email, verified=verified is True, primary=user.email is None)
                if verified is not True and not attrs.get("skip_verify_email"):
                    user.welcome_emails_sent += 1
                return ["email"]
            if verified is not None and existing.verified != verified:
                existing.verified = verified
                return ["verified"]
            return []
        primary = next((i for i in user.emails if i.primary), None)
        if verified is not None and primary is not None and primary.verified != verified:
            primary.verified = verified
            return ["verified"]
        return []

    def _add_email(self, user: User, email: str, *, verified: bool, primary: bool) -> None:
        user.identities.append(Identity(type="email", value=email, verified=verified, primary=primary))
        self._user_by_email[email.lower()] = user.id

    def _set_external_id(self, user: User, external_id: str) -> None:
        if user.external_id is not None:
            self._user_by_external_id.pop(user.external_id.lower(), None)
        user.external_id = external_id
        self._user_by_external_id[external_id.lower()] = user.id

    def _set_phone(self, user: User, phone: str) -> None:
        """A unique number becomes a phone identity; one another user has becomes a shared number (§2.1)."""
        owner = self._user_by_phone.get(phone)
        user.phone = phone
        if owner is not None and owner != user.id:
            user.shared_phone_number = True
            return
        user.shared_phone_number = False
        if owner is None:
            self._user_by_phone[phone] = user.id
            user.identities.append(Identity(type="phone_number", value=phone, verified=False, primary=False))

    def _coerced_fields(self, kind: FieldKind, values: dict[str, Any] | None) -> dict[str, Any]:
        """Custom field values by key; unknown keys and dropdown tags are dropped without error (§3.3)."""
        if not values:
            return {}
        by_key = {f.key: f for f in self.fields[kind].values()}
        coerced: dict[str, Any] = {}
        for key, value in values.items():
            definition = by_key.get(key)
            if definition is None:
                continue
            if value is None:
                coerced[key] = None
                continue
            converted = _coerce_field_value(definition, value)
            if converted is not _DROP:
                coerced[key] = converted
        return coerced

    def user_organization_id(self, user_id: int) -> int | None:
        for membership in self.memberships.values():
            if membership.user_id == user_id and membership.default:
                return membership.organization_id
        return None

    def show_many_users(self, *, ids: list[int], external_ids: list[str]) -> list[User]:
        found = [self.users[i] for i in ids if i in self.users]
        found += [u for e in external_ids if (u := self.user_by_external_id(e)) is not None]
        return found

    # -- search -------------------------------------------------------------------------------------------

    def _index_for_search(self, user: User, now: float) -> None:
        if self.options.search_lag_ms <= 0:
            self._search_snapshots.pop(user.id, None)
            return
        visible_at = now + self.options.search_lag_ms / 1000.0
        self._search_snapshots.setdefault(user.id, []).append((visible_at, _search_document(user)))

    def _indexed_document(self, user: User, now: float) -> tuple[str, ...] | None:
        snapshots = self._search_snapshots.get(user.id)
        if not snapshots:
            return _search_document(user)
        visible = [doc for visible_at, doc in snapshots if visible_at <= now]
        return visible[-1] if visible else None

    def search_users(self, query: str, now: float) -> list[User]:
        """Zendesk search syntax, the part we use: ``email:``, ``external_id:``, ``name:``, ``phone:``,
        ``role:``, ``type:user`` and plain words (matched against name, emails, notes and phone)."""
        terms = [term for term in query.split() if term.lower() != "type:user"]
        results = []
        for user in self.users.values():
            document = self._indexed_document(user, now)
            if document is not None and all(_matches_term(document, term) for term in terms):
                results.append(user)
        return results

    # -- organizations ------------------------------------------------------------------------------------

    def get_organization(self, org_id: int) -> Organization:
        org = self.organizations.get(org_id)
        if org is None:
            raise errors.record_not_found()
        return org

    def organization_by_external_id(self, external_id: str) -> Organization | None:
        org_id = self._org_by_external_id.get(external_id.lower())
        return None if org_id is None else self.organizations[org_id]

    def organizations_by_name(self, name: str) -> list[Organization]:
        org_id = self._org_by_name.get(name.strip().lower())
        return [] if org_id is None else [self.organizations[org_id]]

    def resolve_organization(self, attrs: dict[str, Any]) -> Organization | None:
        """create_or_update matches on id or external_id only; the name never matches (§5.2)."""
        if attrs.get("id") is not None:
            return self.get_organization(attrs["id"])
        if attrs.get("external_id"):
            return self.organization_by_external_id(attrs["external_id"])
        return None

    def create_organization(
        self, attrs: dict[str, Any], now: float, *, forced_id: int | None = None
    ) -> Organization:
        name = (attrs.get("name") or "").strip()
        if not name:
            raise errors.record_invalid("name", "Name: cannot be blank", "BlankValue")
        self._check_unique_org_keys(None, name, attrs.get("external_id"))
        fields = self._coerced_fields("organization", attrs.get("organization_fields"))
        stamp = iso_timestamp(now)
        org = Organization(id=self._claim_id(forced_id), name=name, created_at=stamp, updated_at=stamp)
        self._apply_org_attributes(org, attrs, fields)
        self.organizations[org.id] = org
        self._org_by_name[name.lower()] = org.id
        if org.external_id:
            self._org_by_external_id[org.external_id.lower()] = org.id
        return org

    def update_organization(self, org: Organization, attrs: dict[str, Any], now: float) -> tuple[str, ...]:
        name = attrs.get("name")
        new_name = name.strip() if name else None
        self._check_unique_org_keys(org, new_name, attrs.get("external_id"))
        fields = self._coerced_fields("organization", attrs.get("organization_fields"))
        changed = self._apply_org_attributes(org, attrs, fields)
        if new_name and new_name != org.name:
            self._org_by_name.pop(org.name.lower(), None)
            org.name = new_name
            self._org_by_name[new_name.lower()] = org.id
            changed.append("name")
        if changed:
            org.updated_at = iso_timestamp(now)
        return tuple(changed)

    def _check_unique_org_keys(
        self, org: Organization | None, name: str | None, external_id: str | None
    ) -> None:
        if name:
            owner = self._org_by_name.get(name.lower())
            if owner is not None and (org is None or owner != org.id):
                raise errors.record_invalid("name", f"Name: {name} has already been taken", "DuplicateValue")
        if external_id:
            owner = self._org_by_external_id.get(external_id.lower())
            if owner is not None and (org is None or owner != org.id):
                raise errors.record_invalid(
                    "external_id", f"External: {external_id} has already been taken", "DuplicateValue"
                )

    def _apply_org_attributes(
        self, org: Organization, attrs: dict[str, Any], fields: dict[str, Any]
    ) -> list[str]:
        changed: list[str] = []
        for name in (
            "details",
            "notes",
            "group_id",
            "shared_tickets",
            "shared_comments",
            "domain_names",
            "tags",
        ):
            if name in attrs and attrs[name] is not None and getattr(org, name) != attrs[name]:
                setattr(org, name, attrs[name])
                changed.append(name)
        external_id = attrs.get("external_id")
        if external_id and external_id != org.external_id:
            if org.external_id:
                self._org_by_external_id.pop(org.external_id.lower(), None)
            org.external_id = external_id
            self._org_by_external_id[external_id.lower()] = org.id
            changed.append("external_id")
        for key, value in fields.items():
            if value is None:
                if org.organization_fields.pop(key, None) is not None:
                    changed.append(f"organization_fields.{key}")
            elif org.organization_fields.get(key) != value:
                org.organization_fields[key] = value
                changed.append(f"organization_fields.{key}")
        return changed

    # -- custom fields ------------------------------------------------------------------------------------

    def list_fields(self, kind: FieldKind) -> list[CustomField]:
        return sorted(self.fields[kind].values(), key=lambda f: (f.position, f.id))

    def get_field(self, kind: FieldKind, id_or_key: str) -> CustomField:
        """The path takes the numeric id or the key (§3.2)."""
        for definition in self.fields[kind].values():
            if str(definition.id) == id_or_key or definition.key == id_or_key:
                return definition
        raise errors.record_not_found()

    def create_field(self, kind: FieldKind, attrs: dict[str, Any], now: float) -> CustomField:
        key, title, field_type = attrs.get("key"), attrs.get("title"), attrs.get("type", "text") or "text"
        if not isinstance(key, str) or not key:
            raise errors.record_invalid("key", "Key: cannot be blank", "BlankValue")
        if not FIELD_KEY.match(key) or key.isdigit():
            raise errors.record_invalid(
                "key",
                "Key: is invalid; use letters, numbers and underscores, not only numbers",
                "InvalidValue",
            )
        if any(existing.key == key for existing in self.fields[kind].values()):
            raise errors.record_invalid("key", f"Key: {key} has already been taken", "DuplicateValue")
        if not isinstance(title, str) or not title.strip():
            raise errors.record_invalid("title", "Title: cannot be blank", "BlankValue")
        if field_type not in FIELD_TYPES:
            raise errors.record_invalid(
                "type", f"Type: {field_type} is not included in the list", "InvalidValue"
            )
        options = attrs.get("custom_field_options")
        if field_type in ("dropdown", "multiselect") and not isinstance(options, list):
            raise errors.record_invalid(
                "custom_field_options", "Custom field options: cannot be blank", "BlankValue"
            )
        position: Any = attrs.get("position")
        stamp = iso_timestamp(now)
        definition = CustomField(
            id=self.new_id(),
            kind=kind,
            key=key,
            title=title,
            type=field_type,
            created_at=stamp,
            updated_at=stamp,
            description=str(attrs.get("description") or ""),
            position=int(position) if _is_int(position) else 9999,
            active=attrs.get("active", True) is not False,
            regexp_for_validation=attrs.get("regexp_for_validation"),
            tag=attrs.get("tag"),
            custom_field_options=[self._field_option(o) for o in options]
            if isinstance(options, list)
            else None,
        )
        self.fields[kind][definition.id] = definition
        return definition

    def _field_option(self, option: Any) -> dict[str, Any]:
        if not isinstance(option, dict) or not isinstance(option.get("value"), str):
            raise errors.record_invalid(
                "custom_field_options", "Custom field options: each needs a name and a value", "InvalidValue"
            )
        return {
            "id": self.new_id(),
            "name": str(option.get("name", option["value"])),
            "value": option["value"],
        }

    def delete_field(self, kind: FieldKind, id_or_key: str) -> CustomField:
        definition = self.get_field(kind, id_or_key)
        del self.fields[kind][definition.id]
        owners: list[User] | list[Organization] = (
            list(self.users.values()) if kind == "user" else list(self.organizations.values())
        )
        for owner in owners:
            values = owner.user_fields if isinstance(owner, User) else owner.organization_fields
            values.pop(definition.key, None)
        return definition

    # -- memberships --------------------------------------------------------------------------------------

    def create_membership(
        self, *, user_id: Any, organization_id: Any, default: Any, now: float
    ) -> Membership:
        user = self.users.get(user_id) if _is_int(user_id) else None
        if user is None:
            raise errors.record_invalid("user", "User cannot be blank", "BlankValue")
        org = self.organizations.get(organization_id) if _is_int(organization_id) else None
        if org is None:
            raise errors.record_invalid("organization", "Organization cannot be blank", "BlankValue")
        mine = self.memberships_of_user(user.id)
        if any(m.organization_id == org.id for m in mine):
            # [I] shape: RecordInvalid with a DuplicateValue detail (§6.2).
            raise errors.record_invalid("user_id", "User has already been taken", "DuplicateValue")
        if mine and not self.options.multiple_organizations:
            for membership in mine:
                del self.memberships[membership.id]
            mine = []
        make_default = default is True or not mine
        if make_default:
            for membership in mine:
                membership.default = False
        stamp = iso_timestamp(now)
        membership = Membership(
            id=self.new_id(),
            user_id=user.id,
            organization_id=org.id,
            default=make_default,
            created_at=stamp,
            updated_at=stamp,
        )
        self.memberships[membership.id] = membership
        return membership

    def memberships_of_user(self, user_id: int) -> list[Membership]:
        """Default first, then by organization name (§6.2)."""
        mine = [m for m in self.memberships.values() if m.user_id == user_id]
        return sorted(mine, key=lambda m: (not m.default, self.organizations[m.organization_id].name.lower()))

    def get_membership(self, membership_id: int) -> Membership:
        membership = self.memberships.get(membership_id)
        if membership is None:
            raise errors.record_not_found()
        return membership

    def delete_membership(self, membership: Membership, now: float) -> None:
        """Leave at once; Zendesk queues a job that unassigns the user's working tickets of that organization,
        which we record as a side effect (§6.2)."""
        del self.memberships[membership.id]
        if membership.default:
            rest = self.memberships_of_user(membership.user_id)
            if rest:
                rest[0].default = True  # [I] another membership becomes the default
        self.side_effects.append(
            {
                "kind": "unassign_working_tickets",
                "user_id": membership.user_id,
                "organization_id": membership.organization_id,
                "membership_id": membership.id,
                "at": iso_timestamp(now),
            }
        )

    def membership_for(self, user_id: int, organization_id: int) -> Membership:
        for membership in self.memberships.values():
            if membership.user_id == user_id and membership.organization_id == organization_id:
                return membership
        raise errors.record_not_found()

    def _replace_memberships(self, user: User, org: Organization, now: float) -> bool:
        """Writing ``organization_id`` on a user replaces all of its memberships (§2.1)."""
        mine = self.memberships_of_user(user.id)
        if len(mine) == 1 and mine[0].organization_id == org.id and mine[0].default:
            return False
        for membership in mine:
            del self.memberships[membership.id]
        stamp = iso_timestamp(now)
        membership = Membership(self.new_id(), user.id, org.id, True, stamp, stamp)
        self.memberships[membership.id] = membership
        return True

    # -- events -------------------------------------------------------------------------------------------

    def record_event(self, body: Any, now: float, *, user_id: int | None = None) -> Event:
        """POST user_profiles/events (or users/{id}/events when ``user_id`` is given), §8.1."""
        profile_in, event_in = _checked_event_body(body)
        if user_id is not None:
            self.get_user(user_id)
        identifiers = [
            {"type": i["type"], "value": _normalised_identifier(i)} for i in profile_in["identifiers"]
        ]
        profile = self._profile_for(profile_in, identifiers, now, user_id=user_id)
        stamp = iso_timestamp(now)
        event = Event(
            id=self._ulid(now),
            profile_id=profile.id,
            user_id=profile.user_id,
            source=event_in["source"],
            type=event_in["type"],
            description=event_in.get("description"),
            properties=event_in["properties"],
            created_at=event_in.get("created_at") or stamp,
            received_at=stamp,
        )
        self.events.append(event)
        return event

    def _profile_for(
        self,
        profile_in: dict[str, Any],
        identifiers: list[dict[str, str]],
        now: float,
        *,
        user_id: int | None,
    ) -> Profile:
        source, kind = profile_in["source"], profile_in["type"]
        for identifier in identifiers:
            profile_id = self._profile_by_identifier.get(
                (source, kind, identifier["type"], identifier["value"])
            )
            if profile_id is not None:
                profile = self.profiles[profile_id]
                self._add_profile_identifiers(profile, identifiers)
                return profile
        user = self.users[user_id] if user_id is not None else self._user_for_identifiers(identifiers, now)
        self._link_identifiers_to_user(user, identifiers)
        profile = Profile(
            id=self._ulid(now),
            source=source,
            type=kind,
            name=profile_in.get("name") or _profile_name(kind, identifiers),
            user_id=user.id,
            identifiers=[],
        )
        self.profiles[profile.id] = profile
        self._add_profile_identifiers(profile, identifiers)
        return profile

    def _add_profile_identifiers(self, profile: Profile, identifiers: list[dict[str, str]]) -> None:
        for identifier in identifiers:
            if identifier not in profile.identifiers:
                profile.identifiers.append(identifier)
                key = (profile.source, profile.type, identifier["type"], identifier["value"])
                self._profile_by_identifier[key] = profile.id

    def _user_for_identifiers(self, identifiers: list[dict[str, str]], now: float) -> User:
        """The user with an identity matching a standard identifier, else a new anonymous user."""
        for identifier in identifiers:
            kind, value = identifier["type"], identifier["value"]
            user: User | None = None
            if kind in ("email", "google"):
                user = self.user_by_email(value)
            elif kind == "external_id":
                user = self.user_by_external_id(value)
            elif kind == "phone_number" and value in self._user_by_phone:
                user = self.users[self._user_by_phone[value]]
            if user is not None:
                return user
        stamp = iso_timestamp(now)
        user = User(
            id=self.new_id(), name=_profile_name("user", identifiers), created_at=stamp, updated_at=stamp
        )
        self.users[user.id] = user
        self._index_for_search(user, now)
        return user

    def _link_identifiers_to_user(self, user: User, identifiers: list[dict[str, str]]) -> None:
        """Email and phone identifiers become identities; an external_id identifier sets the external_id."""
        for identifier in identifiers:
            kind, value = identifier["type"], identifier["value"]
            if kind == "email" and self.user_by_email(value) is None:
                self._add_email(user, value, verified=False, primary=user.email is None)
            elif (
                kind == "external_id" and user.external_id is None and self.user_by_external_id(value) is None
            ):
                self._set_external_id(user, value)
            elif kind == "phone_number" and value not in self._user_by_phone and user.phone is None:
                self._set_phone(user, value)

    def _ulid(self, now: float) -> str:
        value = (int(now * 1000) << 80) | self._rng.getrandbits(80)
        return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


# ---------------------------------------------------------------------------------------------------------


class _Drop:
    pass


_DROP = _Drop()


def _coerce_field_value(definition: CustomField, value: Any) -> Any:
    """A custom field value as Zendesk stores it, ``_DROP`` when Zendesk silently ignores it, or a 422 [I]."""
    kind = definition.type
    invalid = errors.record_invalid(
        definition.key, f"{definition.title}: {value!r} is not a valid {kind} value", "InvalidValue"
    )
    if kind == "checkbox":
        if not isinstance(value, bool):
            raise invalid
        return value
    if kind == "integer":
        if not _is_int(value):
            raise invalid
        return value
    if kind == "decimal":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid
        return value
    if kind == "date":
        match = DATE_VALUE.match(value) if isinstance(value, str) else None
        if match is None:
            raise invalid
        return f"{match.group(1)}T00:00:00Z"
    if kind == "dropdown":
        allowed = {option["value"] for option in definition.custom_field_options or []}
        return value if value in allowed else _DROP
    if kind == "multiselect":
        allowed = {option["value"] for option in definition.custom_field_options or []}
        if not isinstance(value, list):
            raise invalid
        return [item for item in value if item in allowed]
    if isinstance(value, (dict, list)):
        raise invalid
    text = value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
    pattern = definition.regexp_for_validation
    if kind == "regexp" and pattern and re.fullmatch(pattern, text) is None:
        raise invalid
    return text


def _search_document(user: User) -> tuple[str, ...]:
    emails = " ".join(i.value.lower() for i in user.emails)
    return (
        user.name.lower(),
        emails,
        (user.external_id or "").lower(),
        (user.notes or "").lower(),
        user.phone or "",
        user.role,
    )


def _matches_term(document: tuple[str, ...], term: str) -> bool:
    name, emails, external_id, notes, phone, role = document
    field_name, _, value = term.partition(":")
    value = value.strip('"').lower()
    if value and field_name in ("email", "external_id", "name", "phone", "role"):
        if field_name == "email":
            return value in emails.split()
        if field_name == "external_id":
            return value == external_id
        if field_name == "name":
            return value in name
        if field_name == "phone":
            return value in phone
        return value == role
    needle = term.strip('"').lower()
    return needle in name or needle in emails or needle in notes or needle in phone


def _checked_event_body(body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(body, dict):
        raise errors.events_error("InvalidValue", "The request body must be a JSON object")
    profile, event = body.get("profile"), body.get("event")
    if not isinstance(profile, dict):
        raise errors.events_error("MissingField", "profile is required and must be an object")
    if not isinstance(event, dict):
        raise errors.events_error("MissingField", "event is required and must be an object")
    for where, obj in (("profile", profile), ("event", event)):
        for name in ("source", "type"):
            value = obj.get(name)
            if not isinstance(value, str) or not value:
                raise errors.events_error("MissingField", f"{where}.{name} is required")
            if len(value) > MAX_SOURCE_OR_TYPE:
                raise errors.events_error(
                    "InvalidValue", f"{where}.{name} must be at most {MAX_SOURCE_OR_TYPE} characters"
                )
        if obj["source"].lower() == "zendesk":
            raise errors.events_error("InvalidValue", f"{where}.source 'zendesk' is reserved")
    identifiers = profile.get("identifiers")
    if not isinstance(identifiers, list) or not identifiers:
        raise errors.events_error("MissingField", "profile.identifiers needs at least one identifier")
    if len(identifiers) > MAX_IDENTIFIERS:
        raise errors.events_error("InvalidValue", f"a profile has at most {MAX_IDENTIFIERS} identifiers")
    for identifier in identifiers:
        if not isinstance(identifier, dict) or not all(
            isinstance(identifier.get(k), str) and identifier.get(k) for k in ("type", "value")
        ):
            raise errors.events_error("InvalidValue", "each identifier needs a string type and value")
        if len(identifier["type"]) > MAX_IDENTIFIER or len(identifier["value"]) > MAX_IDENTIFIER:
            raise errors.events_error(
                "InvalidValue", f"identifier type and value must be at most {MAX_IDENTIFIER} characters"
            )
    if not isinstance(event.get("properties"), dict):
        raise errors.events_error("MissingField", "event.properties is required and must be an object")
    for name in ("description", "created_at"):
        if event.get(name) is not None and not isinstance(event[name], str):
            raise errors.events_error("InvalidValue", f"event.{name} must be a string")
    if profile.get("name") is not None and not isinstance(profile["name"], str):
        raise errors.events_error("InvalidValue", "profile.name must be a string")
    return profile, event


def _normalised_identifier(identifier: dict[str, str]) -> str:
    value = identifier["value"]
    return value.lower() if identifier["type"] in ("email", "twitter") else value


def _profile_name(kind: str, identifiers: list[dict[str, str]]) -> str:
    """The email; else "User {external_id}"; else "User {phone}"; else "{type} user {value}" (§8.1)."""
    by_type = {i["type"]: i["value"] for i in identifiers}
    if "email" in by_type:
        return by_type["email"]
    if "external_id" in by_type:
        return f"User {by_type['external_id']}"
    if "phone_number" in by_type:
        return f"User {by_type['phone_number']}"
    first = identifiers[0]
    return f"{kind} user {first['value']}"


__all__ = [
    "STANDARD_IDENTIFIERS",
    "CustomField",
    "Event",
    "Identity",
    "Membership",
    "Organization",
    "Profile",
    "User",
    "UserWrite",
    "ZendeskState",
    "check_organization_attributes",
    "check_user_attributes",
    "envelope_object",
]
