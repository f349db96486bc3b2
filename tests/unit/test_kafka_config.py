from __future__ import annotations

import pytest

from stream.errors import ConfigError
from stream.kafka.config import kafka_settings_from_env
from stream.secret import Secret

PASSWORD = "kafka-Pa55word-value"


def test_sasl_password_is_hidden_from_repr_and_reaches_librdkafka_intact() -> None:
    settings = kafka_settings_from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "stream",
            "KAFKA_SASL_PASSWORD": PASSWORD,
        }
    )
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)
    assert isinstance(settings.client_overrides["sasl.password"], Secret)
    assert settings.client_config() == {
        "bootstrap.servers": "broker-1:9092,broker-2:9092",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "stream",
        "sasl.password": PASSWORD,
    }


def test_defaults_and_topic_names() -> None:
    settings = kafka_settings_from_env({"STREAM_TOPIC": "events"})
    assert settings.client_config() == {"bootstrap.servers": "localhost:9092"}
    assert (settings.input_topic, settings.retry_topic, settings.dlq_topic) == (
        "events",
        "events.retry",
        "events.dlq",
    )
    assert settings.group_id == "zendesk-stream"


@pytest.mark.parametrize("name", ["KAFKA_ENABLE_AUTO_COMMIT", "KAFKA_GROUP_ID"])
def test_settings_the_engine_owns_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        kafka_settings_from_env({name: "x"})
