"""Back-pressure, as a pure plan: which partitions to pause and which to resume.

A partition pauses when it holds `per_partition` records beyond its committed point, or when all
partitions together hold `total`; it resumes once it is down to half of its own bound and the total is
down to half of its bound. The gap between the two marks keeps partitions from flapping.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from stream.engine.ports import Partition


@dataclass(frozen=True, slots=True, kw_only=True)
class BackPressure:
    per_partition: int = 2_000
    total: int = 10_000

    def plan(
        self, buffered: Mapping[Partition, int], paused: Set[Partition]
    ) -> tuple[list[Partition], list[Partition]]:
        """(to pause, to resume) given each partition's buffered records and what is paused now."""
        everything = sum(buffered.values())
        over_total = everything >= self.total
        pause = [
            p for p, n in buffered.items() if p not in paused and (n >= self.per_partition or over_total)
        ]
        resume = [
            p
            for p in paused
            if p in buffered and buffered[p] <= self.per_partition // 2 and everything <= self.total // 2
        ]
        return pause, resume
