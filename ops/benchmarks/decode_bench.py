"""What decoding costs per event, JSON against Avro (README: "Avro input").

The same mix of Segment events (identify, track, group with a dozen traits or properties each) as JSON
values and as Avro in the Confluent wire format with the shipped schema (`topics/schemas/`, traits and
properties as JSON text), decoded by `stream.decoding.Decoder` with the schema at hand (as it is after the
first record of a schema id), then validated. Pure CPU, no I/O: microseconds per event, best of N rounds.

    .venv/bin/python -m ops.benchmarks.decode_bench [--events 20000] [--rounds 7] [--no-write]
"""

from __future__ import annotations

import argparse
import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import fastavro

from ops.benchmarks.common import machine, write_section
from stream.decoding import Decoder, InputFormat
from stream.events import validate
from stream.schemas import LocalSchemas
from stream.topics import definitions_dir

SECTION = "## Decoding: JSON and Avro"


def events(count: int) -> list[dict[str, Any]]:
    made: list[dict[str, Any]] = []
    for i in range(count):
        base = {"messageId": str(uuid.uuid4()), "userId": f"u{i % 1000}", "timestamp": "2026-11-29T10:00:00Z"}
        match i % 3:
            case 0:
                traits = {"name": f"User {i}", "email": f"u{i}@example.com", "plan": "pro", "logins": i}
                traits |= {f"trait_{k}": k * 1.5 for k in range(8)}
                made.append({"type": "identify", **base, "traits": traits, "context": {"ip": "10.0.0.1"}})
            case 1:
                properties = {"title": "How to", "score": 9.5, "tags": ["a", "b"], "nested": {"deep": 1}}
                properties |= {f"prop_{k}": f"value {k}" for k in range(8)}
                made.append({"type": "track", "event": "Article Completed", **base, "properties": properties})
            case _:
                traits = {"name": "Initech", "employees": 329, "industry": "software"}
                traits |= {f"trait_{k}": k for k in range(9)}
                made.append({"type": "group", "groupId": f"org{i % 50}", **base, "traits": traits})
    return made


def avro_values(made: list[dict[str, Any]]) -> list[bytes]:
    schema = fastavro.parse_schema(
        json.loads((definitions_dir() / "schemas" / "1-segment-event.avsc").read_text())
    )
    values = []
    for event in made:
        buffer = io.BytesIO()
        shaped = {
            k: json.dumps(v) if k in ("traits", "properties", "context") else v for k, v in event.items()
        }
        fastavro.schemaless_writer(buffer, schema, shaped)
        values.append(b"\x00" + (1).to_bytes(4, "big") + buffer.getvalue())
    return values


def best_us(values: list[bytes], work: Callable[[bytes], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for value in values:
            work(value)
        best = min(best, (time.perf_counter() - started) / len(values))
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    made = events(args.events)
    as_json = [json.dumps(event).encode() for event in made]
    as_avro = avro_values(made)
    json_decoder = Decoder()
    avro_decoder = Decoder(
        input_format=InputFormat.AVRO, schemas=LocalSchemas.from_directory(definitions_dir() / "schemas")
    )
    assert [validate(json_decoder.decode(v)) for v in as_json[:30]] == [
        validate(avro_decoder.decode(v)) for v in as_avro[:30]
    ]
    figures = {
        "json decode": best_us(as_json, json_decoder.decode, args.rounds),
        "json decode + validate": best_us(as_json, lambda v: validate(json_decoder.decode(v)), args.rounds),
        "avro decode": best_us(as_avro, avro_decoder.decode, args.rounds),
        "avro decode + validate": best_us(as_avro, lambda v: validate(avro_decoder.decode(v)), args.rounds),
    }
    json_size = sum(map(len, as_json)) / len(as_json)
    avro_size = sum(map(len, as_avro)) / len(as_avro)
    for name, value in figures.items():
        print(f"{name}: {value:.2f} us per event", flush=True)
    print(f"value size: JSON {json_size:.0f} bytes, Avro {avro_size:.0f} bytes on average")
    json_total, avro_total = figures["json decode + validate"], figures["avro decode + validate"]
    ratio = avro_total / json_total
    text = f"""{SECTION}

Command: `.venv/bin/python -m ops.benchmarks.decode_bench --events {args.events} --rounds {args.rounds}`.
Machine: {machine()}; shared, so compare the ratios, measured in the same run.

| figure (µs per event, best of {args.rounds} rounds of {args.events:,}) | JSON | Avro |
|---|---:|---:|
| decode (the value → the event object) | {figures["json decode"]:.2f} | {figures["avro decode"]:.2f} |
| decode + validate (→ `SegmentEvent`) | {json_total:.2f} | {avro_total:.2f} |
| average value size, bytes | {json_size:.0f} | {avro_size:.0f} |

Avro costs {ratio:.2f}x JSON per event with the shipped schema (traits, properties and context as JSON
text inside the Avro record, so each is parsed by orjson after fastavro reads the record), the schema at
hand; the first record of a schema id also waits for one registry request. Either is small against the
0.29–0.53 ms of CPU an event costs through the engine (README, "Engine headroom").
"""
    if not args.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
