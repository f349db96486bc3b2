"""Custom fields: what Zendesk is known to hold, type inference for new fields, value coercion.

Rules (docs/semantics.md, "Identify → user upsert", shared by organization fields):

- A trait is matched against the account's existing field keys first (`Known`, filled by the executor from
  Zendesk, all pages). A value is coerced to the existing field's type; what cannot be coerced is dropped and
  recorded with a `DropReason`, the rest of the event is still sent.
- A missing field is created with a type inferred from the value: bool → checkbox, int → integer,
  float → decimal, ISO-8601 date or date-time string → date, any other string → text.
- Arrays are sent only to an existing multiselect field; objects are never sent; ``null`` clears an existing
  field and means nothing for a field that does not exist.
- Values are always JSON-serialisable: NaN and ±Infinity are dropped, integers sent to lookup fields fit in a
  signed 64-bit integer.
- Values stay within Zendesk's size limits (docs/zendesk-api.md §12): text at most 65,536 characters, an
  option tag at most 255, integer and decimal fields at most 12 digits before the point, and all of one
  record's custom field values together at most `MAX_FIELD_VALUES_BYTES` of JSON (the largest go first).
  Over a limit the value is dropped (`VALUE_TOO_LARGE`, `NUMBER_OUT_OF_RANGE`), never cut.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import orjson

from stream.jsontypes import json_chars
from stream.mapping.keys import to_snake_case

__all__ = [
    "AUTO_CREATED_MARKER",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_FIELD_NUMBER",
    "MAX_FIELD_VALUES_BYTES",
    "MAX_OPTION_CHARS",
    "MAX_TEXT_CHARS",
    "DropReason",
    "Dropped",
    "FieldKind",
    "FieldOption",
    "FieldPlan",
    "FieldType",
    "Known",
    "KnownField",
    "coerce_value",
    "dropped",
    "infer_type",
    "parse_iso_date",
    "plan_fields",
]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

# Zendesk's limits for user and organization custom field values (docs/zendesk-api.md §12.1, §12.4).
MAX_TEXT_CHARS: Final = 65_536  # text and multi-line fields, documented
MAX_OPTION_CHARS: Final = 255  # a dropdown option's tag, documented; multiselect inferred the same
MAX_FIELD_NUMBER: Final = 999_999_999_999  # "can't exceed 12 digits", documented for integer fields
# One user or organization record: 128 KiB is the only per-record figure Zendesk gives (its bulk importer's
# row); 8 KiB of it is left to the standard attributes, which are short.
MAX_FIELD_VALUES_BYTES: Final = 120 * 1024

# Written into the description of every field this service creates, so that the executor can tell which
# existing fields count against the `maxAutoCreatedFields` cap, across restarts and replicas.
AUTO_CREATED_MARKER: Final = "Created automatically by zendesk-stream from a Segment trait."


class FieldKind(StrEnum):
    USER = "user"
    ORGANIZATION = "organization"


class FieldType(StrEnum):
    """Zendesk custom field types (docs/zendesk-api.md §3.1)."""

    TEXT = "text"
    TEXTAREA = "textarea"
    CHECKBOX = "checkbox"
    DATE = "date"
    INTEGER = "integer"
    DECIMAL = "decimal"
    REGEXP = "regexp"
    DROPDOWN = "dropdown"
    MULTISELECT = "multiselect"
    LOOKUP = "lookup"


class DropReason(StrEnum):
    """Why one trait (or one standard attribute) was left out of an otherwise sent request."""

    INVALID_KEY = "invalid_key"  # empty, all digits or too long after snake_case conversion
    DENIED = "denied"  # in the fieldDenyList setting
    DUPLICATE_KEY = "duplicate_key"  # two traits convert to the same key; the first exact one wins
    OBJECT_NOT_SENT = "object_not_sent"
    ARRAY_NEEDS_MULTISELECT = "array_needs_multiselect"
    TYPE_MISMATCH = "type_mismatch"  # cannot be coerced to the existing field's type
    NOT_FINITE = "not_finite"  # NaN or ±Infinity
    NUMBER_OUT_OF_RANGE = "number_out_of_range"  # over 12 digits (number field); beyond int64 (lookup)
    VALUE_TOO_LARGE = "value_too_large"  # longer than Zendesk takes (text, option tag, the record's values)
    NOT_AN_OPTION = "not_an_option"  # not one of a dropdown/multiselect field's options
    FIELD_NOT_FOUND = "field_not_found"  # no such field and autoCreateFields is off
    FIELD_CAP_REACHED = "field_cap_reached"  # maxAutoCreatedFields reached
    FIELD_INACTIVE = "field_inactive"  # the field exists but is deactivated in Zendesk
    INVALID_VALUE = "invalid_value"  # a standard attribute with an unusable value (e.g. a non-numeric org id)
    ORGANIZATION_BEING_REMOVED = "organization_being_removed"


@dataclass(frozen=True, slots=True)
class Dropped:
    """One trait left out, by its original trait key (never its value: values may be personal data)."""

    key: str
    reason: DropReason


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldOption:
    """A dropdown/multiselect option: `value` is what is stored and sent (the "tag"), `name` is shown."""

    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownField:
    key: str
    type: str
    # Options of a dropdown or multiselect field; None when not known (values are then sent as they are).
    options: tuple[FieldOption, ...] | None = None
    active: bool = True
    auto_created: bool = False  # created by this service (description carries AUTO_CREATED_MARKER)

    @classmethod
    def from_zendesk(cls, body: Mapping[str, Any]) -> KnownField:
        """From one item of GET /api/v2/user_fields or /api/v2/organization_fields."""
        raw_options = body.get("custom_field_options")
        options: tuple[FieldOption, ...] | None = None
        if isinstance(raw_options, list):
            options = tuple(
                FieldOption(name=str(o.get("name", "")), value=str(o.get("value", "")))
                for o in raw_options
                if isinstance(o, Mapping)
            )
        description = body.get("description")
        return cls(
            key=str(body["key"]),
            type=str(body.get("type") or FieldType.TEXT),
            options=options,
            active=body.get("active") is not False,
            auto_created=isinstance(description, str) and description.startswith(AUTO_CREATED_MARKER),
        )


def _freeze(fields: Mapping[str, KnownField]) -> Mapping[str, KnownField]:
    return MappingProxyType(dict(fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class Known:
    """What Zendesk is known to hold, as far as planning needs it. Filled by the executor (all pages)."""

    user_fields: Mapping[str, KnownField] = field(default_factory=lambda: MappingProxyType({}))
    organization_fields: Mapping[str, KnownField] = field(default_factory=lambda: MappingProxyType({}))

    _auto_created: tuple[int, int] = field(init=False, repr=False, compare=False, default=(0, 0))

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_fields", _freeze(self.user_fields))
        object.__setattr__(self, "organization_fields", _freeze(self.organization_fields))
        counts = tuple(
            sum(1 for f in fields.values() if f.auto_created)
            for fields in (self.user_fields, self.organization_fields)
        )
        object.__setattr__(self, "_auto_created", counts)

    @classmethod
    def of(
        cls,
        *,
        user_fields: Mapping[str, str | KnownField] | None = None,
        organization_fields: Mapping[str, str | KnownField] | None = None,
    ) -> Known:
        """Shorthand for tests and tools: ``Known.of(user_fields={"plan": "text"})``."""

        def build(spec: Mapping[str, str | KnownField] | None) -> dict[str, KnownField]:
            return {
                key: (value if isinstance(value, KnownField) else KnownField(key=key, type=value))
                for key, value in (spec or {}).items()
            }

        return cls(user_fields=build(user_fields), organization_fields=build(organization_fields))

    @classmethod
    def from_zendesk(
        cls, *, user_fields: list[Mapping[str, Any]], organization_fields: list[Mapping[str, Any]]
    ) -> Known:
        """From the raw field lists Zendesk returned (every page concatenated)."""
        users = [KnownField.from_zendesk(f) for f in user_fields if "key" in f]
        orgs = [KnownField.from_zendesk(f) for f in organization_fields if "key" in f]
        return cls(user_fields={f.key: f for f in users}, organization_fields={f.key: f for f in orgs})

    def with_field(self, kind: FieldKind, known_field: KnownField) -> Known:
        """A copy that also knows `known_field` (just created by the executor)."""
        if kind is FieldKind.USER:
            return Known(
                user_fields={**self.user_fields, known_field.key: known_field},
                organization_fields=self.organization_fields,
            )
        return Known(
            user_fields=self.user_fields,
            organization_fields={**self.organization_fields, known_field.key: known_field},
        )

    def fields(self, kind: FieldKind) -> Mapping[str, KnownField]:
        return self.user_fields if kind is FieldKind.USER else self.organization_fields

    def auto_created_count(self, kind: FieldKind) -> int:
        return self._auto_created[0 if kind is FieldKind.USER else 1]


_ISO_DATE = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|z|[+-]\d{2}(?::?\d{2})?)?)?"
)


def parse_iso_date(value: str) -> date | None:
    """The calendar date of an ISO-8601 date or date-time string, as written (no time-zone shift)."""
    text = value.strip()
    if len(text) > 40 or not _ISO_DATE.fullmatch(text):
        return None
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace("z", "Z")).date()
    except ValueError:
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def infer_type(value: object) -> FieldType | DropReason | None:
    """The type of a field to create for `value`; a DropReason when it must not be sent; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return FieldType.CHECKBOX
    if _is_int(value):
        assert isinstance(value, int)
        return FieldType.INTEGER if INT64_MIN <= value <= INT64_MAX else DropReason.NUMBER_OUT_OF_RANGE
    if isinstance(value, float):
        return FieldType.DECIMAL if math.isfinite(value) else DropReason.NOT_FINITE
    if isinstance(value, str):
        return FieldType.DATE if parse_iso_date(value) is not None else FieldType.TEXT
    if isinstance(value, list):
        return DropReason.ARRAY_NEEDS_MULTISELECT
    return DropReason.OBJECT_NOT_SENT


_INT_TEXT = re.compile(r"[+-]?\d{1,19}")
_TRUE_TEXT = frozenset({"true", "yes", "1"})
_FALSE_TEXT = frozenset({"false", "no", "0"})


def _to_int(value: object) -> int | DropReason:
    result: int
    if isinstance(value, bool):
        return DropReason.TYPE_MISMATCH
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value):
            return DropReason.NOT_FINITE
        if not value.is_integer():
            return DropReason.TYPE_MISMATCH
        result = int(value)
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        result = int(value.strip())
    else:
        return DropReason.TYPE_MISMATCH
    return result if INT64_MIN <= result <= INT64_MAX else DropReason.NUMBER_OUT_OF_RANGE


def _to_decimal(value: object) -> int | float | DropReason:
    if isinstance(value, bool):
        return DropReason.TYPE_MISMATCH
    if isinstance(value, int):
        return value if -MAX_FIELD_NUMBER <= value <= MAX_FIELD_NUMBER else DropReason.NUMBER_OUT_OF_RANGE
    number: float
    if isinstance(value, float):
        number = value
    elif isinstance(value, str) and len(value) <= 64:
        try:
            number = float(value.strip())
        except ValueError:
            return DropReason.TYPE_MISMATCH
    else:
        return DropReason.TYPE_MISMATCH
    if not math.isfinite(number):
        return DropReason.NOT_FINITE
    return number if abs(number) < MAX_FIELD_NUMBER + 1 else DropReason.NUMBER_OUT_OF_RANGE


def _to_text(value: object) -> str | DropReason:
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT_CHARS else DropReason.VALUE_TOO_LARGE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else DropReason.NOT_FINITE
    if isinstance(value, list):
        return DropReason.ARRAY_NEEDS_MULTISELECT
    return DropReason.OBJECT_NOT_SENT


def _to_checkbox(value: object) -> bool | DropReason:
    if isinstance(value, bool):
        return value
    if _is_int(value) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXT:
            return True
        if text in _FALSE_TEXT:
            return False
    return DropReason.TYPE_MISMATCH


def _to_date(value: object) -> str | DropReason:
    if isinstance(value, str):
        parsed = parse_iso_date(value)
        if parsed is not None:
            return parsed.isoformat()
    return DropReason.TYPE_MISMATCH


def _option_value(value: object, known: KnownField) -> str | DropReason:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return DropReason.TYPE_MISMATCH
    text = str(value)
    if known.options is None:
        return text if len(text) <= MAX_OPTION_CHARS else DropReason.VALUE_TOO_LARGE
    for option in known.options:
        if option.value == text:
            return option.value
    lowered = text.strip().lower()
    for option in known.options:
        if option.name.strip().lower() == lowered:
            return option.value
    return DropReason.NOT_AN_OPTION


def _to_multiselect(value: object, known: KnownField) -> list[str] | DropReason:
    items = value if isinstance(value, list) else [value]
    result: list[str] = []
    for item in items:
        converted = _option_value(item, known)
        if isinstance(converted, DropReason):
            # Sending a subset would silently replace the user's whole selection: drop the trait instead.
            return converted
        if converted not in result:
            result.append(converted)
    return result


def coerce_value(value: object, known: KnownField) -> object:
    """`value` in the form `known`'s type takes, or a DropReason. ``None`` (clear the field) passes."""
    if value is None:
        return None
    kind = known.type
    if kind == FieldType.MULTISELECT:
        if isinstance(value, dict):
            return DropReason.OBJECT_NOT_SENT
        return _to_multiselect(value, known)
    if isinstance(value, list):
        return DropReason.ARRAY_NEEDS_MULTISELECT
    if isinstance(value, dict):
        return DropReason.OBJECT_NOT_SENT
    converted: object
    if kind == FieldType.CHECKBOX:
        converted = _to_checkbox(value)
    elif kind == FieldType.INTEGER:
        converted = _to_int(value)
        if isinstance(converted, int) and not -MAX_FIELD_NUMBER <= converted <= MAX_FIELD_NUMBER:
            converted = DropReason.NUMBER_OUT_OF_RANGE
    elif kind == FieldType.LOOKUP:  # a record id: any signed 64-bit integer
        converted = _to_int(value)
    elif kind == FieldType.DECIMAL:
        converted = _to_decimal(value)
    elif kind == FieldType.DATE:
        converted = _to_date(value)
    elif kind == FieldType.DROPDOWN:
        converted = _option_value(value, known)
    else:  # text, textarea, regexp, and any type Zendesk adds later: send text
        converted = _to_text(value)
    return converted


# --- planning custom fields -----------------------------------------------------------------------------

MAX_DROPPED_KEY_LENGTH: Final = 100


def dropped(key: object, reason: DropReason) -> Dropped:
    """A Dropped record with a bounded key (trait keys can be arbitrarily long)."""
    return Dropped(str(key)[:MAX_DROPPED_KEY_LENGTH], reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldPlan:
    """The custom-field part of one upsert: values by field key, fields to create first, traits left out."""

    values: dict[str, object]
    create: tuple[tuple[str, FieldType], ...]
    dropped: tuple[Dropped, ...]


def _choose_keys(
    traits: Mapping[str, Any], *, reserved: frozenset[str], deny: frozenset[str], lost: list[Dropped]
) -> dict[str, tuple[str, object]]:
    """Field key → (original trait key, value) for the traits that may become custom fields."""
    chosen: dict[str, tuple[str, object]] = {}
    for original, value in traits.items():
        key = to_snake_case(original)
        if key is None:
            lost.append(dropped(original, DropReason.INVALID_KEY))
            continue
        if key in reserved:
            continue
        if key in deny:
            lost.append(dropped(original, DropReason.DENIED))
            continue
        if key in chosen:
            previous = chosen[key][0]
            if original == key and previous != key:
                lost.append(dropped(previous, DropReason.DUPLICATE_KEY))
                chosen[key] = (original, value)
            else:
                lost.append(dropped(original, DropReason.DUPLICATE_KEY))
            continue
        chosen[key] = (original, value)
    return chosen


def plan_fields(
    traits: Mapping[str, Any],
    *,
    kind: FieldKind,
    known: Known,
    reserved: frozenset[str],
    deny: frozenset[str],
    auto_create: bool,
    cap: int,
) -> FieldPlan:
    """Map the traits that are not `reserved` (snake_case keys) to custom field values.

    Two traits that convert to the same key (``planName`` and ``plan_name``): the one already written as
    the key wins, else the first; the other is dropped (`DUPLICATE_KEY`).
    """
    lost: list[Dropped] = []
    chosen = _choose_keys(traits, reserved=reserved, deny=deny, lost=lost)
    existing = known.fields(kind)
    room = max(0, cap - known.auto_created_count(kind))
    values: dict[str, object] = {}
    create: list[tuple[str, FieldType]] = []
    for key, (original, value) in chosen.items():
        field_info = existing.get(key)
        if field_info is None:
            if value is None:
                continue  # null for a field that does not exist: nothing to do
            inferred = infer_type(value)
            if inferred is None:
                continue
            if isinstance(inferred, DropReason):
                lost.append(dropped(original, inferred))
                continue
            if not auto_create:
                lost.append(dropped(original, DropReason.FIELD_NOT_FOUND))
                continue
            if len(create) >= room:
                lost.append(dropped(original, DropReason.FIELD_CAP_REACHED))
                continue
            field_info = KnownField(key=key, type=inferred)
            coerced = coerce_value(value, field_info)
            if isinstance(coerced, DropReason):  # the inferred type takes it unless it is too large
                lost.append(dropped(original, coerced))
                continue
            create.append((key, inferred))
            values[key] = coerced
            continue
        if not field_info.active:
            lost.append(dropped(original, DropReason.FIELD_INACTIVE))
            continue
        coerced = coerce_value(value, field_info)
        if isinstance(coerced, DropReason):
            lost.append(dropped(original, coerced))
            continue
        values[key] = coerced
    too_large = _over_record_budget(values)
    for key in too_large:
        del values[key]
        lost.append(dropped(chosen[key][0], DropReason.VALUE_TOO_LARGE))
    if too_large:
        create = [(key, field_type) for key, field_type in create if key in values]
    return FieldPlan(values=values, create=tuple(create), dropped=tuple(lost))


# JSON spends at most 6 bytes on a character (a control character's \u escape) and a few on the key and
# punctuation: values under this many characters in all cannot exceed the budget, and need no encoding.
_SURELY_WITHIN_CHARS: Final = MAX_FIELD_VALUES_BYTES // 6 - 1024


def _over_record_budget(values: Mapping[str, object]) -> list[str]:
    """The keys to leave out so that the values fit `MAX_FIELD_VALUES_BYTES` of JSON: the largest first."""
    if json_chars(values) <= _SURELY_WITHIN_CHARS:
        return []
    sizes = {key: len(orjson.dumps(value)) + len(key) + 4 for key, value in values.items()}
    total = sum(sizes.values())
    leave_out: list[str] = []
    for key in sorted(sizes, key=lambda k: sizes[k], reverse=True):
        if total <= MAX_FIELD_VALUES_BYTES:
            break
        leave_out.append(key)
        total -= sizes[key]
    return leave_out
