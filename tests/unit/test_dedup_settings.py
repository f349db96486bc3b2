"""STREAM_DEDUP_WINDOW and STREAM_DELIVERED_TOPIC: parsed once, a bad value named in one line."""

from __future__ import annotations

import pytest

from stream.config import dedup_window_from_env, engine_options_from_env
from stream.errors import ConfigError
from stream.kafka.config import kafka_settings_from_env


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("", 7 * 86_400), ("7d", 7 * 86_400), ("36h", 129_600), ("90m", 5_400), ("600", 600), ("0", 0)],
)
def test_the_dedup_window_is_a_duration_or_seconds_and_0_turns_it_off(raw: str, seconds: float) -> None:
    assert dedup_window_from_env({"STREAM_DEDUP_WINDOW": raw}) == seconds
    assert engine_options_from_env({"STREAM_DEDUP_WINDOW": raw}).dedup_window_s == seconds


@pytest.mark.parametrize("raw", ["a week", "-1", "91d", "7w"])
def test_a_bad_dedup_window_is_one_line_naming_the_setting(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"^STREAM_DEDUP_WINDOW: expected a duration"):
        dedup_window_from_env({"STREAM_DEDUP_WINDOW": raw})


def test_the_delivered_topic_is_specific_to_the_group_unless_named() -> None:
    assert kafka_settings_from_env({"STREAM_TOPIC": "in", "STREAM_GROUP_ID": "g"}).delivered_topic == (
        "in.g.delivered"
    )
    named = kafka_settings_from_env({"STREAM_DELIVERED_TOPIC": "markers"})
    assert named.delivered_topic == "markers"
    with pytest.raises(ConfigError, match=r"^STREAM_DELIVERED_TOPIC"):
        kafka_settings_from_env({"STREAM_DELIVERED_TOPIC": "no spaces"})
