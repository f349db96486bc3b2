"""Track → one Sunshine event (``POST /api/v2/user_profiles/events``).

docs/semantics.md "Track → Sunshine event", checked in this order:

1. No event name → DLQ ``invalid_payload``.
2. The name is not in the ``events`` setting (exact match; ``"*"`` enables all; empty enables none) → skip
   ``event_not_enabled``.
3. No ``userId`` → skip ``missing_user_id``.
4. The name is longer than 40 characters → DLQ ``event_name_too_long`` (Zendesk's limit on event ``type``).
5. Identifier: ``properties.email`` when it is a string shaped like an address (type ``email``), else the
   ``userId`` (type ``external_id``). Longer than 60 characters → DLQ ``identifier_too_long``.
   (The seed's own JavaScript example nests the email as ``properties.properties.email``; that spelling is
   read too, when ``properties.email`` is absent.)
6. Body: profile ``{source, type: "user", identifiers}``; event ``{source, type: name, description: name,
   properties, created_at}``. ``properties`` defaults to ``{}``; ``created_at`` is the event timestamp in
   ISO-8601 and is left out (Zendesk stamps the receipt time) when the event has none.
7. The user is resolved by the executor: by ``userId`` (external_id) first, then ``properties.email``;
   neither → DLQ ``user_not_found``.

Properties are sent as they are, except values JSON cannot carry: NaN/±Infinity become null and integers
outside the 64-bit range become their decimal string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from stream.errors import InvalidEvent
from stream.events import SegmentEvent, iso_timestamp
from stream.mapping.fields import INT64_MAX, INT64_MIN
from stream.mapping.identify import valid_email
from stream.mapping.operations import Plan, SendEvent, Skip, UserRef
from stream.mapping.settings import MAX_SOURCE_LENGTH, DestinationSettings
from stream.outcomes import DlqReason, SkipReason

__all__ = ["MAX_IDENTIFIER_LENGTH", "PROFILE_TYPE", "plan_track"]

MAX_IDENTIFIER_LENGTH: Final = 60
PROFILE_TYPE: Final = "user"
_SHOWN_NAME_LENGTH: Final = 60


def _shown(name: str) -> str:
    return name if len(name) <= _SHOWN_NAME_LENGTH else name[:_SHOWN_NAME_LENGTH] + "…"


def json_safe(value: Any) -> Any:
    """`value` with NaN/±Infinity → None and integers beyond int64 → str (already depth-bounded)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int) and not isinstance(value, bool):
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _property_email(properties: Mapping[str, Any]) -> str | None:
    if "email" in properties:
        return valid_email(properties["email"])
    nested = properties.get("properties")
    if isinstance(nested, Mapping):
        return valid_email(nested.get("email"))
    return None


def plan_track(event: SegmentEvent, settings: DestinationSettings) -> Plan | Skip:
    name = event.event
    if name is None:
        raise InvalidEvent(DlqReason.INVALID_PAYLOAD, 'track event has no "event" name')
    if not settings.event_enabled(name):
        return Skip(
            reason=SkipReason.EVENT_NOT_ENABLED,
            detail=f"track event {_shown(name)!r} is not listed in the events setting",
        )
    if event.user_id is None:
        return Skip(reason=SkipReason.MISSING_USER_ID, detail="track event has no userId")
    if len(name) > MAX_SOURCE_LENGTH:
        raise InvalidEvent(
            DlqReason.EVENT_NAME_TOO_LONG,
            f"track event name is {len(name)} characters long ({_shown(name)!r}); "
            f"Zendesk accepts event types of at most {MAX_SOURCE_LENGTH}",
        )

    email = _property_email(event.properties)
    identifier_type, identifier = ("email", email) if email is not None else ("external_id", event.user_id)
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        where = "properties.email" if email is not None else "userId"
        raise InvalidEvent(
            DlqReason.IDENTIFIER_TOO_LONG,
            f"the {identifier_type} identifier ({where}) is {len(identifier)} characters long; "
            f"Zendesk's events API accepts at most {MAX_IDENTIFIER_LENGTH}",
        )

    source = settings.source_name
    sunshine_event: dict[str, Any] = {
        "source": source,
        "type": name,
        "description": name,
        "properties": json_safe(event.properties),
    }
    if event.timestamp is not None:
        sunshine_event["created_at"] = iso_timestamp(event.timestamp)
    body = {
        "profile": {
            "source": source,
            "type": PROFILE_TYPE,
            "identifiers": [{"type": identifier_type, "value": identifier}],
        },
        "event": sunshine_event,
    }
    operation = SendEvent(user=UserRef(external_id=event.user_id, email=email), body=body)
    return Plan(event_type="track", operations=(operation,))
