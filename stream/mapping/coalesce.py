"""Coalescing: consecutive identifies of one user, waiting in its lane, folded into one upsert.

Pure. The merged event must come to the same Zendesk state as the events one after another, and each
merged event to the outcome it would have had alone (docs/semantics.md, "Economy and recovery"). So only
events that would each be delivered on their own are merged, and only when nothing in their traits
makes the order of application matter more than "later values win":

1. Each is an identify with an identity (email or userId) and a name, without `company.remove` (the
   removal is its own operation, after its own upsert).
2. They name the same user: the same userId, and the follower's email is the head's or absent.
3. No event has two traits that convert to the same field key (that event's own "first one wins" rule
   would otherwise be at the mercy of the merge).
4. Traits merge by field key, later values winning; an explicit `null` still clears. The name comes
   from the last event alone, since each event's name is derived from its own name traits.
5. A follower that nulls a trait an earlier event of the run sets does not join: set-then-clear of a
   field that did not exist would otherwise never create it, where the events one by one would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Final

from stream.events import SegmentEvent
from stream.mapping.identify import valid_email
from stream.mapping.keys import to_snake_case

__all__ = ["can_join", "coalescable", "merge"]

_NAME_KEYS: Final = frozenset({"name", "first_name", "last_name"})


def _traits(event: SegmentEvent) -> Mapping[str, Any]:
    return event.traits or event.context_traits


def _key(original: str) -> str:
    return to_snake_case(original) or original


def _email(event: SegmentEvent) -> str | None:
    email = valid_email(_traits(event).get("email"))
    return email.lower() if email is not None else None


def coalescable(event: SegmentEvent) -> bool:
    """Rules 1 and 3: an event that may be merged with its neighbours at all."""
    if event.type != "identify":
        return False
    traits = _traits(event)
    keys = [_key(k) for k in traits]
    if len(keys) != len(set(keys)):
        return False
    company = traits.get("company")
    if isinstance(company, Mapping) and company.get("remove") is True:
        return False
    has_name = any(traits.get(k) not in (None, "") for k in traits if _key(k) in _NAME_KEYS)
    return has_name and (event.user_id is not None or _email(event) is not None)


def can_join(run: Sequence[SegmentEvent], follower: SegmentEvent) -> bool:
    """Rules 1-3 and 5 for `follower`, the next event of the lane after the events of `run`."""
    head = run[0]
    if not all(coalescable(e) for e in (*run, follower)):
        return False
    if any(e.user_id != follower.user_id for e in run):
        return False
    follower_email = _email(follower)
    if follower_email is not None and follower_email != _email(head):
        return False
    cleared = {_key(k) for k, v in _traits(follower).items() if v is None}
    return not any(_key(k) in cleared for e in run for k, v in _traits(e).items() if v is not None)


def merge(events: Sequence[SegmentEvent]) -> SegmentEvent:
    """Rule 4: one identify with the merged traits and the last event's envelope."""
    if len(events) == 1:
        return events[0]
    merged: dict[str, Any] = {}
    original_of: dict[str, str] = {}
    for index, event in enumerate(events):
        last = index == len(events) - 1
        for original, value in _traits(event).items():
            key = _key(original)
            if key in _NAME_KEYS and not last:
                continue
            if key in original_of:
                del merged[original_of[key]]
            merged[original] = value
            original_of[key] = original
    return dataclasses.replace(events[-1], traits=merged, context_traits={})
