from __future__ import annotations

from stream.engine.lanes import LaneId, Lanes
from stream.engine.records import InboundRecord


def _record(offset: int, partition: int = 0) -> InboundRecord:
    return InboundRecord(topic="t", partition=partition, offset=offset, key=None, value=b"{}")


def _lane(key: str, partition: int = 0) -> LaneId:
    return LaneId("t", partition, key)


def test_records_of_one_key_start_one_at_a_time_in_offset_order() -> None:
    lanes = Lanes(max_in_flight=10)
    for offset in range(3):
        lanes.add(_lane("a"), _record(offset))
    started = list(lanes.startable(0.0))
    assert [r.offset for _, r in started] == [0]
    assert list(lanes.startable(0.0)) == []  # the key is busy
    lanes.finish(_lane("a"))
    assert [r.offset for _, r in lanes.startable(0.0)] == [1]


def test_different_keys_run_concurrently_up_to_the_in_flight_limit() -> None:
    lanes = Lanes(max_in_flight=2)
    for offset, key in enumerate("abc"):
        lanes.add(_lane(key), _record(offset))
    assert [lane.key for lane, _ in lanes.startable(0.0)] == ["a", "b"]
    assert lanes.in_flight == 2
    lanes.finish(_lane("a"))
    assert [lane.key for lane, _ in lanes.startable(0.0)] == ["c"]


def test_a_finished_lane_with_more_records_waits_behind_keys_already_waiting() -> None:
    lanes = Lanes(max_in_flight=1)
    lanes.add(_lane("a"), _record(0))
    lanes.add(_lane("b"), _record(1))
    lanes.add(_lane("a"), _record(2))
    assert [r.offset for _, r in lanes.startable(0.0)] == [0]
    lanes.finish(_lane("a"))
    assert [r.offset for _, r in lanes.startable(0.0)] == [1]  # b was waiting first
    lanes.finish(_lane("b"))
    assert [r.offset for _, r in lanes.startable(0.0)] == [2]


def test_held_partitions_start_nothing_while_others_go_on() -> None:
    lanes = Lanes(max_in_flight=10)
    lanes.add(_lane("a", 0), _record(0, 0))
    lanes.add(_lane("b", 1), _record(0, 1))
    lanes.hold([("t", 0)])
    assert [lane for lane, _ in lanes.startable(0.0)] == [_lane("b", 1)]


def test_dropping_a_partition_forgets_its_waiting_records() -> None:
    lanes = Lanes(max_in_flight=1)
    lanes.add(_lane("a", 0), _record(0, 0))
    lanes.add(_lane("b", 0), _record(1, 0))
    lanes.add(_lane("c", 1), _record(0, 1))
    list(lanes.startable(0.0))
    assert lanes.drop([("t", 0)]) == 2
    assert lanes.in_flight == 0
    assert [lane for lane, _ in lanes.startable(0.0)] == [_lane("c", 1)]


def test_a_deferred_lane_waits_for_its_time_without_holding_a_slot() -> None:
    lanes = Lanes(max_in_flight=1)
    lanes.add(_lane("a"), _record(0))
    lanes.add(_lane("b"), _record(1))
    assert [lane.key for lane, _ in lanes.startable(0.0)] == ["a"]
    lanes.defer(_lane("a"), until=10.0)
    assert lanes.in_flight == 0
    assert [lane.key for lane, _ in lanes.startable(5.0)] == ["b"]
    lanes.finish(_lane("b"))
    assert list(lanes.startable(9.9)) == []
    assert lanes.next_due() == 10.0
    assert [(lane.key, r.offset) for lane, r in lanes.startable(10.0)] == [("a", 0)]


def test_a_record_added_with_a_due_time_starts_only_then_and_keeps_its_lane_order() -> None:
    lanes = Lanes(max_in_flight=5)
    lanes.add(_lane("a"), _record(0), due=20.0)
    lanes.add(_lane("a"), _record(1))
    lanes.add(_lane("b"), _record(2))
    assert [lane.key for lane, _ in lanes.startable(1.0)] == ["b"]
    assert [r.offset for _, r in lanes.startable(20.0)] == [0]
    lanes.finish(_lane("a"))
    assert [r.offset for _, r in lanes.startable(20.0)] == [1]


def test_deferring_again_replaces_the_earlier_time() -> None:
    lanes = Lanes(max_in_flight=1)
    lanes.add(_lane("a"), _record(0))
    list(lanes.startable(0.0))
    lanes.defer(_lane("a"), until=5.0)
    list(lanes.startable(5.0))
    lanes.defer(_lane("a"), until=50.0)
    assert list(lanes.startable(6.0)) == []
    assert lanes.next_due() == 50.0
