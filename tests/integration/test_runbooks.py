"""The runbooks of ops/runbooks/, each run with its own commands after staging the situation it describes.

Every test takes the `zendesk-stream ...` lines of its runbook (tests/support/runbooks.py), checks that
they are the ones it expects (so a changed runbook fails here until its test follows), and runs them in
their order against a real broker and the Zendesk simulator. Placeholders a runbook must leave to the
reader (a time, a key) are replaced by the test with the value of the situation it staged; each test says
which.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.support.kafka import create_service_topics, produce, unique_topic
from tests.support.runbooks import RUNBOOKS, runbook_commands
from tests.support.segment import identify, track
from tests.support.service import log_events, run_to_end, service_env, start_service, zendesk_stream
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

Records = list[tuple[str | None, dict[str, Any]]]


def user_events(users: list[str], **traits: Any) -> Records:
    """Per user an identify with `traits` and a name, then two `Step` tracks."""
    records: Records = []
    for user in users:
        records.append((user, identify(user, name=f"Name {user}", **traits)))
        records += [(user, track(user, "Step", seq=n)) for n in (1, 2)]
    return records


def posted_events(simulator: RunningSimulator) -> list[tuple[str, str, int]]:
    """The Sunshine events in Zendesk as (external id, event name, seq), sorted, duplicates kept."""
    state = simulator.control.state()
    by_user = {u["id"]: u["external_id"] for u in state["users"]}
    return sorted(
        (by_user[int(e["user_id"])], str(e["type"]), int(e["properties"]["seq"])) for e in state["events"]
    )


def users_by_external_id(simulator: RunningSimulator) -> dict[str, dict[str, Any]]:
    return {u["external_id"]: u for u in simulator.control.state()["users"] if u["external_id"]}


def status_json(env: dict[str, str]) -> dict[str, Any]:
    done = zendesk_stream(["status", "--json"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def run_all(commands: list[list[str]], env: dict[str, str]) -> list[str]:
    """Run each command to its end, asserting exit 0; their stdout, in order."""
    outputs = []
    for command in commands:
        done = zendesk_stream(command, env)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
        outputs.append(done.stdout)
    return outputs


def skipped(stderr: str) -> dict[str, int]:
    """The skip counts of a run, from its `engine stopped` log line."""
    stopped = [line for line in log_events(stderr) if line.get("event") == "engine stopped"]
    assert stopped, stderr[-3000:]
    counts: dict[str, int] = stopped[-1]["skipped"]
    return counts


PLACEHOLDER_TIME = "2026-12-01T09:00:00Z"  # the example time of the rewind runbooks


def iso_ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def with_time(commands: list[list[str]], moment: datetime) -> list[list[str]]:
    """The commands with the runbook's example time replaced by `moment` (what the reader fills in)."""
    return [[iso_ms(moment) if arg == PLACEHOLDER_TIME else arg for arg in command] for command in commands]


def fatal_lines(stderr: str) -> list[str]:
    """The lines the command printed for a person (not the JSON log lines): `zendesk-stream: ...`."""
    return [line for line in stderr.splitlines() if line.startswith("zendesk-stream:")]


# ------------------------------------------------------------------------------------ bad-deploy.md

BAD_DEPLOY = RUNBOOKS / "bad-deploy.md"


def test_bad_deploy_runbook_replays_what_a_rejecting_release_dead_lettered(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    """A release whose user upserts Zendesk rejects (422) dead-letters the identifies as zendesk_rejected
    and their tracks as user_not_found until the breaker stops it (exit 1, one line). After the rollback
    the runbook's commands leave every user with its traits and every Sunshine event posted once."""
    users = [f"u{n}" for n in range(8)]
    records = user_events(users, plan="pro")
    topic = unique_topic("bad-deploy")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    produce(kafka_bootstrap, topic, records)
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]}, STREAM_BREAKER_WINDOW="6")
    fast_simulator.control.inject_fault(
        path="users/create_or_update",
        count=100_000,
        status=422,
        error="RecordInvalid",
        description="Record validation errors",
    )
    bad = run_to_end(env)
    assert bad.returncode == 1, bad.stderr[-3000:]
    lines = fatal_lines(bad.stderr)
    assert len(lines) == 1 and "circuit breaker open" in lines[0], bad.stderr[-3000:]
    assert "Traceback" not in bad.stderr
    stopped = status_json(env)
    assert stopped["dlq_reasons"].get("zendesk_rejected", 0) >= 1, stopped
    assert set(stopped["dlq_reasons"]) <= {"zendesk_rejected", "user_not_found"}, stopped
    assert stopped["lag"] > 0, stopped  # the breaker stopped it before the end: the rest waits, uncommitted
    assert fast_simulator.control.state()["events"] == []
    fast_simulator.control.clear_faults()  # the rollback

    commands = runbook_commands(BAD_DEPLOY)
    reasons = ["--reason", "zendesk_rejected", "--reason", "user_not_found", "--since", "2h"]
    assert commands == [
        ["status"],
        ["replay", "--dry-run", *reasons],
        ["replay", *reasons],
        ["run", "--exit-at-end"],
        ["status"],
    ]
    outputs = run_all(commands, env)
    dead = sum(stopped["dlq_reasons"].values())
    assert f"{dead} would go to" in outputs[1] and "422" in outputs[1], outputs[1]
    assert f"{dead} went to" in outputs[2], outputs[2]

    after = status_json(env)
    assert after["lag"] == 0 and after["parked_keys"] == 0, after
    assert after["dlq_records"] == dead, after  # nothing failed again
    found = users_by_external_id(fast_simulator)
    assert {u: (found[u]["name"], found[u]["user_fields"]["plan"]) for u in users} == {
        u: (f"Name {u}", "pro") for u in users
    }
    assert posted_events(fast_simulator) == sorted((u, "Step", n) for u in users for n in (1, 2))


# ------------------------------------------------------------------------- replay-after-mapping-fix.md

MAPPING_FIX = RUNBOOKS / "replay-after-mapping-fix.md"


def test_mapping_fix_runbook_rewinds_and_corrects_users_without_posting_a_track_twice(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    """A good release delivers batch A; at T a bad one (the `plan` trait denied, `Signup` not in `events`)
    delivers batch B wrongly. The runbook's rewind to T (the test fills in T) and a run of the fixed
    release give B's users their plan and post B's Signups, while every Step track stays posted once
    (skipped as already_delivered) and A is not processed again."""
    before, after = [f"a{n}" for n in range(3)], [f"b{n}" for n in range(5)]
    topic = unique_topic("mapping-fix")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    good = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]})
    bad = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["Step"], "fieldDenyList": ["plan"]})
    produce(kafka_bootstrap, topic, user_events(before, plan="pro"))
    assert run_to_end(good).returncode == 0
    bad_release_at = datetime.now(UTC)
    batch_b = user_events(after, plan="pro") + [(u, track(u, "Signup", seq=0)) for u in after]
    produce(kafka_bootstrap, topic, batch_b)
    wrong = run_to_end(bad)
    assert wrong.returncode == 0, wrong.stderr[-3000:]
    found = users_by_external_id(fast_simulator)
    assert all(
        "plan" not in (found[u]["user_fields"] or {}) or found[u]["user_fields"]["plan"] is None
        for u in after
    ), [found[u]["user_fields"] for u in after]
    steps = sorted((u, "Step", n) for u in before + after for n in (1, 2))
    assert posted_events(fast_simulator) == steps  # no Signup: the bad release left them out

    commands = runbook_commands(MAPPING_FIX)
    assert commands == [
        ["status"],
        ["rewind", "--to-datetime", PLACEHOLDER_TIME],
        ["rewind", "--to-datetime", PLACEHOLDER_TIME, "--execute"],
        ["run", "--exit-at-end"],
        ["status"],
    ]
    outputs: list[str] = []
    for command in with_time(commands, bad_release_at):
        done = zendesk_stream(command, good)  # the fixed release's settings
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
        outputs.append(done.stdout)
        if command[0] == "run":
            assert skipped(done.stderr).get("already_delivered") == 2 * len(after), done.stderr[-3000:]
    assert f"{len(batch_b)} events will be processed again" in outputs[1], outputs[1]
    assert "plan only" in outputs[1] and "plan only" not in outputs[2]

    assert status_json(good)["lag"] == 0
    found = users_by_external_id(fast_simulator)
    assert {u: found[u]["user_fields"]["plan"] for u in before + after} == dict.fromkeys(
        before + after, "pro"
    )
    assert posted_events(fast_simulator) == sorted(steps + [(u, "Signup", 0) for u in after])


# ----------------------------------------------------------------------------------- rewind-by-time.md

REWIND_BY_TIME = RUNBOOKS / "rewind-by-time.md"


def test_rewind_by_time_runbook_refuses_while_a_member_runs_then_restores_a_lost_account(
    kafka_bootstrap: str, fast_simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A running service delivered everything; `rewind --execute` refuses while it is a member (exit 1,
    one line, nothing moved). Zendesk then loses the account (simulator reset). After SIGTERM the
    runbook's commands (the test fills in the time) bring every user back, with the Sunshine events
    skipped as already_delivered; step 4 (rewind again, run with STREAM_DEDUP_WINDOW=0) posts each once."""
    users = [f"u{n}" for n in range(6)]
    records = user_events(users, plan="pro")
    topic = unique_topic("rewind-time")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]})
    since = datetime.now(UTC)
    produce(kafka_bootstrap, topic, records)
    expected = sorted((u, "Step", n) for u in users for n in (1, 2))
    commands = with_time(runbook_commands(REWIND_BY_TIME), since)
    at = iso_ms(since)
    assert commands == [
        ["status"],
        ["rewind", "--to-datetime", at],
        ["rewind", "--to-datetime", at, "--partitions", "0"],
        ["rewind", "--to-datetime", at, "--execute"],
        ["run", "--exit-at-end"],
    ]

    service = start_service(env, tmp_path / "service.log")
    try:
        wait_for(lambda: posted_events(fast_simulator) == expected, timeout_s=60, what="everything delivered")
        wait_for(lambda: status_json(env)["lag"] == 0, timeout_s=30, what="everything committed")
        assert len(status_json(env)["members"]) == 1
        refused = zendesk_stream(commands[3], env)
        assert refused.returncode == 1, refused.stderr[-3000:]
        assert fatal_lines(refused.stderr) == [line for line in refused.stderr.splitlines() if line]
        assert "1 active member(s)" in refused.stderr and "stop them first" in refused.stderr
        assert status_json(env)["lag"] == 0  # nothing moved
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0, (tmp_path / "service.log").read_text()[-3000:]
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(timeout=30)
    assert status_json(env)["members"] == []

    fast_simulator.control.reset()  # Zendesk lost the account: restored from an empty backup
    outputs: list[str] = []
    for command in commands:
        done = zendesk_stream(command, env)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
        outputs.append(done.stdout)
        if command[0] == "run":
            assert skipped(done.stderr).get("already_delivered") == len(expected), done.stderr[-3000:]
    assert f"{len(records)} events will be processed again" in outputs[1], outputs[1]
    plan_rows = [line.split()[0] for line in outputs[2].splitlines() if line.strip()[:1].isdigit()]
    assert plan_rows[:1] == ["0"] and "1" not in plan_rows, outputs[2]  # --partitions 0: only partition 0
    assert status_json(env)["lag"] == 0
    found = users_by_external_id(fast_simulator)
    assert {u: (found[u]["name"], found[u]["user_fields"]["plan"]) for u in users} == {
        u: (f"Name {u}", "pro") for u in users
    }
    assert posted_events(fast_simulator) == []  # the lost events stay lost: the markers skip them

    # Step 4: step 3 again, its run with STREAM_DEDUP_WINDOW=0.
    again = zendesk_stream(commands[3], env)
    assert again.returncode == 0, again.stderr[-3000:]
    reposted = run_to_end({**env, "STREAM_DEDUP_WINDOW": "0"})
    assert reposted.returncode == 0, reposted.stderr[-3000:]
    assert posted_events(fast_simulator) == expected


# ------------------------------------------------------------------------------ credential-rotation.md

CREDENTIAL_ROTATION = RUNBOOKS / "credential-rotation.md"


def one_refusal(output: str) -> str:
    """The single line a refused credential leaves for a person; no traceback."""
    assert "Traceback" not in output, output[-3000:]
    lines = fatal_lines(output)
    assert len(lines) == 1, output[-3000:]
    assert lines[0].startswith("zendesk-stream: Zendesk refused our credentials (401)"), lines
    return lines[0]


def recover_with_runbook(env: dict[str, str], simulator: RunningSimulator, users: list[str]) -> None:
    """The runbook's commands with the new credentials in `env`; every event in Zendesk, tracks once."""
    commands = runbook_commands(CREDENTIAL_ROTATION)
    assert commands == [["status"], ["run", "--exit-at-end"], ["status"]]
    waiting = status_json(env)
    assert waiting["lag"] > 0 and waiting["dlq_records"] == 0, waiting
    outputs = run_all(commands, env)
    assert "dead letters" in outputs[0] and "members: 0" in outputs[0], outputs[0]
    after = status_json(env)
    assert after["lag"] == 0 and after["dlq_records"] == 0, after
    found = users_by_external_id(simulator)
    assert {u: found[u]["name"] for u in users} == {u: f"Name {u}" for u in users}
    assert posted_events(simulator) == sorted((u, "Step", n) for u in users for n in (1, 2))


def test_credential_runbook_an_api_token_revoked_before_a_restart(kafka_bootstrap: str) -> None:
    """Zendesk takes only the new API token: a start with the old one exits 2 with one line, consumes
    and dead-letters nothing; with the new one the runbook's commands deliver everything once."""
    users = [f"u{n}" for n in range(4)]
    args = ["--no-rate-limits", "--email", "ops@example.com", "--token", "new-token"]
    with run_simulator(extra_args=args) as simulator:
        topic = unique_topic("api-token")
        create_service_topics(kafka_bootstrap, topic, partitions=2)
        produce(kafka_bootstrap, topic, user_events(users))
        new = service_env(kafka_bootstrap, topic, simulator, {"events": ["*"]})
        assert new["ZENDESK_API_TOKEN"] == "new-token"
        old = {**new, "ZENDESK_API_TOKEN": "old-token"}
        refused = run_to_end(old)
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert "ZENDESK_API_TOKEN" in one_refusal(refused.stderr)
        assert status_json(new)["lag"] == len(users) * 3  # nothing consumed
        recover_with_runbook(new, simulator, users)


def test_credential_runbook_an_oauth_token_revoked_while_the_service_runs(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The running service's bearer token is revoked in Zendesk (simulator OAuth revocation): on the next
    events it exits 2 with one line, dead-letters nothing and leaves them uncommitted; with a new token the
    runbook's commands deliver them, and the earlier tracks stay posted once."""
    first, later = [f"a{n}" for n in range(3)], [f"b{n}" for n in range(3)]
    with run_simulator(extra_args=["--no-rate-limits"], oauth_clients={"svc": "s3cret"}) as simulator:
        topic = unique_topic("oauth-token")
        create_service_topics(kafka_bootstrap, topic, partitions=2)
        base = service_env(kafka_bootstrap, topic, simulator, {"events": ["*"]})

        def bearer(token: str) -> dict[str, str]:
            return {**base, "ZENDESK_EMAIL": "", "ZENDESK_API_TOKEN": "", "ZENDESK_OAUTH_TOKEN": token}

        old = bearer(str(simulator.request_oauth_token("svc")["access_token"]))
        produce(kafka_bootstrap, topic, user_events(first))
        log_path = tmp_path / "service.log"
        service = start_service(old, log_path)
        try:
            expected = sorted((u, "Step", n) for u in first for n in (1, 2))
            wait_for(lambda: posted_events(simulator) == expected, timeout_s=60, what="batch A delivered")
            assert simulator.control.revoke_oauth_tokens(client_id="svc")
            produce(kafka_bootstrap, topic, user_events(later))
            code = service.wait(timeout=60)
        finally:
            if service.poll() is None:
                service.kill()
                service.wait(timeout=30)
        assert code == 2, log_path.read_text()[-3000:]
        one_refusal(log_path.read_text())
        assert status_json(old)["lag"] > 0
        new = bearer(str(simulator.request_oauth_token("svc")["access_token"]))
        recover_with_runbook(new, simulator, first + later)


# ------------------------------------------------------------------------------------------ scaling.md

SCALING = RUNBOOKS / "scaling.md"


def input_partitions(report: dict[str, Any], topic: str) -> list[list[str]]:
    """Per member, the input partitions it holds (its retry and delivered partitions left out)."""
    return sorted(sorted(p for p in m["partitions"] if p.startswith(f"{topic}[")) for m in report["members"])


def sent_by(simulator: RunningSimulator) -> dict[str, int]:
    """Sunshine events per source: each member posts under its own `sourceName`."""
    counts: dict[str, int] = {}
    for event in simulator.control.state()["events"]:
        counts[event["source"]] = counts.get(event["source"], 0) + 1
    return counts


def test_scaling_runbook_two_static_members_one_stopped_mid_run_then_more_partitions(
    kafka_bootstrap: str, fast_simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Two static members share a 2-partition topic (status shows both, one partition each); one gets
    SIGTERM while events flow and exits 0; after the session timeout status shows one member holding both
    partitions, and every Sunshine event is posted once. Then `topics apply --increase-partitions` (the
    test adds `--replication-factor 1` for its one-broker cluster) raises the partitions and a run
    delivers the events of the new partitions."""
    topic = unique_topic("scaling")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    fast_simulator.control.set_options(latency_ms=30)  # work stays in flight while a member stops

    def member_env(name: str) -> dict[str, str]:
        settings = {"events": ["*"], "sourceName": f"member-{name}"}
        return service_env(
            kafka_bootstrap,
            topic,
            fast_simulator,
            settings,
            STREAM_GROUP_INSTANCE_ID=f"zs-{name}",
            KAFKA_SESSION_TIMEOUT_MS="6000",
        )

    commands = runbook_commands(SCALING)
    assert commands == [
        ["status", "--json"],
        ["run"],
        ["status", "--json"],
        ["topics", "apply", "--increase-partitions", "--dry-run"],
        ["topics", "apply", "--increase-partitions"],
        ["run"],
    ]
    env_a, env_b = member_env("a"), member_env("b")
    members = [start_service(env_a, tmp_path / "a.log")]
    try:
        wait_for(
            lambda: input_partitions(status_json(env_a), topic) == [[f"{topic}[0]", f"{topic}[1]"]],
            timeout_s=60,
            what="member a holding both partitions",
            interval_s=0.5,
        )
        assert commands[1] == ["run"]  # scale out: a second member, in the background
        members.append(start_service(env_b, tmp_path / "b.log", *commands[1][1:]))
        wait_for(
            lambda: input_partitions(status_json(env_a), topic) == [[f"{topic}[0]"], [f"{topic}[1]"]],
            timeout_s=60,
            what="two members with one partition each",
            interval_s=0.5,
        )
        first = [f"u{n}" for n in range(30)]
        produce(kafka_bootstrap, topic, user_events(first))
        wait_for(
            lambda: all(sent_by(fast_simulator).get(f"member-{m}", 0) >= 5 for m in "ab"),
            timeout_s=60,
            what="both members posting",
        )
        members[1].send_signal(signal.SIGTERM)  # scale in, while events are in flight
        assert members[1].wait(timeout=60) == 0, (tmp_path / "b.log").read_text()[-3000:]
        later = [f"v{n}" for n in range(10)]
        produce(kafka_bootstrap, topic, user_events(later))
        wait_for(
            lambda: input_partitions(status_json(env_a), topic) == [[f"{topic}[0]", f"{topic}[1]"]],
            timeout_s=60,
            what="member a holding both partitions after the session timeout",
            interval_s=0.5,
        )
        expected = sorted((u, "Step", n) for u in first + later for n in (1, 2))
        wait_for(lambda: posted_events(fast_simulator) == expected, timeout_s=90, what="every event once")
        wait_for(lambda: status_json(env_a)["lag"] == 0, timeout_s=30, what="everything committed")
        members[0].send_signal(signal.SIGTERM)
        assert members[0].wait(timeout=60) == 0, (tmp_path / "a.log").read_text()[-3000:]
    finally:
        for member in members:
            if member.poll() is None:
                member.kill()
                member.wait(timeout=30)
    assert posted_events(fast_simulator) == expected  # nothing more came after the members stopped
    assert "Traceback" not in (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()

    # The runbook: raise the partitions only once `status` lists no member. A static member that rejoins
    # within the session timeout gets its old assignment back, and the new partitions stay unread (seen:
    # the catch-up run below then never ended).
    wait_for(lambda: status_json(env_a)["members"] == [], timeout_s=30, what="no member left", interval_s=0.5)
    fast_simulator.control.set_options(latency_ms=0)
    one_broker = ["--replication-factor", "1"]
    planned = zendesk_stream([*commands[3], *one_broker], env_a)
    assert planned.returncode == 0 and "dry run" in planned.stdout, planned.stdout + planned.stderr
    assert len(status_json(env_a)["partitions"]) == 2
    applied = zendesk_stream([*commands[4], *one_broker], env_a)
    assert applied.returncode == 0 and "applied" in applied.stdout, applied.stdout + applied.stderr
    assert len(status_json(env_a)["partitions"]) == 12
    last = [f"w{n}" for n in range(12)]
    produce(kafka_bootstrap, topic, user_events(last))
    assert commands[5] == ["run"]
    caught_up = run_to_end(env_a, timeout_s=60)  # `run` as a batch: to the end offsets, then exit 0
    assert caught_up.returncode == 0, caught_up.stderr[-3000:]
    assert posted_events(fast_simulator) == sorted(expected + [(u, "Step", n) for u in last for n in (1, 2)])
    assert status_json(env_a)["lag"] == 0


# ---------------------------------------------------------------------------------- order-guarantees.md

ORDER = RUNBOOKS / "order-guarantees.md"


def test_order_runbook_replays_by_key_and_shows_what_a_stale_replay_overwrites(
    kafka_bootstrap: str, fast_simulator: RunningSimulator
) -> None:
    """The identifies of x and y are rejected (dead-lettered); a later identify of x is delivered. The
    runbook's commands (the test puts y for its example key) replay y only: y gets its traits, x keeps its
    newer name, and a track of y produced after the replay waits behind the replayed identify. Replaying
    x as well shows the case the runbook warns about: the older name overwrites the newer one."""
    topic = unique_topic("order")
    create_service_topics(kafka_bootstrap, topic, partitions=2)
    env = service_env(kafka_bootstrap, topic, fast_simulator, {"events": ["*"]})
    fast_simulator.control.inject_fault(path="users/create_or_update", count=2, status=422)
    produce(kafka_bootstrap, topic, [("x", identify("x", name="Old x")), ("y", identify("y", name="Old y"))])
    assert run_to_end(env).returncode == 0
    assert status_json(env)["dlq_reasons"] == {"zendesk_rejected": 2}
    produce(kafka_bootstrap, topic, [("x", identify("x", name="New x"))])
    assert run_to_end(env).returncode == 0
    assert {u: v["name"] for u, v in users_by_external_id(fast_simulator).items()} == {"x": "New x"}

    commands = runbook_commands(ORDER)
    assert commands == [
        ["replay", "--dry-run", "--key", "user-123"],
        ["replay", "--key", "user-123"],
        ["run", "--exit-at-end"],
    ]
    commands = [["y" if arg == "user-123" else arg for arg in command] for command in commands]
    dry = zendesk_stream(commands[0], env)
    assert dry.returncode == 0 and "1 would go to" in dry.stdout, dry.stdout + dry.stderr
    run_all(commands[1:2], env)
    produce(kafka_bootstrap, topic, [("y", track("y", "Step", seq=1))])  # after the replay
    run_all(commands[2:], env)
    found = users_by_external_id(fast_simulator)
    assert {u: v["name"] for u, v in found.items()} == {"x": "New x", "y": "Old y"}
    assert posted_events(fast_simulator) == [("y", "Step", 1)]  # the track waited behind the identify
    assert status_json(env)["dlq_records"] == 2  # nothing failed again

    stale = run_all([["replay", "--key", "x"], ["run", "--exit-at-end"]], env)
    assert "1 went to" in stale[0], stale[0]
    assert users_by_external_id(fast_simulator)["x"]["name"] == "Old x"  # the older identify won
