"""The full reliability suite (tests/reliability, every variant, the slow ones too), and its report.

    .venv/bin/python -m ops.benchmarks.reliability [--no-write] [pytest args…]

Runs pytest on tests/reliability with RELIABILITY_REPORT_DIR set, so each scenario leaves its figures
(`tests/reliability/report.py`), then writes ops/benchmarks/RELIABILITY.md from them: one row per
scenario and variant (events, faults injected, lost, duplicates, order violations, dead letters by
reason, recovery, wall time, the service's peak memory), with the command, the machine and pytest's
verdict. The rows are kept in ops/benchmarks/reliability.json; a run with pytest arguments that select
fewer scenarios (`-k memory`) replaces only the rows it measured, and each row says when it was. A
failed run's rows are kept and marked. `--no-write` prints only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ops.benchmarks.common import machine

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "ops" / "benchmarks" / "RELIABILITY.md"
ROWS = REPO / "ops" / "benchmarks" / "reliability.json"
COLUMNS = (
    "scenario", "variant", "events", "faults injected", "lost", "duplicates", "order violations",
    "dead letters by reason", "recovery", "wall", "peak RSS", "also measured", "run",
)  # fmt: skip


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
        measured = [json.loads(p.read_text()) for p in sorted(Path(tmp).glob("*.json"))]
    run = {
        "at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "verdict": verdict.strip("= "),
        "wall_s": round(wall),
        "args": shlex.join(pytest_args),
        "passed": done.returncode == 0,
    }
    print(done.stdout[-4000:])
    if not measured:
        print("no scenario recorded figures: the report is left as it was")
        return done.returncode or 1
    rows = json.loads(ROWS.read_text()) if ROWS.exists() else {}
    for row in measured:
        rows[f"{row['scenario']}/{row['variant']}"] = {**row, "run": run}
    if not args.no_write:  # the figures first: a fault in rendering them must not lose an hour's run
        ROWS.write_text(json.dumps(dict(sorted(rows.items())), indent=2) + "\n")
    text = render(dict(sorted(rows.items())))
    print(text)
    if not args.no_write:
        REPORT.write_text(text)
    return done.returncode


def render(rows: dict[str, dict[str, Any]]) -> str:
    runs = {json.dumps(r["run"], sort_keys=True): r["run"] for r in rows.values()}
    numbered = {key: n for n, key in enumerate(sorted(runs, key=lambda k: runs[k]["at"]), start=1)}
    lines = [
        "# Reliability",
        "",
        "Written by `.venv/bin/python -m ops.benchmarks.reliability` from the suite's own output. Each "
        "scenario's test states the property it checks in its docstring (tests/reliability/), and fails "
        "when a figure breaks it. Machine: "
        + machine()
        + "; shared with other jobs, so times are a ceiling, "
        "not a floor. Peak RSS is the highest resident memory of any service process of the scenario.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows.values():
        cells = [
            row["scenario"],
            row["variant"],
            f"{row['events']:,}",
            row["faults"],
            _number(row["lost"]),
            _number(row["duplicates"]),
            _number(row["order_violations"]),
            ", ".join(f"{reason} {n:,}" for reason, n in row["dead_letters"].items()) or "0",
            row["recovery"] or "n/a",
            f"{row['wall_s']:.0f} s",
            f"{row['peak_rss_mib']:.0f} MiB" if row.get("peak_rss_mib") else "n/a",
            row["details"],
            str(numbered[json.dumps(row["run"], sort_keys=True)]),
        ]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    lines += ["", "Runs:", ""]
    for key in sorted(runs, key=lambda k: runs[k]["at"]):
        r = runs[key]
        command = ".venv/bin/python -m ops.benchmarks.reliability" + (f" {r['args']}" if r["args"] else "")
        lines.append(
            f"{numbered[key]}. {r['at']}: `{command}`; pytest `{r['verdict']}`; {r['wall_s']} s in all"
            + ("" if r["passed"] else " (**failed**: a row of this run may show a broken property)")
        )
    return "\n".join(lines) + "\n"


def _number(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


if __name__ == "__main__":
    raise SystemExit(main())
