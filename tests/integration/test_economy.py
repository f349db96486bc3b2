"""Economy against the simulator: writes that change nothing are skipped, lookups are batched, and
neither changes what an event comes to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from stream.delivery import Destination
from stream.mapping.settings import DestinationSettings
from stream.outcomes import Delivered, DlqReason, Skipped, SkipReason
from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from stream.zendesk import ZendeskClient, connection_from
from stream.zendesk.bulk import Bulk
from stream.zendesk.governor import Governor
from tests.integration.test_delivery import assert_dead_letter, deliver, writes
from tests.support.segment import group, identify, track

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    with run_simulator_in_thread(SimulatorOptions(rate_limits=False)) as running:
        yield running


@asynccontextmanager
async def economical(
    sim: RunningSimulator, *, ttl_s: float = 3600.0, bulk: bool = False, **settings: Any
) -> AsyncIterator[Destination]:
    connection = connection_from("acme", sim.base_url, sim.email, sim.api_token, None)
    governor = Governor(plan=sim.zendesk_plan())  # no waits where the simulator sets no limits
    async with ZendeskClient(connection=connection, governor=governor) as client:
        paths = Bulk(client=client, linger_s=0.05, always=True) if bulk else None
        yield Destination(
            client=client, settings=DestinationSettings.parse(settings), bulk=paths, unchanged_ttl_s=ttl_s
        )
        if paths is not None:
            await paths.close()


async def test_an_identify_that_changes_nothing_is_skipped_as_unchanged(sim: RunningSimulator) -> None:
    async with economical(sim) as dest:
        first = await deliver(dest, identify("u1", name="Ann", plan="gold"))
        again = await deliver(dest, identify("u1", name="Ann", plan="gold"))
        changed = await deliver(dest, identify("u1", name="Ann", plan="silver"))
    assert isinstance(first, Delivered) and isinstance(changed, Delivered)
    assert again == Skipped(SkipReason.UNCHANGED, "this service last wrote exactly this")
    assert writes(sim).count("POST /api/v2/users/create_or_update") == 2
    assert dest.counters.unchanged == 1


async def test_with_the_memory_off_every_identify_is_written(sim: RunningSimulator) -> None:
    async with economical(sim, ttl_s=0) as dest:
        for _ in range(3):
            assert isinstance(await deliver(dest, identify("u1", name="Ann", plan="gold")), Delivered)
    assert writes(sim).count("POST /api/v2/users/create_or_update") == 3


async def test_a_failed_write_is_forgotten_so_the_next_identical_one_is_written(
    sim: RunningSimulator,
) -> None:
    async with economical(sim) as dest:
        await deliver(dest, identify("u1", name="Ann", plan="gold"))
        sim.control.inject_fault(path="users/create_or_update", method="POST", status=503)
        changed = await deliver(dest, identify("u1", name="Ann", plan="silver"))
        retried = await deliver(dest, identify("u1", name="Ann", plan="silver"))
    assert not isinstance(changed, Delivered | Skipped)
    assert isinstance(retried, Delivered)


async def test_an_edit_made_in_zendesk_meanwhile_is_kept(sim: RunningSimulator) -> None:
    """We sync changes, not full state: an identical identify after a UI edit writes nothing."""
    async with economical(sim) as dest:
        await deliver(dest, identify("u1", name="Ann", plan="gold"))
        with sim.client() as zendesk:
            user = zendesk.get("/api/v2/users/search", params={"external_id": "u1"}).json()["users"][0]
            zendesk.put(
                f"/api/v2/users/{user['id']}", json={"user": {"name": "Ann (VIP)"}}
            ).raise_for_status()
        again = await deliver(dest, identify("u1", name="Ann", plan="gold"))
    assert isinstance(again, Skipped) and again.reason is SkipReason.UNCHANGED
    assert sim.control.state()["users"][0]["name"] == "Ann (VIP)"


async def test_a_group_that_changes_nothing_is_skipped_and_a_new_member_is_still_linked(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": "A", "external_id": "a"}, {"name": "B", "external_id": "b"}])
    async with economical(sim, events=["*"]) as dest:
        first = await deliver(dest, group("a", "g1", name="Initech"))
        again = await deliver(dest, group("a", "g1", name="Initech"))
        other = await deliver(dest, group("b", "g1", name="Initech"))
    assert isinstance(first, Delivered) and isinstance(other, Delivered)
    assert isinstance(again, Skipped) and again.reason is SkipReason.UNCHANGED
    assert writes(sim).count("POST /api/v2/organizations/create_or_update") == 1
    assert len(sim.control.state()["organization_memberships"]) == 2


async def test_tracks_never_count_as_unchanged(sim: RunningSimulator) -> None:
    sim.control.seed(users=[{"name": "A", "external_id": "a"}])
    async with economical(sim, events=["*"]) as dest:
        outcomes = [await deliver(dest, track("a", "Signed In")) for _ in range(2)]
    assert all(isinstance(o, Delivered) for o in outcomes)


async def test_lookups_of_many_users_go_out_together_and_each_event_keeps_its_outcome(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": f"U{i}", "external_id": f"u{i}"} for i in range(40)])
    async with economical(sim, bulk=True, events=["*"]) as dest:
        events = [track(f"u{i}", "Signed In") for i in range(40)] + [track("ghost", "Signed In")]
        outcomes = await asyncio.gather(*(deliver(dest, e) for e in events))
    assert all(isinstance(o, Delivered) for o in outcomes[:40])
    assert_dead_letter(outcomes[40], DlqReason.USER_NOT_FOUND)
    lookups = [r for r in sim.control.requests() if r["method"] == "GET" and "users/" in r["path"]]
    assert len(lookups) == 1 and lookups[0]["path"] == "/api/v2/users/show_many"


async def test_many_users_joining_one_new_organization_at_once_write_it_once(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": f"U{i}", "external_id": f"u{i}"} for i in range(20)])
    async with economical(sim, events=["*"]) as dest:
        outcomes = await asyncio.gather(
            *(deliver(dest, group(f"u{i}", "g1", name="Initech")) for i in range(20))
        )
    assert all(isinstance(o, Delivered | Skipped) for o in outcomes)
    assert writes(sim).count("POST /api/v2/organizations/create_or_update") == 1
    assert len(sim.control.state()["organization_memberships"]) == 20


async def test_a_shared_write_that_fails_fails_every_event_that_waited_for_it(sim: RunningSimulator) -> None:
    sim.control.seed(users=[{"name": f"U{i}", "external_id": f"u{i}"} for i in range(3)])
    sim.control.inject_fault(path="organizations/create_or_update", method="POST", status=503)
    async with economical(sim, events=["*"]) as dest:
        outcomes = await asyncio.gather(
            *(deliver(dest, group(f"u{i}", "g1", name="Initech")) for i in range(3))
        )
        assert not any(isinstance(o, Delivered | Skipped) for o in outcomes)
        again = await deliver(dest, group("u0", "g1", name="Initech"))  # forgotten: written again
    assert isinstance(again, Delivered)
    assert writes(sim).count("POST /api/v2/organizations/create_or_update") == 2
