"""The choice between one request and a place in a batch (pure), and the arrival rate it rests on."""

from __future__ import annotations

import math

import pytest

from stream.zendesk.bulk import Arrivals, single_path_favoured
from stream.zendesk.governor import Governor, need_for


def test_light_traffic_with_a_token_goes_single() -> None:
    assert single_path_favoured(arrivals_per_s=0.5, capacity_per_s=0.95, queued=0, goes_now=True)


@pytest.mark.parametrize(
    ("arrivals", "queued", "goes_now"),
    [
        (2.0, 0, True),  # faster than the single path refills: a backlog would build, batch instead
        (0.5, 3, True),  # a batch is gathering: join it
        (0.5, 0, False),  # no token now: waiting for one costs more than the linger
    ],
)
def test_otherwise_the_item_joins_a_batch(arrivals: float, queued: int, goes_now: bool) -> None:
    assert not single_path_favoured(
        arrivals_per_s=arrivals, capacity_per_s=0.95, queued=queued, goes_now=goes_now
    )


def test_steady_arrivals_converge_on_their_rate() -> None:
    arrivals = Arrivals(tau_s=10.0)
    rate = 0.0
    for n in range(200):  # one every 2 s for 400 s
        rate = arrivals.arrived(n * 2.0)
    # Read just after an arrival, the average stands at most one arrival's weight (1/tau) above the rate.
    assert 0.5 <= rate <= 0.5 + 0.1


def test_a_burst_raises_the_rate_at_once_and_it_decays_after() -> None:
    arrivals = Arrivals(tau_s=10.0)
    for n in range(20):  # 20 at once, as a backlog arrives
        burst = arrivals.arrived(100.0 + n * 0.001)
    assert burst > 1.9
    later = arrivals.arrived(160.0)
    assert later == pytest.approx(burst * math.exp(-6.0) + 0.1, rel=0.01)


def test_capacity_is_the_slowest_shared_bucket() -> None:
    governor = Governor(plan="enterprise", clock=lambda: 0.0)
    upsert = need_for("POST", "/api/v2/users/create_or_update", user_key="u-1")
    lookup = need_for("GET", "/api/v2/users/search")
    assert governor.capacity_per_s(upsert) == pytest.approx(0.95)  # not the user's 4.8/min
    assert governor.capacity_per_s(lookup) == pytest.approx(700 / 60)
    unlimited = Governor(plan="unlimited", clock=lambda: 0.0)
    assert unlimited.capacity_per_s(upsert) > 1000
