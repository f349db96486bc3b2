"""Cursor and offset pagination (docs/zendesk-api.md §10)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson

from stream.simulator.errors import ZendeskError

T = TypeVar("T")
MAX_PAGE_SIZE = 100
MAX_OFFSET_RECORDS = 10_000


def _bad_parameter(description: str) -> ZendeskError:
    """[I] code name; the status (400) is documented for offset pagination past 10,000 records."""
    return ZendeskError(400, {"error": "InvalidPaginationParameter", "description": description})


def _positive_int(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise _bad_parameter(f"{name} must be a positive integer")
    return int(raw)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"o": offset})).decode()


def decode_cursor(cursor: str) -> int:
    try:
        offset = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))["o"]
    except (binascii.Error, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise _bad_parameter("page[after] is not a valid cursor") from error
    if not isinstance(offset, int) or offset < 0:
        raise _bad_parameter("page[after] is not a valid cursor")
    return offset


def paginate(
    items: Sequence[T],
    *,
    name: str,
    render: Callable[[T], dict[str, Any]],
    query: Mapping[str, str],
    page_url: str,
    allow_cursor: bool = True,
) -> dict[str, Any]:
    """A list response: cursor form when ``page[size]`` is given (and allowed), else the offset form."""
    if allow_cursor and "page[size]" in query:
        return _cursor_page(items, name=name, render=render, query=query, page_url=page_url)
    return _offset_page(items, name=name, render=render, query=query, page_url=page_url)


def _cursor_page(
    items: Sequence[T],
    *,
    name: str,
    render: Callable[[T], dict[str, Any]],
    query: Mapping[str, str],
    page_url: str,
) -> dict[str, Any]:
    size = min(_positive_int(query, "page[size]", MAX_PAGE_SIZE), MAX_PAGE_SIZE)
    start = decode_cursor(query["page[after]"]) if query.get("page[after]") else 0
    if query.get("page[before]"):
        start = max(decode_cursor(query["page[before]"]) - size, 0)
    page = items[start : start + size]
    has_more = start + size < len(items)
    after = encode_cursor(start + len(page)) if page else None
    before = encode_cursor(start) if page and start > 0 else None
    others = {k: v for k, v in query.items() if not k.startswith("page[")}
    return {
        name: [render(item) for item in page],
        "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": before},
        "links": {
            "next": f"{page_url}?{urlencode({**others, 'page[after]': after, 'page[size]': size})}"
            if has_more and after
            else None,
            "prev": f"{page_url}?{urlencode({**others, 'page[before]': before, 'page[size]': size})}"
            if before
            else None,
        },
    }


def _offset_page(
    items: Sequence[T],
    *,
    name: str,
    render: Callable[[T], dict[str, Any]],
    query: Mapping[str, str],
    page_url: str,
) -> dict[str, Any]:
    page = _positive_int(query, "page", 1)
    per_page = min(_positive_int(query, "per_page", MAX_PAGE_SIZE), MAX_PAGE_SIZE)
    start = (page - 1) * per_page
    if start + per_page > MAX_OFFSET_RECORDS:
        raise _bad_parameter(
            f"Offset pagination is limited to {MAX_OFFSET_RECORDS} records; use cursor pagination"
        )
    chunk = items[start : start + per_page]
    others = {k: v for k, v in query.items() if k not in ("page", "per_page")}

    def link(number: int) -> str:
        return f"{page_url}?{urlencode({**others, 'page': number, 'per_page': per_page})}"

    return {
        name: [render(item) for item in chunk],
        "next_page": link(page + 1) if start + per_page < len(items) else None,
        "previous_page": link(page - 1) if page > 1 else None,
        "count": len(items),
    }
