"""Reliability, rebalance storm (issue 15, scenario 4): consumers killed and added again and again.

Three `zendesk-stream run` processes of one consumer group deliver tracks (each a Sunshine event, which
Zendesk would store twice) from a topic of 6 partitions while, at every step, one member is SIGKILLed or
one is added, chosen at random (seeded), keeping 1 to 4 members alive. Membership is static, as in the
deployment (a StatefulSet's stable pod names): a pool of slots, each with its own
`STREAM_GROUP_INSTANCE_ID`; an added member is a slot not running, a killed one restarting under its id or
a fresh one. A static member killed and not restarted keeps its partitions until the session timeout
(45 s), which delays their events but must not lose them. After the storm the killed slots come back (as
the StatefulSet restarts its pods), the producer stops and the group delivers the rest.

Checked against the input: lost 0, per-key order violations 0, tracks posted twice 0, and no event
processed by two members at once: no two processes own a partition at the same time (each process's own
assignment/revocation log lines) and every event a process sent, Zendesk received while it owned the
event's partition (tests/support/engine.py `ownership_problems`).

Every process has the same `sourceName`, as the replicas of a deployment do: the check for an attempt cut
off by a crash (`Processor.was_delivered`) looks for the event under the member's own sourceName, so a
sourceName per process (as tests/support/members.py gives) would not find what a killed process had sent,
and would post it again. The simulator's request log names the sender another way: each process
authenticates as its own OAuth client (`auth: oauth:<process>`).

The short variant (a step every 5 s for 30 s) runs in the default suite; the full one (`-m slow`: a step
every 10 s for two minutes) gives the figures for ops/benchmarks/RELIABILITY.md.
"""

from __future__ import annotations

import json
import random
import signal
import statistics
import time
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pytest

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.reliability.report import Figures, record
from tests.support.engine import (
    EVENTS_PATH,
    BackgroundProducer,
    Effect,
    EffectLog,
    Ownership,
    create_side_topics,
    missing,
    order_violations,
    ownership_problems,
    read_log,
    seed_users,
    settings_for,
    user_keys,
)
from tests.support.kafka import create_topics, unique_topic
from tests.support.members import Member
from tests.support.service import log_events, service_env, start_service
from tests.support.waiting import wait_for

pytestmark = pytest.mark.kafka

PARTITIONS = 6
SLOTS = 5  # the pool of static member ids; at most 4 run during the storm, so one is always free
FIRST = 3
LEAST, MOST = 1, 4
SESSION_TIMEOUT_S = 45.0  # the service's default (stream/kafka/consumer.py)
# A SIGKILLed process's requests already sent are still applied by Zendesk (the simulator stamps them
# after its latency): its work on its partitions ends then, not at the kill. Its ownership windows
# are held open this long after the kill, and the overlap check makes sure nobody else owned those
# partitions meanwhile (the slot's next process starts seconds later, other members 45 s later).
IN_FLIGHT_S = 1.0
# Zendesk answers in 30-70 ms: about one request per partition is out at any moment, so a rebalance
# that handed a partition over before its work had finished would show (an event stamped after its
# sender's revocation).
SIMULATOR_ARGS = ["--no-rate-limits", "--latency-ms", "30", "--jitter-ms", "40"]
SOURCE = "zendesk-stream"  # every member's sourceName
OAUTH_SECRET = "storm-s3cret"


@dataclass(frozen=True)
class Step:
    kind: str  # "kill" or "join"
    slot: str
    process: str  # the member's name, one per process (`stream-2-run3`): its OAuth client
    at: float  # wall clock, as the simulator and the service logs stamp


@dataclass
class Slot:
    """A stable member id (a StatefulSet pod); each of its processes has a name of its own."""

    instance_id: str
    runs: int = 0
    member: Member | None = None

    @property
    def running(self) -> bool:
        return self.member is not None and self.member.exited_at is None


@dataclass(frozen=True)
class RebalanceStorm:
    events: int
    step_s: float
    storm_s: float
    kills: int
    joins: int
    restarted_after: int  # killed slots brought back after the storm
    left_to_session_timeout: int  # kills whose slot did not come back within the session timeout
    processes: int
    members_most: int
    members_least: int
    lost: int
    order_violations: list[str]
    posted_twice: list[str]  # tracks Zendesk stored more than once: each with its copies' senders
    ownership_problems: list[str]
    windows_checked: int
    cut_off_checked: int  # interrupted deliveries found in Zendesk by the next owner, not sent again
    kill_recovery_s: list[float]  # per kill: until every partition the process owned delivered again
    join_first_delivery_s: list[float]  # per join of the storm: from its start to its first event
    joins_killed_before_delivering: int
    sent_by: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    def recovery(self) -> str:
        kills = self.kill_recovery_s
        joins = self.join_first_delivery_s
        return (
            f"a killed member's partitions delivering again after {max(kills, default=0):.1f} s (worst; "
            f"median {statistics.median(kills) if kills else 0:.1f} s, "
            f"{_count(self.left_to_session_timeout, 'kill')} left to the {SESSION_TIMEOUT_S:.0f} s session "
            f"timeout); a joined member's first "
            f"delivery after {max(joins, default=0):.1f} s (worst; median "
            f"{statistics.median(joins) if joins else 0:.1f} s)"
        )

    def faults(self) -> str:
        return (
            f"{self.kills} SIGKILLs and {self.joins} joins over {self.storm_s:.0f} s (a step every "
            f"{self.step_s:g} s, static membership), from {FIRST} members; then "
            f"{_count(self.restarted_after, 'killed slot')} restarted"
        )

    def details(self) -> str:
        return (
            f"{self.members_least} to {self.members_most} members alive; {self.processes} processes; "
            f"{self.windows_checked} ownership windows checked, {len(self.ownership_problems)} problems; "
            f"{self.cut_off_checked} cut-off attempts found in Zendesk and not sent again; "
            f"{_count(self.joins_killed_before_delivering, 'joined member')} killed before delivering"
        )

    def line(self) -> str:
        return (
            f"events {self.events:,}, {self.faults()}; lost {self.lost}, order violations "
            f"{len(self.order_violations)}, tracks posted twice {len(self.posted_twice)}, ownership problems "
            f"{len(self.ownership_problems)}; {self.recovery()}; {self.details()}; wall {self.wall_s:.0f} s"
        )


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing}s"


def _joined(member: Member) -> None:
    """Until the member's first assignment (its share may be empty): it runs and is in the group."""
    wait_for(
        lambda: any(line.get("event") == "partitions assigned" for line in read_log(member.log_path)),
        timeout_s=120,
        what=f"{member.name} in the group",
    )


def _kill(member: Member) -> float:
    """SIGKILL: no revocation, no commit, no leaving the group. Returns when it was sent."""
    at = time.time()
    member.process.kill()
    code = member.process.wait(timeout=30)
    assert code == -signal.SIGKILL, f"{member.name} had exited by itself ({code}): {member.log_tail()}"
    member.exited_at = at + IN_FLIGHT_S
    return at


def _kill_recovery(
    steps: list[Step], windows: list[Ownership], effects: list[Effect], partition_of: dict[str, int]
) -> list[float]:
    """Per kill of a process that owned partitions: the time until each of them had an event in Zendesk
    sent by another process (the slot's next one, or the member that took it over), the worst of them. A
    partition with nothing delivered after the kill (nothing was left to deliver) does not count."""
    by_partition: dict[int, list[Effect]] = defaultdict(list)
    for effect in sorted(effects, key=lambda e: e.at):
        by_partition[partition_of[effect.key]].append(effect)
    stamps = {p: [e.at for e in found] for p, found in by_partition.items()}
    recovery = []
    for step in (s for s in steps if s.kind == "kill"):
        owned = {w.partition for w in windows if w.member == step.process and w.start <= step.at < w.end}
        waits = []
        for partition in owned:
            later = by_partition[partition][bisect_right(stamps[partition], step.at) :]
            first = next((e.at for e in later if e.source != step.process), None)
            if first is not None:
                waits.append(first - step.at)
        if waits:
            recovery.append(max(waits))
    return recovery


def _left_to_session_timeout(steps: list[Step], ended_at: float) -> int:
    """Kills whose slot did not start again within the session timeout (the group reassigned them)."""
    count = 0
    for index, step in enumerate(steps):
        if step.kind != "kill":
            continue
        back = next((s.at for s in steps[index + 1 :] if s.kind == "join" and s.slot == step.slot), ended_at)
        count += back - step.at > SESSION_TIMEOUT_S
    return count


def _senders(simulator: RunningSimulator) -> dict[int, str]:
    """Request log position → the process that sent it (the OAuth client it authenticated as)."""
    entries = simulator.control.requests(method="POST", path=EVENTS_PATH)
    return {int(e["seq"]): str(e.get("auth")).removeprefix("oauth:") for e in entries}


def _posted_twice(effects: list[Effect]) -> list[str]:
    copies: dict[tuple[str, int], list[Effect]] = defaultdict(list)
    for effect in effects:
        copies[(effect.key, effect.seq)].append(effect)
    return [
        f"{key} seq {seq}: " + ", ".join(f"{e.source} at {e.at:.3f}" for e in found)
        for (key, seq), found in copies.items()
        if len(found) > 1
    ]


def rebalance_storm(
    bootstrap: str,
    work: Path,
    *,
    steps: int,
    step_s: float,
    per_second: int,
    keys: int,
    seed: int,
) -> RebalanceStorm:
    started = time.monotonic()
    rng = random.Random(seed)
    topic = unique_topic("rebalance-storm")
    create_topics(bootstrap, [topic], partitions=PARTITIONS)
    create_side_topics(bootstrap, topic, partitions=PARTITIONS)
    slots = [Slot(f"stream-{n}") for n in range(SLOTS)]
    members: list[Member] = []
    done: list[Step] = []
    with run_simulator(extra_args=SIMULATOR_ARGS) as simulator:
        names = user_keys(keys)
        seed_users(simulator, names)
        log = EffectLog(simulator)
        producer = BackgroundProducer(bootstrap, topic, names, per_second=per_second, seed=seed)

        def start(slot: Slot) -> Step:
            slot.runs += 1
            name = f"{slot.instance_id}-run{slot.runs}"
            simulator.control.add_oauth_client(name, OAUTH_SECRET)
            env = service_env(
                bootstrap,
                topic,
                simulator,
                settings_for(SOURCE),
                ZENDESK_EMAIL="",
                ZENDESK_API_TOKEN="",
                ZENDESK_OAUTH_CLIENT_ID=name,
                ZENDESK_OAUTH_CLIENT_SECRET=OAUTH_SECRET,
                STREAM_GROUP_INSTANCE_ID=slot.instance_id,
                # Info: the ownership lines are there; debug's per-record outcome lines would cost CPU.
                STREAM_LOG_LEVEL="info",
            )
            at = time.time()
            log_path = work / f"{name}.log"
            slot.member = Member(name, start_service(env, log_path), log_path)
            members.append(slot.member)
            return Step("join", slot.instance_id, name, at)

        def alive() -> list[Slot]:
            running = [s for s in slots if s.running]
            for slot in running:
                assert slot.member is not None
                code = slot.member.process.poll()
                assert code is None, f"{slot.member.name} exited by itself ({code}): {slot.member.log_tail()}"
            return running

        try:
            first = [start(slot) for slot in slots[:FIRST]]
            producer.start()
            for member in list(members):
                _joined(member)
            wait_for(lambda: log.distinct() >= 100, timeout_s=120, what="the first members delivering")
            counts = [len(alive())]
            storm_started = time.monotonic()
            for step in range(1, steps + 1):
                # Pacing, not waiting for a condition: one step every `step_s` seconds, events flowing.
                time.sleep(max(0.0, storm_started + step * step_s - time.monotonic()))
                running = alive()
                kill = len(running) >= MOST or (len(running) > LEAST and rng.random() < 0.5)
                if kill:
                    victim = rng.choice(running)
                    assert victim.member is not None
                    done.append(Step("kill", victim.instance_id, victim.member.name, _kill(victim.member)))
                else:
                    done.append(start(rng.choice([s for s in slots if not s.running])))
                counts.append(len(alive()))
            storm_s = time.monotonic() - storm_started
            # The StatefulSet restarts the pods that died: each slot rejoins under its id and takes its
            # partitions back at once, instead of leaving them to the session timeout.
            killed = {s.slot for s in done if s.kind == "kill"}
            restarted = [start(s) for s in slots if s.instance_id in killed and not s.running]
            sequencer = producer.stop()
            for member in [s.member for s in alive() if s.member is not None]:
                _joined(member)  # then its SIGTERM finds it running, not starting up
            wait_for(
                lambda: log.distinct() >= sequencer.total,
                timeout_s=180,  # a static member's session timeout (45 s) and a rebalance, with room
                what=f"every produced event ({sequencer.total}) in Zendesk",
                interval_s=0.2,
            )
            ended_at = time.time()
            for slot in slots:
                if slot.running:
                    assert slot.member is not None
                    assert slot.member.leave() == 0, slot.member.log_tail()
        finally:
            producer.stop_quietly()
            for member in members:
                member.kill()
        sender = _senders(simulator)
        effects = [replace(e, source=sender[e.log_seq]) for e in log.refresh()]
    windows = [w for m in members for w in m.windows()]
    partition_of = dict(producer.partition_of)
    # Left in the test's directory with the members' logs, for the analysis of a failed run.
    (work / "effects.jsonl").write_text("".join(f"{json.dumps(asdict(e))}\n" for e in effects))
    (work / "steps.jsonl").write_text(
        "".join(f"{json.dumps(asdict(s))}\n" for s in [*first, *done, *restarted])
    )
    (work / "partition_of.json").write_text(json.dumps(partition_of))
    first_delivery: dict[str, float] = {}
    for effect in effects:
        first_delivery[effect.source] = min(effect.at, first_delivery.get(effect.source, effect.at))
    assert set(first_delivery) <= {m.name for m in members}, set(first_delivery)
    joins = [s for s in done if s.kind == "join"]
    checked = sum(
        1
        for member in members
        for line in log_events(member.log_path.read_text(errors="replace"))
        if line.get("event") == "checked an interrupted delivery in Zendesk" and line.get("found")
    )
    return RebalanceStorm(
        events=sequencer.total,
        step_s=step_s,
        storm_s=storm_s,
        kills=sum(1 for s in done if s.kind == "kill"),
        joins=len(joins),
        restarted_after=len(restarted),
        left_to_session_timeout=_left_to_session_timeout([*first, *done, *restarted], ended_at),
        processes=len(members),
        members_most=max(counts),
        members_least=min(counts),
        lost=len(missing(effects, sequencer.counts)),
        order_violations=order_violations(effects),
        posted_twice=_posted_twice(effects),
        ownership_problems=ownership_problems(windows, effects, partition_of),
        windows_checked=len(windows),
        cut_off_checked=checked,
        kill_recovery_s=_kill_recovery(done, windows, effects, partition_of),
        join_first_delivery_s=[
            first_delivery[s.process] - s.at for s in joins if s.process in first_delivery
        ],
        joins_killed_before_delivering=sum(1 for s in joins if s.process not in first_delivery),
        sent_by=dict(Counter(e.source for e in effects)),
        wall_s=time.monotonic() - started,
    )


def _assert_reliable(result: RebalanceStorm, variant: str) -> None:
    print(f"\n[rebalance storm] {result.line()}")
    record(
        "rebalance-storm",
        variant,
        Figures(
            events=result.events,
            faults=result.faults(),
            wall_s=result.wall_s,
            lost=result.lost,
            duplicates=len(result.posted_twice),
            order_violations=len(result.order_violations),
            recovery=result.recovery(),
            details=result.details(),
        ),
        **{
            **asdict(result),
            "order_violations": result.order_violations[:20],
            "posted_twice": result.posted_twice[:20],
            "ownership_problems": result.ownership_problems[:20],
        },
    )
    assert result.kills > 0 and result.joins > 0, "the storm killed or added nobody"
    assert result.lost == 0, "events never reached Zendesk"
    assert result.order_violations == [], "\n".join(result.order_violations[:10])
    assert result.ownership_problems == [], "\n".join(result.ownership_problems[:10])
    assert result.posted_twice == [], "\n".join(result.posted_twice[:10])


@pytest.mark.timeout(600)  # beyond the deadlines of the scenario's own waits, which say what was late
def test_a_short_rebalance_storm_loses_nothing_keeps_order_and_never_shares_a_partition(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _assert_reliable(
        rebalance_storm(kafka_bootstrap, tmp_path, steps=6, step_s=5, per_second=150, keys=300, seed=20),
        "short",
    )


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_full_rebalance_storm_of_two_minutes_with_a_step_every_10_s(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    _assert_reliable(
        rebalance_storm(kafka_bootstrap, tmp_path, steps=12, step_s=10, per_second=200, keys=1_000, seed=42),
        "full",
    )
