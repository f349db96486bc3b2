"""The job poller against the simulator's jobs: one show_many request per round asks about every job in
flight, so a job that runs long is seen done within a round, not within its own back-off."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest

from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from stream.zendesk import ZendeskClient, connection_from
from stream.zendesk.bulk import BulkStats, JobPoller
from stream.zendesk.classify import Ok
from stream.zendesk.governor import Governor
from tests.support.waiting import wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sim() -> Iterator[RunningSimulator]:
    # Each job runs 1.5 s: long enough for its own back-off (0.3 s, then x1.5) to fall behind the rounds.
    options = SimulatorOptions(
        rate_limits=False, job_queued_ms=0, job_working_ms=1500, job_ms_per_item=0, job_workers=0
    )
    with run_simulator_in_thread(options) as running:
        yield running


def polled_ids(sim: RunningSimulator) -> list[set[str]]:
    """The job ids each show_many request asked about, in order."""
    rounds = []
    for entry in sim.control.requests():
        if entry["path"].endswith("/job_statuses/show_many"):
            ids = ",".join(parse_qs(entry.get("query") or "").get("ids", []))
            rounds.append({job_id for job_id in ids.split(",") if job_id})
    return rounds


async def test_every_round_asks_about_every_job_in_flight(sim: RunningSimulator) -> None:
    connection = connection_from("acme", sim.base_url, sim.email, sim.api_token, None)
    async with ZendeskClient(connection=connection, governor=Governor(plan=sim.zendesk_plan())) as client:
        stats = BulkStats()
        poller = JobPoller(client=client, stats=stats, round_s=0.1)

        async def post(name: str) -> str:
            posted = await client.create_or_update_many_users([{"name": name, "external_id": name}])
            assert isinstance(posted, Ok)
            job_id = posted.json["job_status"]["id"]
            assert isinstance(job_id, str)
            return job_id

        first = await post("A")
        first_done = poller.watch(first)
        await wait_until(lambda: stats.polls >= 2, timeout_s=10, what="two rounds about the first job")
        second = await post("B")  # on a schedule of its own, 0.3 s and more behind the first's
        second_done = poller.watch(second)
        results = [await first_done, await second_done]
        await poller.close()

    assert all(isinstance(result, Ok) for result in results)
    rounds = polled_ids(sim)
    both_running = [ids for ids in rounds if second in ids]
    assert both_running, rounds
    # From the second job's first round until the first job was seen done, every round asked about both.
    until_first_done = [ids for ids in both_running if first in ids]
    assert until_first_done and all(ids == {first, second} for ids in until_first_done)
    assert rounds.index(until_first_done[0]) == len(rounds) - len(both_running)
