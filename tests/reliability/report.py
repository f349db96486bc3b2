"""The reliability suite's figures, kept for ops/benchmarks/RELIABILITY.md.

Each scenario calls `record(scenario, variant, figures)` with what it measured. Under
`ops/benchmarks/reliability.py` (which sets RELIABILITY_REPORT_DIR) the figures are written there as
JSON, and that script turns them into the report; in a plain pytest run nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def record(scenario: str, variant: str, figures: dict[str, Any]) -> None:
    directory = os.environ.get("RELIABILITY_REPORT_DIR")
    if not directory:
        return
    path = Path(directory) / f"{scenario}-{variant}.json"
    path.write_text(json.dumps({"scenario": scenario, "variant": variant, **figures}, indent=2))
