"""The envelope and the entry point (docs/semantics.md "Envelope" and the edge-case table)."""

from __future__ import annotations

from typing import Any

import pytest

from stream.errors import InvalidEvent
from stream.events import validate
from stream.mapping import DestinationSettings, Known, Plan, Skip, plan
from stream.outcomes import DlqReason, ErrorClass, SkipReason

ALL = DestinationSettings.parse({"events": ["*"]})


@pytest.mark.parametrize("event_type", ["page", "screen", "alias", "Page", "foo"])
def test_page_screen_alias_and_unknown_types_are_skipped_unsupported_type(event_type: str) -> None:
    result = plan({"type": event_type, "userId": "u1", "name": "Home"}, ALL, Known())
    assert isinstance(result, Skip)
    assert result.reason is SkipReason.UNSUPPORTED_TYPE
    assert event_type.lower() in result.detail


def test_type_missing_goes_to_dlq_invalid_payload() -> None:
    with pytest.raises(InvalidEvent) as caught:
        plan({"userId": "u1", "traits": {"name": "A"}}, ALL, Known())
    assert caught.value.reason is DlqReason.INVALID_PAYLOAD
    assert caught.value.reason.error_class is ErrorClass.INVALID


@pytest.mark.parametrize(
    "event",
    [
        {"action": "identify", "userId": "u1", "traits": {"name": "A"}},
        {"type": "IDENTIFY", "userId": "u1", "traits": {"name": "A"}},
        {"action": "Track", "userId": "u1", "event": "E"},
        {"action": "group", "userId": "u1", "groupId": "g"},
    ],
)
def test_type_or_action_is_accepted_case_insensitively(event: dict[str, Any]) -> None:
    assert isinstance(plan(event, ALL, Known()), Plan)


def test_plan_accepts_a_validated_event_or_a_dict_alike() -> None:
    raw = {"type": "identify", "userId": 5, "traits": {"name": "A"}}
    assert plan(raw, ALL) == plan(validate(raw), ALL, Known())


def test_skips_are_values_not_exceptions() -> None:
    results = [
        plan({"type": "identify", "traits": {"name": "A"}}, ALL),
        plan({"type": "identify", "userId": "u"}, ALL),
        plan({"type": "track", "userId": "u", "event": "E"}, DestinationSettings()),
        plan({"type": "track", "event": "E"}, ALL),
        plan({"type": "group", "groupId": "g"}, ALL),
        plan({"type": "screen"}, ALL),
    ]
    assert [r.reason for r in results if isinstance(r, Skip)] == [
        SkipReason.NO_IDENTITY,
        SkipReason.MISSING_NAME,
        SkipReason.EVENT_NOT_ENABLED,
        SkipReason.MISSING_USER_ID,
        SkipReason.MISSING_USER_ID,
        SkipReason.UNSUPPORTED_TYPE,
    ]


def test_plan_summary_holds_no_values() -> None:
    event = {"type": "identify", "userId": "u1", "traits": {"name": "Secret Name", "email": "s@example.com"}}
    result = plan(event, ALL)
    assert isinstance(result, Plan)
    assert "Secret" not in result.summary and "s@example.com" not in result.summary
    assert "Secret" not in repr(result) and "s@example.com" not in repr(result)
