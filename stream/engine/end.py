"""End detection for `run --exit-at-end`: every record that existed at start-up, and every retry record
written since, is committed.

Partitions this process owns are judged by its own offsets, at once, with no broker round trip (so the
run ends right after its last commit); partitions other members own are judged by the group's committed
positions, which the caller asks for at most about once a second.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from stream.engine.offsets import PartitionOffsets
from stream.engine.ports import Partition, Position


@dataclass(frozen=True, slots=True)
class Remaining:
    owned_done: bool  # every owned partition is committed up to its target
    elsewhere: tuple[Partition, ...]  # partitions owned by no one here: ask the broker


@dataclass
class EndTargets:
    ends: dict[Partition, int]  # the end offsets seen at start-up, for partitions holding records
    written: dict[Partition, int] = field(default_factory=dict)  # the last retry offsets we wrote since

    def wrote(self, partition: Partition, offset: int) -> None:
        self.written[partition] = max(offset, self.written.get(partition, -1))

    def target(self, partition: Partition) -> int:
        return max(self.ends.get(partition, 0), self.written.get(partition, -1) + 1)

    def remaining(
        self, owned: Mapping[Partition, PartitionOffsets], *, skips_unread: Callable[[Partition], bool]
    ) -> Remaining:
        """`skips_unread(p)`: an owned partition with nothing committed and nothing read needs nothing
        (a new group told to start at the end skips what existed at start-up, by the user's choice)."""
        elsewhere = []
        for partition in sorted({*self.ends, *self.written}):
            offsets = owned.get(partition)
            if offsets is None:
                elsewhere.append(partition)
            elif offsets.committable is None:
                if not skips_unread(partition):
                    return Remaining(owned_done=False, elsewhere=())
            elif offsets.committable < self.target(partition):
                return Remaining(owned_done=False, elsewhere=())
        return Remaining(owned_done=True, elsewhere=tuple(elsewhere))

    def reached(self, committed: Mapping[Partition, Position | None]) -> bool:
        """The group's committed positions of partitions owned elsewhere are at their targets."""
        return all(
            position is not None and position.offset >= self.target(partition)
            for partition, position in committed.items()
        )
