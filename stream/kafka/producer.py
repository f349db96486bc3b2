"""An asyncio face on confluent-kafka's producer: `await send(...)` returns once the broker confirmed.

The engine commits an offset only after its dead-letter or retry copy is durable, so every send waits
for the delivery report (acks=all, idempotent producer). Delivery reports are served by a small thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream.errors import ProduceFailed, RecordTooLarge
from stream.kafka.config import KafkaSettings

UNASSIGNED = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner chooses (by key)
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE}
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000  # librdkafka's default request size
FRAMING_BYTES = 64 * 1024  # request framing around the largest record a topic accepts


class AsyncProducer:
    def __init__(
        self,
        *,
        settings: KafkaSettings,
        client_id: str = "zendesk-stream",
        max_record_bytes: int | None = None,
    ) -> None:
        """`max_record_bytes`: the largest record the topics we write accept; the producer's request size
        follows it, so a copy the topic would take is never refused on our side."""
        config: dict[str, str | int | float | bool] = {
            "client.id": client_id,
            "linger.ms": 5,
            "delivery.timeout.ms": 60_000,
            **settings.client_config("producer"),
            "acks": "all",
            "enable.idempotence": True,
        }
        if max_record_bytes is not None and settings.chosen("message.max.bytes") is None:
            config["message.max.bytes"] = max(DEFAULT_MESSAGE_MAX_BYTES, max_record_bytes + FRAMING_BYTES)
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
        headers: Sequence[tuple[str, bytes]],
        partition: int | None = None,
    ) -> int:
        """Returns the record's offset once the broker confirmed it."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()

        def report(err: KafkaError | None, msg: Message) -> None:
            loop.call_soon_threadsafe(_settle, done, err, msg.offset())

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
            except KafkaException as err:
                raise _failure(err.args[0] if err.args else None, str(err)) from None
        return await done

    async def close(self, timeout_s: float = 30.0) -> None:
        await asyncio.to_thread(self._close, timeout_s)

    def _close(self, timeout_s: float) -> None:
        self._producer.flush(timeout_s)
        self._stop.set()
        self._thread.join(timeout_s)


def _settle(future: asyncio.Future[int], err: KafkaError | None, offset: int | None) -> None:
    if future.done():
        return
    if err is None:
        future.set_result(offset if offset is not None else -1)
    else:
        future.set_exception(_failure(err, err.str()))


def _failure(error: object, text: str) -> ProduceFailed:
    if isinstance(error, KafkaError) and error.code() in _TOO_LARGE:
        return RecordTooLarge(f"the record is too large for the topic: {text}")
    return ProduceFailed(f"Kafka did not accept the record: {text}")
