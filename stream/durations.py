"""Durations as operators write them: `90s`, `30m`, `2h`, `7d` (settings and the recovery commands)."""

from __future__ import annotations

import re
from typing import Final

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EXAMPLES: Final = "90s, 30m, 2h, 7d"


def duration_s(text: str) -> float | None:
    """Seconds of a duration like `2h`, or None when the text is not one."""
    match = _DURATION.fullmatch(text.strip().lower())
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None
