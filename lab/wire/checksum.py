"""The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header sum, shared by every codec.

The one's-complement sum is computed on one big integer (`int.from_bytes` over the whole buffer,
then a remainder), far faster in CPython than a loop over 16-bit words, and exact for any length.
Partial sums compose (`ones_complement_sum(b, ones_complement_sum(a))` for an even-length `a`),
which is what "incremental-friendly" means here.
"""

from __future__ import annotations

import socket


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The 16-bit one's-complement sum of `data` (zero-padded if odd), plus `initial`."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    # 2**16 is 1 modulo 0xFFFF, so a big-endian integer of the whole buffer is congruent to the
    # sum of its 16-bit words; one's-complement addition is addition modulo 0xFFFF in which a
    # non-zero total is written 0xFFFF rather than 0 ("negative zero").
    total = int.from_bytes(data, "big") + initial
    folded = total % 0xFFFF
    return 0xFFFF if folded == 0 and total else folded


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 checksum of `data`: the complement of the one's-complement sum."""
    return ~ones_complement_sum(data, initial) & 0xFFFF


def ipv4_pseudo_header_sum(src: str, dst: str, protocol: int, length: int) -> int:
    """One's-complement sum of the IPv4 pseudo-header (RFC 9293 3.1) for a segment of `length`."""
    raw = socket.inet_aton(src) + socket.inet_aton(dst) + bytes((0, protocol)) + length.to_bytes(2)
    return ones_complement_sum(raw)


def ipv6_pseudo_header_sum(src: str, dst: str, next_header: int, length: int) -> int:
    """One's-complement sum of the IPv6 pseudo-header (RFC 8200 8.1)."""
    raw = (
        socket.inet_pton(socket.AF_INET6, src)
        + socket.inet_pton(socket.AF_INET6, dst)
        + length.to_bytes(4)
        + bytes((0, 0, 0, next_header))
    )
    return ones_complement_sum(raw)
