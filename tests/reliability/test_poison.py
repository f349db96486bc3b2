"""Scenario 5, poison: 2% malformed records and 1% that Zendesk rejects, mixed into good events.

Every record ends as exactly one of delivered, skipped or dead-lettered, with the outcome its kind calls
for (docs/semantics.md, docs/contracts.md §3-4); the run exits 0 without a traceback; every good event
reaches Zendesk once, in order per key. The full variant also compares the good events' throughput with
a clean run of the same size on the same machine, in the same test: within 10%.

What "the right reason" is, per kind of poison (decided from the docs and checked with `explain`):

| kind | outcome |
|---|---|
| invalid JSON | DLQ `invalid_payload` (invalid) |
| not UTF-8 | DLQ `invalid_payload` (invalid) |
| wrong types (`type` a number, `userId` a boolean, `traits` a list) | DLQ `invalid_payload` (invalid) |
| 1 MB of traits | delivered: the 1 MB trait dropped (`value_too_large`, §4), the rest of the user written |
| unknown type | skipped `unsupported_type` (§2: never dead-lettered) |
| a 2 MB record, too large for the DLQ | DLQ `record_too_large` (invalid), without its value |
| Zendesk's 422 (a group of an unknown organization, no traits: §6.5) | DLQ `zendesk_rejected` (rejected) |

The accounting helper (`account`) is shared with the fuzzing scenario (test_fuzz.py).
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.reliability.report import Figures, record
from tests.support.engine import EffectLog, Sequencer, seed_users, sequences_by_key, settings_for, user_keys
from tests.support.kafka import (
    delivered_topic_of,
    dlq_topic_of,
    headers_of,
    retry_topic_of,
    unique_topic,
)
from tests.support.segment import group, identify
from tests.support.service import log_events, service_env, start_service

pytestmark = pytest.mark.kafka

MB = 1024 * 1024
TOPIC_MAX_BYTES = 5_000_000  # the input takes 2 MB records; retry and DLQ keep the broker's ~1 MB default
TERMINAL = ("delivered", "skipped", "dead_lettered")
TO_RETRY_PATH = ("sent_to_retry", "parked_behind")
Position = tuple[int, int]


# ------------------------------------------------------------------------------------ accounting


@dataclass
class Ledger:
    """Where every input record ended: one terminal outcome per (partition, offset)."""

    outcomes: dict[Position, tuple[str, str]]  # (outcome, reason; "" for delivered)
    dead: dict[Position, Message]  # the DLQ copy of each dead-lettered input record
    via_retry: set[Position] = field(default_factory=set)  # input records that went through the retry path
    spans: dict[str, float] = field(default_factory=dict)
    durations_ms: dict[Position, float] = field(default_factory=dict)  # read to terminal outcome, per record

    def counts(self) -> Counter[str]:
        return Counter(f"{o}/{r}" if r else o for o, r in self.outcomes.values())


def create_input_topics(bootstrap: str, topic: str, *, partitions: int) -> None:
    """The input (taking records up to 5 MB), its retry and delivered topics, and its DLQ (default size)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [
        NewTopic(topic, partitions, 1, config={"max.message.bytes": str(TOPIC_MAX_BYTES)}),
        NewTopic(retry_topic_of(topic), partitions, 1),
        NewTopic(delivered_topic_of(topic), partitions, 1),
        NewTopic(dlq_topic_of(topic), 1, 1),
    ]
    for future in admin.create_topics(topics, operation_timeout=30).values():
        future.result(timeout=60)


def produce_all(
    bootstrap: str, topic: str, records: Sequence[tuple[str | bytes | None, bytes]]
) -> list[Position]:
    """Produce in order (idempotent producer, large records allowed); the position of each record."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.max.bytes": TOPIC_MAX_BYTES,
        }
    )
    positions: list[Position | None] = [None] * len(records)
    errors: list[str] = []

    def report(index: int) -> Callable[[Any, Message], None]:
        def delivered(err: Any, msg: Message) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                positions[index] = (msg.partition() or 0, msg.offset() or 0)

        return delivered

    for index, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=report(index))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    left = producer.flush(120)
    assert left == 0 and not errors, f"produce failed: {left} unflushed, errors {errors[:3]}"
    done = [p for p in positions if p is not None]
    assert len(done) == len(records)
    return done


def read_topic(bootstrap: str, topic: str, *, timeout_s: float = 60) -> list[Message]:
    """Every record of `topic`, up to the end offsets seen now."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_topic("reader"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.max.bytes": 50 * MB,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30).topics[topic]
        ends = {}
        for p in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        messages: list[Message] = []
        reached: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(reached) < len(ends):
            assert time.monotonic() < deadline, f"{topic}: read {len(messages)} records in {timeout_s}s"
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            messages.append(msg)
            if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                reached.add(msg.partition() or 0)
        return messages
    finally:
        consumer.close()


def _origin(message: Message) -> tuple[str, Position]:
    headers = {k: v.decode() for k, v in headers_of(message).items()}
    return headers["zs.original.topic"], (
        int(headers["zs.original.partition"]),
        int(headers["zs.original.offset"]),
    )


def _stamp(line: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"]).replace("Z", "+00:00")).timestamp()


def account(bootstrap: str, topic: str, positions: Sequence[Position], stderr: str) -> Ledger:
    """Every input record accounted for, from three independent places: the service's per-record outcome
    lines, the retry topic (mapping a retry record back to its input record) and the dead-letter topic.

    Fails unless: each produced position has exactly one terminal outcome (delivered, skipped,
    dead-lettered), reached directly or through the retry path; no outcome names a record that was never
    produced; the dead-letter topic holds exactly one copy of each dead-lettered record and nothing else,
    pointing at it and carrying the reason the service logged."""
    lines = [e for e in log_events(stderr) if e.get("event") == "event"]
    retry_topic = retry_topic_of(topic)
    retried = read_topic(bootstrap, retry_topic) if any(e["outcome"] in TO_RETRY_PATH for e in lines) else []
    retry_origin: dict[Position, Position] = {}
    for message in retried:
        origin_topic, origin = _origin(message)
        assert origin_topic == topic
        retry_origin[(message.partition() or 0, message.offset() or 0)] = origin

    produced = set(positions)
    assert len(produced) == len(positions)
    outcomes: dict[Position, tuple[str, str]] = {}
    durations: dict[Position, float] = {}
    doubles: list[str] = []
    via_retry: set[Position] = set()
    for line in lines:
        where = (int(line["partition"]), int(line["offset"]))
        if line["topic"] == retry_topic:
            assert where in retry_origin, f"an outcome for retry record {where} that was never written"
            where = retry_origin[where]
            via_retry.add(where)
        else:
            assert line["topic"] == topic, line
        assert where in produced, f"an outcome for {where}, which was never produced: {line}"
        if line["outcome"] not in TERMINAL:
            continue
        if where in outcomes:
            doubles.append(f"{where}: {outcomes[where]} then {line['outcome']}")
        outcomes[where] = (str(line["outcome"]), str(line.get("reason") or ""))
        durations[where] = float(line.get("duration_ms") or 0)
    assert not doubles, f"records with two outcomes: {doubles[:5]}"
    unaccounted = sorted(produced - outcomes.keys())
    assert not unaccounted, f"{len(unaccounted)} records without an outcome, first {unaccounted[:5]}"

    dead_lettered = {p for p, (o, _) in outcomes.items() if o == "dead_lettered"}
    dead: dict[Position, Message] = {}
    for message in read_topic(bootstrap, dlq_topic_of(topic)) if dead_lettered else []:
        origin_topic, origin = _origin(message)
        assert origin_topic == topic
        assert origin not in dead, f"{origin} dead-lettered twice"
        assert origin in dead_lettered, f"{origin} is in the DLQ but its outcome is {outcomes.get(origin)}"
        reason = headers_of(message)["zs.error.reason"].decode()
        assert reason == outcomes[origin][1], (origin, reason, outcomes[origin])
        dead[origin] = message
    assert dead.keys() == dead_lettered, (
        f"dead-lettered without a DLQ copy: {sorted(dead_lettered - dead.keys())}"
    )

    stamps = [_stamp(e) for e in lines]
    spans = {"first_to_last_outcome_s": max(stamps) - min(stamps)} if stamps else {}
    return Ledger(outcomes=outcomes, dead=dead, via_retry=via_retry, spans=spans, durations_ms=durations)


def run_service(env: dict[str, str], log_path: Path, *, timeout_s: float) -> tuple[int, str]:
    """`run --exit-at-end` to its end: (exit status, its log). Fails with the log's tail when it does not
    end within `timeout_s` (a wedged service is a failure of its own, not a test timeout)."""
    process = start_service(env, log_path, "--exit-at-end")
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
        pytest.fail(f"the service did not end within {timeout_s:.0f}s:\n{log_path.read_text()[-4000:]}")
    return code, log_path.read_text(errors="replace")


def assert_clean_exit(returncode: int, stderr: str) -> None:
    assert returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[stderr.index("Traceback") :][:3000]


# ------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Expected:
    outcome: str
    reason: str = ""
    error_class: str = ""
    http_status: str = ""
    value_kept: bool = True  # the DLQ copy keeps the value


INVALID = Expected("dead_lettered", "invalid_payload", "invalid")


def malformed(kind: int, key: str, n: int) -> tuple[str, str | None, bytes, Expected]:
    """The kind-th malformed record (kinds cycle): (label, record key, value, expected outcome)."""
    match kind % 8:
        case 0:
            return "invalid_json", key, b'{"type": "track", "userId": "' + key.encode() + b'", ', INVALID
        case 1:
            value = b'{"type": "identify", "userId": "\xff\xfe\xfd", "traits": {"name": "N\xc3"}}'
            return "non_utf8", key, value, INVALID
        case 2:
            return "wrong_type_type", key, json.dumps({"type": 42, "userId": key}).encode(), INVALID
        case 3:
            value = json.dumps({"type": "track", "userId": True, "event": "seq-x"}).encode()
            return "wrong_type_user_id", key, value, INVALID
        case 4:
            value = json.dumps({"type": "identify", "userId": key, "traits": ["name", key]}).encode()
            return "wrong_type_traits", key, value, INVALID
        case 5:  # 1 MB of traits: the huge trait is dropped, the user written (a user of its own)
            value = json.dumps(identify(f"big-{n}", name=f"Big {n}", blob="x" * MB)).encode()
            return "one_mb_traits", f"big-{n}", value, Expected("delivered")
        case 6:
            value = json.dumps({"type": "Tr4ck", "userId": key, "event": "seq-x"}).encode()
            return "unknown_type", key, value, Expected("skipped", "unsupported_type")
        case _:
            dead = Expected("dead_lettered", "record_too_large", "invalid", value_kept=False)
            return "too_large_for_dlq", f"huge-{n}", b"{" + b"x" * (2 * MB), dead


def rejected(key: str, n: int) -> tuple[str, str | None, bytes, Expected]:
    """A group naming an organization Zendesk does not have, without traits: Zendesk's 422 (§6.5)."""
    value = json.dumps(group(key, f"no-such-org-{n}")).encode()
    return "zendesk_422", key, value, Expected("dead_lettered", "zendesk_rejected", "rejected", "422")


@dataclass
class Workload:
    records: list[tuple[str | None, bytes]]
    expected: dict[int, tuple[str, Expected]]  # index in records -> (label, outcome) of each poison record
    sequencer: Sequencer
    keys: list[str]

    @property
    def good(self) -> int:
        return self.sequencer.total


def workload(total: int, *, poisoned: bool, seed: int = 5) -> Workload:
    """`total` records over 50 keys: all good (seq-N track events), or with 2% malformed and 1% that
    Zendesk rejects, each kind of poison on a good event's key at a random place."""
    rng = random.Random(seed)
    keys = user_keys(50, prefix="poison")
    sequencer = Sequencer()
    poison: list[tuple[str, str | None, bytes, Expected]] = []
    if poisoned:
        poison += [malformed(i, rng.choice(keys), i) for i in range(total * 2 // 100)]
        poison += [rejected(rng.choice(keys), i) for i in range(total // 100)]
    slots = set(rng.sample(range(total), len(poison)))
    records: list[tuple[str | None, bytes]] = []
    expected: dict[int, tuple[str, Expected]] = {}
    pending = iter(poison)
    for index in range(total):
        if index in slots:
            label, key, value, outcome = next(pending)
            expected[index] = (label, outcome)
            records.append((key, value))
        else:
            records.append(sequencer.event(rng.choice(keys)))
    return Workload(records=records, expected=expected, sequencer=sequencer, keys=keys)


@dataclass
class Run:
    ledger: Ledger
    took_s: float
    good: int
    positions: list[Position]

    @property
    def good_per_s(self) -> float:
        return self.good / self.ledger.spans["first_to_last_outcome_s"]


def run_workload(
    bootstrap: str, simulator: RunningSimulator, work: Workload, *, partitions: int, log_path: Path
) -> Run:
    topic = unique_topic("t-poison")
    create_input_topics(bootstrap, topic, partitions=partitions)
    seed_users(simulator, work.keys)
    positions = produce_all(bootstrap, topic, work.records)
    env = service_env(bootstrap, topic, simulator, settings_for("poison"))
    started = time.monotonic()
    code, log = run_service(env, log_path, timeout_s=300)
    took = time.monotonic() - started
    assert_clean_exit(code, log)
    ledger = account(bootstrap, topic, positions, log)
    check_outcomes(ledger, work, positions, simulator, topic)
    return Run(ledger=ledger, took_s=took, good=work.good, positions=list(positions))


def check_outcomes(
    ledger: Ledger, work: Workload, positions: Sequence[Position], simulator: RunningSimulator, topic: str
) -> None:
    """Each record has the outcome its kind calls for; the good events reached Zendesk once, in order."""
    wrong = []
    for index, position in enumerate(positions):
        label, want = work.expected.get(index, ("good", Expected("delivered")))
        got = ledger.outcomes[position]
        if got != (want.outcome, want.reason):
            wrong.append(f"{label} at {position}: {got}, expected {(want.outcome, want.reason)}")
            continue
        if want.outcome != "dead_lettered":
            continue
        message = ledger.dead[position]
        headers = {k: v.decode() for k, v in headers_of(message).items()}
        key, value = work.records[index]
        checks = {
            "class": headers["zs.error.class"] == want.error_class,
            "status": headers.get("zs.error.http_status", "") == want.http_status,
            "message": bool(headers["zs.error.message"]),
            "key": message.key() == (key.encode() if key is not None else None),
            "value": (message.value() == value) if want.value_kept else message.value() is None,
        }
        if not all(checks.values()):
            wrong.append(f"{label} at {position}: DLQ copy fails {[n for n, ok in checks.items() if not ok]}")
    assert not wrong, f"{len(wrong)} records with the wrong outcome: {wrong[:8]}"
    assert not ledger.via_retry, f"records went through the retry path: {sorted(ledger.via_retry)[:5]}"

    effects = EffectLog(simulator).refresh()
    assert sequences_by_key(effects) == {k: list(range(n)) for k, n in work.sequencer.counts.items()}
    big = [int(str(k).removeprefix("big-")) for k, _ in work.records if str(k).startswith("big-")]
    if big:
        users = {u.get("external_id"): u for u in simulator.control.state()["users"]}
        for n in big:
            user = users.get(f"big-{n}")
            assert user is not None, f"the user of the 1 MB identify big-{n} was not written"
            assert user["name"] == f"Big {n}"
            assert "blob" not in (user.get("user_fields") or {}), "the 1 MB trait reached Zendesk"


def summary(work: Workload, run: Run) -> str:
    labels = Counter(label for label, _ in work.expected.values())
    by_label: dict[str, list[float]] = {}
    for index, position in enumerate(run.positions):
        label = work.expected.get(index, ("good", None))[0]
        by_label.setdefault(label, []).append(run.ledger.durations_ms[position])
    latency = {label: f"{sorted(d)[len(d) // 2]:.0f}/{max(d):.0f}" for label, d in sorted(by_label.items())}
    return (
        f"{len(work.records)} records ({work.good} good; poison {dict(sorted(labels.items()))}) in "
        f"{run.took_s:.1f}s wall, outcomes {dict(sorted(run.ledger.counts().items()))}; good events "
        f"{run.good_per_s:.0f}/s over {run.ledger.spans['first_to_last_outcome_s']:.1f}s of outcomes; "
        f"ms from start to outcome, median/max by kind {latency}"
    )


def figures(work: Workload, run: Run, *, details: str = "") -> Figures:
    """The report's row of a run that passed `check_outcomes`: every good event reached Zendesk once and
    in order (it asserts the exact sequences per key), so lost, duplicates and order violations are 0."""
    counts = run.ledger.counts()
    labels = Counter(label for label, _ in work.expected.values())
    return Figures(
        events=len(work.records),
        faults=f"{sum(labels.values())} poison records: {dict(sorted(labels.items()))}",
        wall_s=run.took_s,
        lost=0,
        duplicates=0,
        order_violations=0,
        dead_letters={
            k.split("/", 1)[1]: n for k, n in sorted(counts.items()) if k.startswith("dead_lettered/")
        },
        details=f"good events {run.good_per_s:.0f}/s; {details}".rstrip("; "),
    )


# ---------------------------------------------------------------------------------------- tests


def test_poison_short_every_record_gets_the_outcome_of_its_kind(kafka_bootstrap: str, tmp_path: Path) -> None:
    """600 records, 12 malformed (every kind at least once), 6 that Zendesk refuses with 422."""
    work = workload(600, poisoned=True)
    labels = Counter(label for label, _ in work.expected.values())
    assert len(labels) == 9 and labels["zendesk_422"] == 6, labels  # every kind is in the mix
    with run_simulator(extra_args=["--no-rate-limits"]) as simulator:
        run = run_workload(kafka_bootstrap, simulator, work, partitions=2, log_path=tmp_path / "service.log")
    print(f"\n[poison short] {summary(work, run)}")
    record("poison", "short", figures(work, run))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the full variants take minutes
def test_poison_full_outcomes_and_good_throughput_within_10_percent_of_a_clean_run(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """10,000 records: a clean run, then one with 200 malformed and 100 rejected records; the same
    machine, the same size, one test. The good events' throughput (good events over the time from the
    first outcome to the last) of the poisoned run is at least 90% of the clean run's."""
    total = 10_000
    clean_work, poisoned_work = workload(total, poisoned=False), workload(total, poisoned=True)
    with run_simulator(extra_args=["--no-rate-limits"]) as simulator:
        clean = run_workload(
            kafka_bootstrap, simulator, clean_work, partitions=4, log_path=tmp_path / "clean.log"
        )
    with run_simulator(extra_args=["--no-rate-limits"]) as simulator:
        poisoned = run_workload(
            kafka_bootstrap, simulator, poisoned_work, partitions=4, log_path=tmp_path / "poisoned.log"
        )
    ratio = poisoned.good_per_s / clean.good_per_s
    print(
        f"\n[poison full] clean: {summary(clean_work, clean)}\n[poison full] poisoned: "
        f"{summary(poisoned_work, poisoned)}\n[poison full] good-event throughput ratio poisoned/clean "
        f"{ratio:.3f}"
    )
    record(
        "poison", "full", figures(poisoned_work, poisoned, details=f"throughput poisoned/clean {ratio:.3f}")
    )
    assert ratio >= 0.9, f"good events ran at {ratio:.0%} of the clean run's throughput"
