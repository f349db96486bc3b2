"""Segment-spec events for tests: the seed's own examples and generators."""

from __future__ import annotations

import uuid
from typing import Any


def identify(user_id: str | None, **traits: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "identify", "messageId": str(uuid.uuid4()), "traits": traits}
    if user_id is not None:
        event["userId"] = user_id
    event.setdefault("timestamp", "2026-11-29T10:00:00.000Z")
    return event


def track(user_id: str | None, name: str, **properties: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": name,
        "messageId": str(uuid.uuid4()),
        "properties": properties,
        "timestamp": "2026-11-29T10:00:00.000Z",
    }
    if user_id is not None:
        event["userId"] = user_id
    return event


def group(user_id: str | None, group_id: str, **traits: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "group",
        "groupId": group_id,
        "messageId": str(uuid.uuid4()),
        "traits": traits,
        "timestamp": "2026-11-29T10:00:00.000Z",
    }
    if user_id is not None:
        event["userId"] = user_id
    return event
