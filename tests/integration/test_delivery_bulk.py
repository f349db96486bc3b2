"""The bulk path on its own terms: one job of 100 upserts, and each event's own outcome out of it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from stream.outcomes import Delivered, DlqReason
from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from tests.integration.test_delivery import (
    PATH,
    assert_dead_letter,
    deliver,
    destination,
    users_by_external_id,
)
from tests.support.segment import identify

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with run_simulator_in_thread(SimulatorOptions(rate_limits=False)) as running:
        token = PATH.set("bulk")
        yield running
        PATH.reset(token)


async def test_a_job_of_100_gives_each_event_its_own_outcome_the_one_the_single_path_gives(
    sim: RunningSimulator,
) -> None:
    """One job carries 100 upserts. The item whose email belongs to another user fails alone, with the
    single path's reason; the item whose time zone Zendesk refuses is sent again without it."""
    sim.control.seed(
        users=[
            {"name": "Ann", "email": "ann@example.com", "external_id": "A"},
            {"name": "Bob", "email": "bob@example.com", "external_id": "B"},
        ]
    )
    events = [identify(f"u{i:03d}", name=f"User {i}", email=f"u{i}@example.com") for i in range(98)]
    events.append(identify("B", name="Bob", email="ann@example.com"))  # Ann's email: identity conflict
    events.append(identify("T", name="Tess", email="tess@example.com", timezone="Mars/Olympus"))
    async with destination(sim) as dest:
        outcomes = await asyncio.gather(*(deliver(dest, event) for event in events))
        assert dest.counters.time_zone_dropped == 1
    jobs = [r for r in sim.control.requests() if r["method"] == "POST" and r["path"].endswith("_many")]
    assert [job["change"]["total"] for job in jobs] == [100, 1]  # the 100, then Tess without her time zone
    items = [r for r in sim.control.requests() if r["method"] == "JOB"]
    assert sorted(r["status"] for r in items).count(422) == 2  # Bob's conflict and Tess's time zone
    assert all(isinstance(o, Delivered) for o in [*outcomes[:98], outcomes[99]]), outcomes
    assert_dead_letter(outcomes[98], DlqReason.IDENTITY_CONFLICT, status=422)
    users = users_by_external_id(sim)
    assert users["B"]["email"] == "bob@example.com"
    assert users["T"]["time_zone"] != "Mars/Olympus" and len(users) == 2 + 98 + 1
