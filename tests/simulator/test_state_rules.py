"""Matching rules as plain Python, without HTTP (the same rules the contract tests check over the wire)."""

from __future__ import annotations

import pytest

from stream.simulator.errors import ZendeskError
from stream.simulator.options import SimulatorOptions
from stream.simulator.ratelimit import Window
from stream.simulator.state import ZendeskState

NOW = 1_767_225_600.0


def test_external_id_wins_over_email_then_the_email_clash_is_422() -> None:
    state = ZendeskState(options=SimulatorOptions())
    state.create_user({"name": "A", "email": "x@example.com"}, NOW)
    b = state.create_user({"name": "B", "external_id": "x"}, NOW)
    assert state.resolve_user({"email": "x@example.com", "external_id": "X"}) is b
    with pytest.raises(ZendeskError) as raised:
        state.create_or_update_user({"email": "x@example.com", "external_id": "x"}, NOW)
    assert raised.value.status == 422


def test_window_counts_within_its_period_and_reopens_after() -> None:
    window = Window(limit=2, period=60.0)
    assert [window.try_take(0.0), window.try_take(1.0), window.try_take(2.0)] == [True, True, False]
    assert window.resets_in(2.0) == 58
    assert window.try_take(60.0) is True


def test_organization_name_is_trimmed_before_the_uniqueness_check() -> None:
    state = ZendeskState(options=SimulatorOptions())
    state.create_organization({"name": "API Company"}, NOW)
    with pytest.raises(ZendeskError):
        state.create_organization({"name": "API Company "}, NOW)
