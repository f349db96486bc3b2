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
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

DEFAULT_WINDOW_S = 7 * 86_400.0


def digest(delivery_id: bytes) -> bytes:
    """The 16 bytes remembered for an id: collisions are out of reach (2^-64 at a billion ids)."""
    return hashlib.blake2b(delivery_id, digest_size=16).digest()


@dataclass
class DeliveredMemory:
    """Per input partition number: digest -> when it was delivered (whole seconds of the wall clock)."""

    window_s: float = DEFAULT_WINDOW_S
    _by_partition: dict[int, dict[bytes, int]] = field(default_factory=dict)

    def load(self, number: int, markers: Iterable[tuple[bytes, float]], *, now_s: float) -> int:
        """Replace what partition `number` remembers with `markers` (id, delivered-at in seconds), read
        in the order they were written; returns how many are inside the window."""
        oldest = now_s - self.window_s
        remembered: dict[bytes, int] = {}
        for delivery_id, at_s in markers:
            if at_s >= oldest:
                key = digest(delivery_id)
                remembered.pop(key, None)  # delivered again after it was forgotten: keep the order
                remembered[key] = int(at_s)
        self._by_partition[number] = remembered
        return len(remembered)

    def has(self, number: int, delivery_id: bytes, *, now_s: float) -> bool:
        at_s = self._by_partition.get(number, {}).get(digest(delivery_id))
        return at_s is not None and at_s >= now_s - self.window_s

    def remember(self, number: int, delivery_id: bytes, *, now_s: float) -> None:
        remembered = self._by_partition.setdefault(number, {})
        key = digest(delivery_id)
        remembered.pop(key, None)
        remembered[key] = int(now_s)
        self._forget_older(remembered, now_s - self.window_s)

    def forget(self, numbers: Iterable[int]) -> None:
        """The partitions went to another member: it reads their markers itself."""
        for number in numbers:
            self._by_partition.pop(number, None)

    def __len__(self) -> int:
        return sum(len(ids) for ids in self._by_partition.values())

    @staticmethod
    def _forget_older(remembered: dict[bytes, int], oldest: float) -> None:
        while remembered:
            first = next(iter(remembered))
            if remembered[first] >= oldest:
                return
            del remembered[first]
