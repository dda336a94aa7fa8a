"""The Internet checksum (RFC 1071): the textbook loop, known vectors, pseudo-header sums."""

from __future__ import annotations

import socket

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.wire.checksum import (
    checksum_verifies,
    internet_checksum,
    ipv4_pseudo_header_sum,
    ipv6_pseudo_header_sum,
    ones_complement_sum,
)


def reference_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 4.1, as a loop: add 16-bit words, fold the carries back in."""
    if len(data) % 2:
        data += b"\x00"
    total = initial
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


@settings(max_examples=400)
@given(data=st.binary(max_size=3000), initial=st.integers(0, 0xFFFF))
def test_sum_agrees_with_the_reference_loop(data: bytes, initial: int) -> None:
    assert ones_complement_sum(data, initial) == reference_sum(data, initial)
    assert internet_checksum(data, initial) == ~reference_sum(data, initial) & 0xFFFF


@settings(max_examples=200)
@given(data=st.binary(min_size=1, max_size=200).filter(lambda b: any(b)))
def test_sum_of_nonzero_data_is_never_zero(data: bytes) -> None:
    # One's-complement addition has two zeros; a sum of non-zero words ends at 0xFFFF, not 0.
    assert 1 <= ones_complement_sum(data) <= 0xFFFF


@given(a=st.binary(max_size=100), b=st.binary(max_size=100))
def test_partial_sums_compose_for_even_length_prefixes(a: bytes, b: bytes) -> None:
    if len(a) % 2:
        a += b"\x00"
    assert ones_complement_sum(b, ones_complement_sum(a)) == ones_complement_sum(a + b)


@given(data=st.binary(max_size=500).map(lambda b: b + b"\x00" * (len(b) % 2)))
def test_data_with_its_checksum_appended_verifies_to_zero(data: bytes) -> None:
    # RFC 1071 2(B): the receiver sums everything, checksum included, and expects all ones.
    check = internet_checksum(data)
    assert internet_checksum(data + check.to_bytes(2, "big")) == 0


def test_rfc_1071_worked_example() -> None:
    # RFC 1071 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2 after the end-around carry.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_complement_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_rfc_1071_byte_order_independence() -> None:
    # RFC 1071 2(B): swapping the bytes of every word swaps the bytes of the sum.
    data = bytes.fromhex("0001f203f4f5f6f7")
    swapped = bytes(x for i in range(0, len(data), 2) for x in (data[i + 1], data[i]))
    assert ones_complement_sum(swapped) == 0xF2DD


def test_ipv4_header_known_vector() -> None:
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    with_checksum = header[:10] + b"\xb8\x61" + header[12:]
    assert internet_checksum(with_checksum) == 0


def test_odd_length_is_padded_with_a_zero_byte() -> None:
    assert ones_complement_sum(b"\x12") == 0x1200
    assert ones_complement_sum(b"\x12\x34\x56") == 0x1234 + 0x5600


def test_edge_values() -> None:
    assert ones_complement_sum(b"") == 0
    assert internet_checksum(b"") == 0xFFFF
    assert ones_complement_sum(b"\xff\xff") == 0xFFFF
    assert ones_complement_sum(b"\xff\xff\x00\x01") == 0x0001
    assert ones_complement_sum(memoryview(b"\x00\x01")) == 1
    assert ones_complement_sum(bytearray(b"\x00\x01\x00\x02")) == 3


ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))


@given(src=ipv4, dst=ipv4, protocol=st.integers(0, 255), length=st.integers(0, 0xFFFF))
def test_ipv4_pseudo_header_sum_is_the_sum_of_its_rfc_9293_layout(
    src: str, dst: str, protocol: int, length: int
) -> None:
    raw = (
        socket.inet_aton(src)
        + socket.inet_aton(dst)
        + bytes((0, protocol))
        + length.to_bytes(2, "big")
    )
    assert ipv4_pseudo_header_sum(src, dst, protocol, length) == reference_sum(raw)


ipv6 = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))


@given(src=ipv6, dst=ipv6, next_header=st.integers(0, 255), length=st.integers(0, 1 << 20))
def test_ipv6_pseudo_header_sum_is_the_sum_of_its_rfc_8200_layout(
    src: str, dst: str, next_header: int, length: int
) -> None:
    raw = (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + length.to_bytes(4, "big")
        + bytes((0, 0, 0, next_header))
    )
    assert ipv6_pseudo_header_sum(src, dst, next_header, length) == reference_sum(raw)


def test_tcp_checksum_over_pseudo_header_and_segment_verifies() -> None:
    segment = bytearray(bytes.fromhex("303900150000000100000000500220000000000068690a"))
    start = ipv4_pseudo_header_sum("198.18.0.1", "198.18.0.2", 6, len(segment))
    check = internet_checksum(segment, start)
    segment[16:18] = check.to_bytes(2, "big")
    assert internet_checksum(segment, start) == 0


@settings(max_examples=300)
@given(
    st.binary(min_size=2, max_size=4000),
    st.integers(0, 2**20),
    st.integers(0, 40),
    st.booleans(),
)
def test_the_fast_verdict_is_the_textbook_one(
    body: bytes, initial: int, offset: int, fix: bool
) -> None:
    """checksum_verifies (little-endian pieces) agrees with RFC 1071's loop on every length, odd
    ones and those around its 512-byte pieces included, for right and wrong checksums."""
    data = bytearray(bytes(offset) + body)
    if fix:  # write the checksum that makes it verify into the first word of the body
        data[offset : offset + 2] = b"\x00\x00"
        field = ~reference_sum(bytes(data[offset:]), initial) & 0xFFFF
        data[offset : offset + 2] = field.to_bytes(2, "big")
    expected = ~reference_sum(bytes(data[offset:]), initial) & 0xFFFF == 0
    assert checksum_verifies(bytes(data), offset, len(data), initial) == expected
    assert checksum_verifies(memoryview(data), offset, len(data), initial) == expected
    if fix:
        assert expected
