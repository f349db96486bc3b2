"""What Zendesk told us, kept to save requests (ARCHITECTURE.md: "cache what Zendesk told us").

Only Zendesk's own answers fill these caches; nothing is guessed. Ids are bounded LRU maps; field
definitions are complete lists (all pages) that are replaced or invalidated as a whole.
External ids and emails are case-insensitive in Zendesk, so their keys are lower-cased.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeGuard, TypeVar

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


class FieldKind(StrEnum):
    USER = "user"
    ORGANIZATION = "organization"


@dataclass(frozen=True, slots=True)
class FieldDefinition:
    id: int
    key: str
    type: str
    title: str
    active: bool

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> FieldDefinition | None:
        """None for an entry without a usable id or key (never raises on Zendesk's data)."""
        id_, key = raw.get("id"), raw.get("key")
        if not _is_id(id_) or not isinstance(key, str) or not key:
            return None
        type_, title = raw.get("type"), raw.get("title")
        return cls(
            id=id_,
            key=key,
            type=type_ if isinstance(type_, str) else "text",
            title=title if isinstance(title, str) else key,
            active=raw.get("active") is not False,
        )


@dataclass(frozen=True, slots=True)
class FieldDefinitions:
    """The complete list of one kind of custom field, by key."""

    kind: FieldKind
    by_key: Mapping[str, FieldDefinition]

    @classmethod
    def from_json(cls, kind: FieldKind, items: Iterable[object]) -> FieldDefinitions:
        parsed = (FieldDefinition.from_json(i) for i in items if isinstance(i, Mapping))
        return cls(kind, {d.key: d for d in parsed if d is not None})

    def get(self, key: str) -> FieldDefinition | None:
        return self.by_key.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.by_key

    def __iter__(self) -> Iterator[FieldDefinition]:
        return iter(self.by_key.values())

    def __len__(self) -> int:
        return len(self.by_key)

    def with_field(self, field: FieldDefinition) -> FieldDefinitions:
        return FieldDefinitions(self.kind, {**self.by_key, field.key: field})


class ZendeskCache:
    def __init__(self, *, max_users: int = 50_000, max_organizations: int = 20_000) -> None:
        self._user_by_external_id: LruCache[str, int] = LruCache(max_users)
        self._user_by_email: LruCache[str, int] = LruCache(max_users)
        self._org_by_external_id: LruCache[str, int] = LruCache(max_organizations)
        self._fields: dict[FieldKind, FieldDefinitions] = {}

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

    # field definitions

    def fields(self, kind: FieldKind) -> FieldDefinitions | None:
        return self._fields.get(kind)

    def store_fields(self, definitions: FieldDefinitions) -> None:
        self._fields[definitions.kind] = definitions

    def add_field(self, kind: FieldKind, raw: object) -> FieldDefinition | None:
        """A field we just created. Added only to a cached complete list (else the next read lists all)."""
        field = FieldDefinition.from_json(raw) if isinstance(raw, Mapping) else None
        current = self._fields.get(kind)
        if field is not None and current is not None:
            self._fields[kind] = current.with_field(field)
        return field

    def invalidate_fields(self, kind: FieldKind) -> None:
        self._fields.pop(kind, None)

    def clear(self) -> None:
        self._user_by_external_id.clear()
        self._user_by_email.clear()
        self._org_by_external_id.clear()
        self._fields.clear()


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
