"""The commands of the runbooks in ops/runbooks/, as the tests run them."""

from __future__ import annotations

import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "ops" / "runbooks"


def runbook_commands(path: Path) -> list[list[str]]:
    """The `zendesk-stream ...` lines of the runbook's sh code blocks, in order, without the program name."""
    commands: list[list[str]] = []
    in_block = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```sh" if not in_block else False
            continue
        if in_block and line.startswith("zendesk-stream "):
            commands.append(shlex.split(line)[1:])
    return commands
