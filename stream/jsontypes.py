"""Words for JSON values in error messages, shared by event validation, settings and the event tester.

Pure helpers: they describe a value without quoting personal data in full.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

__all__ = ["json_chars", "json_type", "quote"]


def json_type(value: object) -> str:
    """The kind of a JSON value, for "… must be a string, got a number": null, a boolean, a number, …"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def quote(text: object, limit: int = 60) -> str:
    """A JSON-quoted, one-line, bounded rendering of a user-supplied string: at most `limit` characters
    of it, then "…" inside the quotes when it was longer."""
    whole = str(text)
    shown = whole if len(whole) <= limit else whole[:limit] + "…"
    return json.dumps(shown, ensure_ascii=False)


def json_chars(value: object) -> int:
    """About how many characters `value` takes as JSON before escaping: strings and keys by their
    length, 24 for a number, boolean or null. JSON spends at most 6 bytes on a character (a \\u escape),
    so 6 x this bounds the encoded size; callers encode exactly only past a threshold."""
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, Mapping):
        return sum(len(str(k)) + 4 + json_chars(v) for k, v in value.items()) + 2
    if isinstance(value, list | tuple):
        return sum(json_chars(v) + 1 for v in value) + 2
    return 24
