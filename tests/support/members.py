"""Several `zendesk-stream run` processes in one consumer group, joining and leaving while events flow.

Each member is a real process with its own `sourceName` (so the simulator's request log names the sender
of every event) and its own log file (so its partition ownership can be read back). See
tests/support/engine.py for the checks.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient

from stream.simulator.testing import RunningSimulator
from tests.support.engine import (
    BackgroundProducer,
    Effect,
    EffectLog,
    Ownership,
    missing,
    ownership,
    read_log,
    settings_for,
)
from tests.support.kafka import group_of
from tests.support.service import service_env, start_service
from tests.support.waiting import wait_for


@dataclass
class Member:
    name: str
    process: subprocess.Popen[str]
    log_path: Path
    exited_at: float | None = None
    leave_s: float | None = None  # SIGTERM to exit

    def leave(self, *, timeout_s: float = 90) -> int:
        """SIGTERM: the graceful way out (finish in-flight work, commit, leave the group)."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout_s)
        self.leave_s = time.monotonic() - started
        self.exited_at = time.time()
        return code

    def shutdown_problems(self) -> list[str]:
        """Log lines showing that leaving the group went wrong (a failed close, an uncaught exception)."""
        text = self.log_path.read_text(errors="replace")
        return [
            line[:300]
            for line in text.splitlines()
            if "closing the consumer failed" in line or line.startswith(("Traceback", "Exception in thread"))
        ]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)
        if self.exited_at is None:
            self.exited_at = time.time()

    def windows(self) -> list[Ownership]:
        return ownership(self.name, read_log(self.log_path), exited_at=self.exited_at or time.time())

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@dataclass
class Group:
    """Members of one consumer group, all reading `topic` and writing to one simulator."""

    bootstrap: str
    topic: str
    simulator: RunningSimulator
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)

    @property
    def group_id(self) -> str:
        return group_of(self.topic)

    def join(self, name: str) -> Member:
        env = service_env(self.bootstrap, self.topic, self.simulator, settings_for(name), **self.extra_env)
        log_path = self.log_dir / f"{name}.log"
        member = Member(name, start_service(env, log_path), log_path)
        self.members.append(member)
        return member

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    def kill_all(self) -> None:
        for member in self.members:
            member.kill()

    def windows(self) -> list[Ownership]:
        return [w for m in self.members for w in m.windows()]


@dataclass(frozen=True)
class ChurnResult:
    effects: list[Effect]
    expected: dict[str, int]
    partition_of: dict[str, int]
    windows: list[Ownership]
    sent_by: Counter[str]
    group_type: str | None
    leave_s: dict[str, float]
    shutdown_problems: dict[str, list[str]]


def group_type(bootstrap: str, group_id: str) -> str:
    """The protocol the broker runs the group with: 'CLASSIC' or 'CONSUMER' (KIP-848)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group_id])[group_id].result(timeout=30)
    return str(description.type.name)


def run_with_churn(
    group: Group,
    *,
    keys: Sequence[str],
    per_second: int,
    steps: Sequence[str],
    first: str = "a",
    progress: int = 30,
    timeout_s: float = 120,
) -> ChurnResult:
    """`first` consumes alone while a producer starts; then each step runs in turn, events flowing all
    along: `+x` starts member x and waits until it has sent `progress` events to Zendesk (it got
    partitions and worked on them); `-x` sends it SIGTERM, expects exit 0, and waits until the group sent
    `progress` more events. Then the producer stops, the group finishes everything, and every member
    leaves. Returns what Zendesk saw and who owned what."""
    log = EffectLog(group.simulator)
    producer = BackgroundProducer(group.bootstrap, group.topic, keys, per_second=per_second)
    kind: str | None = None
    try:
        group.join(first)
        producer.start()

        def delivering(name: str) -> Callable[[], bool]:
            return lambda: sum(1 for e in log.refresh() if e.source == name) >= progress

        def grown_from(count: int) -> Callable[[], bool]:
            return lambda: len(log.refresh()) >= count + progress

        wait_for(delivering(first), timeout_s=timeout_s, what=f"{first} delivering")
        for step in steps:
            name = step[1:]
            if step.startswith("+"):
                group.join(name)
                wait_for(delivering(name), timeout_s=timeout_s, what=f"{name} delivering after it joined")
            else:
                member = group.member(name)
                assert member.leave() == 0, member.log_tail()
                wait_for(
                    grown_from(len(log.refresh())),
                    timeout_s=timeout_s,
                    what=f"the group delivering after {name} left",
                )
        kind = group_type(group.bootstrap, group.group_id)
        sequencer = producer.stop()
        wait_for(
            lambda: not missing(log.refresh(), sequencer.counts),
            timeout_s=timeout_s,
            what="every produced event in Zendesk",
            interval_s=0.2,
        )
        for member in group.members:
            if member.exited_at is None:
                assert member.leave() == 0, member.log_tail()
    finally:
        producer.stop_quietly()
        group.kill_all()
    effects = list(log.refresh())
    return ChurnResult(
        effects=effects,
        expected=dict(producer.sequencer.counts),
        partition_of=dict(producer.partition_of),
        windows=group.windows(),
        sent_by=Counter(e.source for e in effects),
        group_type=kind,
        leave_s={m.name: m.leave_s for m in group.members if m.leave_s is not None},
        shutdown_problems={m.name: m.shutdown_problems() for m in group.members},
    )
