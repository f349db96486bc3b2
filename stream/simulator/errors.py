"""Zendesk-shaped errors. Domain code raises :class:`ZendeskError`; the HTTP layer renders it as is.

Bodies follow the catalogue in ``docs/zendesk-api.md`` §1.4; where the shape is inferred, the docstring
says so.
"""

from __future__ import annotations

import uuid
from typing import Any


class ZendeskError(Exception):
    def __init__(
        self,
        status: int,
        body: dict[str, Any] | str,
        *,
        headers: list[tuple[str, str]] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        super().__init__(f"{status} {body!r}")
        self.status = status
        self.body = body
        self.headers = headers or []
        self.content_type = content_type


def record_not_found() -> ZendeskError:
    return ZendeskError(404, {"error": "RecordNotFound", "description": "Not found"})


def invalid_endpoint() -> ZendeskError:
    return ZendeskError(404, {"error": "InvalidEndpoint", "description": "Not found"})


def record_invalid(field: str, description: str, error: str | None) -> ZendeskError:
    detail: dict[str, str] = {"description": description}
    if error is not None:
        detail["error"] = error
    return ZendeskError(
        422,
        {"error": "RecordInvalid", "description": "Record validation errors", "details": {field: [detail]}},
    )


def duplicate_email(email: str) -> ZendeskError:
    return record_invalid("email", f"Email: {email} is already being used by another user", "DuplicateValue")


def invalid_attribute(attribute: str, expected: str, endpoint: str) -> ZendeskError:
    """400 for a wrong JSON type, as Zendesk words it (``user.tags must be an array``)."""
    return ZendeskError(
        400,
        {
            "error": {
                "title": "Invalid attribute",
                "message": f"You passed an invalid value for the {attribute} attribute. "
                f"Invalid parameter: {attribute} must be {expected} from {endpoint}",
            }
        },
    )


def invalid_json() -> ZendeskError:
    """[I] Unparseable body: same 400 ``error.title/message`` shape as the documented type errors."""
    return ZendeskError(
        400, {"error": {"title": "Invalid JSON", "message": "The request body could not be parsed as JSON"}}
    )


def too_many_values(description: str, *, max_count: int | None = None) -> ZendeskError:
    body: dict[str, Any] = {"error": "TooManyValues", "description": description}
    if max_count is not None:
        body["max_count"] = max_count
    return ZendeskError(400, body)


def forbidden() -> ZendeskError:
    return ZendeskError(
        403,
        {
            "error": "Forbidden",
            "description": "You do not have access to this page. Please contact the account owner of this "
            "help desk for further help.",
        },
    )


def events_error(code: str, title: str) -> ZendeskError:
    """The Events API's JSON:API-style 400 (``errors[]`` with code, id and title)."""
    return ZendeskError(400, {"errors": [{"code": code, "id": str(uuid.uuid4()), "title": title}]})
