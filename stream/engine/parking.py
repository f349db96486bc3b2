"""Parked keys (order rule 5 of `stream.engine.lanes`): a key whose record waits in the retry path.

While a key has records in the retry path, its later events follow them into the retry topic, so they
cannot overtake. The state is derived from the retry topic itself: on assignment, the keys of the retry
records from the committed position to the end are counted (`Source.waiting_keys`); each retry record
we write adds one; each retry record that ends (delivered, skipped, dead-lettered, or found finished)
takes one away. Counting a finished record twice can only park a key a little longer, never release
it too early.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping


class ParkedKeys:
    def __init__(self) -> None:
        self._waiting: Counter[tuple[int, str]] = Counter()  # (partition number, key) -> records

    def __len__(self) -> int:
        return len(self._waiting)

    def is_parked(self, number: int, key: str) -> bool:
        return self._waiting.get((number, key), 0) > 0

    def add(self, number: int, key: str, count: int = 1) -> None:
        self._waiting[(number, key)] += count

    def add_all(self, number: int, keys: Mapping[str, int]) -> None:
        for key, count in keys.items():
            self.add(number, key, count)

    def release(self, number: int, key: str) -> bool:
        """One retry record of the key ended; True when the key is free again."""
        slot = (number, key)
        if slot not in self._waiting:
            return False
        self._waiting[slot] -= 1
        if self._waiting[slot] > 0:
            return False
        del self._waiting[slot]
        return True

    def forget(self, numbers: Iterable[int]) -> None:
        gone = set(numbers)
        for slot in [slot for slot in self._waiting if slot[0] in gone]:
            del self._waiting[slot]
