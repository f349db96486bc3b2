"""The repository stands alone and documents what it reads: every setting in the README's table and the
contract, every relative link resolving inside the checkout, and packaging metadata in current form."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from stream.environment import ENVIRONMENT

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    return [REPO / name for name in listed]


@pytest.mark.parametrize("document", ["README.md", "docs/contracts.md"])
def test_every_setting_is_in_the_document(document: str) -> None:
    text = (REPO / document).read_text(encoding="utf-8")
    documented = set(re.findall(r"`((?:STREAM|ZENDESK|KAFKA|SCHEMA_REGISTRY)_[A-Z0-9_]+)`", text))
    assert set(ENVIRONMENT) - documented == set()


def test_no_file_points_outside_the_repository_at_the_shared_material() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in tracked("*.md", "*.py", "*.toml", "*.yml", "*.yaml", "*.sh")
        if "../shared" in path.read_text(encoding="utf-8", errors="replace")
        and path.name != Path(__file__).name
    ]
    assert offenders == []


def test_every_relative_link_of_the_documents_resolves_in_the_checkout() -> None:
    broken = []
    for path in tracked("*.md"):
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (path.parent / target).resolve().exists():
                broken.append(f"{path.relative_to(REPO)} -> {target}")
    assert broken == []


def test_the_license_is_an_spdx_expression() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert isinstance(project["license"], str)
