"""RFC 6528 initial sequence numbers: a 4-microsecond clock plus a keyed hash of the 4-tuple."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.tcp.isn import FixedIsn, IsnGenerator

TUPLE = ("198.18.0.1", 40000, "198.18.0.2", 21)


def test_same_key_tuple_and_time_give_the_same_isn() -> None:
    assert IsnGenerator(b"k").isn(*TUPLE, now=123) == IsnGenerator(b"k").isn(*TUPLE, now=123)


def test_isn_advances_by_one_every_four_microseconds() -> None:
    gen = IsnGenerator(b"k")
    base = gen.isn(*TUPLE, now=0)
    assert gen.isn(*TUPLE, now=3) == base
    assert gen.isn(*TUPLE, now=4) == (base + 1) % 2**32
    assert gen.isn(*TUPLE, now=4_000_000) == (base + 1_000_000) % 2**32


def test_isn_wraps_modulo_two_to_the_32() -> None:
    gen = IsnGenerator(b"k")
    base = gen.isn(*TUPLE, now=0)
    assert gen.isn(*TUPLE, now=4 * 2**32) == base


def test_different_keys_give_different_isns() -> None:
    assert IsnGenerator(b"a").isn(*TUPLE, now=0) != IsnGenerator(b"b").isn(*TUPLE, now=0)


def test_different_ports_give_different_isns() -> None:
    gen = IsnGenerator(b"k")
    other = ("198.18.0.1", 40001, "198.18.0.2", 21)
    assert gen.isn(*TUPLE, now=0) != gen.isn(*other, now=0)


def test_the_tuple_is_ordered_local_then_remote() -> None:
    gen = IsnGenerator(b"k")
    swapped = ("198.18.0.2", 21, "198.18.0.1", 40000)
    assert gen.isn(*TUPLE, now=0) != gen.isn(*swapped, now=0)


def test_long_keys_are_accepted() -> None:
    gen = IsnGenerator(b"x" * 200)
    assert 0 <= gen.isn(*TUPLE, now=0) < 2**32


@settings(max_examples=200, deadline=None)
@given(
    st.binary(min_size=1, max_size=100),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(0, 2**62),
)
def test_isn_is_a_32_bit_number(key: bytes, lport: int, rport: int, now: int) -> None:
    value = IsnGenerator(key).isn("10.0.0.1", lport, "10.0.0.2", rport, now)
    assert 0 <= value < 2**32


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**40))
def test_isns_are_spread_across_the_space(now: int) -> None:
    gen = IsnGenerator(b"secret")
    values = {gen.isn("10.0.0.1", port, "10.0.0.2", 80, now) for port in range(1000, 1256)}
    assert len(values) == 256
    assert min(values) < 2**30
    assert max(values) > 3 * 2**30


def test_fixed_isn_ignores_tuple_and_time() -> None:
    gen = FixedIsn(2**32 - 5)
    assert gen.isn(*TUPLE, now=0) == 2**32 - 5
    assert gen.isn("10.0.0.1", 1, "10.0.0.2", 2, now=10**9) == 2**32 - 5
