"""Liveness and readiness with a fake clock: /healthz turns red once the engine's loop has not come
round for `wedged_after_s`, or a consumer thread died; /readyz only between assignment and the stop."""

from __future__ import annotations

from stream.health import WEDGED_AFTER_S, Health


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_wedged_loop_turns_healthz_red_after_the_documented_time_and_a_beat_turns_it_green() -> None:
    clock = Clock()
    health = Health(clock=clock)
    assert WEDGED_AFTER_S == 10.0
    assert (health.live().ok, health.live().status) == (True, "starting")
    health.beat()
    clock.now += WEDGED_AFTER_S  # at the limit: still alive
    assert health.live().ok
    clock.now += 0.5
    verdict = health.live()
    assert (verdict.ok, verdict.status) == (False, "wedged")
    assert "10.5s ago" in verdict.detail
    assert health.heartbeat_age_s() == 10.5
    health.beat()
    assert health.live().ok


def test_a_dead_consumer_thread_is_red_whatever_the_heartbeat_says() -> None:
    health = Health(clock=Clock())
    health.beat()
    failure: list[str] = []
    health.consumer_failure = lambda: failure[0] if failure else None
    assert health.live().ok
    failure.append("a Kafka consumer thread stopped: KafkaError")
    assert (health.live().ok, health.live().status) == (False, "consumer_failed")
    health.stopping("fatal error: a Kafka consumer stopped")
    assert not health.live().ok  # stopping does not hide it


def test_ready_only_after_assignment_and_until_the_engine_stops() -> None:
    clock = Clock()
    health = Health(clock=clock)
    health.beat()
    assert (health.ready().ok, health.ready().status) == (False, "not_assigned")
    health.assigned()
    assert health.ready().ok
    clock.now += 60  # wedged: not ready either
    assert (health.ready().ok, health.ready().status) == (False, "wedged")
    health.beat()
    health.stopping("fatal error: circuit breaker open")
    health.stopping("shutting down")  # the first fatal reason is kept
    assert (health.ready().ok, health.ready().status, health.ready().detail) == (
        False,
        "halted",
        "fatal error: circuit breaker open",
    )
    clock.now += 60  # a stop takes its own deadline: liveness does not fail it
    assert (health.live().ok, health.live().status) == (True, "stopping")
