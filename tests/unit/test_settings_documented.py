"""Every setting the service reads is documented where users look: the README's table and the contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream.environment import ENVIRONMENT

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("document", ["README.md", "docs/contracts.md"])
def test_every_setting_is_in_the_document(document: str) -> None:
    text = (REPO / document).read_text(encoding="utf-8")
    documented = set(re.findall(r"`((?:STREAM|ZENDESK|KAFKA)_[A-Z0-9_]+)`", text))
    assert set(ENVIRONMENT) - documented == set()
