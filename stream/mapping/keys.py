"""Trait keys → Zendesk field keys.

Zendesk field keys hold letters, digits and underscores only, and must not be all digits
(docs/zendesk-api.md §3.1). Segment "formats the field name from either camelCaseFormat or
snake_case_format into snake_case_format" (the seed). Our rule, applied in this order:

1. Unicode is folded to ASCII where a letter has an accent-free form (``café`` → ``cafe``).
2. A lower-case letter or digit followed by an upper-case letter starts a new word (``planName`` →
   ``plan_Name``); so does the last capital of a run of capitals followed by a lower-case letter
   (``HTTPServer`` → ``HTTP_Server``). Digits never start a word, so ``last30Days`` → ``last30_days`` and an
   already snake-cased Engage audience name (``order_completed_last_30days``) is kept as it is.
3. Everything is lower-cased; every run of characters other than ``a-z`` and ``0-9`` (underscores included)
   becomes one ``_``; leading and trailing ``_`` are trimmed (``"total billed"`` → ``total_billed``).
4. A key that is empty, all digits (underscores aside: ``1_2`` is refused too, to stay clear of
   Zendesk's "not all digits" rule), or longer than `MAX_KEY_LENGTH` after that is not sent (``None``).

The conversion is idempotent: ``to_snake_case(to_snake_case(k)) == to_snake_case(k)``.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["MAX_KEY_LENGTH", "is_valid_field_key", "title_for_key", "to_snake_case"]

# Zendesk does not document a maximum key length. 64 keeps keys readable and far below any plausible
# database limit; longer trait names are treated as unusable rather than truncated (truncation could merge
# two different traits into one field).
MAX_KEY_LENGTH = 64

_LOWER_OR_DIGIT_THEN_UPPER = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_UPPER_RUN_THEN_WORD = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_VALID_KEY = re.compile(r"[a-z0-9_]+")
_HAS_LETTER = re.compile(r"[a-z]")


def _fold_to_ascii(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@functools.lru_cache(maxsize=8192)  # trait keys repeat from event to event
def to_snake_case(key: str) -> str | None:
    """The Zendesk field key for a trait key, or None when the trait key cannot make one."""
    text = _fold_to_ascii(key)
    text = _LOWER_OR_DIGIT_THEN_UPPER.sub("_", text)
    text = _UPPER_RUN_THEN_WORD.sub("_", text)
    text = _NOT_ALNUM.sub("_", text.lower()).strip("_")
    if not _HAS_LETTER.search(text) or len(text) > MAX_KEY_LENGTH:
        return None
    return text


def is_valid_field_key(key: str) -> bool:
    """Zendesk's key rule (letters, digits, underscores; not all digits), lower-case, with our length cap."""
    return (
        0 < len(key) <= MAX_KEY_LENGTH
        and key.isascii()
        and _VALID_KEY.fullmatch(key) is not None
        and _HAS_LETTER.search(key) is not None
    )


def title_for_key(key: str) -> str:
    """A readable title for an auto-created field: ``total_billed`` → ``Total billed``."""
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]
