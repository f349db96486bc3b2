"""Trait keys → Zendesk field keys (SEMANTICS: snake_case conversion)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.mapping.keys import MAX_KEY_LENGTH, is_valid_field_key, title_for_key, to_snake_case


@pytest.mark.parametrize(
    ("trait", "expected"),
    [
        ("planName", "plan_name"),
        ("plan_name", "plan_name"),
        ("total billed", "total_billed"),
        ("Total  Billed!", "total_billed"),
        ("  spaced  ", "spaced"),
        ("HTTPServer", "http_server"),
        ("userID", "user_id"),
        ("last30Days", "last30_days"),
        ("order_completed_last_30days", "order_completed_last_30days"),
        ("a__b", "a_b"),
        ("café-crème", "cafe_creme"),
        ("plan.name", "plan_name"),
        ("x1", "x1"),
    ],
)
def test_camel_case_and_snake_case_keys_become_snake_case(trait: str, expected: str) -> None:
    assert to_snake_case(trait) == expected


@pytest.mark.parametrize(
    "trait", ["", "   ", "___", "123", "!!!", "1 2 3", "1_2", "日本", "x" * (MAX_KEY_LENGTH + 1)]
)
def test_key_empty_or_all_digits_after_conversion_is_not_sent(trait: str) -> None:
    assert to_snake_case(trait) is None


def test_title_of_auto_created_field_is_readable() -> None:
    assert title_for_key("total_billed") == "Total billed"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_snake_case_conversion_is_idempotent_and_valid(trait: str) -> None:
    key = to_snake_case(trait)
    if key is not None:
        assert is_valid_field_key(key)
        assert to_snake_case(key) == key
