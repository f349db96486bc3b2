"""The engine's counters, for the summary, the periodic progress line and the metrics endpoint."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    """Counters for the summary and the metrics endpoint."""

    received: int = 0
    delivered: int = 0
    operations: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    retried_in_place: int = 0
    already_done: int = 0  # finished by an earlier owner, read again after a crash or a hand-over
    sent_to_retry: Counter[str] = field(default_factory=Counter)
    foreign_retries: int = 0  # retry records another consumer group wrote: not ours to act on
    max_in_flight_seen: int = 0
    outages: int = 0  # declared (`stream.engine.outage`)
    outage_s: float = 0.0  # how long the ended ones lasted, together
    outage_waits: int = 0  # failed attempts during an outage, not charged to their records

    @property
    def settled(self) -> int:
        """Input records that reached an end: delivered, skipped or dead-lettered."""
        return self.delivered + self.skipped.total() + self.dead_lettered.total()

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.received,
            "delivered": self.delivered,
            "operations": self.operations,
            "skipped": dict(self.skipped),
            "dead_lettered": dict(self.dead_lettered),
            "retried_in_place": self.retried_in_place,
            "already_done": self.already_done,
            "sent_to_retry": dict(self.sent_to_retry),
            "max_in_flight_seen": self.max_in_flight_seen,
            "outages": self.outages,
            "outage_s": round(self.outage_s, 1),
        }

    def since(self, before: Stats, seconds: float) -> dict[str, Any]:
        """What changed since `before`, `seconds` ago, and the rate of settled events."""
        settled = self.settled - before.settled
        return {
            "events_per_s": round(settled / seconds, 1) if seconds > 0 else None,
            "received": self.received - before.received,
            "delivered": self.delivered - before.delivered,
            "skipped": dict(self.skipped - before.skipped),
            "dead_lettered": dict(self.dead_lettered - before.dead_lettered),
            "sent_to_retry": dict(self.sent_to_retry - before.sent_to_retry),
        }
