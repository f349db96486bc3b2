"""Scenario 6, hostile input fuzzing: hypothesis-generated records through the whole pipeline (a real
topic, the service as a process, the Zendesk simulator). Never a crash, every record accounted for.

One batch per test, one service run per batch (a run per example would take hours): the records are
generated first by a derandomized `@given` that only collects them, so CI sees the same batch every time.
They are Segment-ish JSON objects with values of any type where the spec expects one type (ids as
booleans, lists, huge or fractional numbers; traits as lists; NaN, infinities, lone surrogates, deep
nesting, 400-digit integers, over-long names and identifiers), JSON that is not an object, truncated JSON,
other encodings, byte blobs, and Avro frames (the service reads `auto`: a leading zero byte means the
Confluent wire format) with a known schema id and a garbage body or an unknown id. The Kafka keys are
random too, bytes included.

Between them run canaries: good track events (`seq-N`) for users that exist, on keys that hostile records
share, so a hostile record that stalled, broke or reordered its lane would show. The checks:
- the service exits 0 (caught up with `--exit-at-end`) and logs no traceback;
- every record has exactly one terminal outcome, and the DLQ holds exactly the dead-lettered ones with
  the logged reason (`account`, tests/reliability/test_poison.py);
- outcomes and reasons are the contract's (docs/contracts.md §3-4); nothing went to the retry path (the
  simulator injects no faults here, so a transient failure would be a bug inside the service: §7 "an
  unexpected error inside the service counts as transient");
- every canary reached Zendesk once, in order per key; the simulator answered no 5xx.
"""

from __future__ import annotations

import json
import random
import struct
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stream.simulator.testing import RunningSimulator, run_simulator
from tests.reliability.report import Figures, record
from tests.reliability.test_poison import (
    Ledger,
    account,
    assert_clean_exit,
    create_input_topics,
    produce_all,
    run_service,
)
from tests.support.engine import EVENTS_PATH, Sequencer, seed_users, settings_for, user_keys
from tests.support.kafka import unique_topic
from tests.support.service import service_env

pytestmark = pytest.mark.kafka

USERS = user_keys(10, prefix="fuzz")  # exist in Zendesk; hostile events may name them
CANARIES = user_keys(10, prefix="canary")  # exist too; only canary events name them, hostile ones share keys

DEAD_LETTER_REASONS = {
    "invalid_payload",
    "identifier_too_long",
    "event_name_too_long",
    "record_too_large",
    "user_not_found",
    "identity_conflict",
    "zendesk_rejected",
}
SKIP_REASONS = {
    "unsupported_type",
    "no_identity",
    "missing_name",
    "event_not_enabled",
    "missing_user_id",
    "unchanged",
    "already_delivered",
}

# ------------------------------------------------------------------------------------ strategies

awkward_strings = st.sampled_from(
    [
        "",
        " ",
        "NaN",
        "Infinity",
        "-0",
        "1e999",
        "null",
        "true",
        "\u0000",
        "\u202e",
        "💥" * 3,
        "a@b.co",
        "not an email@",
        "x" * 61,
        "E" * 41,
        "2026-11-29T10:00:00Z",
        "2026-13-45",
        "<script>",
        "Robert'); DROP TABLE users;--",
        "../../etc/passwd",
        "%s%s%n",
    ]
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    awkward_strings,
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)
ids = st.one_of(
    st.sampled_from(USERS),
    st.text(max_size=70),
    awkward_strings,
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.just({"id": 1}),
)
types = st.one_of(
    st.sampled_from(["identify", "track", "group", "page", "screen", "alias", "IDENTIFY", "Track", "foo"]),
    leaves,
)
trait_keys = st.one_of(
    st.sampled_from(
        [
            "name",
            "email",
            "firstName",
            "lastName",
            "organizationId",
            "timezone",
            "phone",
            "company",
            "plan Name",
            "planName",
            "plan_name",
            "1_2",
            "userId",
            "tags",
            "domainNames",
            "url",
            "deleted",
            "k" * 70,
            "café",
        ]
    ),
    st.text(max_size=20),
)
attribute_maps = st.one_of(st.dictionaries(trait_keys, json_values, max_size=6), json_values)
segmentish = st.fixed_dictionaries(
    {"type": types},
    optional={
        "action": types,
        "userId": ids,
        "anonymousId": ids,
        "groupId": ids,
        "messageId": ids,
        "event": st.one_of(st.sampled_from(["Signed In", "x" * 41]), st.text(max_size=50), leaves),
        "traits": attribute_maps,
        "properties": attribute_maps,
        "context": st.one_of(st.fixed_dictionaries({}, optional={"traits": attribute_maps}), json_values),
        "timestamp": st.one_of(awkward_strings, leaves),
    },
)

# Closer to real events, so that more of them get past the envelope into mapping and delivery.
plausible = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["identify", "track", "group"]),
        "userId": st.one_of(st.sampled_from(USERS), st.text(min_size=1, max_size=20)),
    },
    optional={
        "event": st.one_of(st.sampled_from(["Signed In", "Order Completed"]), st.text(max_size=45)),
        "groupId": st.one_of(st.text(min_size=1, max_size=20), st.integers()),
        "traits": st.dictionaries(trait_keys, json_values, max_size=6),
        "properties": st.dictionaries(trait_keys, json_values, max_size=6),
        "context": st.fixed_dictionaries({}, optional={"traits": st.dictionaries(trait_keys, json_values)}),
        "timestamp": st.one_of(awkward_strings, st.datetimes().map(lambda d: d.isoformat())),
        "messageId": st.text(max_size=20),
    },
)


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _deep(depth: int) -> bytes:
    return b'{"type": "track", "userId": "fuzz-00001", "event": "E", "properties": ' + (
        b'{"a": ' * depth + b"1" + b"}" * depth + b"}"
    )


def _avro(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


values = st.one_of(
    plausible.map(_json),
    plausible.map(_json),
    plausible.map(_json),
    plausible.map(_json),
    segmentish.map(_json),
    segmentish.map(_json),
    json_values.map(_json),  # JSON that is mostly not an object
    st.tuples(segmentish.map(_json), st.integers(min_value=0)).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)]),
    segmentish.map(lambda e: json.dumps(e, allow_nan=True).encode("utf-16")),
    segmentish.map(lambda e: b"\xef\xbb\xbf" + _json(e)),  # a UTF-8 byte-order mark
    st.integers(min_value=1, max_value=200).map(_deep),
    st.integers(min_value=290, max_value=400).map(
        lambda n: b'{"type": "identify", "userId": ' + b"9" * n + b', "traits": {"name": "N"}}'
    ),
    st.sampled_from(
        [
            b'{"type": "identify", "userId": "\\ud800", "traits": {"name": "\\udfff"}}',
            b'{"type": "track", "userId": "fuzz-00002", "event": "E", "properties": {"n": NaN, "i": -Infinity}}',  # noqa: E501
            b'{"type": "identify", "userId": "fuzz-00003", "type": "group"}',  # a repeated key
            b'{"type": "identify", "userId": "u\x00", "traits": {"name": "\xff"}}',
        ]
    ),
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: _avro(1, b)),
    st.tuples(st.integers(min_value=0, max_value=2**32 - 1), st.binary(max_size=50)).map(lambda t: _avro(*t)),
)
keys = st.one_of(
    st.none(), st.sampled_from(CANARIES), st.sampled_from(USERS), st.text(max_size=30), st.binary(max_size=30)
)


def hostile_records(count: int) -> list[tuple[str | bytes | None, bytes]]:
    """`count` (key, value) records, the same ones on every run (derandomized generation)."""
    found: list[tuple[str | bytes | None, bytes]] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(keys, values)
    def collect(key: str | bytes | None, value: bytes) -> None:
        found.append((key, value))

    collect()
    assert len(found) >= count * 9 // 10, f"hypothesis generated {len(found)} of {count} records"
    return found[:count]


# ---------------------------------------------------------------------------------------- checks


def canary_sequences(simulator: RunningSimulator) -> dict[str, list[int]]:
    """Per canary key, the seq-N events Zendesk accepted, in the order it applied them."""
    entries = simulator.control.requests(method="POST", path=EVENTS_PATH)
    by_key: dict[str, list[int]] = defaultdict(list)
    for entry in sorted(entries, key=lambda e: int(e["seq"])):
        name = str((entry.get("change") or {}).get("type", ""))
        if entry.get("status") == 202 and entry.get("user_key") in CANARIES and name.startswith("seq-"):
            by_key[str(entry["user_key"])].append(int(name.removeprefix("seq-")))
    return dict(by_key)


def fuzz_once(
    bootstrap: str, hostile: int, *, seed: int, log_path: Path, timeout_s: float
) -> tuple[Ledger, Counter[str]]:
    rng = random.Random(seed)
    sequencer = Sequencer()
    records: list[tuple[str | bytes | None, bytes]] = []
    canary_at: set[int] = set()
    for hostile_record in hostile_records(hostile):
        records.append(hostile_record)
        canary_at.add(len(records))
        records.append(sequencer.event(rng.choice(CANARIES)))
    topic = unique_topic("t-fuzz")
    create_input_topics(bootstrap, topic, partitions=2)
    with run_simulator(extra_args=["--no-rate-limits"]) as simulator:
        seed_users(simulator, USERS + CANARIES)
        positions = produce_all(bootstrap, topic, records)
        env = service_env(
            bootstrap,
            topic,
            simulator,
            settings_for("fuzz"),
            STREAM_INPUT_FORMAT="auto",
            # A transient failure here can only be a bug in the service: make one show in seconds.
            STREAM_RETRY_ATTEMPTS="2",
            STREAM_RETRY_ROUNDS="1",
            STREAM_RETRY_DELAY_S="1",
        )
        code, log = run_service(env, log_path, timeout_s=timeout_s)
        assert_clean_exit(code, log)
        ledger = account(bootstrap, topic, positions, log)
        sequences = canary_sequences(simulator)
        errors = [e for e in simulator.control.requests() if int(e["status"]) >= 500]

    counts = ledger.counts()
    print(f"\n[fuzz] {len(records)} records ({hostile} hostile), outcomes {dict(sorted(counts.items()))}")
    assert not ledger.via_retry, [records[positions.index(p)] for p in sorted(ledger.via_retry)][:5]
    assert sequences == {k: list(range(n)) for k, n in sequencer.counts.items()}
    assert not errors, errors[:5]
    odd = []
    for index, position in enumerate(positions):
        outcome, reason = ledger.outcomes[position]
        if index in canary_at:
            fine = outcome == "delivered"
        else:
            fine = (
                outcome == "delivered"
                or (outcome == "skipped" and reason in SKIP_REASONS)
                or (outcome == "dead_lettered" and reason in DEAD_LETTER_REASONS)
            )
        if not fine:
            odd.append((outcome, reason, records[index]))
    assert not odd, f"{len(odd)} records with an outcome outside the contract: {odd[:5]}"
    return ledger, counts


def figures(hostile: int, counts: Counter[str], wall_s: float) -> Figures:
    """The report's row of a run that passed `fuzz_once`'s checks: every canary reached Zendesk once, in
    order (it asserts the exact sequences), so lost, duplicates and order violations are 0 among them."""
    return Figures(
        events=2 * hostile,
        faults=f"{hostile:,} hypothesis-generated records, each followed by a canary track",
        wall_s=wall_s,
        lost=0,
        duplicates=0,
        order_violations=0,
        dead_letters={
            k.split("/", 1)[1]: n for k, n in sorted(counts.items()) if k.startswith("dead_lettered/")
        },
        details=f"outcomes {dict(sorted(counts.items()))}",
    )


def test_fuzz_short_hostile_records_never_crash_and_are_all_accounted_for(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """200 hostile records and 200 canaries."""
    started = time.monotonic()
    _, counts = fuzz_once(kafka_bootstrap, 200, seed=6, log_path=tmp_path / "service.log", timeout_s=90)
    assert sum(counts.values()) == 400
    record("fuzz", "short", figures(200, counts, time.monotonic() - started))


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the full variants take minutes
def test_fuzz_full_hostile_records_never_crash_and_are_all_accounted_for(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """3,000 hostile records and 3,000 canaries."""
    started = time.monotonic()
    _, counts = fuzz_once(kafka_bootstrap, 3000, seed=66, log_path=tmp_path / "service.log", timeout_s=400)
    assert sum(counts.values()) == 6000
    record("fuzz", "full", figures(3000, counts, time.monotonic() - started))
