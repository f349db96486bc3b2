"""The consumer seam: one thread owns the confluent-kafka Consumer; the engine talks to it by commands.

Every call on the Consumer (poll, commit, pause, resume, committed offsets) happens on this thread, so
the client is never used concurrently. Records and rebalance events are handed to the engine's asyncio
loop. A revocation blocks this thread (and so the rebalance) until the engine has finished or abandoned
the work of the revoked partitions and returned the offsets to commit: a partition's next owner never
starts while our work on it still runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream.engine.ports import CommitOffsets, Partition
from stream.engine.records import InboundRecord
from stream.kafka.config import KafkaSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

RevokeHandler = Callable[[list[Partition]], Awaitable[CommitOffsets]]


@dataclass(frozen=True, kw_only=True)
class ConsumerOptions:
    batch_size: int = 500
    poll_timeout_s: float = 0.01  # also the longest a command (a commit) waits for this thread
    revoke_deadline_s: float = 30.0
    group_protocol: str = "classic"  # or "consumer" (KIP-848)
    group_instance_id: str | None = None  # static membership
    session_timeout_ms: int = 45_000
    max_poll_interval_ms: int = 300_000


class ConsumerThread:
    def __init__(
        self,
        *,
        settings: KafkaSettings,
        topics: list[str] | None,
        options: ConsumerOptions,
        loop: asyncio.AbstractEventLoop,
        on_records: Callable[[list[InboundRecord]], None],
        on_assigned: Callable[[list[Partition]], Awaitable[None]] | None = None,
        on_revoked: RevokeHandler | None = None,
        on_lost: Callable[[list[Partition]], Awaitable[None]] | None = None,
        group_id: str | None = None,
    ) -> None:
        """`topics` subscribes as a group member, with the three rebalance handlers; None means the
        partitions are assigned by hand (`assign`/`unassign`), committing under `group_id`."""
        self._topics = topics
        self._options = options
        self._loop = loop
        self._on_records = on_records
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked
        self._on_lost = on_lost
        self._commands: queue.SimpleQueue[tuple[Callable[[Consumer], Any], concurrent.futures.Future[Any]]]
        self._commands = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._config = self._consumer_config(settings, options)
        if group_id is not None:  # the retry side: assigned by hand, and every retry record must be read
            self._config["group.id"] = group_id
            self._config["auto.offset.reset"] = "earliest"
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="kafka-consumer", daemon=True)

    @staticmethod
    def _consumer_config(settings: KafkaSettings, options: ConsumerOptions) -> dict[str, Any]:
        """Our defaults, then the user's properties (theirs win), then what the engine's commit rules
        rest on (`stream.kafka.config` refuses user values for those)."""
        defaults: dict[str, Any] = {
            "auto.offset.reset": "earliest",
            "group.protocol": options.group_protocol,
            "max.poll.interval.ms": options.max_poll_interval_ms,
        }
        if options.group_protocol == "classic":
            defaults["partition.assignment.strategy"] = "cooperative-sticky"
            defaults["session.timeout.ms"] = options.session_timeout_ms
        if options.group_instance_id:
            defaults["group.instance.id"] = options.group_instance_id
        return {
            **defaults,
            **settings.client_config("consumer"),
            "group.id": settings.group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }

    # --------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to leave the group (a last revocation commits) and close the consumer."""
        self._stopping.set()

    async def wait_closed(self) -> None:
        await asyncio.to_thread(self._thread.join)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    async def call(self, command: Callable[[Consumer], T]) -> T:
        """Run `command(consumer)` on the consumer thread and wait for its result."""
        if not self._thread.is_alive():
            raise RuntimeError("the consumer is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._commands.put((command, future))
        if not self._thread.is_alive():  # it ended meanwhile and will not serve the command
            self._fail_pending_commands()
        return await asyncio.wrap_future(future)

    # --------------------------------------------------------------------------------- the thread

    def _main(self) -> None:
        consumer = Consumer(self._config, logger=logging.getLogger("librdkafka"))
        try:
            if self._topics is not None:
                consumer.subscribe(
                    self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
                )
            while not self._stopping.is_set():
                self._run_commands(consumer)
                messages = consumer.consume(self._options.batch_size, self._options.poll_timeout_s)
                records = [r for r in (self._record(m) for m in messages) if r is not None]
                if records:
                    self._loop.call_soon_threadsafe(self._on_records, records)
        except BaseException as err:  # reported to the engine, which stops loudly
            self.failure = err
        finally:
            self._run_commands(consumer)
            try:
                consumer.close()  # leaves the group; the revocation callback commits what is finished
            except Exception as err:  # the group takes the partitions back after the session timeout
                log.warning("closing the consumer failed: %s", err)
            self._fail_pending_commands()

    def _run_commands(self, consumer: Consumer) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(command(consumer))
            except BaseException as err:  # handed to the caller
                future.set_exception(err)

    def _fail_pending_commands(self) -> None:
        while True:
            try:
                _, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the consumer is closed"))

    def _record(self, message: Message) -> InboundRecord | None:
        error = message.error()
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", error.str())
                if error.fatal():
                    raise KafkaException(error)
            return None
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return None
        kind, stamp = message.timestamp()
        return InboundRecord(
            topic=topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value(),
            headers=message_headers(message),
            timestamp_ms=stamp if kind else None,
        )

    # ------------------------------------------------------------------ rebalance (consumer thread)

    def _wait(self, coroutine: Awaitable[T], timeout: float | None) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)  # type: ignore[arg-type]

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._on_assigned is not None
        self._wait(self._on_assigned([(p.topic, p.partition) for p in partitions]), None)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._on_revoked is not None
        parts = [(p.topic, p.partition) for p in partitions]
        # The engine enforces its own deadline and returns; the margin covers the hand-over.
        offsets = self._wait(self._on_revoked(parts), self._options.revoke_deadline_s + 10)
        if offsets and not commit_offsets(consumer, offsets, retried=False):
            log.warning(
                "%d partitions go without their last commit: their next owner starts from the one before "
                "and skips the tracks the delivered markers name",
                len(parts),
            )

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._on_lost is not None
        self._wait(self._on_lost([(p.topic, p.partition) for p in partitions]), None)


def _topic_partitions(offsets: CommitOffsets) -> list[TopicPartition]:
    return [TopicPartition(t, p, pos.offset, metadata=pos.metadata) for (t, p), pos in offsets.items()]


def commit_offsets(consumer: Consumer, offsets: CommitOffsets, *, retried: bool = True) -> bool:
    """Synchronous commit. A failure is logged and reported; unless told otherwise (`retried`), the
    caller commits again later."""
    try:
        consumer.commit(offsets=_topic_partitions(offsets), asynchronous=False)
    except KafkaException as err:
        error = err.args[0] if err.args else err
        if isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET:
            return True
        log.warning("commit failed, will retry: %s" if retried else "commit failed: %s", error)
        return False
    return True


def message_headers(message: Message) -> tuple[tuple[str, bytes], ...]:
    raw = message.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return tuple((str(k), v.encode() if isinstance(v, str) else (v or b"")) for k, v in pairs)


def assign(partitions: list[Partition]) -> Callable[[Consumer], None]:
    """A command: start reading these partitions from the group's committed offsets."""
    return lambda consumer: consumer.incremental_assign([TopicPartition(t, p) for t, p in partitions])


def unassign(partitions: list[Partition]) -> Callable[[Consumer], None]:
    return lambda consumer: consumer.incremental_unassign([TopicPartition(t, p) for t, p in partitions])
