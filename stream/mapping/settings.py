"""The destination settings (``ZENDESK_SETTINGS``): Segment's own keys plus a few of ours.

Segment's keys, so a user can paste their Segment destination settings unchanged:

- ``events`` (array of strings, default ``[]``): track event names to send; ``"*"`` sends every event;
  an empty list sends none.
- ``allowGroupWithoutUserId`` (bool, false): a group without userId upserts the organization only.
- ``removeUsersFromOrganizations`` (bool, false): honour ``traits.company.remove: true`` on identify.
- ``verified`` (bool, false): send ``verified: true`` on every user upsert (never ``false``).
- ``subdomain`` (string): accepted for compatibility; the connection uses ``ZENDESK_SUBDOMAIN``.

Ours:

- ``sourceName`` (string of 1-40 characters, ``"segment"``): the ``source`` of Sunshine profiles and
  events; ``"zendesk"`` is reserved by Zendesk and rejected.
- ``autoCreateFields`` (bool, true): create missing custom user/organization fields.
- ``maxAutoCreatedFields`` (int 0-10000, 100): at most this many auto-created fields per kind (user,
  organization), counted from the fields in Zendesk whose description carries our marker.
- ``fieldDenyList`` (array of strings, ``[]``): trait keys never sent nor created (compared after
  snake_case conversion, so ``totalBilled`` also denies ``total_billed``).

Anything else, or a wrong type, is a `ConfigError` whose one-line message names the key.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from stream.errors import ConfigError
from stream.jsontypes import json_type, quote
from stream.mapping.keys import to_snake_case

__all__ = ["MAX_SOURCE_LENGTH", "DestinationSettings"]

MAX_SOURCE_LENGTH: Final = 40  # Sunshine profile/event `source` and `type` (docs/zendesk-api.md §8.2)
WILDCARD: Final = "*"
_PREFIX: Final = "ZENDESK_SETTINGS"
_SUBDOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_MAX_FIELD_CAP: Final = 10_000

_SEGMENT_KEYS: Final = (
    "events",
    "allowGroupWithoutUserId",
    "removeUsersFromOrganizations",
    "verified",
    "subdomain",
)
_OUR_KEYS: Final = ("sourceName", "autoCreateFields", "maxAutoCreatedFields", "fieldDenyList")
KNOWN_KEYS: Final = _SEGMENT_KEYS + _OUR_KEYS


def _fail(key: str, message: str) -> ConfigError:
    return ConfigError(f'{_PREFIX}: "{key}" {message}')


def _bool(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    if key not in raw:
        return default
    value = raw[key]
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {json_type(value)}")
    return value


def _string_list(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _fail(key, f"must be an array of strings, got {json_type(value)}")
    result: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            what = "an empty string" if isinstance(item, str) else json_type(item)
            raise _fail(key, f"must be an array of non-empty strings, item {index} is {what}")
        if item not in result:
            result.append(item)
    return tuple(result)


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationSettings:
    events: tuple[str, ...] = ()
    allow_group_without_user_id: bool = False
    remove_users_from_organizations: bool = False
    verified: bool = False
    subdomain: str | None = None
    source_name: str = "segment"
    auto_create_fields: bool = True
    max_auto_created_fields: int = 100
    field_deny_list: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | str | bytes) -> DestinationSettings:
        """From the ZENDESK_SETTINGS object (already loaded, or its JSON text). Raises ConfigError."""
        if isinstance(raw, str | bytes):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except (ValueError, RecursionError) as exc:
                raise ConfigError(f"{_PREFIX}: not valid JSON ({exc})") from None
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{_PREFIX}: must be a JSON object, got {json_type(raw)}")
        for key in raw:
            if key not in KNOWN_KEYS:
                close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
                hint = f' (did you mean "{close[0]}"?)' if close else ""
                raise ConfigError(f"{_PREFIX}: unknown key {quote(key)}{hint}")

        events = _string_list(raw, "events")
        for name in events:
            if name != WILDCARD and len(name) > MAX_SOURCE_LENGTH:
                raise _fail(
                    "events",
                    f"lists an event name of {len(name)} characters; Zendesk accepts at most "
                    f"{MAX_SOURCE_LENGTH}, so it could never be sent",
                )

        subdomain = raw.get("subdomain")
        if subdomain is not None and not isinstance(subdomain, str):
            raise _fail("subdomain", f"must be a string, got {json_type(subdomain)}")
        if subdomain is not None:
            subdomain = subdomain.strip() or None
            if subdomain is not None and not _SUBDOMAIN.fullmatch(subdomain):
                raise _fail("subdomain", "must hold only letters, digits and hyphens (no .zendesk.com)")

        source_name = raw.get("sourceName", "segment")
        if not isinstance(source_name, str):
            raise _fail("sourceName", f"must be a string, got {json_type(source_name)}")
        if not source_name or source_name != source_name.strip():
            raise _fail("sourceName", "must be non-empty, without leading or trailing spaces")
        if len(source_name) > MAX_SOURCE_LENGTH:
            raise _fail(
                "sourceName", f"must be at most {MAX_SOURCE_LENGTH} characters, got {len(source_name)}"
            )
        if source_name.lower() == "zendesk":
            raise _fail("sourceName", 'must not be "zendesk": Zendesk reserves that source')

        cap = raw.get("maxAutoCreatedFields", 100)
        if isinstance(cap, bool) or not isinstance(cap, int) or not 0 <= cap <= _MAX_FIELD_CAP:
            raise _fail(
                "maxAutoCreatedFields", f"must be an integer from 0 to {_MAX_FIELD_CAP}, got {cap!r:.40}"
            )

        deny: set[str] = set()
        for entry in _string_list(raw, "fieldDenyList"):
            deny_key = to_snake_case(entry)
            if deny_key is None:
                raise _fail("fieldDenyList", f"entry {quote(entry)} is not a usable field key")
            deny.add(deny_key)

        return cls(
            events=events,
            allow_group_without_user_id=_bool(raw, "allowGroupWithoutUserId", False),
            remove_users_from_organizations=_bool(raw, "removeUsersFromOrganizations", False),
            verified=_bool(raw, "verified", False),
            subdomain=subdomain,
            source_name=source_name,
            auto_create_fields=_bool(raw, "autoCreateFields", True),
            max_auto_created_fields=cap,
            field_deny_list=frozenset(deny),
        )

    def event_enabled(self, name: str) -> bool:
        """Whether a track event of this name is sent (exact, case-sensitive match, or ``"*"``)."""
        return WILDCARD in self.events or name in self.events
