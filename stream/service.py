"""`zendesk-stream run`: check what can be checked before consuming, then run the engine.

Start-up checks, each ending in one clear line (ConfigError) rather than a stream of failures later:
the settings, a broker that answers, the topics we read and write, and Zendesk accepting our
credentials (the field lists are read once here, and cached for planning). With OAuth client
credentials or a refresh token, that first request obtains the access token; a refused token request
stops start-up with one line naming the setting and Zendesk's answer (exit 2).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from stream.config import Config
from stream.decoding import Decoder, open_schemas
from stream.delivery import DeliveryOptions, Destination
from stream.engine.options import EngineOptions
from stream.engine.runner import Engine
from stream.engine.stats import Stats
from stream.errors import ConfigError, FieldsUnavailable
from stream.kafka.admin import check_topics
from stream.kafka.consumer import ConsumerOptions
from stream.kafka.producer import AsyncProducer
from stream.kafka.scan import EndOffsets
from stream.kafka.source import KafkaSource
from stream.mapping.fields import Known
from stream.metrics import Metrics, MetricsServer, Sampler, ServiceObserver
from stream.observability import register_secrets
from stream.outcomes import DeadLetter
from stream.topics import max_message_bytes
from stream.zendesk import ZendeskClient, ZendeskConnection
from stream.zendesk.bulk import Bulk

log = structlog.get_logger("stream.service")
MAX_CONNECTIONS = 100  # to Zendesk; each in-flight event uses at most one at a time


def check_kafka(config: Config) -> int:
    """Checks the broker and the topics; returns the largest record the retry and dead-letter topics
    accept (their `max.message.bytes`), which the producer's request size follows."""
    kafka = config.kafka
    delivered = config.topics.delivered
    existing = check_topics(kafka, delivered=delivered is not None)
    if delivered is not None:
        retention_ms = int(existing[delivered].config.get("retention.ms", "-1") or -1)
        if 0 <= retention_ms < config.dedup_window_s * 1000:
            log.warning(
                "the delivered topic forgets markers before STREAM_DEDUP_WINDOW ends: events older than its "
                "retention may be posted again after a rewind",
                topic=delivered,
                retention_hours=round(retention_ms / 3_600_000, 1),
                window_hours=round(config.dedup_window_s / 3600, 1),
            )
    return max(max_message_bytes(existing[name].config) for name in (kafka.retry_topic, kafka.dlq_topic))


STARTUP_ATTEMPTS_DELAYS_S = (1.0, 3.0)  # between the attempts to reach Zendesk at start-up


async def check_zendesk(destination: Destination, connection: ZendeskConnection) -> Known:
    """Zendesk answers and accepts our credentials (README promises it): the custom field definitions are
    read, which planning needs anyway. A few tries over seconds, then one line naming the URL and what
    really happened; 401/403 raise ZendeskConfigError at once."""
    for delay in (*STARTUP_ATTEMPTS_DELAYS_S, None):
        try:
            return await destination.known()
        except FieldsUnavailable as err:
            if delay is None or isinstance(err.outcome, DeadLetter):
                default = connection.base_url == f"https://{connection.subdomain}.zendesk.com"
                setting = "ZENDESK_SUBDOMAIN" if default else "ZENDESK_BASE_URL"
                raise ConfigError(
                    f"{setting}: Zendesk at {connection.base_url} did not answer as expected "
                    f"({err.outcome.message})"
                ) from None
            log.warning("Zendesk not reachable yet, trying again", error=err.outcome.message, in_s=delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


def _described(failure: BaseException | None) -> str | None:
    return None if failure is None else f"a Kafka consumer thread stopped: {failure}"


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    summary: dict[str, Any]


async def run_service(
    config: Config,
    options: EngineOptions,
    *,
    exit_at_end: bool,
    consumer: ConsumerOptions | None = None,
    delivery: DeliveryOptions | None = None,
    max_record_bytes: int | None = None,
    on_progress: Callable[[Stats], None] | None = None,
    metrics_port: int | None = None,
) -> RunResult:
    """Runs until stopped (or caught up with `exit_at_end`). Raises ZendeskConfigError when Zendesk
    refuses our credentials, at start-up or later. `max_record_bytes`: what `check_kafka` found the
    retry and dead-letter topics take. Avro input: the schema registry (or the local schemas) is
    checked first; a registry that refuses our credentials or does not answer stops start-up
    (ConfigError). `metrics_port`: serve /metrics, /healthz and /readyz there
    (`stream.metrics`) from the start, so /readyz says "not yet" until the group assigns partitions;
    None: no server, no metrics."""
    register_secrets(config.zendesk.secrets)
    metrics = Metrics() if metrics_port is not None else None
    async with _serving(metrics, metrics_port):
        warning = config.zendesk.startup_warning()
        if warning is not None:
            log.warning(warning, auth=config.zendesk.auth.settings)
        schemas = open_schemas(config.input)
        try:
            if schemas is not None:
                await schemas.check()
                log.info(
                    "avro schemas", input_format=config.input.input_format.value, source=schemas.description
                )
            return await _run(
                config,
                options,
                exit_at_end=exit_at_end,
                consumer=consumer,
                delivery=delivery,
                max_record_bytes=max_record_bytes,
                on_progress=on_progress,
                metrics=metrics,
                decoder=Decoder(input_format=config.input.input_format, schemas=schemas),
            )
        finally:
            if schemas is not None:
                await schemas.close()


@contextlib.asynccontextmanager
async def _serving(metrics: Metrics | None, port: int | None) -> AsyncIterator[None]:
    if metrics is None or port is None:
        yield
        return
    server = MetricsServer(metrics, port=port).start()
    try:
        yield
    finally:
        server.close()


async def _run(
    config: Config,
    options: EngineOptions,
    *,
    exit_at_end: bool,
    consumer: ConsumerOptions | None,
    delivery: DeliveryOptions | None,
    max_record_bytes: int | None,
    on_progress: Callable[[Stats], None] | None,
    metrics: Metrics | None,
    decoder: Decoder,
) -> RunResult:
    connections = max(1, min(options.max_in_flight, MAX_CONNECTIONS))
    governor = config.governor()
    async with ZendeskClient(
        connection=config.zendesk,
        max_connections=connections,
        governor=governor,
        on_request=metrics.request if metrics is not None else None,
    ) as client:
        delivery = delivery or DeliveryOptions()
        bulk = (
            Bulk(
                client=client,
                linger_s=delivery.bulk_linger_s,
                always=delivery.bulk == "always",
                on_job_done=metrics.job_done if metrics is not None else None,
            )
            if delivery.bulk != "off"
            else None
        )
        destination = Destination(
            client=client,
            settings=config.destination,
            bulk=bulk,
            coalesce=delivery.coalesce,
            unchanged_ttl_s=delivery.unchanged_ttl_s,
            decoder=decoder,
        )
        known = await check_zendesk(destination, config.zendesk)
        log.info(
            "zendesk reachable",
            base_url=config.zendesk.base_url,
            user_fields=len(known.user_fields),
            organization_fields=len(known.organization_fields),
        )
        source = KafkaSource(settings=config.kafka, options=consumer)
        engine = Engine(
            source=source,
            producer=AsyncProducer(settings=config.kafka, max_record_bytes=max_record_bytes),
            processor=destination,
            topics=config.topics,
            options=options,
            on_progress=on_progress,
            observer=ServiceObserver(metrics) if metrics is not None else None,
            lag=metrics.lag if metrics is not None else None,
        )
        if metrics is None:
            exit_code = await engine.run(exit_at_end=exit_at_end)
        else:
            metrics.health.consumer_failure = lambda: _described(source.failure)
            ends = EndOffsets(config.kafka)
            sampler = Sampler(
                metrics,
                engine=engine.snapshot,
                governor=governor.budget,
                bulk_jobs=(lambda: bulk.poller.in_flight) if bulk is not None else None,
                token_expires_in_s=client.token_expires_in_s,
                caches=destination.cache_sizes,
                read_ends=ends.read,
            )
            sampling = asyncio.create_task(sampler.run(), name="metrics-sampler")
            try:
                exit_code = await engine.run(exit_at_end=exit_at_end)
            finally:
                sampling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampling
                sampler.take()  # the last values, for a scrape during the rest of the shutdown
                await asyncio.to_thread(ends.close)
        if engine.fatal is not None:
            raise engine.fatal
        if bulk is not None:
            await bulk.close()
        await governor.close()
        return RunResult(exit_code, {**engine.summary(), "zendesk": vars(destination.counters)})
