"""Black-box checks of the engine: workloads whose order Zendesk can see, and readers of what it saw.

Every test event is a track event named `seq-N` (N counts up per key from 0) for a user seeded in the
simulator with the key as external_id. The destination sends it as one Sunshine event whose `type` is the
name, and the simulator's request log records `{"kind": "event", "type": "seq-N", "source": ...}` with the
user's key, in the order the requests were applied. So the log alone tells, per key, which events reached
Zendesk and in which order. Each consumer process gets its own `sourceName` setting, so the log also tells
which member sent each event.

The request log stamps an entry when the simulator handles the request, after its configured latency.
A request stamped at `at` was therefore inside the simulator for all of `[at - latency_ms, at]`: requests
stamped within `latency_ms` of each other were in flight at the same instant.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Message, Producer

from stream.simulator.testing import RunningSimulator
from tests.support.kafka import create_topics, delivered_topic_of, dlq_topic_of, retry_topic_of
from tests.support.segment import track
from tests.support.service import status_kib

EVENTS_PATH = r"user_profiles/events"
SEQ_PREFIX = "seq-"


# ------------------------------------------------------------------------------------------- workload


def user_keys(count: int, *, prefix: str = "user") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


def seed_users(simulator: RunningSimulator, keys: Sequence[str]) -> None:
    """Users with the keys as external_ids, so every track event finds its user."""
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        simulator.control.seed(users=[{"name": f"User {k}", "external_id": k} for k in chunk])


def settings_for(member: str) -> dict[str, Any]:
    """Destination settings: every track event is sent, with the member's name as the event source."""
    return {"events": ["*"], "sourceName": member}


@dataclass
class Sequencer:
    """Per-key counters: the next event of a key carries the next sequence number."""

    counts: dict[str, int] = field(default_factory=dict)

    def event(self, key: str) -> tuple[str, bytes]:
        seq = self.counts.get(key, 0)
        self.counts[key] = seq + 1
        return key, json.dumps(track(key, f"{SEQ_PREFIX}{seq}", seq=seq)).encode()

    def events(self, keys: Sequence[str], count: int, *, rng: random.Random) -> list[tuple[str, bytes]]:
        """`count` events, each for a key drawn at random (so keys interleave within partitions)."""
        return [self.event(rng.choice(keys)) for _ in range(count)]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Produced:
    """Where each record landed: (partition, offset) in production order."""

    positions: list[tuple[int, int]]
    partition_of: dict[str, int]


class OrderedProducer:
    """An idempotent producer (no reordering on retries) that waits for every delivery report."""

    def __init__(self, bootstrap: str) -> None:
        self._producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
        )

    def send(
        self, topic: str, records: Sequence[tuple[str | None, bytes]], *, partition: int | None = None
    ) -> Produced:
        positions: list[tuple[int, int] | None] = [None] * len(records)
        errors: list[str] = []

        def report(index: int) -> Any:
            def delivered(err: Any, msg: Message) -> None:
                if err is not None:
                    errors.append(str(err))
                else:
                    positions[index] = (msg.partition() or 0, msg.offset() or 0)

            return delivered

        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        for index, (key, value) in enumerate(records):
            while True:
                try:
                    self._producer.produce(topic, key=key, value=value, on_delivery=report(index), **extra)
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self._producer.poll(0)
        left = self._producer.flush(120)
        assert left == 0 and not errors, f"produce failed: {left} unflushed, errors {errors[:3]}"
        done = [p for p in positions if p is not None]
        assert len(done) == len(records)
        keyed = zip(records, done, strict=True)
        return Produced(positions=done, partition_of={k: pos[0] for (k, _), pos in keyed if k is not None})


def produce_in_order(
    bootstrap: str, topic: str, records: Sequence[tuple[str | None, bytes]], *, partition: int | None = None
) -> Produced:
    return OrderedProducer(bootstrap).send(topic, records, partition=partition)


class BackgroundProducer:
    """Produces the sequenced workload at a steady pace in a thread until stopped (runs under churn)."""

    def __init__(
        self, bootstrap: str, topic: str, keys: Sequence[str], *, per_second: int, seed: int = 7
    ) -> None:
        self._bootstrap, self._topic, self._keys = bootstrap, topic, keys
        self._per_tick = max(1, per_second // 10)
        self.sequencer = Sequencer()
        self.partition_of: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="test-producer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Sequencer:
        self._stop.set()
        self._thread.join(timeout=180)
        assert not self._thread.is_alive(), "the test producer did not stop"
        if self._failure is not None:
            raise AssertionError(f"the test producer failed: {self._failure}")
        return self.sequencer

    def stop_quietly(self) -> None:
        self._stop.set()
        self._thread.join(timeout=180)

    def _main(self) -> None:
        try:
            producer = OrderedProducer(self._bootstrap)
            while not self._stop.is_set():
                tick = time.monotonic()
                batch = self.sequencer.events(self._keys, self._per_tick, rng=self._rng)
                produced = producer.send(self._topic, batch)
                self.partition_of.update(produced.partition_of)
                # Pacing, not waiting for a condition: one batch per tenth of a second.
                self._stop.wait(max(0.0, 0.1 - (time.monotonic() - tick)))
        except BaseException as err:
            self._failure = err


# ------------------------------------------------------------------------------ what Zendesk saw


@dataclass(frozen=True)
class Effect:
    """One Sunshine event Zendesk accepted: its log position, time, key, sequence number and sender."""

    log_seq: int
    at: float
    key: str
    seq: int
    source: str


def _effects_of(entries: Iterable[Mapping[str, Any]]) -> list[Effect]:
    found = []
    for entry in entries:
        change = entry.get("change") or {}
        kind, name = change.get("kind"), str(change.get("type", ""))
        if entry.get("status") != 202 or kind != "event" or not name.startswith(SEQ_PREFIX):
            continue
        found.append(
            Effect(
                log_seq=int(entry["seq"]),
                at=float(entry["at"]),
                key=str(entry["user_key"]),
                seq=int(name.removeprefix(SEQ_PREFIX)),
                source=str(change.get("source")),
            )
        )
    return found


class EffectLog:
    """Reads the simulator's request log incrementally (`since=`), keeping the accepted events."""

    def __init__(self, simulator: RunningSimulator) -> None:
        self._simulator = simulator
        self._since = 0
        self.effects: list[Effect] = []

    def refresh(self) -> list[Effect]:
        entries = self._simulator.control.requests(since=self._since, method="POST", path=EVENTS_PATH)
        if entries:
            self._since = max(int(e["seq"]) for e in entries)
        self.effects.extend(_effects_of(entries))
        return self.effects

    def distinct(self) -> int:
        return len({(e.key, e.seq) for e in self.refresh()})


def sequences_by_key(effects: Iterable[Effect]) -> dict[str, list[int]]:
    by_key: dict[str, list[int]] = defaultdict(list)
    for effect in sorted(effects, key=lambda e: e.log_seq):
        by_key[effect.key].append(effect.seq)
    return dict(by_key)


def order_violations(effects: Iterable[Effect]) -> list[str]:
    """Per key, in the order Zendesk applied them, each event must be the successor of the previous one,
    or go back to an earlier one (a redelivery after a restart or a rebalance replays from a committed
    point). Going forward by more than one means an event reached Zendesk before its predecessor did
    — on its first delivery or within a replay — and that is an order violation."""
    problems = []
    for key, seqs in sequences_by_key(effects).items():
        previous = -1
        for index, seq in enumerate(seqs):
            if seq > previous + 1:
                recent = seqs[max(0, index - 7) : index + 1]
                problems.append(f"{key}: seq {seq} after {previous} (position {index}, recent {recent})")
            previous = seq
    return problems


def missing(effects: Iterable[Effect], expected: Mapping[str, int]) -> list[tuple[str, int]]:
    """(key, seq) pairs that never reached Zendesk; `expected` is the number of events per key."""
    seen = {(e.key, e.seq) for e in effects}
    return [(key, seq) for key, count in expected.items() for seq in range(count) if (key, seq) not in seen]


def repeats(effects: Sequence[Effect]) -> int:
    """Events Zendesk received more than once, counted once per extra copy."""
    return len(effects) - len({(e.key, e.seq) for e in effects})


def peak_keys_in_flight(effects: Sequence[Effect], *, min_latency_s: float) -> int:
    """The largest number of distinct keys with a request inside the simulator at one instant: requests
    stamped within `min_latency_s` of each other all overlapped (see the module docstring)."""
    ordered = sorted(effects, key=lambda e: e.at)
    window: Counter[str] = Counter()
    best, left = 0, 0
    for effect in ordered:
        window[effect.key] += 1
        while effect.at - ordered[left].at > min_latency_s:
            gone = ordered[left].key
            window[gone] -= 1
            if not window[gone]:
                del window[gone]
            left += 1
        best = max(best, len(window))
    return best


# --------------------------------------------------------------------------------- service logs


def read_log(path: Path) -> list[dict[str, Any]]:
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def engine_summary(lines: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    stopped = [line for line in lines if line.get("event") == "engine stopped"]
    assert stopped, "the service logged no 'engine stopped' summary"
    return stopped[-1]


def _stamp(line: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def _partition_numbers(names: Iterable[str]) -> list[int]:
    numbers = []
    for name in names:
        match = re.fullmatch(r".*\[(\d+)\]", name)
        assert match, f"unexpected partition name {name!r}"
        numbers.append(int(match.group(1)))
    return numbers


@dataclass(frozen=True)
class Ownership:
    member: str
    partition: int
    start: float
    end: float


def ownership(member: str, lines: Sequence[Mapping[str, Any]], *, exited_at: float) -> list[Ownership]:
    """When the member owned which partition, from its own log: from 'partitions assigned' (logged before
    any of their records can start) to 'partitions revoked'/'partitions lost' (logged after their work
    finished or was abandoned), or to the process's exit."""
    open_since: dict[int, float] = {}
    windows = []
    for line in lines:
        event = line.get("event")
        if event == "partitions assigned":
            for p in _partition_numbers(line.get("partitions", [])):
                open_since.setdefault(p, _stamp(line))
        elif event in {"partitions revoked", "partitions lost"}:
            for p in _partition_numbers(line.get("partitions", [])):
                if p in open_since:
                    windows.append(Ownership(member, p, open_since.pop(p), _stamp(line)))
    windows.extend(Ownership(member, p, since, exited_at) for p, since in open_since.items())
    return windows


def ownership_problems(
    windows: Sequence[Ownership], effects: Sequence[Effect], partition_of: Mapping[str, int]
) -> list[str]:
    """Two members never own a partition at once, and every event a member sent was sent while it owned
    the event's partition: so no event was processed by two members at the same time."""
    problems = []
    by_partition: dict[int, list[Ownership]] = defaultdict(list)
    for window in windows:
        by_partition[window.partition].append(window)
    for partition, owned in by_partition.items():
        owned.sort(key=lambda w: w.start)
        latest: Ownership | None = None  # the window that reaches furthest so far
        for window in owned:
            if latest is not None and window.start < latest.end and window.member != latest.member:
                problems.append(
                    f"partition {partition}: {window.member} assigned at {window.start:.3f} while "
                    f"{latest.member} owned it until {latest.end:.3f}"
                )
            if latest is None or window.end > latest.end:
                latest = window
    for effect in effects:
        partition = partition_of[effect.key]
        if not any(
            w.member == effect.source and w.start <= effect.at <= w.end for w in by_partition[partition]
        ):
            problems.append(
                f"{effect.source} sent {effect.key} seq {effect.seq} at {effect.at:.3f} "
                f"without owning partition {partition}"
            )
    return problems


# ------------------------------------------------------------------------------------------ memory


class RssSampler:
    """Samples a process's resident memory in a thread until it exits or `stop()` is called."""

    def __init__(self, pid: int, *, interval_s: float = 0.1) -> None:
        self._pid, self._interval = pid, interval_s
        self.samples: list[tuple[float, int]] = []  # (monotonic seconds, KiB)
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="rss-sampler", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        while not self._stop.is_set():
            now, hwm = status_kib(self._pid), status_kib(self._pid, "VmHWM")
            if now is None:
                return
            self.samples.append((time.monotonic(), now))
            self.peak_kib = max(self.peak_kib, hwm or now)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def create_side_topics(bootstrap: str, topic: str, *, partitions: int) -> None:
    """The dead-letter topic, and the retry and delivered topics with the input's partition count (the
    engine reads retry partition N and delivered partition N with input partition N)."""
    create_topics(bootstrap, [dlq_topic_of(topic)])
    create_topics(bootstrap, [retry_topic_of(topic), delivered_topic_of(topic)], partitions=partitions)
