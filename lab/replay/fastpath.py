"""The replay fast path: the common packet (Ethernet, IPv4 without options or fragments, TCP,
both checksums right, not cut) decoded straight into plain values with one precompiled struct.

Why: decoding every packet through the full frame codec (a dataclass per layer, an `IntFlag`,
a `Segment`, a `DecodedPacket`) was a third of replay's time, for values replay reads once. Here
one `unpack_from` reads the Ethernet, IPv4 and TCP headers at once, the checksums are summed
without copying the payload (the one's-complement sum of a buffer is congruent to the buffer read
as one big integer, modulo 0xFFFF), and the result is a tuple `FlowTable.segment` takes as is.

Anything else returns None and goes through `lab.replay.decode.decode_packet`, which knows every
link type, VLAN tags, IPv6, snaplen cuts and what a bad checksum means (offload or corruption):
so the fast path can only be faster, never give another result. A packet that cannot be TCP
(another ethertype, another IP protocol) returns `NOT_TCP`: nothing in replay looks at it.
"""

from __future__ import annotations

import struct

from lab.wire.checksum import checksum_verifies

# Ethernet (dst, src skipped), IPv4 (20 bytes), TCP (20 bytes): 54 bytes in one call.
_ETH_IPV4_TCP = struct.Struct("!12xHBxHxxHxBxxII4xIIBBxxxxxx")  # ports: in the key
_HEADERS = _ETH_IPV4_TCP.size  # 54
_ETHERTYPE_IPV4 = 0x0800
_NOT_TCP_ETHERTYPES_PASS = frozenset((0x86DD, 0x8100, 0x88A8, 0x9100))  # IPv6, VLAN: slow path
_MF_OR_OFFSET = 0x3FFF

NOT_TCP: tuple[()] = ()

# (key, seq, ack, flags, payload): the key is the directed 4-tuple as the frame holds it (source
# and destination addresses, then ports: 12 bytes, contiguous), which is all `FlowTable` needs to
# find a known flow; `endpoints(key)` gives it as text and ints for one it does not know yet.
FastSegment = tuple[bytes, int, int, int, bytes]
_ENDPOINTS = struct.Struct("!IIHH")


def fast_ethernet_segment(data: bytes, orig_len: int) -> FastSegment | tuple[()] | None:
    """(key, seq, ack, flags, payload); NOT_TCP; or None: use the slow path."""
    size = len(data)
    if size < _HEADERS or orig_len > size:
        return None
    etype, vihl, total, frag, proto, src, dst, seq, ack, doff, flags = _ETH_IPV4_TCP.unpack_from(
        data
    )
    if etype != _ETHERTYPE_IPV4:
        return None if etype in _NOT_TCP_ETHERTYPES_PASS else NOT_TCP
    if vihl != 0x45 or frag & _MF_OR_OFFSET:
        return None
    if proto != 6:
        return NOT_TCP
    end = 14 + total
    thl = (doff >> 4) * 4
    if end > size or thl < 20 or 20 + thl > total:
        return None
    # IPv4 header checksum: right when the header's sum is 0 modulo 0xFFFF (never all zero)
    if int.from_bytes(data[14:34], "big") % 0xFFFF:
        return None
    # TCP checksum over the pseudo-header and the segment (each address word is congruent to
    # its halves' sum, so the addresses need no splitting).
    if not checksum_verifies(data, 34, end, src + dst + 6 + total - 20):
        return None  # a checksum to explain (offload, corruption): decode.py decides
    return (data[26:38], seq, ack, flags, data[34 + thl : end])


def endpoints(key: bytes) -> tuple[str, int, str, int]:
    """(source address, source port, destination address, destination port) of a key."""
    src, dst, sport, dport = _ENDPOINTS.unpack(key)
    ips = _IPS
    src_ip = ips.get(src)
    if src_ip is None:
        src_ip = _remember(src)
    dst_ip = ips.get(dst)
    if dst_ip is None:
        dst_ip = _remember(dst)
    return src_ip, sport, dst_ip, dport


# Addresses as text, one string per address: every flow of a host shares it (memory), and a
# dict lookup is cheaper than formatting. Bounded: a capture of a million hosts starts over.
_IPS: dict[int, str] = {}
_MAX_IPS = 1 << 16


def _remember(address: int) -> str:
    if len(_IPS) >= _MAX_IPS:
        _IPS.clear()
    # dotted decimal as socket.inet_ntoa writes it (socket itself costs 2 ms of start-up)
    text = _IPS[address] = ".".join(map(str, address.to_bytes(4, "big")))
    return text
