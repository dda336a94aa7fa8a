"""Wrap-safe sequence arithmetic: agrees with unbounded ints within 2**31, wraps at 2**32."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.wire.seq import (
    HALF,
    MASK,
    MOD,
    seq_add,
    seq_between,
    seq_diff,
    seq_ge,
    seq_gt,
    seq_in_window,
    seq_le,
    seq_lt,
    seq_max,
    seq_min,
)

# Unbounded "true" positions: a stream may be far longer than 4 GiB.
positions = st.integers(0, 1 << 48)
near = st.integers(-(HALF - 1), HALF - 1)  # distances where the order is defined
seqs = st.integers(0, MASK)


def wrap(x: int) -> int:
    return x % MOD


@settings(max_examples=500)
@given(a=positions, d=near)
def test_comparisons_agree_with_unbounded_integers_within_2_31(a: int, d: int) -> None:
    b = a + d
    sa, sb = wrap(a), wrap(b)
    assert seq_diff(sb, sa) == d
    assert seq_diff(sa, sb) == -d
    assert seq_lt(sa, sb) == (a < b)
    assert seq_le(sa, sb) == (a <= b)
    assert seq_gt(sa, sb) == (a > b)
    assert seq_ge(sa, sb) == (a >= b)
    assert seq_max(sa, sb) == wrap(max(a, b))
    assert seq_min(sa, sb) == wrap(min(a, b))


@settings(max_examples=300)
@given(a=positions, n=st.integers(-(1 << 40), 1 << 40))
def test_seq_add_is_addition_modulo_2_32(a: int, n: int) -> None:
    result = seq_add(wrap(a), n)
    assert 0 <= result <= MASK
    assert result == wrap(a + n)


def test_seq_add_wraps_past_the_top() -> None:
    assert seq_add(MASK, 1) == 0
    assert seq_add(MASK - 1, 5) == 3
    assert seq_add(0, -1) == MASK


def test_numbers_just_past_the_wrap_come_after_numbers_just_before_it() -> None:
    assert seq_lt(MASK, 0)
    assert seq_gt(0, MASK)
    assert seq_diff(2, MASK - 1) == 4
    assert seq_diff(MASK - 1, 2) == -4


@given(a=seqs)
def test_at_exactly_2_31_apart_each_number_is_before_the_other(a: int) -> None:
    # RFC 1982 leaves this undefined; like the kernel's before(), the signed 32-bit difference
    # -2**31 is negative in both directions, so both orders report "before".
    b = seq_add(a, HALF)
    assert seq_diff(b, a) == -HALF
    assert seq_diff(a, b) == -HALF
    assert seq_lt(a, b)
    assert seq_lt(b, a)
    assert not seq_ge(a, b)


@given(a=seqs, b=seqs)
def test_seq_diff_is_in_the_signed_32_bit_range_and_consistent_with_add(a: int, b: int) -> None:
    d = seq_diff(a, b)
    assert -HALF <= d < HALF
    assert seq_add(b, d) == a


@settings(max_examples=300)
@given(start=positions, k=st.integers(-(HALF - 1), HALF - 1), size=st.integers(0, HALF))
def test_seq_in_window_is_start_le_x_lt_start_plus_size(start: int, k: int, size: int) -> None:
    assert seq_in_window(wrap(start + k), wrap(start), size) == (0 <= k < size)


def test_seq_in_window_across_the_wrap_and_empty_window() -> None:
    assert seq_in_window(2, MASK - 1, 10)
    assert seq_in_window(MASK - 1, MASK - 1, 1)
    assert not seq_in_window(MASK - 2, MASK - 1, 10)
    assert not seq_in_window(8, MASK - 1, 10)
    assert not seq_in_window(5, 5, 0)


@settings(max_examples=300)
@given(low=positions, i=st.integers(0, MASK), j=st.integers(0, MASK))
def test_seq_between_is_low_le_x_le_high_measured_forward_from_low(
    low: int, i: int, j: int
) -> None:
    assert seq_between(wrap(low), wrap(low + i), wrap(low + j)) == (i <= j)


def test_seq_between_like_rfc_9293_ack_checks_across_the_wrap() -> None:
    snd_una, snd_nxt = MASK - 3, 6
    assert seq_between(snd_una, 0, snd_nxt)
    assert seq_between(snd_una, snd_una, snd_nxt)
    assert seq_between(snd_una, snd_nxt, snd_nxt)
    assert not seq_between(snd_una, 7, snd_nxt)
    assert not seq_between(snd_una, MASK - 4, snd_nxt)


@given(a=seqs, b=seqs)
def test_every_comparison_is_the_sign_of_seq_diff_for_any_two_numbers(a: int, b: int) -> None:
    # The comparisons compute the forward distance themselves (a call less than seq_diff's).
    d = seq_diff(a, b)
    assert (seq_lt(a, b), seq_le(a, b)) == (d < 0, d <= 0)
    assert (seq_gt(a, b), seq_ge(a, b)) == (d > 0, d >= 0)
    assert seq_max(a, b) == (a if d >= 0 else b)
    assert seq_min(a, b) == (a if d <= 0 else b)
