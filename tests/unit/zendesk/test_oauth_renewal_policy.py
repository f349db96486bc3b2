"""When an OAuth access token is renewed: `renewal_time`, a pure function of issue time, lifetime, skew and
jitter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.zendesk.oauth import renewal_time


@pytest.mark.parametrize(
    ("expires_in", "jitter", "skew_s", "expected"),
    [
        (1800, 0.0, 60, 1440),  # 30 min (Zendesk's default): at 80 %...
        (1800, 1.0, 60, 1620),  # ...to 90 % of the lifetime
        (1800, 0.5, 60, 1530),
        (172_000, 1.0, 60, 154_800),  # 48 h: the share decides, the skew is far off
        (301, 1.0, 60, 241),  # Zendesk's shortest: the skew binds (90 % would be 270.9)
        (301, 0.0, 60, 240.8),  # 80 % comes before expiry minus skew (241)
        (3, 0.5, 60, 1.5),  # shorter than twice the skew: at half the lifetime, not at once
        (100, 0.0, 60, 50),
        (10, 0.0, 1, 8),
    ],
)
def test_renewal_time_table(expires_in: float, jitter: float, skew_s: float, expected: float) -> None:
    assert renewal_time(1000.0, expires_in, jitter=jitter, skew_s=skew_s) == pytest.approx(1000.0 + expected)


def test_a_token_without_lifetime_is_renewed_at_once() -> None:
    assert renewal_time(5.0, 0, jitter=0.3) == 5.0


@pytest.mark.parametrize("jitter", [-0.1, 1.1, float("nan")])
def test_jitter_outside_zero_to_one_is_a_bug(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        renewal_time(0.0, 1800, jitter=jitter)


@given(
    issued_at=st.floats(0, 1e9),
    expires_in=st.floats(0.001, 1e6),
    jitter=st.floats(0, 1),
    skew_s=st.floats(0, 600),
)
def test_always_after_half_and_before_expiry_and_never_later_than_the_skew_allows(
    issued_at: float, expires_in: float, jitter: float, skew_s: float
) -> None:
    at = renewal_time(issued_at, expires_in, jitter=jitter, skew_s=skew_s)
    tolerance = 1e-6 * max(1.0, issued_at)
    assert issued_at + expires_in / 2 - tolerance <= at <= issued_at + 0.9 * expires_in + tolerance
    if expires_in - skew_s >= expires_in / 2:
        assert at <= issued_at + expires_in - skew_s + tolerance
    assert at < issued_at + expires_in or expires_in < tolerance
