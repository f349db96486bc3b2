"""Every reliability test starts with the service processes' peak memory at zero (see report.py)."""

from __future__ import annotations

import pytest

from tests.support.service import SERVICE_MEMORY


@pytest.fixture(autouse=True)
def _peak_memory_of_this_test() -> None:
    SERVICE_MEMORY.reset()
