"""What Zendesk told us, kept to save requests (docs/contracts.md: "cache what Zendesk told us").

Only Zendesk's own answers fill these caches; nothing is guessed. Ids are bounded LRU maps.
External ids and emails are case-insensitive in Zendesk, so their keys are lower-cased.
Custom field definitions are not kept here: the destination keeps them (`Destination.known()`).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Generic, TypeGuard, TypeVar

import orjson

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """A dict that forgets its least recently used entry beyond `maxsize`."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def pop(self, key: K) -> V | None:
        return self._data.pop(key, None)

    def discard_value(self, value: V) -> None:
        for key in [k for k, v in self._data.items() if v == value]:
            del self._data[key]

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class ZendeskCache:
    def __init__(self, *, max_users: int = 50_000, max_organizations: int = 20_000) -> None:
        self._user_by_external_id: LruCache[str, int] = LruCache(max_users)
        self._user_by_email: LruCache[str, int] = LruCache(max_users)
        self._org_by_external_id: LruCache[str, int] = LruCache(max_organizations)

    # users

    def user_id_by_external_id(self, external_id: str) -> int | None:
        return self._user_by_external_id.get(external_id.lower())

    def user_id_by_email(self, email: str) -> int | None:
        return self._user_by_email.get(email.lower())

    def remember_user_id(self, user_id: int, *, external_id: object = None, email: object = None) -> None:
        if isinstance(external_id, str) and external_id:
            self._user_by_external_id.put(external_id.lower(), user_id)
        if isinstance(email, str) and email:
            self._user_by_email.put(email.lower(), user_id)

    def learn_user(self, user: object) -> int | None:
        """Record a user object from Zendesk; returns its id. A deleted (inactive) user is forgotten."""
        if not isinstance(user, Mapping) or not _is_id(user.get("id")):
            return None
        user_id: int = user["id"]
        if user.get("active") is False:
            self.forget_user(user_id)
            return None
        self.remember_user_id(user_id, external_id=user.get("external_id"), email=user.get("email"))
        return user_id

    def forget_user(self, user_id: int) -> None:
        self._user_by_external_id.discard_value(user_id)
        self._user_by_email.discard_value(user_id)

    # organizations

    def organization_id_by_external_id(self, external_id: str) -> int | None:
        return self._org_by_external_id.get(external_id.lower())

    def learn_organization(self, org: object) -> int | None:
        if not isinstance(org, Mapping) or not _is_id(org.get("id")):
            return None
        org_id: int = org["id"]
        external_id = org.get("external_id")
        if isinstance(external_id, str) and external_id:
            self._org_by_external_id.put(external_id.lower(), org_id)
        return org_id

    def forget_organization(self, org_id: int) -> None:
        self._org_by_external_id.discard_value(org_id)

    def sizes(self) -> dict[str, int]:
        """Entries per map, for the metrics."""
        return {
            "user_ids_by_external_id": len(self._user_by_external_id),
            "user_ids_by_email": len(self._user_by_email),
            "organization_ids": len(self._org_by_external_id),
        }

    def clear(self) -> None:
        self._user_by_external_id.clear()
        self._user_by_email.clear()
        self._org_by_external_id.clear()


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class WriteMemory:
    """What this service last wrote, per user and per organization, to skip a write that would change
    nothing (skip reason `unchanged`). Bounded by `max_entries` and by `ttl_s` (0 turns it off).

    Only a successful write is remembered; a failed one forgets its key (when in doubt, write). An edit
    made in Zendesk's UI since our last write is kept: we send changes, not full state (the habit of
    Hightouch and Census, which also send only what changed)."""

    def __init__(self, *, ttl_s: float, max_entries: int = 100_000, clock: Callable[[], float]) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._written: LruCache[str, tuple[str, float]] = LruCache(max(1, max_entries))

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    def unchanged(self, key: str, body: Mapping[str, object]) -> bool:
        """Whether `body` is exactly what was last written under `key`, within the TTL."""
        if not self.enabled:
            return False
        found = self._written.get(key)
        if found is None:
            return False
        digest, at = found
        if self._clock() - at > self.ttl_s:
            self._written.pop(key)
            return False
        return digest == body_digest(body)

    def wrote(self, key: str, body: Mapping[str, object]) -> None:
        if self.enabled:
            self._written.put(key, (body_digest(body), self._clock()))

    def forget(self, key: str) -> None:
        self._written.pop(key)

    def __len__(self) -> int:
        return len(self._written)


def body_digest(body: Mapping[str, object]) -> str:
    """A short digest of a JSON body, the same for equal bodies whatever their key order."""
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    except (TypeError, orjson.JSONEncodeError):  # beyond orjson (a huge integer, a lone surrogate)
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        canonical = text.encode("utf-8", "replace")
    return hashlib.blake2b(canonical, digest_size=16).hexdigest()
