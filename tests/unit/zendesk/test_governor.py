"""The rate governor in virtual time: requests wait for tokens instead of bouncing, follow what Zendesk's
headers say is left, pause on a 429, and two replicas sharing one account stay inside its window."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from stream.errors import ConfigError
from stream.zendesk.governor import ACCOUNT, Budget, Governor, Need, need_for
from stream.zendesk.ratelimit import Bucket as Reported
from stream.zendesk.ratelimit import RateLimitInfo
from tests.support.memory import VirtualTimeLoop, run_virtual

ACCOUNT_ONLY = Need((ACCOUNT,))
NO_HEADERS = RateLimitInfo(account=None)


async def grant_times(governor: Governor, needs: list[Need], *, close: bool = True) -> list[float]:
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def one(need: Need) -> None:
        await governor.acquire(need)
        times.append(loop.time())

    await asyncio.gather(*(one(n) for n in needs))
    if close:
        await governor.close()
    return sorted(times)


def test_requests_wait_for_tokens_at_the_plans_rate_after_a_short_burst() -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        return await grant_times(Governor(plan="enterprise", jitter=lambda: 0.0), [ACCOUNT_ONLY] * 100)

    times = run_virtual(main)
    rate = 700 / 60
    assert times[:35] == [0.0] * 35  # three seconds' worth at once
    assert times[-1] == pytest.approx((100 - 35) / rate, rel=0.01)


@pytest.mark.parametrize(("budget", "expected_rpm"), [("0.5", 350), ("200rpm", 200), ("5000rpm", 700)])
def test_the_budget_caps_our_share_of_the_account(budget: str, expected_rpm: int) -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        governor = Governor(plan="enterprise", budget=Budget.parse(budget), jitter=lambda: 0.0)
        return await grant_times(governor, [ACCOUNT_ONLY] * 200)

    times = run_virtual(main)
    burst = math.floor(expected_rpm / 60 * 3)
    assert times[-1] == pytest.approx((200 - burst) / (expected_rpm / 60), rel=0.02)


@pytest.mark.parametrize("raw", ["0", "1.5", "fast", "0rpm"])
def test_a_bad_budget_names_the_setting_and_the_forms_it_takes(raw: str) -> None:
    with pytest.raises(ConfigError, match="ZENDESK_RATE_BUDGET"):
        Budget.parse(raw)


def test_the_account_limit_is_learned_from_x_rate_limit() -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        governor = Governor(plan="enterprise_plus", jitter=lambda: 0.0)  # believes 2,500/min
        await governor.acquire(ACCOUNT_ONLY)
        governor.answered(ACCOUNT_ONLY, RateLimitInfo(Reported(ACCOUNT, 200, 199, None)), status=200)
        return await grant_times(governor, [ACCOUNT_ONLY] * 50)

    times = run_virtual(main)
    assert times[-1] == pytest.approx((50 - 10) / (200 / 60), rel=0.05)


def test_what_zendesk_says_is_left_of_the_window_holds_requests_until_it_resets() -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        governor = Governor(plan="enterprise", jitter=lambda: 0.0)
        await governor.acquire(ACCOUNT_ONLY)
        # Other replicas used most of the minute: 3 left, 20 s to go.
        governor.answered(ACCOUNT_ONLY, RateLimitInfo(Reported(ACCOUNT, 700, 3, 20)), status=200)
        return await grant_times(governor, [ACCOUNT_ONLY] * 5)

    times = run_virtual(main)
    assert times[:3] == [0.0, 0.0, 0.0]
    assert times[3] == pytest.approx(20.0)


def test_a_429_pauses_its_bucket_for_every_request_for_retry_after_plus_jitter() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[list[float], dict[str, int]]:
        governor = Governor(plan="enterprise", jitter=lambda: 0.5)
        await governor.acquire(ACCOUNT_ONLY)
        governor.answered(ACCOUNT_ONLY, NO_HEADERS, status=429, retry_after_s=7.0)
        return await grant_times(governor, [ACCOUNT_ONLY] * 3), governor.stats.rate_limited

    times, limited = run_virtual(main)
    assert times == [7.5, 7.5, 7.5]
    assert limited == {"account": 1}


def test_a_users_writes_are_spaced_under_five_a_minute_without_holding_up_other_users() -> None:
    async def main(loop: VirtualTimeLoop) -> tuple[list[float], list[float]]:
        governor = Governor(plan="enterprise", jitter=lambda: 0.0)
        hot = need_for("POST", "/api/v2/users/create_or_update", user_key="hot@example.com")
        others = [need_for("POST", "/api/v2/users/create_or_update", user_key=f"u{i}") for i in range(5)]
        hot_times = asyncio.ensure_future(grant_times(governor, [hot] * 6))
        await asyncio.sleep(0)
        other_times = await grant_times(governor, others, close=False)
        return await hot_times, other_times

    hot_times, other_times = run_virtual(main)
    gaps = [b - a for a, b in itertools.pairwise(hot_times)]
    assert all(gap >= 60 / 4.8 - 1e-6 for gap in gaps)  # at most five in any minute
    assert max(other_times) < 8  # the account's 1/s create_or_update pace, not the hot user's


def test_at_most_thirty_bulk_jobs_are_in_flight() -> None:
    async def main(loop: VirtualTimeLoop) -> list[float]:
        governor = Governor(plan="enterprise_plus", jitter=lambda: 0.0)
        job = need_for("POST", "/api/v2/users/create_or_update_many")
        loop.call_later(10.0, governor.job_done)
        return await grant_times(governor, [job] * 31)

    times = run_virtual(main)
    assert times[29] < 10.0 and times[30] == pytest.approx(10.0)


def test_two_replicas_following_the_headers_stay_inside_one_shared_window() -> None:
    """A fixed one-minute window of 700 shared by two governors that know nothing of each other but
    what Zendesk's headers say: over five minutes, no request goes past the window's limit."""

    async def main(loop: VirtualTimeLoop) -> tuple[int, int]:
        limit, window = 700, 60.0
        used, opened, refused, served = 0, 0.0, 0, 0
        replicas = [Governor(plan="enterprise", jitter=lambda: 0.0) for _ in range(2)]

        async def client(governor: Governor) -> None:
            nonlocal used, opened, refused, served
            while loop.time() < 300:
                await governor.acquire(ACCOUNT_ONLY)
                await asyncio.sleep(0.05)  # the request's way to Zendesk
                if loop.time() >= opened + window:
                    opened, used = loop.time(), 0
                if used >= limit:
                    refused += 1
                    status = 429
                else:
                    used += 1
                    served += 1
                    status = 200
                left = math.ceil(opened + window - loop.time())
                info = RateLimitInfo(Reported(ACCOUNT, limit, limit - used, left))
                await asyncio.sleep(0.05)  # and back
                governor.answered(ACCOUNT_ONLY, info, status=status, retry_after_s=float(left))

        await asyncio.gather(*(client(g) for g in replicas for _ in range(20)))
        for governor in replicas:
            await governor.close()
        return served, refused

    served, refused = run_virtual(main)
    assert refused <= served * 0.005
    assert served >= 700 * 4  # the budget is used, not wasted
