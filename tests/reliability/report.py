"""The reliability suite's figures, kept for ops/benchmarks/RELIABILITY.md.

Each scenario calls `record(scenario, variant, Figures(...))` with what it measured; the highest resident
memory of the service processes it started (`tests.support.service.SERVICE_MEMORY`, reset before each
test by this directory's conftest) is added. Under `ops/benchmarks/reliability.py` (which sets
RELIABILITY_REPORT_DIR) the figures are written there as JSON, and that script turns them into the
report's table; in a plain pytest run nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.support.service import SERVICE_MEMORY


@dataclass(frozen=True)
class Figures:
    """One row of the report. None: the scenario does not measure it (said as "n/a")."""

    events: int
    faults: str  # what was done to the service, its broker or Zendesk
    wall_s: float
    lost: int | None = None
    duplicates: int | None = None  # tracks (Sunshine events) stored twice in Zendesk
    order_violations: int | None = None
    dead_letters: Mapping[str, int] = field(default_factory=dict)  # by reason
    recovery: str = ""  # how long it took to come back, in words with figures
    details: str = ""  # whatever else the scenario measured


def record(scenario: str, variant: str, figures: Figures, **extra: Any) -> None:
    directory = os.environ.get("RELIABILITY_REPORT_DIR")
    if not directory:
        return
    row = {
        "scenario": scenario,
        "variant": variant,
        **asdict(figures),
        "dead_letters": dict(figures.dead_letters),
        "peak_rss_mib": round(SERVICE_MEMORY.peak_mib, 1),
        "measured": extra,  # the scenario's own figures, whole (apart: they never replace a column)
    }
    (Path(directory) / f"{scenario}-{variant}.json").write_text(json.dumps(row, indent=2))
