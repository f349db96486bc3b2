"""The admin seam: the only module that talks to Kafka's admin API. Errors leave it as ConfigError."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from stream.errors import ConfigError
from stream.kafka.config import KafkaSettings
from stream.secret import Secret
from stream.topics import Action, AlterConfig, CreateTopic, ExistingTopic, IncreasePartitions

_TIMEOUT_S = 10.0
_PROBE_S = 1.0  # metadata requests in slices, so that refused credentials stop us in about a second


class _LibrdkafkaLog:
    """librdkafka's log lines, passed to the `librdkafka` logger unless muted: while `broker_count`
    probes, its failed-connection lines only repeat what the one-line ConfigError will say."""

    def __init__(self) -> None:
        self.muted = False
        self._logger = logging.getLogger("librdkafka")

    def log(self, level: int, msg: str, *args: object) -> None:  # what confluent-kafka calls
        if not self.muted:
            self._logger.log(level, msg, *args)


class KafkaAdmin:
    def __init__(self, *, settings: KafkaSettings, timeout_s: float = _TIMEOUT_S) -> None:
        self._settings = settings
        self._timeout_s = timeout_s
        # librdkafka says why a connection failed (refused credentials...) only to the error callback.
        self._errors: list[KafkaError] = []
        self._log = _LibrdkafkaLog()
        self._client = AdminClient(settings.client_config(), logger=self._log, error_cb=self._errors.append)

    def broker_count(self) -> int:
        """The number of brokers. Raises ConfigError naming the credentials when the brokers refuse them,
        the servers when none answers."""
        self._log.muted = True
        try:
            return self._probe_brokers()
        finally:
            self._log.muted = False

    def _probe_brokers(self) -> int:
        self._errors.clear()
        deadline = time.monotonic() + self._timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                return len(self._client.list_topics(timeout=max(0.1, min(_PROBE_S, remaining))).brokers)
            except KafkaException:
                self._client.poll(0)  # serves the error callback (and the log lines)
            refused = [e for e in self._errors if e.code() == KafkaError._AUTHENTICATION]
            if refused:
                raise ConfigError(self._authentication_failed(refused[-1])) from None
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"KAFKA_BOOTSTRAP_SERVERS: no broker answered at {self._settings.bootstrap_servers} "
                    f"within {self._timeout_s:.0f}s"
                ) from None

    def _authentication_failed(self, error: KafkaError) -> str:
        overrides = self._settings.client_overrides
        mechanism = str(overrides.get("sasl.mechanism") or overrides.get("sasl.mechanisms") or "GSSAPI")
        # "sasl_ssl://host:port/bootstrap: SASL authentication error: <why> (after 366ms in state AUTH_REQ)"
        why = error.str().split(": ", 1)[-1]
        why = re.sub(r"\s*\(after \d+ms in state \w+\)$", "", why).replace("\n", " ")
        for value in overrides.values():  # librdkafka does not echo passwords; never rely on it
            if isinstance(value, Secret) and value.reveal():
                why = why.replace(value.reveal(), "***")
        return (
            f"KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD: authentication failed at "
            f"{self._settings.bootstrap_servers} with {mechanism} (KAFKA_SASL_MECHANISM): {why}"
        )

    def existing_topics(self, names: Iterable[str]) -> dict[str, ExistingTopic]:
        metadata = self._client.list_topics(timeout=self._timeout_s)
        present = [name for name in names if name in metadata.topics]
        if not present:
            return {}
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in present]
        described = self._client.describe_configs(resources)
        found = {}
        for resource, future in described.items():
            entries = _result(future, f"describing topic {resource.name}")
            partitions = metadata.topics[resource.name].partitions
            found[resource.name] = ExistingTopic(
                name=resource.name,
                partitions=len(partitions),
                config={key: entry.value for key, entry in entries.items() if entry.value is not None},
                replication_factor=max((len(p.replicas) for p in partitions.values()), default=1),
            )
        return found

    def apply(self, actions: Iterable[Action]) -> None:
        for action in actions:
            match action:
                case CreateTopic(spec=spec):
                    new = NewTopic(
                        spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=spec.replication_factor,
                        config=dict(spec.config),
                    )
                    for future in self._client.create_topics([new]).values():
                        _result(future, f"creating {spec.name}", tolerate=KafkaError.TOPIC_ALREADY_EXISTS)
                    self._wait_until_visible(spec.name, spec.partitions)
                case AlterConfig(topic=topic, changes=changes):
                    entries = [
                        ConfigEntry(key, wanted, incremental_operation=AlterConfigOpType.SET)
                        for key, (_, wanted) in changes.items()
                    ]
                    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=entries)
                    for future in self._client.incremental_alter_configs([resource]).values():
                        _result(future, f"altering topic {topic}")
                case IncreasePartitions(topic=topic, wanted=wanted):
                    for future in self._client.create_partitions([NewPartitions(topic, wanted)]).values():
                        _result(future, f"adding partitions to {topic}")
                case _:
                    pass  # warnings are for people, not for the cluster

    def _wait_until_visible(self, topic: str, partitions: int) -> None:
        """Metadata spreads asynchronously: wait until every partition has a leader, so a run right
        after this one sees the topic and plans nothing."""
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline:
            found = self._client.list_topics(topic=topic, timeout=self._timeout_s).topics.get(topic)
            leaders = [] if found is None or found.error else [p.leader for p in found.partitions.values()]
            if len(leaders) >= partitions and all(leader >= 0 for leader in leaders):
                return
            time.sleep(0.1)
        raise ConfigError(f"topic {topic} was created but has no leader after {self._timeout_s:.0f}s")


def _result(future: object, doing: str, *, tolerate: int | None = None) -> dict[str, ConfigEntry]:
    try:
        value = future.result()  # type: ignore[attr-defined]
    except KafkaException as err:
        error = err.args[0] if err.args else None
        if tolerate is not None and isinstance(error, KafkaError) and error.code() == tolerate:
            return {}
        raise ConfigError(f"Kafka refused {doing}: {error.str() if error else err}") from None
    return value if isinstance(value, dict) else {}


def check_topics(kafka: KafkaSettings, *, delivered: bool = False) -> dict[str, ExistingTopic]:
    """The broker answers, the input, retry and dead-letter topics exist (and the delivered topic, when
    asked), and the retry and delivered topics have a partition for every input partition; one line
    naming the problem otherwise."""
    admin = KafkaAdmin(settings=kafka)
    admin.broker_count()
    wanted = [kafka.input_topic, kafka.retry_topic, kafka.dlq_topic]
    wanted += [kafka.delivered_topic] if delivered else []
    existing = admin.existing_topics(wanted)
    missing = [name for name in wanted if name not in existing]
    if missing:
        raise ConfigError(
            f"topic {missing[0]} does not exist on {kafka.bootstrap_servers}; "
            "create the topics with `zendesk-stream topics apply`"
        )
    inputs = existing[kafka.input_topic].partitions
    # A key's retry records and its delivered markers live in the partitions with its input partition's
    # number.
    for aligned in wanted[1:]:
        if aligned != kafka.dlq_topic and existing[aligned].partitions < inputs:
            raise ConfigError(
                f"topic {aligned} has {existing[aligned].partitions} partitions, fewer than the {inputs} "
                f"of {kafka.input_topic}; give it at least as many "
                "(`zendesk-stream topics apply --increase-partitions`)"
            )
    return existing
