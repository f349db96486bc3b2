"""Which offset of a partition may be committed, and which finished records lie beyond it.

This is where commit rules 1, 3 and 4 of `stream.engine.commits` are kept. Per-key order survives
rule 4: a key's records run one after another, so its finished records always precede its unfinished
ones.
"""

from __future__ import annotations

import base64
import zlib
from collections import deque
from collections.abc import Iterable

METADATA_PREFIX = "zs1:"
MAX_METADATA_CHARS = 3_500  # Kafka's offset.metadata.max.bytes defaults to 4096


class PartitionOffsets:
    """Offsets of one partition in flight, in arrival order. Amortised O(1) per record."""

    __slots__ = ("_finished", "_next_commit", "_pending", "_preset", "start", "version")

    def __init__(self, *, start: int | None = None, finished_beyond: Iterable[int] = ()) -> None:
        self._pending: deque[int] = deque()  # registered, in offset order
        self._finished: set[int] = set()  # finished but not yet at the head of _pending
        self._next_commit = start  # offset to commit next: one past the finished prefix
        self.start = start  # the committed position the work started from (None: nothing committed)
        self._preset = set(finished_beyond)  # finished by an earlier owner (rule 4)
        self.version = 0  # moves on whenever what a commit would say may have changed

    def register(self, offset: int) -> bool:
        """Register a record; True when an earlier owner already finished it (finish it, do not run it)."""
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} registered out of order after {self._pending[-1]}")
        if self._next_commit is None:
            self._next_commit = offset
            self.version += 1
        self._pending.append(offset)
        if offset in self._preset:
            self._preset.discard(offset)
            return True
        return False

    def finish(self, offset: int) -> None:
        self.version += 1
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            done = self._pending.popleft()
            self._finished.discard(done)
            self._next_commit = done + 1

    @property
    def committable(self) -> int | None:
        """The offset to commit (Kafka's convention: the next record to read), or None if nothing yet."""
        return self._next_commit

    @property
    def finished_beyond(self) -> frozenset[int]:
        """Finished records past the committable offset, including those an earlier owner finished."""
        return frozenset(self._finished | self._preset)

    @property
    def in_flight(self) -> int:
        """Records registered and not yet inside the finished prefix (buffered, running or finished early)."""
        return len(self._pending)


def encode_finished(base: int, finished: Iterable[int]) -> str:
    """Commit metadata for the finished offsets above `base`: a bitmap from `base`, compressed. When it
    would not fit, the longest run from `base` that fits is kept (what is left out is merely repeated)."""
    offsets = sorted(o for o in finished if o > base)
    if not offsets:
        return ""
    while offsets:
        bits = bytearray((offsets[-1] - base) // 8 + 1)
        for offset in offsets:
            delta = offset - base
            bits[delta // 8] |= 1 << (delta % 8)
        text = METADATA_PREFIX + base64.b64encode(zlib.compress(bytes(bits), 9)).decode()
        if len(text) <= MAX_METADATA_CHARS:
            return text
        offsets = offsets[: len(offsets) // 2]
    return ""


def decode_finished(base: int, metadata: str | None) -> set[int]:
    """The finished offsets `encode_finished` wrote; anything unreadable means none (only repeats)."""
    if not metadata or not metadata.startswith(METADATA_PREFIX):
        return set()
    try:
        bits = zlib.decompress(base64.b64decode(metadata.removeprefix(METADATA_PREFIX), validate=True))
    except (ValueError, zlib.error):
        return set()
    return {base + i * 8 + b for i, byte in enumerate(bits) for b in range(8) if byte & (1 << b)}
