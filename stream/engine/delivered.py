"""The memory of delivered events: which Zendesk acknowledged, so a redelivery is not posted twice.

Identify and group writes are idempotent upserts; a Sunshine event posted twice is two events. So every
track event Zendesk acknowledged leaves a marker (its delivery id, `Processor.delivery_id`) in the
delivered topic, in the partition numbered like its input partition, written with the broker's
confirmation before its offset may be committed. When an input partition is assigned, the markers of
its number are read back into this memory, so it survives crashes and moves with the partition between
replicas. An event whose id is remembered is skipped as `already_delivered`: on redelivery after a
crash, on replay and after a rewind.

The memory is bounded by a window (`STREAM_DEDUP_WINDOW`, 7 days by default): a marker older than the
window is forgotten, as the topic's own retention forgets it. Ids are kept as 16-byte digests, in the
order they were delivered, so forgetting the oldest is cheap.

One window is left between Zendesk's answer and the broker's confirmation of the marker. It is closed by
announcing each track before it is sent (a `PENDING` marker): an id found pending on redelivery may have
reached Zendesk, so Zendesk is asked (`Processor.was_delivered`) before it is sent again. Only the
attempts cut off by a crash cost that one read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

DEFAULT_WINDOW_S = 7 * 86_400.0
# Marker values. A track's first attempt is announced before it is sent (PENDING) and settled after
# (DONE, or a tombstone when Zendesk surely stored nothing); the compacted topic keeps the last one.
PENDING: Final = b"pending"
DONE: Final = b"done"
Marker = tuple[bytes, bytes | None, float]  # delivery id, value (None: a tombstone), when it was written


def digest(delivery_id: bytes) -> bytes:
    """The 16 bytes remembered for an id: collisions are out of reach (2^-64 at a billion ids)."""
    return hashlib.blake2b(delivery_id, digest_size=16).digest()


@dataclass
class DeliveredMemory:
    """Per input partition number: digest -> when it was delivered (whole seconds of the wall clock),
    and the attempts announced but not settled (a process stopped between sending and settling)."""

    window_s: float = DEFAULT_WINDOW_S
    _done: dict[int, dict[bytes, int]] = field(default_factory=dict)
    _pending: dict[int, dict[bytes, int]] = field(default_factory=dict)

    def load(self, number: int, markers: Iterable[Marker], *, now_s: float) -> int:
        """Replace what partition `number` remembers with `markers`, read in the order they were
        written (the last marker of an id wins); returns how many deliveries are inside the window."""
        oldest = now_s - self.window_s
        done: dict[bytes, int] = {}
        pending: dict[bytes, int] = {}
        for delivery_id, value, at_s in markers:
            key = digest(delivery_id)
            done.pop(key, None)  # delivered again after it was forgotten: keep the order
            pending.pop(key, None)
            if at_s < oldest:
                continue
            if value == PENDING:
                pending[key] = int(at_s)
            elif value is not None:
                done[key] = int(at_s)
        self._done[number], self._pending[number] = done, pending
        return len(done)

    def has(self, number: int, delivery_id: bytes, *, now_s: float) -> bool:
        at_s = self._done.get(number, {}).get(digest(delivery_id))
        return at_s is not None and at_s >= now_s - self.window_s

    def pending_since(self, number: int, delivery_id: bytes) -> float | None:
        """When an attempt at this id was announced and never settled: it may have reached Zendesk."""
        at_s = self._pending.get(number, {}).get(digest(delivery_id))
        return float(at_s) if at_s is not None else None

    def begin(self, number: int, delivery_id: bytes, *, now_s: float) -> None:
        self._pending.setdefault(number, {})[digest(delivery_id)] = int(now_s)

    def settle(self, number: int, delivery_id: bytes) -> None:
        """Zendesk surely stored nothing of the attempt."""
        self._pending.get(number, {}).pop(digest(delivery_id), None)

    def remember(self, number: int, delivery_id: bytes, *, now_s: float) -> None:
        key = digest(delivery_id)
        self._pending.get(number, {}).pop(key, None)
        remembered = self._done.setdefault(number, {})
        remembered.pop(key, None)
        remembered[key] = int(now_s)
        self._forget_older(remembered, now_s - self.window_s)

    def forget(self, numbers: Iterable[int]) -> None:
        """The partitions went to another member: it reads their markers itself."""
        for number in numbers:
            self._done.pop(number, None)
            self._pending.pop(number, None)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._done.values())

    @staticmethod
    def _forget_older(remembered: dict[bytes, int], oldest: float) -> None:
        while remembered:
            first = next(iter(remembered))
            if remembered[first] >= oldest:
                return
            del remembered[first]
