"""`zendesk-stream run`: check what can be checked before consuming, then run the engine.

Start-up checks, each ending in one clear line (ConfigError) rather than a stream of failures later:
the settings, a broker that answers, the topics we read and write, and Zendesk accepting our
credentials (the field lists are read once here, and cached for planning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from stream.config import Config
from stream.delivery import Destination, FieldsUnavailable
from stream.engine.runner import Engine, EngineOptions
from stream.errors import ConfigError
from stream.kafka.admin import KafkaAdmin
from stream.zendesk import ZendeskClient

log = structlog.get_logger("stream.service")
MAX_CONNECTIONS = 100  # to Zendesk; each in-flight event uses at most one at a time


def check_kafka(config: Config) -> None:
    admin = KafkaAdmin(settings=config.kafka)
    admin.broker_count()
    kafka = config.kafka
    wanted = [kafka.input_topic, kafka.retry_topic, kafka.dlq_topic]
    existing = admin.existing_topics(wanted)
    missing = [name for name in wanted if name not in existing]
    if missing:
        raise ConfigError(
            f"topic {missing[0]} does not exist on {kafka.bootstrap_servers}; "
            "create the topics with `zendesk-stream topics apply`"
        )
    inputs, retries = existing[kafka.input_topic].partitions, existing[kafka.retry_topic].partitions
    if retries < inputs:
        # A key's retry records live in the retry partition with its input partition's number.
        raise ConfigError(
            f"topic {kafka.retry_topic} has {retries} partitions, fewer than the {inputs} of "
            f"{kafka.input_topic}; give it at least as many "
            "(`zendesk-stream topics apply --increase-partitions`)"
        )


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    summary: dict[str, Any]


async def run_service(config: Config, options: EngineOptions, *, exit_at_end: bool) -> RunResult:
    """Runs until stopped (or caught up with `exit_at_end`). Raises ZendeskConfigError when Zendesk
    refuses our credentials, at start-up or later."""
    connections = max(1, min(options.max_in_flight, MAX_CONNECTIONS))
    async with ZendeskClient(connection=config.zendesk, max_connections=connections) as client:
        destination = Destination(client=client, settings=config.destination)
        try:
            known = await destination.known()
        except FieldsUnavailable as err:  # not fatal: planning asks again, per event
            log.warning("could not read Zendesk field definitions at start-up", error=str(err))
        else:
            log.info(
                "zendesk reachable",
                base_url=config.zendesk.base_url,
                user_fields=len(known.user_fields),
                organization_fields=len(known.organization_fields),
            )
        engine = Engine(settings=config.kafka, processor=destination, options=options)
        exit_code = await engine.run(exit_at_end=exit_at_end)
        if engine.fatal is not None:
            raise engine.fatal
        return RunResult(exit_code, {**engine.summary(), "zendesk": vars(destination.counters)})
