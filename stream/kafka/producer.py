"""An asyncio face on confluent-kafka's producer: `await send(...)` returns once the broker confirmed.

The engine commits an offset only after its dead-letter or retry copy is durable, so every send waits
for the delivery report (acks=all, idempotent producer). Delivery reports are served by a small thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from stream.errors import StreamError
from stream.kafka.config import KafkaSettings

UNASSIGNED = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses (by key)


class ProduceFailed(StreamError):
    """The broker did not confirm a record within the producer's delivery timeout."""


class AsyncProducer:
    def __init__(self, *, settings: KafkaSettings, client_id: str = "zendesk-stream") -> None:
        config: dict[str, str | int | float | bool] = {
            **settings.client_config(),
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "delivery.timeout.ms": 60_000,
        }
        self._producer = Producer(config, logger=logging.getLogger("librdkafka"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="kafka-producer", daemon=True)
        self._thread.start()

    def _serve_reports(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    async def send(
        self,
        topic: str,
        *,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, str | bytes | None]],
        partition: int | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def report(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, done, err)

        while True:
            try:
                self._producer.produce(
                    topic,
                    key=key,
                    value=value,
                    headers=list(headers),
                    on_delivery=report,
                    partition=UNASSIGNED if partition is None else partition,
                )
                break
            except BufferError:  # local queue full: let reports drain, then try again
                await asyncio.sleep(0.05)
        await done

    def close(self, timeout_s: float = 30.0) -> None:
        self._producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s)


def _settle(future: asyncio.Future[None], err: KafkaError | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(None)
    else:
        future.set_exception(ProduceFailed(f"Kafka did not accept the record: {err.str()}"))
