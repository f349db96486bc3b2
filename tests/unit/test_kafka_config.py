from __future__ import annotations

import re

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
        "events.zendesk-stream.retry",
        "events.zendesk-stream.dlq",
    )
    assert settings.group_id == "zendesk-stream"


def test_two_groups_on_one_input_get_their_own_retry_and_dead_letter_topics() -> None:
    staging = kafka_settings_from_env({"STREAM_TOPIC": "events", "STREAM_GROUP_ID": "staging"})
    production = kafka_settings_from_env({"STREAM_TOPIC": "events", "STREAM_GROUP_ID": "production"})
    assert (staging.retry_topic, staging.dlq_topic) == ("events.staging.retry", "events.staging.dlq")
    assert {staging.retry_topic, staging.dlq_topic}.isdisjoint({production.retry_topic, production.dlq_topic})


@pytest.mark.parametrize("name", ["KAFKA_ENABLE_AUTO_COMMIT", "KAFKA_GROUP_ID"])
def test_settings_the_engine_owns_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        kafka_settings_from_env({name: "x"})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("KAFKA_FOO_BAR", "KAFKA_FOO_BAR: not a librdkafka property (see librdkafka's CONFIGURATION.md)"),
        ("KAFKA_SASL_MECHANISMS_X", "(did you mean KAFKA_SASL_MECHANISMS?)"),
        ("KAFKA_SECURITY_PROTOCL", "(did you mean KAFKA_SECURITY_PROTOCOL?)"),
    ],
)
def test_an_unknown_kafka_variable_stops_start_up_with_one_line(name: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        kafka_settings_from_env({name: "1"})


def test_kubernetes_service_link_variables_are_recognised_and_ignored() -> None:
    links = {
        "KAFKA_PORT": "tcp://10.0.0.5:9092",
        "KAFKA_SERVICE_HOST": "10.0.0.5",
        "KAFKA_SERVICE_PORT": "9092",
        "KAFKA_SERVICE_PORT_CLIENT": "9092",
        "KAFKA_PORT_9092_TCP": "tcp://10.0.0.5:9092",
        "KAFKA_PORT_9092_TCP_ADDR": "10.0.0.5",
        "KAFKA_PORT_9092_TCP_PORT": "9092",
        "KAFKA_PORT_9092_TCP_PROTO": "tcp",
    }
    assert kafka_settings_from_env(links).client_overrides == {}


def test_properties_go_to_the_client_they_belong_to_and_underscored_names_resolve() -> None:
    settings = kafka_settings_from_env(
        {"KAFKA_AUTO_OFFSET_RESET": "latest", "KAFKA_LINGER_MS": "20", "KAFKA_LOG_LEVEL": "7"}
    )
    assert settings.client_config("consumer") == {
        "bootstrap.servers": "localhost:9092",
        "auto.offset.reset": "latest",
        "log_level": "7",
    }
    assert settings.client_config("producer") == {
        "bootstrap.servers": "localhost:9092",
        "linger.ms": "20",
        "log_level": "7",
    }
    assert settings.client_config("admin") == {"bootstrap.servers": "localhost:9092", "log_level": "7"}


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("KAFKA_ENABLE_AUTO_COMMIT", "true", "the engine commits offsets itself"),
        ("KAFKA_ACKS", "1", "must be durable (acks=all)"),
        ("KAFKA_ENABLE_IDEMPOTENCE", "false", "written idempotently"),
        ("KAFKA_GROUP_ID", "other", "use STREAM_GROUP_ID"),
    ],
)
def test_settings_the_guarantees_rest_on_are_refused_with_the_reason(
    name: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError, match=f"{name}: not allowed, .*{re.escape(reason)}"):
        kafka_settings_from_env({name: value})


def test_our_own_values_of_those_settings_are_accepted() -> None:
    settings = kafka_settings_from_env({"KAFKA_ACKS": "-1", "KAFKA_ENABLE_AUTO_COMMIT": "false"})
    assert settings.client_overrides == {}
