"""RFC 6298 retransmission timeout: first sample, smoothing, bounds, back-off."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.tcp.rtt import CLOCK_GRANULARITY, RttEstimator


def test_before_any_sample_rto_is_the_initial_rto() -> None:
    est = RttEstimator(initial_rto=1_000_000)
    assert est.rto == 1_000_000
    assert est.srtt is None
    assert est.rttvar is None


def test_first_sample_sets_srtt_to_r_and_rttvar_to_half_r() -> None:
    est = RttEstimator(min_rto=1)
    est.sample(100_000)
    assert est.srtt == 100_000
    assert est.rttvar == 50_000
    assert est.rto == 100_000 + 4 * 50_000


def test_second_sample_updates_rttvar_with_old_srtt_then_srtt() -> None:
    est = RttEstimator(min_rto=1)
    est.sample(100_000)
    est.sample(200_000)
    # RTTVAR = 3/4 * 50000 + 1/4 * |100000 - 200000| = 62500
    assert est.rttvar == 62_500
    # SRTT = 7/8 * 100000 + 1/8 * 200000 = 112500
    assert est.srtt == 112_500
    assert est.rto == 112_500 + 4 * 62_500


def test_clock_granularity_floors_the_variance_term() -> None:
    est = RttEstimator(min_rto=1)
    for _ in range(50):
        est.sample(10_000)  # a perfectly steady path: RTTVAR decays to 0
    assert est.rttvar == 0
    assert est.rto == 10_000 + CLOCK_GRANULARITY


def test_rto_is_never_below_min_rto() -> None:
    est = RttEstimator(min_rto=200_000)
    est.sample(1_000)
    assert est.rto == 200_000


def test_rto_is_never_above_max_rto() -> None:
    est = RttEstimator(max_rto=60_000_000)
    est.sample(50_000_000)
    assert est.rto == 60_000_000


def test_back_off_doubles_the_rto_up_to_max() -> None:
    est = RttEstimator(initial_rto=1_000_000, max_rto=5_000_000)
    est.back_off()
    assert est.rto == 2_000_000
    est.back_off()
    assert est.rto == 4_000_000
    est.back_off()
    assert est.rto == 5_000_000
    for _ in range(100):
        est.back_off()
    assert est.rto == 5_000_000


def test_reset_backoff_returns_to_the_computed_rto() -> None:
    est = RttEstimator(min_rto=1)
    est.sample(100_000)
    est.back_off()
    est.back_off()
    assert est.rto == 4 * 300_000
    est.reset_backoff()
    assert est.rto == 300_000


def test_a_valid_sample_ends_the_backoff() -> None:
    est = RttEstimator(min_rto=1)
    est.back_off()
    est.sample(100_000)
    assert est.backoff == 0
    assert est.rto == 300_000


def test_negative_sample_is_rejected() -> None:
    est = RttEstimator()
    with pytest.raises(ValueError, match="negative"):
        est.sample(-1)


def test_min_above_max_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_rto"):
        RttEstimator(min_rto=2, max_rto=1)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10_000_000), min_size=1, max_size=40), st.integers(0, 30))
def test_rto_always_within_bounds(samples: list[int], backoffs: int) -> None:
    est = RttEstimator(min_rto=200_000, max_rto=60_000_000)
    for s in samples:
        est.sample(s)
        assert 200_000 <= est.rto <= 60_000_000
    for _ in range(backoffs):
        before = est.rto
        est.back_off()
        assert est.rto == min(60_000_000, 2 * before)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10_000_000), st.integers(1, 60))
def test_steady_samples_converge_to_the_sample(rtt: int, n: int) -> None:
    est = RttEstimator(min_rto=1, max_rto=1 << 40)
    for _ in range(n + 60):
        est.sample(rtt)
    srtt = est.srtt
    assert srtt is not None
    assert srtt == rtt  # fixed point: no rounding trap on a steady path
    assert est.rttvar == 0
