"""Delivery of single events (`Destination.process`) against the Zendesk simulator, no Kafka.

Each test is named after the rule it proves (docs/semantics.md). Call order is read from the simulator's
request log; what Zendesk holds afterwards, from its state dump.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import pytest

from stream.delivery import Destination
from stream.engine.records import InboundRecord
from stream.errors import ZendeskConfigError
from stream.mapping.settings import DestinationSettings
from stream.outcomes import (
    DeadLetter,
    Delivered,
    DlqReason,
    ErrorClass,
    Outcome,
    Skipped,
    SkipReason,
    Transient,
)
from stream.simulator.options import SimulatorOptions
from stream.simulator.testing import RunningSimulator, run_simulator_in_thread
from stream.zendesk import ZendeskClient, connection_from
from stream.zendesk.bulk import Bulk
from stream.zendesk.governor import Governor
from tests.support.segment import group, identify, track
from tests.support.waiting import wait_for

pytestmark = pytest.mark.anyio

USERS_UPSERT = "POST /api/v2/users/create_or_update"
ORGS_UPSERT = "POST /api/v2/organizations/create_or_update"
MEMBERSHIP_POST = "POST /api/v2/organization_memberships"
EVENT_POST = "POST /api/v2/user_profiles/events"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    # Rate limits off: these tests are about what is sent; 429s are injected where they matter.
    with run_simulator_in_thread(SimulatorOptions(rate_limits=False)) as sim:
        yield sim


@pytest.fixture
def sim(simulator: RunningSimulator) -> RunningSimulator:
    simulator.control.reset()
    return simulator


PATH: ContextVar[str] = ContextVar("path", default="single")


@pytest.fixture(params=["single", "bulk"], autouse=True)
def delivery_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs twice: one request per write, and through bulk jobs and batched lookups."""
    token = PATH.set(request.param)
    yield request.param
    PATH.reset(token)


@asynccontextmanager
async def destination(
    sim: RunningSimulator, *, api_token: str | None = None, **settings: Any
) -> AsyncIterator[Destination]:
    connection = connection_from("acme", sim.base_url, sim.email, api_token or sim.api_token, None)
    governor = Governor(plan=sim.zendesk_plan())  # no waits where the simulator sets no limits
    async with ZendeskClient(connection=connection, governor=governor) as client:
        bulk = Bulk(client=client, linger_s=0.02, always=True) if PATH.get() == "bulk" else None
        # Every write is sent, even one that would change nothing (tests/integration/test_economy.py
        # covers skipping those): these tests are about what is sent.
        yield Destination(
            client=client, settings=DestinationSettings.parse(settings), bulk=bulk, unchanged_ttl_s=0
        )
        if bulk is not None:
            await bulk.close()


async def deliver(
    dest: Destination, payload: dict[str, Any], progress: dict[str, Any] | None = None
) -> Outcome:
    """One attempt at the event as the engine makes it; `progress` carries what it left for the next."""
    record = InboundRecord(
        topic="segment.events", partition=0, offset=0, key=None, value=json.dumps(payload).encode()
    )
    held = {} if progress is None else progress
    outcome, held["resume"] = await dest.process([record], held.get("resume"))
    return outcome


# On the bulk path a write is an item of a job, a lookup a part of a show_many: the request log is read
# as the same logical calls, so that both paths are held to the same assertions.
BULK_AS_SINGLE = {
    "JOB /api/v2/users/create_or_update_many": USERS_UPSERT,
    "POST /api/v2/users/create_or_update_many": USERS_UPSERT,  # when the job's POST itself failed
    "JOB /api/v2/organization_memberships/create_many": MEMBERSHIP_POST,
    "POST /api/v2/organization_memberships/create_many": MEMBERSHIP_POST,
    "GET /api/v2/users/show_many": "GET /api/v2/users/search",
}
BULK_PATHS = {"^/api/v2/organization_memberships$": "^/api/v2/organization_memberships/create_many$"}


def logical(sim: RunningSimulator, *, since: int | None = None) -> list[tuple[str, int]]:
    """The requests so far as ("METHOD path", status), in arrival order, bulk items as single calls."""
    entries = []
    for r in sim.control.requests(since=since):
        call = f"{r['method']} {r['path']}"
        if PATH.get() == "bulk":
            if call == "GET /api/v2/job_statuses/show_many" or (
                call.startswith("POST ") and call.endswith(("_many", "/create_many")) and r["status"] == 200
            ):
                continue  # a job's POST and polls: its items are logged one by one
            call = BULK_AS_SINGLE.get(call, call)
        entries.append((call, int(r["status"])))
    return entries


def inject(sim: RunningSimulator, **fault: Any) -> None:
    """A fault on a call; on the bulk path, on the bulk request that carries it."""
    if PATH.get() == "bulk":
        fault["path"] = BULK_PATHS.get(fault["path"], fault["path"])
    sim.control.inject_fault(**fault)


def calls(sim: RunningSimulator, *, since: int | None = None) -> list[str]:
    """The Zendesk requests so far, as "METHOD path", in arrival order."""
    return [call for call, _ in logical(sim, since=since)]


def writes(sim: RunningSimulator) -> list[str]:
    return [c for c in calls(sim) if not c.startswith("GET ")]


def statuses(sim: RunningSimulator, call: str) -> list[int]:
    return [status for logged, status in logical(sim) if logged == call]


def last_seq(sim: RunningSimulator) -> int:
    entries = sim.control.requests()
    return int(entries[-1]["seq"]) if entries else 0


def users_by_external_id(sim: RunningSimulator) -> dict[str, dict[str, Any]]:
    return {u["external_id"]: u for u in sim.control.state()["users"] if u["external_id"]}


def memberships(sim: RunningSimulator) -> set[tuple[int, int]]:
    return {(m["user_id"], m["organization_id"]) for m in sim.control.state()["organization_memberships"]}


def assert_dead_letter(outcome: Outcome, reason: DlqReason, *, status: int | None = None) -> DeadLetter:
    assert isinstance(outcome, DeadLetter), outcome
    assert outcome.reason is reason, outcome
    assert outcome.http_status == status, outcome
    return outcome


# --------------------------------------------------------------------------------------------- identify


async def test_identify_creates_the_user_then_updates_it_matched_by_email(sim: RunningSimulator) -> None:
    async with destination(sim) as dest:
        created = await deliver(dest, identify("u1", name="Peter Gibbons", email="peter@example.com"))
        updated = await deliver(dest, identify("u1", name="Peter G.", email="PETER@example.com", phone="555"))
    assert isinstance(created, Delivered) and isinstance(updated, Delivered)
    assert statuses(sim, USERS_UPSERT) == [201, 200]
    users = sim.control.state()["users"]
    assert len(users) == 1
    assert (users[0]["name"], users[0]["external_id"], users[0]["phone"]) == ("Peter G.", "u1", "555")


async def test_identify_email_of_a_user_without_that_user_id_updates_that_user_and_sets_external_id(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": "Ann", "email": "ann@example.com"}])
    async with destination(sim) as dest:
        outcome = await deliver(dest, identify("u-ann", name="Ann", email="ann@example.com"))
    assert isinstance(outcome, Delivered)
    users = sim.control.state()["users"]
    assert [(u["email"], u["external_id"]) for u in users] == [("ann@example.com", "u-ann")]


async def test_identify_custom_fields_are_created_with_inferred_types_before_the_upsert_and_reused(
    sim: RunningSimulator,
) -> None:
    traits = {
        "name": "Peter",
        "email": "peter@example.com",
        "plan": "premium",
        "logins": 5,
        "score": 1.5,
        "trialEnds": "2026-12-01",
        "vip": True,
    }
    async with destination(sim) as dest:
        assert isinstance(await deliver(dest, identify("u1", **traits)), Delivered)
        assert isinstance(
            await deliver(dest, identify("u2", **{**traits, "email": "p2@example.com"})), Delivered
        )
    async with destination(sim) as restarted:  # a new process lists the fields instead of creating them
        assert isinstance(
            await deliver(restarted, identify("u3", **{**traits, "email": "p3@e.com"})), Delivered
        )

    fields = {f["key"]: f["type"] for f in sim.control.state()["user_fields"]}
    assert fields == {
        "plan": "text",
        "logins": "integer",
        "score": "decimal",
        "trial_ends": "date",
        "vip": "checkbox",
    }
    log = calls(sim)
    assert log.count("POST /api/v2/user_fields") == 5
    assert max(i for i, c in enumerate(log) if c == "POST /api/v2/user_fields") < log.index(USERS_UPSERT)
    values = dict(users_by_external_id(sim)["u3"]["user_fields"])
    assert values.pop("trial_ends").startswith("2026-12-01")  # Zendesk answers dates as date-times
    assert values == {"plan": "premium", "logins": 5, "score": 1.5, "vip": True}


async def test_identify_trait_over_zendesks_size_limit_is_left_out_and_the_rest_is_written(
    sim: RunningSimulator,
) -> None:
    traits = {"name": "Peter", "email": "peter@example.com", "plan": "premium", "essay": "x" * 100_000}
    async with destination(sim) as dest:
        assert isinstance(await deliver(dest, identify("u1", **traits)), Delivered)
        assert dest.counters.traits_dropped == {"value_too_large": 1}
    assert {f["key"] for f in sim.control.state()["user_fields"]} == {"plan"}
    assert users_by_external_id(sim)["u1"]["user_fields"] == {"plan": "premium"}


async def test_identify_users_with_large_values_split_a_bulk_job_by_its_size(sim: RunningSimulator) -> None:
    async with destination(sim) as dest:
        assert isinstance(await deliver(dest, identify("u0", name="Seed", bio="b", about="a")), Delivered)
        # 12 users of 110 KB each (two text fields of 55,000 characters, each within Zendesk's 65,536 and
        # together within a record's budget) are 1.3 MB: over the 1 MiB a job may carry, so two jobs.
        big = "x" * 55_000
        users = [identify(f"u{n}", name=f"User {n}", bio=big, about=big) for n in range(1, 13)]
        outcomes = await asyncio.gather(*(deliver(dest, user) for user in users))
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    stored = users_by_external_id(sim)
    assert all(stored[f"u{n}"]["user_fields"] == {"bio": big, "about": big} for n in range(1, 13))
    if PATH.get() == "bulk":
        posts = [
            r
            for r in sim.control.requests()
            if r["method"] == "POST" and r["path"].endswith("/create_or_update_many")
        ]
        assert len(posts) >= 3  # the seed's job, then at least two for the twelve


async def test_identify_field_created_meanwhile_by_another_replica_is_reused_with_its_type(
    sim: RunningSimulator,
) -> None:
    async with destination(sim) as dest:
        await dest.known()  # this replica has listed the fields: none yet
        sim.control.seed(user_fields=[{"key": "logins", "type": "integer", "title": "Logins"}])
        # "42" alone would make a text field; the other replica's field is an integer field
        outcome = await deliver(dest, identify("u1", name="Peter", email="peter@example.com", logins="42"))
    assert isinstance(outcome, Delivered), outcome
    assert statuses(sim, "POST /api/v2/user_fields") == [422]  # key taken: the other replica won
    assert [(f["key"], f["type"]) for f in sim.control.state()["user_fields"]] == [("logins", "integer")]
    assert users_by_external_id(sim)["u1"]["user_fields"] == {"logins": 42}  # planned again for its type
    assert statuses(sim, USERS_UPSERT) == [201]


async def test_identify_field_list_unavailable_during_a_refresh_is_transient_and_the_retry_delivers(
    sim: RunningSimulator,
) -> None:
    progress: dict[str, Any] = {}
    async with destination(sim) as dest:
        await dest.known()
        sim.control.seed(user_fields=[{"key": "logins", "type": "integer", "title": "Logins"}])
        inject(sim, path="^/api/v2/user_fields$", method="GET", status=503)
        event = identify("u1", name="Peter", email="peter@example.com", logins="42")
        failed = await deliver(dest, event, progress)
        assert isinstance(failed, Transient) and failed.http_status == 503, failed
        retried = await deliver(dest, event, progress)
    assert isinstance(retried, Delivered), retried
    assert users_by_external_id(sim)["u1"]["user_fields"] == {"logins": 42}


async def test_identify_engage_audience_boolean_becomes_a_checkbox_field(sim: RunningSimulator) -> None:
    async with destination(sim) as dest:
        outcome = await deliver(
            dest, identify("u1", name="Peter", email="peter@example.com", order_completed_last_30days=True)
        )
    assert isinstance(outcome, Delivered)
    fields = sim.control.state()["user_fields"]
    assert [(f["key"], f["type"]) for f in fields] == [("order_completed_last_30days", "checkbox")]
    assert users_by_external_id(sim)["u1"]["user_fields"] == {"order_completed_last_30days": True}


@pytest.mark.parametrize(("setting", "verified", "welcome_emails"), [(True, True, 0), (False, False, 1)])
async def test_identify_verified_setting_creates_users_as_verified(
    sim: RunningSimulator, setting: bool, verified: bool, welcome_emails: int
) -> None:
    async with destination(sim, verified=setting) as dest:
        assert isinstance(
            await deliver(dest, identify("u1", name="Peter", email="peter@example.com")), Delivered
        )
    user = users_by_external_id(sim)["u1"]
    assert (user["verified"], user["welcome_emails_sent"]) == (verified, welcome_emails)


def seed_member(sim: RunningSimulator) -> tuple[int, int]:
    seeded = sim.control.seed(
        users=[{"name": "Pikachu", "email": "pikachu@pokemon.com", "external_id": "12345"}],
        organizations=[{"name": "Initech", "external_id": "6789"}, {"name": "Other", "external_id": "1"}],
        memberships=[
            {"user_external_id": "12345", "organization_external_id": "1"},
            {"user_external_id": "12345", "organization_external_id": "6789"},
        ],
    )
    return seeded["users"][0]["id"], seeded["organizations"][0]["id"]


def pikachu(**extra: Any) -> dict[str, Any]:
    return identify(
        "12345", name="Pikachu", email="pikachu@pokemon.com", company={"id": "6789", "remove": True}, **extra
    )


async def test_identify_company_remove_with_the_setting_on_deletes_the_membership_after_the_upsert(
    sim: RunningSimulator,
) -> None:
    user_id, org_id = seed_member(sim)
    async with destination(sim, removeUsersFromOrganizations=True) as dest:
        outcome = await deliver(dest, pikachu())
    assert isinstance(outcome, Delivered), outcome
    assert (user_id, org_id) not in memberships(sim)
    assert len(memberships(sim)) == 1  # the other organization is kept
    log = calls(sim)
    upsert = log.index(USERS_UPSERT)
    listed = log.index(f"GET /api/v2/users/{user_id}/organization_memberships")
    deleted = [i for i, c in enumerate(log) if c.startswith(f"DELETE /api/v2/users/{user_id}/organization_")]
    assert upsert < listed < deleted[0] and len(deleted) == 1
    assert not any(f["key"] == "company" for f in sim.control.state()["user_fields"])


async def test_identify_company_remove_with_the_setting_off_is_a_plain_identify(
    sim: RunningSimulator,
) -> None:
    user_id, org_id = seed_member(sim)
    async with destination(sim) as dest:
        assert isinstance(await deliver(dest, pikachu()), Delivered)
    assert (user_id, org_id) in memberships(sim)
    assert not [c for c in writes(sim) if "organization" in c]
    assert not [c for c in calls(sim) if "membership" in c]


async def test_identify_company_remove_when_not_a_member_or_no_such_organization_is_success(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(organizations=[{"name": "Initech", "external_id": "6789"}])
    async with destination(sim, removeUsersFromOrganizations=True) as dest:
        not_a_member = await deliver(dest, pikachu())
        no_such_org = await deliver(
            dest, identify("12345", name="Pikachu", company={"id": "404404", "remove": True})
        )
    assert isinstance(not_a_member, Delivered) and isinstance(no_such_org, Delivered)
    assert not [c for c in calls(sim) if c.startswith("DELETE")]


async def test_removal_treats_a_404_on_the_membership_delete_as_success(sim: RunningSimulator) -> None:
    user_id, org_id = seed_member(sim)
    inject(
        sim,
        path="organization_memberships/",
        method="DELETE",
        status=404,
        error="RecordNotFound",
        description="Not found",
    )
    async with destination(sim, removeUsersFromOrganizations=True) as dest:
        outcome = await deliver(dest, pikachu())
    assert isinstance(outcome, Delivered), outcome  # not dead-lettered: the membership is already gone
    [membership_id] = [
        m["id"]
        for m in sim.control.state()["organization_memberships"]
        if (m["user_id"], m["organization_id"]) == (user_id, org_id)
    ]  # still there: the injected 404 answered in place of the simulator
    delete = f"DELETE /api/v2/users/{user_id}/organization_memberships/{membership_id}"
    assert statuses(sim, delete) == [404]
    assert [c for c in calls(sim) if c.startswith("DELETE")] == [delete]


async def test_identify_email_owned_by_another_user_than_the_external_id_goes_to_dlq_identity_conflict(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(
        users=[
            {"name": "Ann", "email": "ann@example.com", "external_id": "A"},
            {"name": "Bob", "email": "bob@example.com", "external_id": "B"},
        ]
    )
    async with destination(sim) as dest:
        outcome = await deliver(dest, identify("B", name="Bob", email="ann@example.com"))
    dead = assert_dead_letter(outcome, DlqReason.IDENTITY_CONFLICT, status=422)
    assert dead.reason.error_class is ErrorClass.REJECTED
    users = users_by_external_id(sim)
    assert (users["A"]["email"], users["B"]["email"]) == ("ann@example.com", "bob@example.com")


async def test_identify_time_zone_refused_is_resent_without_time_zone(sim: RunningSimulator) -> None:
    assert sim.control.options()["invalid_time_zone"] == "reject"  # Zendesk's 422 on an unknown zone
    async with destination(sim) as dest:
        outcome = await deliver(
            dest,
            identify("u1", name="Peter", email="peter@example.com", timezone="Mars/Olympus", phone="555"),
        )
        assert dest.counters.time_zone_dropped == 1
    assert isinstance(outcome, Delivered), outcome
    assert statuses(sim, USERS_UPSERT) == [422, 201]
    user = users_by_external_id(sim)["u1"]
    assert user["phone"] == "555" and user["time_zone"] != "Mars/Olympus"


async def test_identify_without_name_is_skipped_without_calling_zendesk(sim: RunningSimulator) -> None:
    async with destination(sim) as dest:
        outcome = await deliver(dest, identify("u1", email="peter@example.com"))
    assert isinstance(outcome, Skipped) and outcome.reason is SkipReason.MISSING_NAME
    assert writes(sim) == []  # only the field lists, read once per process, for planning


# ------------------------------------------------------------------------------------------------ track

EVENTS: dict[str, Any] = {"events": ["Article Completed"]}


async def test_track_to_a_known_user_by_external_id_is_sent_after_the_user_is_found(
    sim: RunningSimulator,
) -> None:
    user_id = sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])["users"][0]["id"]
    async with destination(sim, **EVENTS) as dest:
        outcome = await deliver(dest, track("u1", "Article Completed", title="Intro"))
    assert isinstance(outcome, Delivered), outcome
    assert calls(sim) == ["GET /api/v2/users/search", EVENT_POST]
    [event] = sim.control.state()["events"]
    assert (event["user_id"], event["type"], event["source"]) == (user_id, "Article Completed", "segment")
    assert event["properties"] == {"title": "Intro"}


def _record(payload: dict[str, Any]) -> InboundRecord:
    return InboundRecord(
        topic="segment.events", partition=0, offset=0, key=None, value=json.dumps(payload).encode()
    )


async def test_an_attempt_cut_off_is_found_in_zendesk_only_if_zendesk_stored_that_very_event(
    sim: RunningSimulator,
) -> None:
    """`was_delivered`: the user's events of that source and type, at the event's own timestamp, with
    the same properties. Another timestamp or other properties are another event."""
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    stored = track("u1", "Article Completed", title="Intro")
    async with destination(sim, **EVENTS) as dest:
        assert isinstance(await deliver(dest, stored), Delivered)
        since = last_seq(sim)
        assert await dest.was_delivered(_record(stored), since_s=0) is True
        other = {**stored, "properties": {"title": "Outro"}}
        assert await dest.was_delivered(_record(other), since_s=0) is False
        later = {**stored, "timestamp": "2026-11-29T10:00:01.000Z"}
        assert await dest.was_delivered(_record(later), since_s=0) is False
        assert await dest.was_delivered(_record(track("nobody", "Article Completed")), since_s=0) is False
    asked = [c for c in calls(sim, since=since) if c.endswith("/events")]
    assert asked == [f"GET /api/v2/users/{sim.control.state()['users'][0]['id']}/events"] * 3


async def test_an_event_without_timestamp_is_looked_for_since_the_attempt_was_announced(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    stored = {k: v for k, v in track("u1", "Article Completed", n=1).items() if k != "timestamp"}
    async with destination(sim, **EVENTS) as dest:
        announced = time.time()
        assert isinstance(await deliver(dest, stored), Delivered)
        assert await dest.was_delivered(_record(stored), since_s=announced - 300) is True
        assert await dest.was_delivered(_record(stored), since_s=announced + 3600) is False


async def test_track_after_an_identify_uses_the_user_id_the_upsert_taught_without_a_lookup(
    sim: RunningSimulator,
) -> None:
    async with destination(sim, **EVENTS) as dest:
        assert isinstance(await deliver(dest, identify("u1", name="Ann", email="ann@example.com")), Delivered)
        since = last_seq(sim)
        assert isinstance(await deliver(dest, track("u1", "Article Completed")), Delivered)
    assert calls(sim, since=since) == [EVENT_POST]


async def test_track_to_a_known_user_by_properties_email_is_sent_with_the_email_identifier(
    sim: RunningSimulator,
) -> None:
    user_id = sim.control.seed(users=[{"name": "Ann", "email": "ann@example.com"}])["users"][0]["id"]
    async with destination(sim, **EVENTS) as dest:
        outcome = await deliver(dest, track("not-in-zendesk", "Article Completed", email="ann@example.com"))
    assert isinstance(outcome, Delivered), outcome
    [event] = sim.control.state()["events"]
    assert event["user_id"] == user_id
    [profile] = sim.control.state()["profiles"]
    assert profile["identifiers"] == [{"type": "email", "value": "ann@example.com"}]


async def test_track_to_an_unknown_user_goes_to_dlq_user_not_found_and_sends_nothing(
    sim: RunningSimulator,
) -> None:
    async with destination(sim, **EVENTS) as dest:
        outcome = await deliver(dest, track("ghost", "Article Completed", email="ghost@example.com"))
    assert_dead_letter(outcome, DlqReason.USER_NOT_FOUND)
    assert EVENT_POST not in calls(sim)
    state = sim.control.state()
    assert state["users"] == [] and state["events"] == []  # no anonymous user was made


async def test_track_identifier_longer_than_60_characters_goes_to_dlq_without_calling_zendesk(
    sim: RunningSimulator,
) -> None:
    async with destination(sim, **EVENTS) as dest:
        outcome = await deliver(dest, track("u" * 61, "Article Completed"))
    assert_dead_letter(outcome, DlqReason.IDENTIFIER_TOO_LONG)
    assert calls(sim) == []


async def test_track_event_name_longer_than_40_characters_goes_to_dlq_without_calling_zendesk(
    sim: RunningSimulator,
) -> None:
    async with destination(sim, events=["*"]) as dest:
        outcome = await deliver(dest, track("u1", "x" * 41))
    assert_dead_letter(outcome, DlqReason.EVENT_NAME_TOO_LONG)
    assert calls(sim) == []


async def test_track_not_enabled_is_skipped_without_calling_zendesk(sim: RunningSimulator) -> None:
    async with destination(sim, **EVENTS) as dest:
        outcome = await deliver(dest, track("u1", "Order Completed"))
    assert isinstance(outcome, Skipped) and outcome.reason is SkipReason.EVENT_NOT_ENABLED
    assert calls(sim) == []


async def test_event_without_type_goes_to_dlq_invalid_payload_without_calling_zendesk(
    sim: RunningSimulator,
) -> None:
    async with destination(sim) as dest:
        no_type = await deliver(dest, {"userId": "u1", "traits": {"name": "Ann"}})
        no_group_id = await deliver(dest, {"type": "group", "userId": "u1", "traits": {"name": "Initech"}})
    assert_dead_letter(no_type, DlqReason.INVALID_PAYLOAD)
    assert_dead_letter(no_group_id, DlqReason.INVALID_PAYLOAD)
    assert writes(sim) == []


# ------------------------------------------------------------------------------------------------ group


async def test_group_upserts_the_organization_with_its_fields_then_adds_the_membership(
    sim: RunningSimulator,
) -> None:
    user_id = sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])["users"][0]["id"]
    async with destination(sim) as dest:
        outcome = await deliver(dest, group("u1", "g1", name="Initech", totalBilled=1200, tags="gold"))
    assert isinstance(outcome, Delivered), outcome
    log = calls(sim)
    assert log.index("POST /api/v2/organization_fields") < log.index(ORGS_UPSERT) < log.index(MEMBERSHIP_POST)
    [org] = sim.control.state()["organizations"]
    assert (org["name"], org["external_id"], org["tags"]) == ("Initech", "g1", ["gold"])
    assert org["organization_fields"] == {"total_billed": 1200}
    assert memberships(sim) == {(user_id, org["id"])}


async def test_group_replayed_when_already_a_member_is_success(sim: RunningSimulator) -> None:
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    event = group("u1", "g1", name="Initech")
    async with destination(sim) as dest:
        first = await deliver(dest, event)
    async with destination(sim) as replay:  # e.g. after a crash before the commit
        second = await deliver(replay, event)
    assert isinstance(first, Delivered) and isinstance(second, Delivered), second
    assert statuses(sim, MEMBERSHIP_POST) == [201, 422]
    assert len(memberships(sim)) == 1


async def test_group_without_user_id_upserts_the_organization_only_when_allowed(
    sim: RunningSimulator,
) -> None:
    async with destination(sim, allowGroupWithoutUserId=True) as dest:
        outcome = await deliver(dest, group(None, "g1", name="Initech"))
    assert isinstance(outcome, Delivered)
    assert calls(sim) == [
        "GET /api/v2/user_fields",
        "GET /api/v2/organization_fields",
        ORGS_UPSERT,
    ]
    assert [o["external_id"] for o in sim.control.state()["organizations"]] == ["g1"]


async def test_group_without_user_id_is_skipped_missing_user_id_by_default(sim: RunningSimulator) -> None:
    async with destination(sim) as dest:
        outcome = await deliver(dest, group(None, "g1", name="Initech"))
    assert isinstance(outcome, Skipped) and outcome.reason is SkipReason.MISSING_USER_ID
    assert sim.control.state()["organizations"] == []


async def test_group_name_taken_by_another_organization_goes_to_dlq_identity_conflict(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(
        users=[{"name": "Ann", "external_id": "u1"}],
        organizations=[{"name": "Initech", "external_id": "other"}],
    )
    async with destination(sim) as dest:
        outcome = await deliver(dest, group("u1", "g2", name="initech "))
    assert_dead_letter(outcome, DlqReason.IDENTITY_CONFLICT, status=422)
    assert MEMBERSHIP_POST not in calls(sim)
    assert [o["external_id"] for o in sim.control.state()["organizations"]] == ["other"]


async def test_group_whose_user_is_unknown_upserts_the_organization_then_goes_to_dlq_user_not_found(
    sim: RunningSimulator,
) -> None:
    async with destination(sim) as dest:
        outcome = await deliver(dest, group("ghost", "g1", name="Initech"))
    assert_dead_letter(outcome, DlqReason.USER_NOT_FOUND)
    assert [o["external_id"] for o in sim.control.state()["organizations"]] == ["g1"]
    assert MEMBERSHIP_POST not in calls(sim)


async def test_group_unknown_organization_without_name_goes_to_dlq_zendesk_rejected(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    async with destination(sim) as dest:
        outcome = await deliver(dest, group("u1", "g1"))
    dead = assert_dead_letter(outcome, DlqReason.ZENDESK_REJECTED, status=422)
    assert "422" in dead.message


# ------------------------------------------------------------------------------------ delivery rules


async def test_rate_limited_call_waits_retry_after_and_succeeds_without_an_attempt_and_only_it_waits(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    inject(sim, path="user_profiles/events", method="POST", status=429, retry_after=1)
    async with destination(sim, **EVENTS) as dest:
        waiting = asyncio.ensure_future(deliver(dest, track("u1", "Article Completed")))
        # wait_for polls from a thread: the rate-limited task keeps running on this event loop
        await asyncio.to_thread(
            wait_for, lambda: statuses(sim, EVENT_POST) == [429], timeout_s=5, what="the event POST's 429"
        )
        other = await deliver(dest, identify("u2", name="Bob", email="bob@example.com"))
        assert isinstance(other, Delivered)
        assert not waiting.done()  # only the rate-limited call waits
        outcome = await waiting
        assert dest.counters.rate_limited_waits == 1
    assert isinstance(outcome, Delivered), outcome  # one process() call: no attempt was spent
    log = calls(sim)
    limited, sent = [i for i, c in enumerate(log) if c == EVENT_POST]
    assert limited < log.index(USERS_UPSERT) < sent
    assert statuses(sim, EVENT_POST) == [429, 202]


async def test_rate_limit_longer_than_the_wait_bound_is_transient_at_once(sim: RunningSimulator) -> None:
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    inject(sim, path="user_profiles/events", method="POST", status=429, retry_after=600)
    connection = connection_from("acme", sim.base_url, sim.email, sim.api_token, None)
    async with ZendeskClient(connection=connection) as client:
        dest = Destination(
            client=client, settings=DestinationSettings.parse(EVENTS), max_rate_limit_wait_s=30.0
        )
        outcome = await asyncio.wait_for(deliver(dest, track("u1", "Article Completed")), timeout=10)
    assert isinstance(outcome, Transient), outcome
    assert (outcome.http_status, outcome.retry_after_s) == (429, 600.0)
    assert statuses(sim, EVENT_POST) == [429]


async def test_server_error_is_transient_and_the_retry_resumes_at_the_failed_operation(
    sim: RunningSimulator,
) -> None:
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    inject(sim, path="^/api/v2/organization_memberships$", method="POST", status=503, retry_after=2)
    progress: dict[str, Any] = {}
    async with destination(sim) as dest:
        event = group("u1", "g1", name="Initech", plan="gold")
        failed = await deliver(dest, event, progress)
        assert isinstance(failed, Transient), failed
        assert (failed.http_status, failed.retry_after_s) == (503, 2.0)
        retried = await deliver(dest, event, progress)
    assert isinstance(retried, Delivered), retried
    log = calls(sim)
    assert log.count("POST /api/v2/organization_fields") == 1
    assert log.count(ORGS_UPSERT) == 1
    assert statuses(sim, MEMBERSHIP_POST) == [503, 201]
    assert len(memberships(sim)) == 1


async def test_membership_delete_whose_answer_was_lost_is_not_repeated_when_the_retry_resumes(
    sim: RunningSimulator,
) -> None:
    user_id, org_id = seed_member(sim)
    # Applied, then the connection drops; twice, because the HTTP transport itself retries an
    # idempotent request once when a kept-alive connection turns out closed.
    inject(sim, path="organization_memberships/", method="DELETE", action="drop_after", count=2)
    progress: dict[str, Any] = {}
    async with destination(sim, removeUsersFromOrganizations=True) as dest:
        failed = await deliver(dest, pikachu(), progress)
        assert isinstance(failed, Transient), failed
        before_retry = len(calls(sim))
        retried = await deliver(dest, pikachu(), progress)
    assert isinstance(retried, Delivered), retried
    log = calls(sim)
    assert log.count(USERS_UPSERT) == 1  # the upsert before the failure is not repeated
    assert not [c for c in log[before_retry:] if c.startswith("DELETE")]  # the membership is gone
    assert (user_id, org_id) not in memberships(sim)


async def test_unauthorized_raises_zendesk_config_error_and_nothing_is_dead_lettered(
    sim: RunningSimulator,
) -> None:
    async with destination(sim, api_token="wrong-token") as dest:
        with pytest.raises(ZendeskConfigError) as refused:
            await deliver(dest, identify("u1", name="Peter", email="peter@example.com"))
    assert refused.value.status == 401
    assert "wrong-token" not in str(refused.value)


async def test_forbidden_raises_zendesk_config_error(sim: RunningSimulator) -> None:
    sim.control.seed(users=[{"name": "Ann", "external_id": "u1"}])
    inject(sim, path="user_profiles/events", status=403)
    async with destination(sim, **EVENTS) as dest:
        with pytest.raises(ZendeskConfigError) as refused:
            await deliver(dest, track("u1", "Article Completed"))
    assert refused.value.status == 403
