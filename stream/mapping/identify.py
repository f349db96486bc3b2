"""Identify → (fields to create) + user upsert (+ removal from an organization).

docs/semantics.md "Identify → user upsert":

1. Traits come from ``traits``, or ``context.traits`` when ``traits`` is absent or empty.
2. Identity: ``traits.email`` (the match key) and/or ``userId`` (→ ``external_id``); neither → skip
   ``no_identity``. An email that is not a string shaped like ``local@domain`` is dropped, not sent.
3. Name: ``name``, else first and last name (``firstName``/``first_name`` + ``lastName``/``last_name``) joined
   with a space; either one alone is enough. None → skip ``missing_name``.
4. Standard mapping: email, name, organizationId → organization_id (an integer), timezone → time_zone,
   phone. Trait keys are compared after snake_case conversion, so ``first_name`` and ``firstName`` are the
   same trait; for two traits with the same key the first non-null one wins.
5. ``userId`` also sets ``user_fields.user_id`` when the account has a custom field ``user_id``.
6. Names, the standard traits and ``userId``/``id``/``anonymousId``/``company`` never become custom fields;
   every other trait follows the custom-field rules (`stream.mapping.fields`).
7. ``verified: true`` on every upsert when the setting is on; otherwise not sent (never ``false``).
8. With ``removeUsersFromOrganizations`` on, ``traits.company.id`` present and ``traits.company.remove`` true:
   after the upsert, remove the membership (organization by external_id = company.id, else by Zendesk id when
   numeric). If ``organizationId`` names that same organization it is left out of the upsert: writing it
   would first make it the user's default organization and replace all other memberships
   (docs/zendesk-api.md §2.1), only for the removal to undo it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from stream.events import SegmentEvent
from stream.mapping.fields import (
    INT64_MAX,
    Dropped,
    DropReason,
    FieldKind,
    Known,
    KnownField,
    coerce_value,
    dropped,
    plan_fields,
)
from stream.mapping.keys import title_for_key, to_snake_case
from stream.mapping.operations import (
    EnsureField,
    Operation,
    OrgRef,
    Plan,
    RemoveMembership,
    Skip,
    UpsertUser,
    UserRef,
)
from stream.mapping.settings import DestinationSettings
from stream.outcomes import SkipReason

__all__ = ["plan_identify", "valid_email"]

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
MAX_EMAIL_LENGTH: Final = 254
_STANDARD: Final = frozenset({"email", "name", "first_name", "last_name", "organization_id", "phone"})
_TIME_ZONE_KEYS: Final = frozenset({"timezone", "time_zone"})
_IGNORED: Final = frozenset({"user_id", "id", "anonymous_id", "company"})
RESERVED_USER_KEYS: Final = _STANDARD | _TIME_ZONE_KEYS | _IGNORED
_ORG_ID_FIELD: Final = KnownField(key="organization_id", type="integer")


def valid_email(value: object) -> str | None:
    """The email, stripped, when it is a string shaped like an address (``+`` and ``#`` are fine)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(text):
        return None
    return text


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _standard_traits(traits: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    found: dict[str, tuple[str, Any]] = {}
    for original, value in traits.items():
        key = to_snake_case(original)
        if key in _TIME_ZONE_KEYS:
            key = "time_zone"
        if key is None or key not in _STANDARD | {"time_zone"} or value is None:
            continue
        found.setdefault(key, (original, value))
    return found


def _company_to_remove(traits: Mapping[str, Any]) -> OrgRef | None:
    company = traits.get("company")
    if not isinstance(company, Mapping) or company.get("remove") is not True:
        return None
    company_id = _text(company.get("id"))
    if company_id is None:
        return None
    numeric = int(company_id) if company_id.isascii() and company_id.isdigit() else None
    return OrgRef(
        external_id=company_id, id=numeric if numeric is not None and numeric <= INT64_MAX else None
    )


def _standard_attributes(
    standard: Mapping[str, tuple[str, Any]], removal: OrgRef | None, user: dict[str, Any]
) -> list[Dropped]:
    """Add organization_id, time_zone and phone to `user`; return what was left out."""
    lost: list[Dropped] = []
    if "organization_id" in standard:
        original, raw_org = standard["organization_id"]
        org_text = _text(raw_org)
        if (
            removal is not None
            and org_text is not None
            and org_text in {removal.external_id, None if removal.id is None else str(removal.id)}
        ):
            lost.append(dropped(original, DropReason.ORGANIZATION_BEING_REMOVED))
        else:
            org_id = coerce_value(raw_org, _ORG_ID_FIELD)
            if isinstance(org_id, int) and org_id > 0:
                user["organization_id"] = org_id
            else:
                lost.append(dropped(original, DropReason.INVALID_VALUE))
    for key in ("time_zone", "phone"):
        if key in standard:
            original, raw = standard[key]
            text = _text(raw)
            if text is None:
                lost.append(dropped(original, DropReason.INVALID_VALUE))
            else:
                user[key] = text
    return lost


def plan_identify(event: SegmentEvent, settings: DestinationSettings, known: Known) -> Plan | Skip:
    traits: Mapping[str, Any] = event.traits or event.context_traits
    standard = _standard_traits(traits)
    lost: list[Dropped] = []

    email: str | None = None
    if "email" in standard:
        original, raw_email = standard["email"]
        email = valid_email(raw_email)
        if email is None:
            lost.append(dropped(original, DropReason.INVALID_VALUE))
    if email is None and event.user_id is None:
        return Skip(reason=SkipReason.NO_IDENTITY, detail="identify has neither traits.email nor userId")

    name = _text(standard["name"][1]) if "name" in standard else None
    if name is None:
        first = _text(standard["first_name"][1]) if "first_name" in standard else None
        last = _text(standard["last_name"][1]) if "last_name" in standard else None
        name = " ".join(part for part in (first, last) if part) or None
    if name is None:
        return Skip(
            reason=SkipReason.MISSING_NAME,
            detail="identify has no name, firstName/lastName or first_name/last_name trait",
        )

    user: dict[str, Any] = {"name": name}
    if email is not None:
        user["email"] = email
    if event.user_id is not None:
        user["external_id"] = event.user_id

    removal = _company_to_remove(traits) if settings.remove_users_from_organizations else None

    lost.extend(_standard_attributes(standard, removal, user))
    if settings.verified:
        user["verified"] = True

    fields = plan_fields(
        traits,
        kind=FieldKind.USER,
        known=known,
        reserved=RESERVED_USER_KEYS,
        deny=settings.field_deny_list,
        auto_create=settings.auto_create_fields,
        cap=settings.max_auto_created_fields,
    )
    lost.extend(fields.dropped)
    values = dict(fields.values)
    user_id_field = known.user_fields.get("user_id")
    if event.user_id is not None and user_id_field is not None and user_id_field.active:
        coerced = coerce_value(event.user_id, user_id_field)
        if isinstance(coerced, DropReason):
            lost.append(dropped("userId", coerced))
        else:
            values["user_id"] = coerced
    if values:
        user["user_fields"] = values

    ref = UserRef(external_id=event.user_id, email=email)
    operations: list[Operation] = [
        EnsureField(kind=FieldKind.USER, key=key, type=field_type, title=title_for_key(key))
        for key, field_type in fields.create
    ]
    operations.append(UpsertUser(user=user, ref=ref))
    if removal is not None:
        operations.append(RemoveMembership(user=ref, organization=removal))
    return Plan(event_type="identify", operations=tuple(operations), dropped=tuple(lost))
