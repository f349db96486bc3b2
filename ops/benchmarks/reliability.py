"""The full reliability suite (tests/reliability, every variant, the slow ones too), and its report.

    .venv/bin/python -m ops.benchmarks.reliability [--no-write] [pytest args…]

Runs pytest on tests/reliability with RELIABILITY_REPORT_DIR set, so each scenario leaves its figures
(`tests/reliability/report.py`), then writes ops/benchmarks/RELIABILITY.md from them: per scenario and
variant, what it measured (events, faults, lost, duplicates, order violations, DLQ counts, recovery
times, wall time), with the command, the machine and pytest's verdict. `--no-write` prints only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from ops.benchmarks.common import machine

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "ops" / "benchmarks" / "RELIABILITY.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-write", action="store_true")
    args, pytest_args = parser.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "slow or not slow", "-s", "-q",
             "tests/reliability", *pytest_args],
            cwd=REPO,
            env={**os.environ, "RELIABILITY_REPORT_DIR": tmp},
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        wall = time.monotonic() - started
        verdict = next((line for line in reversed(done.stdout.splitlines()) if " in " in line), "no verdict")
        results = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("*.json"))]
    lines = [
        "# Reliability",
        "",
        "Written by `.venv/bin/python -m ops.benchmarks.reliability` from the suite's own output "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC). Machine: {machine()}; shared with other jobs, so times "
        "are a ceiling, not a floor.",
        "",
        f"pytest: `{verdict.strip('= ')}`; the whole run took {wall:.0f} s.",
        "",
        "| scenario | variant | what it measured |",
        "|---|---|---|",
    ]
    lines += [f"| {r['scenario']} | {r['variant']} | {r.get('summary', '')} |" for r in results]
    lines += ["", "Each scenario's test states the property it checks in its docstring (tests/reliability/)."]
    text = "\n".join(lines) + "\n"
    print(done.stdout[-4000:])
    print(text)
    if not args.no_write:
        REPORT.write_text(text)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
