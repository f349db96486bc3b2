"""Zendesk's size limits for custom field values (docs/zendesk-api.md §12): a value over one is left out,
counted by its trait key and reason, and the rest of the event is sent."""

from __future__ import annotations

from typing import Any

import pytest

from stream.mapping import (
    DestinationSettings,
    Dropped,
    DropReason,
    EnsureField,
    Known,
    Plan,
    UpsertUser,
    plan,
)
from stream.mapping.fields import MAX_FIELD_NUMBER, MAX_FIELD_VALUES_BYTES, MAX_OPTION_CHARS, MAX_TEXT_CHARS


def planned(traits: dict[str, Any], known: Known | None = None) -> Plan:
    result = plan(
        {"type": "identify", "userId": "u1", "traits": traits}, DestinationSettings(), known or Known()
    )
    assert isinstance(result, Plan), result
    return result


def values_of(result: Plan) -> dict[str, Any]:
    (upsert,) = (op for op in result.operations if isinstance(op, UpsertUser))
    fields: dict[str, Any] = upsert.body()["user"].get("user_fields", {})
    return fields


def created(result: Plan) -> list[str]:
    return [op.key for op in result.operations if isinstance(op, EnsureField)]


@pytest.mark.parametrize("field_type", ["text", "textarea", "regexp"])
def test_text_at_the_limit_is_sent_and_one_character_more_is_dropped(field_type: str) -> None:
    known = Known.of(user_fields={"bio": field_type, "plan": "text"})
    assert (
        values_of(planned({"name": "A", "bio": "x" * MAX_TEXT_CHARS}, known))["bio"] == "x" * MAX_TEXT_CHARS
    )
    result = planned({"name": "A", "bio": "x" * (MAX_TEXT_CHARS + 1), "plan": "pro"}, known)
    assert values_of(result) == {"plan": "pro"}
    assert result.dropped == (Dropped("bio", DropReason.VALUE_TOO_LARGE),)


def test_a_2mb_trait_creates_no_field_and_the_rest_of_the_user_is_written() -> None:
    result = planned({"name": "A", "email": "a@example.com", "blob": "x" * 2_000_000, "plan": "pro"})
    assert created(result) == ["plan"]
    assert values_of(result) == {"plan": "pro"}
    assert result.dropped == (Dropped("blob", DropReason.VALUE_TOO_LARGE),)


@pytest.mark.parametrize("field_type", ["dropdown", "multiselect"])
def test_an_option_tag_longer_than_255_is_dropped_when_the_options_are_unknown(field_type: str) -> None:
    known = Known.of(user_fields={"tier": field_type})
    assert values_of(planned({"name": "A", "tier": "g" * MAX_OPTION_CHARS}, known))
    result = planned({"name": "A", "tier": "g" * (MAX_OPTION_CHARS + 1)}, known)
    assert values_of(result) == {}
    assert result.dropped == (Dropped("tier", DropReason.VALUE_TOO_LARGE),)


@pytest.mark.parametrize(
    ("field_type", "fits", "too_large"),
    [
        ("integer", MAX_FIELD_NUMBER, MAX_FIELD_NUMBER + 1),
        ("integer", -MAX_FIELD_NUMBER, "-1000000000000"),
        ("decimal", 999_999_999_999.5, 1e12),
        ("decimal", -MAX_FIELD_NUMBER, -(MAX_FIELD_NUMBER + 1)),
    ],
)
def test_numbers_over_12_digits_are_out_of_range(field_type: str, fits: object, too_large: object) -> None:
    known = Known.of(user_fields={"n": field_type})
    assert values_of(planned({"name": "A", "n": fits}, known)) == {"n": fits}
    result = planned({"name": "A", "n": too_large}, known)
    assert values_of(result) == {}
    assert result.dropped == (Dropped("n", DropReason.NUMBER_OUT_OF_RANGE),)


def test_a_lookup_field_takes_any_64_bit_record_id() -> None:
    known = Known.of(user_fields={"account": "lookup"})
    assert values_of(planned({"name": "A", "account": 2**62}, known)) == {"account": 2**62}


def test_a_new_field_is_not_created_for_a_13_digit_integer() -> None:
    result = planned({"name": "A", "big": 10**12})
    assert created(result) == []
    assert result.dropped == (Dropped("big", DropReason.NUMBER_OUT_OF_RANGE),)


def test_values_over_the_record_budget_leave_out_the_largest_until_the_rest_fit() -> None:
    known = Known.of(user_fields={"a": "text", "b": "text", "c": "text", "d": "integer"})
    traits = {"name": "A", "a": "a" * 40_000, "b": "b" * 50_000, "c": "c" * 45_000, "d": 7}
    assert 40_000 + 50_000 + 45_000 > MAX_FIELD_VALUES_BYTES > 45_000 + 40_000
    result = planned(traits, known)
    assert set(values_of(result)) == {"a", "c", "d"}
    assert result.dropped == (Dropped("b", DropReason.VALUE_TOO_LARGE),)


def test_the_record_budget_counts_json_bytes_not_characters() -> None:
    # 31,000 characters of "é" are 62,000 bytes of UTF-8: two such values are over the budget.
    known = Known.of(user_fields={"a": "text", "b": "text"})
    result = planned({"name": "A", "a": "é" * 31_000, "b": "é" * 32_000}, known)
    assert set(values_of(result)) == {"a"}
    assert result.dropped == (Dropped("b", DropReason.VALUE_TOO_LARGE),)


def test_a_field_is_not_created_for_a_value_the_record_budget_left_out() -> None:
    result = planned({"name": "A", "small": "s", "big1": "x" * 65_000, "big2": "y" * 64_000})
    assert created(result) == ["small", "big2"]
    assert result.dropped == (Dropped("big1", DropReason.VALUE_TOO_LARGE),)
