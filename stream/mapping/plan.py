"""The planner's entry point: (event, settings, known) → `Plan` or `Skip`.

Pure: no I/O, no clock. Raises only `InvalidEvent` (dead-letter, with its `DlqReason`); everything else the
destination deliberately does not send is a `Skip` value.

    plan(event, settings, known)
      ├── identify → stream.mapping.identify.plan_identify
      ├── track    → stream.mapping.track.plan_track
      ├── group    → stream.mapping.group.plan_group
      └── any other type (page, screen, alias, unknown) → Skip(unsupported_type)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from stream.events import SegmentEvent, validate
from stream.mapping.fields import Known
from stream.mapping.group import plan_group
from stream.mapping.identify import plan_identify
from stream.mapping.operations import Plan, Skip
from stream.mapping.settings import DestinationSettings
from stream.mapping.track import plan_track
from stream.outcomes import SkipReason

__all__ = ["plan"]

_EMPTY_KNOWN: Final = Known()


def plan(
    event: SegmentEvent | Mapping[str, Any],
    settings: DestinationSettings,
    known: Known = _EMPTY_KNOWN,
) -> Plan | Skip:
    """The Zendesk operations for one event, in order, or why it is skipped. Raises only InvalidEvent."""
    if not isinstance(event, SegmentEvent):
        event = validate(event)
    if event.type == "identify":
        return plan_identify(event, settings, known)
    if event.type == "track":
        return plan_track(event, settings)
    if event.type == "group":
        return plan_group(event, settings, known)
    shown = event.type if len(event.type) <= 40 else event.type[:40] + "…"
    return Skip(reason=SkipReason.UNSUPPORTED_TYPE, detail=f"{shown!r} events are not sent to Zendesk")
