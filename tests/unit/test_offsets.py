from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.engine.offsets import PartitionOffsets, decode_finished, encode_finished


def test_nothing_registered_means_nothing_to_commit() -> None:
    assert PartitionOffsets().committable is None


def test_an_unfinished_record_holds_back_every_later_offset() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12):
        offsets.register(offset)
    offsets.finish(11)
    offsets.finish(12)
    assert offsets.committable == 10
    offsets.finish(10)
    assert offsets.committable == 13
    assert offsets.in_flight == 0


def test_gaps_in_offsets_from_compaction_or_transactions_are_fine() -> None:
    offsets = PartitionOffsets()
    offsets.register(5)
    offsets.register(9)
    offsets.finish(5)
    assert offsets.committable == 6
    offsets.finish(9)
    assert offsets.committable == 10


def test_registering_out_of_order_is_refused() -> None:
    offsets = PartitionOffsets()
    offsets.register(3)
    with pytest.raises(ValueError, match="out of order"):
        offsets.register(3)


def test_start_offset_is_committable_before_any_record() -> None:
    assert PartitionOffsets(start=42).committable == 42


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**31))
def test_committable_is_always_the_end_of_the_finished_prefix(count: int, seed: int) -> None:
    offsets = PartitionOffsets()
    for offset in range(count):
        offsets.register(offset)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    finished: set[int] = set()
    for offset in order:
        offsets.finish(offset)
        finished.add(offset)
        prefix = 0
        while prefix in finished:
            prefix += 1
        assert offsets.committable == (prefix if prefix > 0 else 0)


def test_records_an_earlier_owner_finished_are_reported_and_count_as_finished() -> None:
    offsets = PartitionOffsets(start=10, finished_beyond={12, 13})
    assert offsets.register(10) is False
    assert offsets.register(11) is False
    assert offsets.register(12) is True
    offsets.finish(12)
    assert offsets.committable == 10
    offsets.finish(10)
    offsets.finish(11)
    assert offsets.committable == 13
    assert offsets.finished_beyond == {13}


def test_finished_offsets_beyond_the_prefix_travel_in_the_commit_metadata() -> None:
    offsets = PartitionOffsets()
    for offset in range(100, 110):
        offsets.register(offset)
    for offset in (103, 104, 109):
        offsets.finish(offset)
    base = offsets.committable
    assert base == 100
    metadata = encode_finished(base, offsets.finished_beyond)
    assert metadata.startswith("zs1:")
    assert decode_finished(base, metadata) == {103, 104, 109}


@given(st.sets(st.integers(min_value=1, max_value=50_000), max_size=3_000))
def test_metadata_round_trips_or_keeps_a_prefix_and_always_fits(finished: set[int]) -> None:
    metadata = encode_finished(0, finished)
    assert len(metadata) <= 3_500
    decoded = decode_finished(0, metadata)
    assert decoded <= finished
    if decoded:  # what is kept is the lowest run of the finished offsets
        assert all(o in decoded for o in finished if o <= max(decoded))


def test_unreadable_metadata_means_nothing_is_known_finished() -> None:
    assert decode_finished(0, "zs1:not base64!") == set()
    assert decode_finished(0, "someone else's metadata") == set()
    assert decode_finished(0, None) == set()
