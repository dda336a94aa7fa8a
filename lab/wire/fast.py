"""The bulk codec: frames as bytes <-> frame values with precompiled `struct`s.

Why a second codec next to Scapy: Scapy builds and dissects a frame in tens of microseconds to
milliseconds, which is fine for teaching and far too slow for replaying a capture of a few hundred
thousand segments or for moving a megabyte through the in-memory wire. This module does the same
job with one `struct.Struct` per header and `bytes` joins. `tests/test_codec.py` proves that both
codecs produce the same bytes and the same values, so the fast path inherits Scapy's authority.

Decoding never trusts the bytes and never raises: every rejection is a `Dropped(reason, detail)`
value that links and hosts count (see `DecodeStats`). The checks follow the order in which a
kernel makes them (length, version, header length, total length, checksum), so the reason names
the first thing that is wrong.

What is deliberately not done here:
- IPv4 fragments are not reassembled: `decode_ethernet` answers `Dropped(IP_FRAGMENT)` and
  `decode_ipv4_fragment` hands the header and payload to whoever reassembles (the host).
- IPv4 options are skipped (their length honoured), not kept; IPv6 hop-by-hop, routing and
  destination-options headers are skipped; an IPv6 fragment header is `Dropped(IP_FRAGMENT)` and
  `decode_ipv6_fragment` hands it over. The IPv6 rules (extension headers, ICMPv6, Neighbor
  Discovery, zero checksums) live in `lab.wire.fast_ipv6`, next to the RFC text they follow.
- `Ipv6Header.next_header` is the upper-layer protocol found after the skipped extension headers,
  because that is what a consumer of the value needs; encoding a v6 frame writes no extensions.
- UDP and every other protocol or ethertype decode to `OtherFrame`.
- With an IPv6 routing header whose segments-left is not zero (a capture taken mid-path), the
  TCP checksum is computed with the destination field, not the routing header's final
  destination (RFC 8200 8.1), so such a segment fails its checksum; `verify_checksums=False`
  accepts it.
- The encoder writes no Ethernet padding (frames under 60 bytes are padded by the NIC), exactly
  as Scapy's `bytes(Ether()/...)` does.
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache

from lab.wire.checksum import checksum_verifies, internet_checksum, ones_complement_sum
from lab.wire.frame import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_QINQ,
    ETHERTYPE_VLAN,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    ArpFrame,
    Dropped,
    DropReason,
    Frame,
    IcmpFrame,
    Icmpv6Frame,
    Ipv4Header,
    Ipv6Header,
    NeighborAdvertisement,
    NeighborSolicitation,
    OtherFrame,
    TcpFrame,
)
from lab.wire.options import (
    MalformedOptionsError,
    NoOperation,
    TcpOption,
    Timestamps,
    decode_options,
    decode_options_leniently,
    encode_options,
)
from lab.wire.segment import Flags, Segment

__all__ = [
    "BareAckTemplate",
    "DecodeStats",
    "Ipv4Fragment",
    "Ipv6Fragment",
    "bare_timestamps",
    "decode_ethernet",
    "decode_ip",
    "decode_ipv4_fragment",
    "decode_ipv6_fragment",
    "encode",
    "encode_arp",
    "encode_icmp",
    "encode_ipv6_fragment",
    "encode_tcp",
    "frame_kind",
]

ETH_HEADER_LEN = 14
VLAN_TAG_LEN = 4
IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
TCP_HEADER_LEN = 20
ICMP_HEADER_LEN = 8
ARP_LEN = 28

# 802.1ad (QinQ) S-tag, 802.1Q C-tag, and the pre-standard 0x9100 used by some switches for QinQ.
_VLAN_ETHERTYPES = frozenset((ETHERTYPE_VLAN, ETHERTYPE_QINQ, 0x9100))

_IP_DF = 0x4000
_IP_MF = 0x2000
_IP_OFFSET_MASK = 0x1FFF

_ETH = struct.Struct("!6s6sH")
_ETHERTYPE = struct.Struct("!H")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_ICMP = struct.Struct("!BBHI")
_PSEUDO_V4_TAIL = struct.Struct("!BBH")
_TIMESTAMP_OPTIONS = struct.Struct("!BBBBII")  # the options of every segment after a handshake


# ----------------------------------------------------------------------------------------------
# Decoding


@dataclass(frozen=True, slots=True)
class Ipv4Fragment:
    """An IPv4 packet's header and payload (fragment or not), for the host's fragment reassembly."""

    eth_src: str
    eth_dst: str
    ip: Ipv4Header
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ipv6Fragment:
    """One IPv6 fragment (RFC 8200 4.5), for the host's fragment reassembly.

    `ip.next_header` is the Fragment header's Next Header (the protocol of the whole packet);
    `offset` is in bytes (the wire field times 8); `payload` is the fragmentable part."""

    eth_src: str
    eth_dst: str
    ip: Ipv6Header
    identification: int
    offset: int
    more: bool
    payload: bytes


def frame_kind(result: Frame | Dropped) -> str:
    """A short name for what a decoder returned: tcp, arp, icmp, other or dropped."""
    match result:
        case TcpFrame():
            return "tcp"
        case ArpFrame():
            return "arp"
        case IcmpFrame():
            return "icmp"
        case Icmpv6Frame():
            return "icmpv6"
        case NeighborSolicitation() | NeighborAdvertisement():
            return "ndp"
        case OtherFrame():
            return "other"
        case Dropped():
            return "dropped"


@dataclass(slots=True)
class DecodeStats:
    """Counters a link or host keeps over everything it decoded: drops by reason, frames by kind.

    Mutable on purpose (it is a counter, not a value); `count` returns its argument so that it can
    wrap a decoder call: `frame = stats.count(decode_ethernet(raw))`.
    """

    drops: Counter[DropReason] = field(default_factory=Counter)
    frames: Counter[str] = field(default_factory=Counter)

    def count(self, result: Frame | Dropped) -> Frame | Dropped:
        if isinstance(result, Dropped):
            self.drops[result.reason] += 1
        else:
            self.frames[frame_kind(result)] += 1
        return result

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    @property
    def decoded(self) -> int:
        return sum(self.frames.values())

    def summary(self) -> str:
        """One line for logs and notebooks, e.g. `tcp=10 arp=2 | drops: bad_tcp_checksum=1`."""
        kinds = " ".join(f"{k}={v}" for k, v in sorted(self.frames.items())) or "none"
        drops = " ".join(f"{r.value}={v}" for r, v in sorted(self.drops.items(), key=_by_value))
        return f"{kinds} | drops: {drops or 'none'}"


def _by_value(item: tuple[DropReason, int]) -> str:
    return item[0].value


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def decode_ethernet(
    buf: bytes, *, verify_checksums: bool = True, transport_checksum_verified: bool = False
) -> Frame | Dropped:
    """Decode an Ethernet II frame (VLAN tags of any depth skipped). Never raises.

    `transport_checksum_verified`: the kernel vouched for the TCP/ICMP checksum (PACKET_AUXDATA's
    TP_STATUS_CSUM_VALID, offload mode), so it is not computed again; the IPv4 header checksum
    still is (AF_PACKET sees the frame before IP does). A GRO-merged frame's TCP checksum field
    does not cover its merged payload: it must only ever be decoded this way."""
    buf = bytes(buf)  # free for bytes; payload slices of a bytearray/memoryview must be bytes
    parsed = _parse_ethernet(buf)
    if isinstance(parsed, Dropped):
        return parsed
    eth_src, eth_dst, ethertype, offset = parsed
    verify_l4 = verify_checksums and not transport_checksum_verified
    if ethertype == ETHERTYPE_IPV4:
        return _decode_ipv4(buf, offset, verify_checksums, eth_src, eth_dst, verify_l4)
    if ethertype == ETHERTYPE_IPV6:
        return _decode_ipv6(buf, offset, verify_l4, eth_src, eth_dst)
    if ethertype == ETHERTYPE_ARP:
        return _decode_arp(buf, offset, eth_src, eth_dst)
    return OtherFrame(eth_src, eth_dst, ethertype, None)


_ETH_IPV4 = struct.Struct("!6s6sHBBHHHBBH4s4s")  # Ethernet, then an IPv4 header without options
_ETH_IPV4_TCP_MIN = 14 + 20 + 20


def decode_unicast_tcp(
    buf: bytes, mac: bytes, ip: bytes, *, transport_checksum_verified: bool = False
) -> tuple[bytes, Segment] | None:
    """The bulk path's decoder: (source address, 4 raw bytes; segment) of a plain TCP/IPv4 frame
    sent to `mac` and `ip`, or None for any other frame or any fault.

    "Plain" is what nearly every frame of a transfer is: no VLAN tag, IPv4 without options and
    unfragmented, TTL above 0, TCP, every checksum right. It skips what the host would throw
    away for such a frame (MAC and address strings, the `Ipv4Header` and `TcpFrame` values).
    None says nothing about validity: the caller then decodes with `decode_ethernet`, which
    names the fault, so that drops are counted in one place only.
    """
    if len(buf) < _ETH_IPV4_TCP_MIN:
        return None
    dst, _src, ethertype, vihl, _tos, total, _id, frag, ttl, proto, _c, saddr, daddr = (
        _ETH_IPV4.unpack_from(buf)
    )
    if (
        dst != mac
        or daddr != ip
        or ethertype != ETHERTYPE_IPV4
        or vihl != 0x45
        or proto != IPPROTO_TCP
        or frag & (_IP_MF | _IP_OFFSET_MASK)
        or ttl == 0
        or total < 40
        or total > len(buf) - ETH_HEADER_LEN
        # the header's words sum to 0 modulo 0xFFFF when its checksum is right (2**16 is 1
        # modulo 0xFFFF; a version-4 header is never all zero, so "positive zero" cannot arise)
        or int.from_bytes(buf[14:34], "big") % 0xFFFF
    ):
        return None
    end = 14 + total
    # The pseudo-header's addresses are the 8 bytes just before the TCP header (no IP options):
    # one sum over buf[26:end], plus protocol and TCP length, covers pseudo-header and segment.
    if not transport_checksum_verified and not checksum_verifies(
        buf, 26, end, IPPROTO_TCP + total - 20
    ):
        return None
    seg = _decode_tcp(buf, 34, end, b"", False)
    if isinstance(seg, Dropped):
        return None
    return saddr, seg


def decode_ip(
    buf: bytes, *, verify_checksums: bool = True, eth_src: str = "", eth_dst: str = ""
) -> Frame | Dropped:
    """Decode a bare IP packet (raw-IP capture link types); the version nibble picks v4 or v6."""
    buf = bytes(buf)
    if not buf:
        return Dropped(DropReason.TRUNCATED_IP, "empty packet")
    version = buf[0] >> 4
    if version == 4:
        return _decode_ipv4(buf, 0, verify_checksums, eth_src, eth_dst)
    if version == 6:
        return _decode_ipv6(buf, 0, verify_checksums, eth_src, eth_dst)
    return Dropped(DropReason.BAD_IP_VERSION, f"version {version}")


def decode_ipv4_fragment(
    buf: bytes, *, verify_checksums: bool = True, ethernet: bool = True
) -> Ipv4Fragment | Dropped:
    """The validated IPv4 header and payload of a frame (or of a bare packet, `ethernet=False`).

    This is what a host calls after `decode_ethernet` answered `Dropped(IP_FRAGMENT)`: the same
    checks are made, and the payload (a fragment of the upper-layer message) is returned as bytes.
    """
    eth_src = eth_dst = ""
    offset = 0
    buf = bytes(buf)
    if ethernet:
        parsed = _parse_ethernet(buf)
        if isinstance(parsed, Dropped):
            return parsed
        eth_src, eth_dst, ethertype, offset = parsed
        if ethertype != ETHERTYPE_IPV4:
            return Dropped(DropReason.BAD_IP_VERSION, f"ethertype 0x{ethertype:04x} is not IPv4")
    checked = _check_ipv4(buf, offset, verify_checksums)
    if isinstance(checked, Dropped):
        return checked
    header, start, end = checked
    return Ipv4Fragment(eth_src, eth_dst, header, buf[start:end])


def _parse_ethernet(buf: bytes) -> tuple[str, str, int, int] | Dropped:
    """(src, dst, ethertype after the VLAN tags, offset of the payload)."""
    n = len(buf)
    if n < ETH_HEADER_LEN:
        return Dropped(DropReason.TRUNCATED_ETHERNET, f"{n} bytes")
    dst, src, ethertype = _ETH.unpack_from(buf)
    offset = ETH_HEADER_LEN
    while ethertype in _VLAN_ETHERTYPES:
        # A tag is the 2-byte TCI followed by the next ethertype; the outer ethertype is consumed.
        if offset + VLAN_TAG_LEN > n:
            return Dropped(DropReason.TRUNCATED_ETHERNET, f"VLAN tag cut at {n} bytes")
        (ethertype,) = _ETHERTYPE.unpack_from(buf, offset + 2)
        offset += VLAN_TAG_LEN
    return _mac(src), _mac(dst), ethertype, offset


def _decode_arp(buf: bytes, offset: int, eth_src: str, eth_dst: str) -> ArpFrame | Dropped:
    if len(buf) - offset < ARP_LEN:
        return Dropped(DropReason.TRUNCATED_ARP, f"{len(buf) - offset} bytes")
    hwtype, ptype, hwlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(buf, offset)
    if hwtype != 1 or ptype != ETHERTYPE_IPV4 or hwlen != 6 or plen != 4:
        return Dropped(
            DropReason.BAD_ARP, f"hwtype={hwtype} ptype=0x{ptype:04x} hwlen={hwlen} plen={plen}"
        )
    return ArpFrame(
        eth_src,
        eth_dst,
        op,
        _mac(sha),
        socket.inet_ntoa(spa),
        _mac(tha),
        socket.inet_ntoa(tpa),
    )


def _check_ipv4(buf: bytes, offset: int, verify: bool) -> tuple[Ipv4Header, int, int] | Dropped:
    """Validate the IPv4 header at `offset`: (header value, payload start, payload end)."""
    avail = len(buf) - offset
    if avail < IPV4_HEADER_LEN:
        return Dropped(DropReason.TRUNCATED_IP, f"{avail} bytes")
    vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = _IPV4.unpack_from(buf, offset)
    if vihl >> 4 != 4:
        return Dropped(DropReason.BAD_IP_VERSION, f"version {vihl >> 4}")
    hlen = (vihl & 0x0F) * 4
    if hlen < IPV4_HEADER_LEN:
        return Dropped(DropReason.BAD_IP_HEADER_LENGTH, f"IHL {vihl & 0x0F}")
    if total < hlen:
        return Dropped(DropReason.BAD_IP_TOTAL_LENGTH, f"total length {total} < header {hlen}")
    if total > avail:
        # Ethernet padding makes `avail` larger than `total`, which is fine; smaller means the
        # packet was cut (a capture's snap length, or a corrupted length field).
        return Dropped(DropReason.TRUNCATED_IP, f"total length {total} > {avail} bytes present")
    if verify and internet_checksum(memoryview(buf)[offset : offset + hlen]) != 0:
        return Dropped(DropReason.BAD_IP_CHECKSUM, f"checksum 0x{_csum:04x}")
    header = Ipv4Header(
        src=socket.inet_ntoa(src),
        dst=socket.inet_ntoa(dst),
        ttl=ttl,
        ident=ident,
        dont_fragment=bool(frag & _IP_DF),
        more_fragments=bool(frag & _IP_MF),
        fragment_offset=(frag & _IP_OFFSET_MASK) * 8,
        tos=tos,
        protocol=proto,
    )
    return header, offset + hlen, offset + total


def _decode_ipv4(
    buf: bytes,
    offset: int,
    verify: bool,
    eth_src: str,
    eth_dst: str,
    verify_l4: bool | None = None,
) -> Frame | Dropped:
    if verify_l4 is None:
        verify_l4 = verify
    checked = _check_ipv4(buf, offset, verify)
    if isinstance(checked, Dropped):
        return checked
    header, start, end = checked
    if header.more_fragments or header.fragment_offset:
        return Dropped(
            DropReason.IP_FRAGMENT,
            f"id={header.ident} offset={header.fragment_offset} mf={header.more_fragments}",
        )
    if header.protocol == IPPROTO_TCP:
        pseudo = buf[offset + 12 : offset + 20] + _PSEUDO_V4_TAIL.pack(0, IPPROTO_TCP, end - start)
        seg = _decode_tcp(buf, start, end, pseudo, verify_l4)
        if isinstance(seg, Dropped):
            return seg
        return TcpFrame(eth_src, eth_dst, header, seg)
    if header.protocol == IPPROTO_ICMP:
        return _decode_icmp(buf, start, end, verify_l4, eth_src, eth_dst, header)
    return OtherFrame(eth_src, eth_dst, ETHERTYPE_IPV4, header.protocol)


def _decode_ipv6(
    buf: bytes, offset: int, verify: bool, eth_src: str, eth_dst: str
) -> Frame | Dropped:
    return _v6.decode_ipv6(buf, offset, verify, eth_src, eth_dst)


def decode_ipv6_fragment(
    buf: bytes, *, verify_checksums: bool = True, ethernet: bool = True
) -> Ipv6Fragment | Dropped:
    """The IPv6 counterpart of `decode_ipv4_fragment` (see `fast_ipv6.decode_ipv6_fragment`)."""
    return _v6.decode_ipv6_fragment(buf, verify_checksums=verify_checksums, ethernet=ethernet)


def _decode_tcp(buf: bytes, start: int, end: int, pseudo: bytes, verify: bool) -> Segment | Dropped:
    """The TCP segment in `buf[start:end]`; `pseudo` is the pseudo-header's bytes."""
    length = end - start
    if length < TCP_HEADER_LEN:
        return Dropped(DropReason.TRUNCATED_TCP, f"{length} bytes")
    sport, dport, seq, ack, doff, flags, window, csum, urgent = _TCP.unpack_from(buf, start)
    hlen = (doff >> 4) * 4
    if hlen < TCP_HEADER_LEN or hlen > length:
        return Dropped(DropReason.BAD_TCP_HEADER_LENGTH, f"data offset {doff >> 4}, {length} bytes")
    # The pseudo-header's sum first, then the segment read in place through a memoryview (one
    # copy inside int.from_bytes, where concatenating made two).
    if verify and internet_checksum(memoryview(buf)[start:end], ones_complement_sum(pseudo)) != 0:
        return Dropped(DropReason.BAD_TCP_CHECKSUM, f"checksum 0x{csum:04x}")
    options: tuple[TcpOption, ...] = ()
    if hlen > TCP_HEADER_LEN:
        try:
            options = _decode_options(buf[start + TCP_HEADER_LEN : start + hlen])
        except MalformedOptionsError:
            # As Linux: keep the segment, ignore the options from the damaged one on.
            options, _ = decode_options_leniently(buf[start + TCP_HEADER_LEN : start + hlen])
    return Segment(
        sport, dport, seq, ack, _FLAGS[flags], window, options, buf[start + hlen : end], urgent
    )


# Flags(value) goes through the enum machinery on every call (about a microsecond); the 256
# possible values are made once and looked up.
_FLAGS = tuple(Flags(value) for value in range(256))
_NOP = NoOperation()
_NOP_NOP_TIMESTAMPS = b"\x01\x01\x08\x0a"
_TIMESTAMP_VALUES = struct.Struct("!II")


def _decode_options(raw: bytes) -> tuple[TcpOption, ...]:
    """`decode_options`, with a shortcut for the layout nearly every data segment carries.

    Linux and our stack send NOP, NOP, Timestamps (12 bytes) on every segment once timestamps
    are agreed; recognising it by its first four bytes halves the cost of decoding a segment.
    """
    if len(raw) == 12 and raw.startswith(_NOP_NOP_TIMESTAMPS):
        # Back-to-back segments of a burst mostly carry the same timestamps (the peer's clock
        # ticks in milliseconds, and it echoes our latest): the value decoded last is reused.
        global _last_timestamps
        last_raw, last_options = _last_timestamps
        if raw == last_raw:
            return last_options
        tsval, tsecr = _TIMESTAMP_VALUES.unpack_from(raw, 4)
        options = (_NOP, _NOP, Timestamps(tsval, tsecr))
        _last_timestamps = (raw, options)  # one tuple rebound: threads see a matching pair
        return options
    return decode_options(raw)


# The raw bytes and value of the NOP, NOP, Timestamps options decoded last (values are
# immutable, so any number of segments may share one).
_last_timestamps: tuple[bytes, tuple[TcpOption, ...]] = (b"", ())


def _decode_icmp(
    buf: bytes,
    start: int,
    end: int,
    verify: bool,
    eth_src: str,
    eth_dst: str,
    header: Ipv4Header,
) -> IcmpFrame | Dropped:
    if end - start < ICMP_HEADER_LEN:
        return Dropped(DropReason.TRUNCATED_ICMP, f"{end - start} bytes")
    icmp_type, code, csum, rest = _ICMP.unpack_from(buf, start)
    if verify and internet_checksum(memoryview(buf)[start:end]) != 0:
        return Dropped(DropReason.BAD_ICMP_CHECKSUM, f"checksum 0x{csum:04x}")
    return IcmpFrame(
        eth_src, eth_dst, header, icmp_type, code, rest, buf[start + ICMP_HEADER_LEN : end]
    )


# ----------------------------------------------------------------------------------------------
# Encoding


@lru_cache(maxsize=4096)
def _mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


@lru_cache(maxsize=4096)
def _ipv4_bytes(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, address)


@lru_cache(maxsize=4096)
def _ipv6_bytes(address: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, address)


def _ethernet(eth_src: str, eth_dst: str, ethertype: int) -> bytes:
    return _ETH.pack(_mac_bytes(eth_dst), _mac_bytes(eth_src), ethertype)


def _ipv4_header(ip: Ipv4Header, protocol: int, payload_len: int) -> bytes:
    if ip.protocol != protocol:
        raise ValueError(f"IPv4 header says protocol {ip.protocol}, frame carries {protocol}")
    if ip.fragment_offset % 8:
        raise ValueError(f"fragment offset {ip.fragment_offset} is not a multiple of 8")
    frag = (
        (_IP_DF if ip.dont_fragment else 0)
        | (_IP_MF if ip.more_fragments else 0)
        | (ip.fragment_offset // 8)
    )
    src = _ipv4_bytes(ip.src)
    dst = _ipv4_bytes(ip.dst)
    total = IPV4_HEADER_LEN + payload_len
    args = (0x45, ip.tos, total, ip.ident, frag, ip.ttl, protocol)
    csum = internet_checksum(_IPV4.pack(*args, 0, src, dst))
    return _IPV4.pack(*args, csum, src, dst)


def _tcp_bytes(seg: Segment, opts: bytes, pseudo: bytes) -> bytes:
    hlen = TCP_HEADER_LEN + len(opts)
    fixed = (seg.src_port, seg.dst_port, seg.seq, seg.ack, (hlen // 4) << 4, int(seg.flags))
    header = _TCP.pack(*fixed, seg.window, 0, seg.urgent) + opts
    # One checksum call over pseudo-header + segment: the copy costs less than composing sums.
    csum = internet_checksum(b"".join((pseudo, header, seg.payload)))
    return _TCP.pack(*fixed, seg.window, csum, seg.urgent) + opts + seg.payload


def bare_timestamps(options: tuple[TcpOption, ...]) -> Timestamps | None:
    """The Timestamps of an option list that is exactly NOP, NOP, Timestamps (RFC 7323
    appendix A's layout, what every ACK and data segment carries once timestamps are on)."""
    if len(options) == 3:
        first, second, ts = options
        if type(ts) is Timestamps and type(first) is NoOperation and type(second) is NoOperation:
            return ts
    return None


def _options_bytes(options: tuple[TcpOption, ...]) -> bytes:
    """`encode_options`, with the bulk case (NOP, NOP, Timestamps) packed at once."""
    ts = bare_timestamps(options)
    if ts is not None:
        return _TIMESTAMP_OPTIONS.pack(1, 1, 8, 10, ts.tsval, ts.tsecr)
    return encode_options(options) if options else b""


def encode_tcp(frame: TcpFrame) -> bytes:
    """Ethernet + IPv4 (or IPv6, no extension headers) + TCP, lengths and checksums computed."""
    seg = frame.segment
    if not seg.payload and type(frame.ip) is Ipv4Header:
        ts = bare_timestamps(seg.options)
        if ts is not None:
            return _encode_bare_v4(frame, frame.ip, seg, ts)
    opts = _options_bytes(seg.options)
    tcp_len = TCP_HEADER_LEN + len(opts) + len(seg.payload)
    ip = frame.ip
    if isinstance(ip, Ipv4Header):
        ip_header = _ipv4_header(ip, IPPROTO_TCP, tcp_len)
        pseudo = ip_header[12:20] + _PSEUDO_V4_TAIL.pack(0, IPPROTO_TCP, tcp_len)
        ethertype = ETHERTYPE_IPV4
    else:
        if ip.next_header != IPPROTO_TCP:
            raise ValueError(f"IPv6 header says next header {ip.next_header}, frame carries TCP")
        ip_header = _v6.ipv6_header(ip, IPPROTO_TCP, tcp_len)
        pseudo = _v6.pseudo_header(ip_header, IPPROTO_TCP, tcp_len)
        ethertype = ETHERTYPE_IPV6
    return b"".join(
        (
            _ethernet(frame.eth_src, frame.eth_dst, ethertype),
            ip_header,
            _tcp_bytes(seg, opts, pseudo),
        )
    )


# An IPv4 segment without payload whose options are NOP, NOP, Timestamps, whole: Ethernet, IPv4
# (20), TCP (20) and the options (12): the ACKs a bulk receiver sends for every second segment.
_BARE_V4 = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIBBHHHBBBBII")
_BARE_V4_IP_LEN = IPV4_HEADER_LEN + TCP_HEADER_LEN + 12
_BARE_V4_TCP_LEN = TCP_HEADER_LEN + 12
MAX_BARE_TEMPLATES = 256


class BareAckTemplate:
    """What stays the same between two bare ACKs (no payload; options NOP, NOP, Timestamps) from
    one IPv4 source to one destination: the MACs, the addresses, TTL, TOS, the IP flags, and the
    one's-complement sums of the constant words. BSD kept such a header template in every TCP
    control block (`tcp_template`) for the same reason: a bulk receiver sends an ACK for every
    second segment, and only a few fields of it change.

    `encode` makes the ACK's bytes, identical to `encode_tcp`'s (tests/test_codec.py), by one
    `struct` call. Its checksums are computed from sums, not from packed bytes: 2**16 is 1
    modulo 0xFFFF, so a 32-bit field adds to the one's-complement sum as its integer value
    does, and what changes per ACK (IP ident; TCP sequence, acknowledgment, flags, window,
    urgent pointer, TSval, TSecr) is added to the constant part."""

    __slots__ = (
        "_dst",
        "_eth_dst",
        "_eth_src",
        "_frag",
        "_ip_sum",
        "_src",
        "_tcp_sum",
        "_tos",
        "_ttl",
    )

    def __init__(self, eth_src: str, eth_dst: str, ip: Ipv4Header) -> None:
        """`ip`'s identification is not used (each ACK gives its own)."""
        # The general header builder checks the fields (and raises as `encode_tcp` would).
        constant_ip = _ipv4_header(replace(ip, ident=0), IPPROTO_TCP, _BARE_V4_TCP_LEN)
        self._ip_sum = int.from_bytes(constant_ip[:10], "big") + int.from_bytes(
            constant_ip[12:], "big"
        )
        self._frag = int.from_bytes(constant_ip[6:8], "big")
        self._src, self._dst = constant_ip[12:16], constant_ip[16:20]
        pseudo = self._src + self._dst + _PSEUDO_V4_TAIL.pack(0, IPPROTO_TCP, _BARE_V4_TCP_LEN)
        self._tcp_sum = int.from_bytes(pseudo, "big") + int.from_bytes(_NOP_NOP_TIMESTAMPS, "big")
        self._eth_dst = _mac_bytes(eth_dst)
        self._eth_src = _mac_bytes(eth_src)
        self._ttl = ip.ttl
        self._tos = ip.tos

    def encode(self, ident: int, seg: Segment, tsval: int, tsecr: int) -> bytes:
        """The frame of `seg` (no payload; its options NOP, NOP, Timestamps(`tsval`, `tsecr`))
        in an IPv4 packet with identification `ident`."""
        ip_checksum = ~_fold(self._ip_sum + ident) & 0xFFFF
        flags = int(seg.flags)
        tcp_checksum = ~_fold(
            self._tcp_sum
            + seg.src_port
            + seg.dst_port
            + seg.seq
            + seg.ack
            + (0x8000 | flags)  # data offset 8 words, then the flags
            + seg.window
            + seg.urgent
            + tsval
            + tsecr
        )
        return _BARE_V4.pack(
            self._eth_dst,
            self._eth_src,
            ETHERTYPE_IPV4,
            0x45,
            self._tos,
            _BARE_V4_IP_LEN,
            ident,
            self._frag,
            self._ttl,
            IPPROTO_TCP,
            ip_checksum,
            self._src,
            self._dst,
            seg.src_port,
            seg.dst_port,
            seg.seq,
            seg.ack,
            0x80,
            flags,
            seg.window,
            tcp_checksum & 0xFFFF,
            seg.urgent,
            1,
            1,
            8,
            10,
            tsval,
            tsecr,
        )


_bare_v4_templates: dict[tuple[object, ...], BareAckTemplate] = {}


def _encode_bare_v4(frame: TcpFrame, ip: Ipv4Header, seg: Segment, ts: Timestamps) -> bytes:
    """`encode_tcp` for the bulk receiver's ACK (no payload, options NOP, NOP, Timestamps,
    IPv4): the same bytes, from a `BareAckTemplate` kept per source, destination and IP
    header fields (the host keeps its own per connection and skips this lookup)."""
    key = (
        frame.eth_src,
        frame.eth_dst,
        ip.src,
        ip.dst,
        ip.ttl,
        ip.tos,
        ip.dont_fragment,
        ip.more_fragments,
        ip.fragment_offset,
        ip.protocol,
    )
    template = _bare_v4_templates.get(key)
    if template is None:
        template = BareAckTemplate(frame.eth_src, frame.eth_dst, ip)
        if len(_bare_v4_templates) >= MAX_BARE_TEMPLATES:
            _bare_v4_templates.clear()
        _bare_v4_templates[key] = template
    return template.encode(ip.ident, seg, ts.tsval, ts.tsecr)


def _fold(total: int) -> int:
    """The one's-complement sum of 16-bit words whose integer sum is `total` (not 0):
    `ones_complement_sum`'s arithmetic, where a multiple of 0xFFFF is written 0xFFFF."""
    return total % 0xFFFF or 0xFFFF


def encode_arp(frame: ArpFrame) -> bytes:
    """Ethernet + ARP for IPv4 over Ethernet (no padding to 60 bytes, as Scapy)."""
    return _ethernet(frame.eth_src, frame.eth_dst, ETHERTYPE_ARP) + _ARP.pack(
        1,
        ETHERTYPE_IPV4,
        6,
        4,
        frame.op,
        _mac_bytes(frame.sender_mac),
        _ipv4_bytes(frame.sender_ip),
        _mac_bytes(frame.target_mac),
        _ipv4_bytes(frame.target_ip),
    )


def encode_icmp(frame: IcmpFrame) -> bytes:
    """Ethernet + IPv4 + ICMP, lengths and checksums computed."""
    body = _ICMP.pack(frame.icmp_type, frame.code, 0, frame.rest) + frame.payload
    csum = internet_checksum(body)
    icmp = _ICMP.pack(frame.icmp_type, frame.code, csum, frame.rest) + frame.payload
    return b"".join(
        (
            _ethernet(frame.eth_src, frame.eth_dst, ETHERTYPE_IPV4),
            _ipv4_header(frame.ip, IPPROTO_ICMP, len(icmp)),
            icmp,
        )
    )


def encode(frame: Frame) -> bytes:
    """The wire bytes of any frame the stack sends. `OtherFrame` keeps no payload: TypeError."""
    match frame:
        case TcpFrame():
            return encode_tcp(frame)
        case ArpFrame():
            return encode_arp(frame)
        case IcmpFrame():
            return encode_icmp(frame)
        case Icmpv6Frame():
            return _v6.encode_icmpv6(frame)
        case NeighborSolicitation():
            return _v6.encode_neighbor_solicitation(frame)
        case NeighborAdvertisement():
            return _v6.encode_neighbor_advertisement(frame)
        case OtherFrame():
            raise TypeError("an OtherFrame records what was received; it cannot be encoded")


def encode_ipv6_fragment(fragment: Ipv6Fragment) -> bytes:
    """Ethernet + IPv6 + Fragment header + the fragment (see `fast_ipv6.encode_ipv6_fragment`)."""
    return _v6.encode_ipv6_fragment(fragment)


# Last, because fast_ipv6 uses this module's helpers; as a module reference, so that importing
# either module first works.
from lab.wire import fast_ipv6 as _v6  # noqa: E402
