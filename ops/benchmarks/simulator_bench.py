"""Throughput of the Zendesk simulator on one core, so benchmarks of the consumer measure the consumer.

The simulator runs with rate limits off and no latency, pinned to CPU 0 (``taskset -c 0``); the load
generator, wrk, runs on CPU 1. It replays a realistic mix in equal parts: create_or_update user (1,000
distinct users, so mostly updates), show user, events post, user_fields list.

    apt-get install -y wrk          # Debian/Ubuntu; wrk is the load generator
    .venv/bin/python ops/benchmarks/simulator_bench.py [--duration 15] [--connections 32]

Prints a markdown table of requests/s for the mix and for each request alone.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from stream.simulator.testing import READY_PREFIX

EMAIL, TOKEN = "admin@example.com", "simulator-token"
SERVER_CPU, LOAD_CPU = "0", "1"

LUA_TEMPLATE = """
local auth = "Basic {auth}"
local user_id = "{user_id}"
local kinds = {{ {kinds} }}
local n = 0
request = function()
  n = n + 1
  local kind = kinds[(n % #kinds) + 1]
  local key = "bench-" .. (n % 1000)
  local headers = {{ ["Authorization"] = auth, ["Content-Type"] = "application/json" }}
  if kind == "upsert" then
    local body = '{{"user":{{"name":"Bench ' .. n .. '","external_id":"' .. key .. '"}}}}'
    return wrk.format("POST", "/api/v2/users/create_or_update.json", headers, body)
  elseif kind == "show" then
    return wrk.format("GET", "/api/v2/users/" .. user_id .. ".json", headers)
  elseif kind == "event" then
    local body = '{{"profile":{{"source":"segment","type":"user",'
      .. '"identifiers":[{{"type":"external_id","value":"' .. key .. '"}}]}},'
      .. '"event":{{"source":"segment","type":"checkout","properties":{{"n":' .. n .. '}}}}}}'
    return wrk.format("POST", "/api/v2/user_profiles/events", headers, body)
  else
    return wrk.format("GET", "/api/v2/user_fields.json", headers)
  end
end
"""

MIXES = {
    "mix (upsert, show, event, fields)": '"upsert", "show", "event", "fields"',
    "create_or_update user only": '"upsert"',
    "show user only": '"show"',
    "events post only": '"event"',
    "user_fields list only": '"fields"',
}


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    command = ["taskset", "-c", SERVER_CPU, sys.executable, "-m", "stream.simulator", "--port", "0"]
    command += ["--no-rate-limits"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        process.kill()
        raise SystemExit(f"simulator did not start: {line!r}")
    return process, line.removeprefix(READY_PREFIX).strip()


def seed(base_url: str) -> int:
    fields = [{"key": f"field_{i}", "title": f"Field {i}"} for i in range(10)]
    users = [{"name": "Bench", "external_id": "bench-seed", "email": "bench@example.com"}]
    response = httpx.post(f"{base_url}/_simulator/seed", json={"users": users, "user_fields": fields})
    response.raise_for_status()
    user_id: int = response.json()["users"][0]["id"]
    return user_id


def run_wrk(base_url: str, script: str, *, duration: int, connections: int) -> tuple[float, int, int]:
    """Requests/s, total requests and non-2xx responses reported by wrk."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        result = subprocess.run(
            [
                "taskset",
                "-c",
                LOAD_CPU,
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{duration}s",
                "-s",
                handle.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(handle.name).unlink()
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", result.stdout).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    return rate, total, int(errors.group(1)) if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per run (default 15)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections (default 32)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 1
    if (os.cpu_count() or 1) < 2:
        print("needs 2 CPUs: one for the simulator, one for wrk", file=sys.stderr)
        return 1
    process, base_url = start_simulator()
    try:
        user_id = seed(base_url)
        auth = base64.b64encode(f"{EMAIL}/token:{TOKEN}".encode()).decode()
        heading = f"workload ({args.connections} connections, {args.duration}s)"
        print(f"| {heading} | requests/s | requests | non-2xx |")
        print("|---|---:|---:|---:|")
        for name, kinds in MIXES.items():
            script = LUA_TEMPLATE.format(auth=auth, user_id=user_id, kinds=kinds)
            rate, total, non_2xx = run_wrk(
                base_url, script, duration=args.duration, connections=args.connections
            )
            print(f"| {name} | {rate:,.0f} | {total:,} | {non_2xx} |", flush=True)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
