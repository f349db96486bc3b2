"""Coalescing consecutive identifies of one user: which may merge, and that the merge writes what the
events one after another would have left in Zendesk."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.events import SegmentEvent, validate
from stream.mapping.coalesce import can_join, coalescable, merge
from stream.mapping.fields import Known
from stream.mapping.operations import Plan, UpsertUser
from stream.mapping.plan import plan
from stream.mapping.settings import DestinationSettings
from tests.support.segment import identify, track

SETTINGS = DestinationSettings.parse({})


def event(raw: dict[str, Any]) -> SegmentEvent:
    return validate(raw)


def upsert_of(merged: SegmentEvent) -> dict[str, Any]:
    planned = plan(merged, SETTINGS, FIELDS)
    assert isinstance(planned, Plan), planned
    (upsert,) = [op for op in planned.operations if isinstance(op, UpsertUser)]
    return dict(upsert.user)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (identify("u1", name="Ann", plan="gold"), True),
        (identify("u1", plan="gold"), False),  # no name: skipped alone, so never merged
        (identify(None, name="Ann"), False),  # no identity
        (identify("u1", name="Ann", company={"id": "7", "remove": True}), False),  # removal is its own step
        (identify("u1", name="Ann", planName="a", plan_name="b"), False),  # two traits, one field key
        (track("u1", "Signed In"), False),
    ],
)
def test_which_events_may_be_merged_at_all(raw: dict[str, Any], expected: bool) -> None:
    assert coalescable(event(raw)) is expected


def test_only_events_of_the_same_user_join() -> None:
    head = event(identify("u1", name="Ann", email="ann@example.com"))
    assert can_join([head], event(identify("u1", name="Ann", plan="gold")))
    assert can_join([head], event(identify("u1", name="Ann", email="ANN@example.com")))
    assert not can_join([head], event(identify("u2", name="Ann")))
    assert not can_join([head], event(identify("u1", name="Ann", email="other@example.com")))


FIELDS = Known.from_zendesk(
    user_fields=[{"key": k, "type": "text"} for k in ("plan", "seats", "region", "tier", "plan_name")],
    organization_fields=[],
)


def test_later_values_win_and_an_explicit_null_still_clears() -> None:
    run = [
        event(identify("u1", name="Ann", plan="gold", seats=3)),
        event(identify("u1", name="Ann", plan="silver")),
    ]
    cleared = event(identify("u1", name="Ann", region=None))
    assert can_join(run, cleared)
    assert upsert_of(merge([*run, cleared]))["user_fields"] == {
        "plan": "silver",
        "seats": "3",
        "region": None,
    }


def test_a_trait_set_then_cleared_in_one_run_is_not_merged() -> None:
    """Set-then-clear of a field that does not exist yet creates it when sent one by one."""
    run = [event(identify("u1", name="Ann", region="eu")), event(identify("u1", name="Ann", plan="x"))]
    assert not can_join(run, event(identify("u1", name="Ann", region=None)))


def test_field_keys_merge_after_snake_case_conversion() -> None:
    merged = merge(
        [event(identify("u1", name="A", planName="gold")), event(identify("u1", name="A", plan_name="x"))]
    )
    assert upsert_of(merged)["user_fields"] == {"plan_name": "x"}


def test_the_name_comes_from_the_last_event_alone() -> None:
    merged = merge(
        [event(identify("u1", name="Ann Smith")), event(identify("u1", firstName="Ann", lastName="Jones"))]
    )
    assert upsert_of(merged)["name"] == "Ann Jones"


def test_traits_and_context_traits_merge_as_each_event_reads_them() -> None:
    first = event({"type": "identify", "userId": "u1", "traits": {"name": "Ann", "plan": "gold"}})
    second = event({"type": "identify", "userId": "u1", "context": {"traits": {"name": "Ann", "seats": 2}}})
    assert upsert_of(merge([first, second]))["user_fields"] == {"plan": "gold", "seats": "2"}


KEYS = st.sampled_from(["plan", "seats", "region", "tier"])
VALUES = st.one_of(st.none(), st.text(max_size=5), st.integers(0, 9), st.booleans())


@given(st.lists(st.dictionaries(KEYS, VALUES, max_size=4), min_size=2, max_size=6))
def test_the_merged_upsert_leaves_what_the_upserts_one_after_another_leave(
    traits: list[dict[str, Any]],
) -> None:
    events = [event(identify("u1", name="Ann", **t)) for t in traits]
    runs: list[list[SegmentEvent]] = [[events[0]]]
    for follower in events[1:]:
        if can_join(runs[-1], follower):
            runs[-1].append(follower)
        else:
            runs.append([follower])
    one_by_one: dict[str, Any] = {}
    for single in events:
        one_by_one.update(upsert_of(single).get("user_fields", {}))
    merged: dict[str, Any] = {}
    for run in runs:
        merged.update(upsert_of(merge(run)).get("user_fields", {}))
    assert merged == one_by_one
