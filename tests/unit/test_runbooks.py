"""Every command a runbook gives exists: the CLI takes it as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.cli import build_parser
from tests.support.runbooks import RUNBOOKS, runbook_commands

BOOKS = sorted(RUNBOOKS.glob("*.md"))


def test_there_are_runbooks() -> None:
    assert BOOKS


@pytest.mark.parametrize("book", BOOKS, ids=lambda p: p.name)
def test_every_command_of_the_runbook_parses(book: Path) -> None:
    commands = runbook_commands(book)
    assert commands, f"{book.name} gives no command"
    parser = build_parser()
    for command in commands:
        parser.parse_args(command)  # exits with an error for an unknown command or option
