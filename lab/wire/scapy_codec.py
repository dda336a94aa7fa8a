"""The teaching codec: frames built and dissected with Scapy layers.

Every outgoing frame can be built here as `Ether()/IP()/TCP(...)` with each field set explicitly
from the frame value, so that a notebook can `show()` it field by field; only lengths, data offset
and checksums are left for Scapy to compute. `lab.wire.fast` produces the same bytes much faster;
`tests/test_codec.py` proves the two identical for every frame the core can emit, which is why the
fast path may be trusted.

Byte identity needs care in two places:
- TCP options are passed to Scapy as its `(name, value)` tuples in our order, NOP and EOL
  included, unknown kinds as `(kind, raw bytes)`. Scapy then pads the option space with zero
  bytes (EOL) to a multiple of four, exactly as `lab.wire.options.encode_options` does.
- Neither codec pads a short Ethernet frame to 60 bytes (the NIC does that).
- ICMPv6 messages are built with the type's own Scapy class (echo, destination unreachable,
  packet too big, time exceeded, parameter problem, NS/NA with their link-layer address
  options), so that `show()` names their fields; other types go through `ICMPv6Unknown`. The
  invoking packet of an error stays `Raw` bytes (Scapy's `IPerror6` view of a cut packet does
  not always re-pack to the same bytes), and Scapy's own habit of setting hop limit 255 under
  ND layers is overridden by the value's hop limit, which must be 255 anyway.

The decoder here exists to cross-check the fast one: it dissects with Scapy and re-reads the
same values, verifying checksums by comparing each one with the checksum Scapy recomputes
(`checksum`, `in4_chksum`, `in6_chksum`). Scapy's dissector is lenient (it guesses past bad
lengths) and sometimes raises on short fields, so the same length checks as the fast decoder are
made before dissecting and any exception from Scapy becomes a `Dropped`; the tests show both
decoders give the same value or the same drop reason for damaged frames. It is slow (about a
millisecond a frame): hosts and replay use the fast decoder.

Scapy is imported on first use, with its `scapy.runtime` logger silenced, so importing this module
costs nothing and prints nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import socket
import types
from collections.abc import Callable
from typing import Any

from lab.wire.fast import Ipv6Fragment
from lab.wire.frame import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
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
    EndOfOptions,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    SackPermitted,
    TcpOption,
    Timestamps,
    UnknownOption,
    WindowScale,
)
from lab.wire.segment import Flags, Segment

__all__ = [
    "build",
    "build_ipv6_fragment",
    "decode_ethernet",
    "encode",
    "encode_arp",
    "encode_icmp",
    "encode_ipv6_fragment",
    "encode_tcp",
    "hexdump",
    "show",
]

_IP_FLAG_MF = 0x1
_IP_FLAG_DF = 0x2
_VLAN_ETHERTYPES = frozenset((0x8100, 0x88A8, 0x9100))
_IPV6_SKIPPABLE = frozenset((0, 43, 60))
_ICMP_ECHO_TYPES = frozenset((0, 8))
_ICMP_DEST_UNREACHABLE = 3


@functools.cache
def _scapy() -> types.SimpleNamespace:
    """Import the Scapy layers we use, once, without Scapy's import-time warnings."""
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    logging.getLogger("scapy.loading").setLevel(logging.ERROR)
    from scapy.layers import inet6
    from scapy.layers.inet import ICMP, IP, TCP, UDP, in4_chksum
    from scapy.layers.inet6 import IPv6, in6_chksum
    from scapy.layers.l2 import ARP, Dot1Q, Ether
    from scapy.packet import Raw
    from scapy.utils import checksum, hexdump

    return types.SimpleNamespace(
        ARP=ARP,
        Dot1Q=Dot1Q,
        Ether=Ether,
        ICMP=ICMP,
        IP=IP,
        IPv6=IPv6,
        inet6=inet6,
        Raw=Raw,
        TCP=TCP,
        UDP=UDP,
        checksum=checksum,
        hexdump=hexdump,
        in4_chksum=in4_chksum,
        in6_chksum=in6_chksum,
    )


# ----------------------------------------------------------------------------------------------
# Building


def _scapy_option(option: TcpOption) -> tuple[Any, Any]:
    """Our option value as the `(name, value)` tuple Scapy's TCPOptionsField packs."""
    match option:
        case EndOfOptions():
            return ("EOL", None)
        case NoOperation():
            return ("NOP", None)
        case MaxSegmentSize(mss):
            return ("MSS", mss)
        case WindowScale(shift):
            return ("WScale", shift)
        case SackPermitted():
            return ("SAckOK", b"")
        case SackBlocks(blocks):
            return ("SAck", tuple(edge for block in blocks for edge in block))
        case Timestamps(tsval, tsecr):
            return ("Timestamp", (tsval, tsecr))
        case UnknownOption(kind, data):
            if kind in (0, 1):
                # Scapy writes kinds 0 and 1 as single bytes whatever the data; so would a peer.
                raise ValueError(f"unknown option kind {kind} is EOL/NOP and carries no data")
            return (kind, data)


def _ip_layer(ip: Ipv4Header, protocol: int) -> Any:
    if ip.protocol != protocol:
        raise ValueError(f"IPv4 header says protocol {ip.protocol}, frame carries {protocol}")
    if ip.fragment_offset % 8:
        raise ValueError(f"fragment offset {ip.fragment_offset} is not a multiple of 8")
    s = _scapy()
    return s.IP(
        version=4,
        ihl=None,
        tos=ip.tos,
        len=None,
        id=ip.ident,
        flags=(_IP_FLAG_DF if ip.dont_fragment else 0) | (_IP_FLAG_MF if ip.more_fragments else 0),
        frag=ip.fragment_offset // 8,
        ttl=ip.ttl,
        proto=protocol,
        chksum=None,
        src=ip.src,
        dst=ip.dst,
        options=[],
    )


def _ipv6_layer(ip: Ipv6Header, next_header: int) -> Any:
    if not 0 <= ip.traffic_class <= 0xFF:
        raise ValueError(f"traffic class {ip.traffic_class} is not 8 bits")
    if not 0 <= ip.flow_label <= 0xFFFFF:
        raise ValueError(f"flow label {ip.flow_label} is not 20 bits")
    return _scapy().IPv6(
        version=6,
        tc=ip.traffic_class,
        fl=ip.flow_label,
        plen=None,
        nh=next_header,
        hlim=ip.hop_limit,
        src=ip.src,
        dst=ip.dst,
    )


def build_tcp(frame: TcpFrame) -> Any:
    """The Scapy packet `Ether()/IP()/TCP()[/Raw()]` for a TCP frame."""
    s = _scapy()
    seg = frame.segment
    ip = frame.ip
    if isinstance(ip, Ipv4Header):
        eth = s.Ether(dst=frame.eth_dst, src=frame.eth_src, type=ETHERTYPE_IPV4)
        net = _ip_layer(ip, IPPROTO_TCP)
    else:
        if ip.next_header != IPPROTO_TCP:
            raise ValueError(f"IPv6 header says next header {ip.next_header}, frame carries TCP")
        eth = s.Ether(dst=frame.eth_dst, src=frame.eth_src, type=ETHERTYPE_IPV6)
        net = _ipv6_layer(ip, IPPROTO_TCP)
    tcp = s.TCP(
        sport=seg.src_port,
        dport=seg.dst_port,
        seq=seg.seq,
        ack=seg.ack,
        dataofs=None,
        reserved=0,
        flags=int(seg.flags),
        window=seg.window,
        chksum=None,
        urgptr=seg.urgent,
        options=[_scapy_option(o) for o in seg.options],
    )
    pkt = eth / net / tcp
    if seg.payload:
        pkt = pkt / s.Raw(load=seg.payload)
    return pkt


def build_arp(frame: ArpFrame) -> Any:
    """The Scapy packet `Ether()/ARP()` for an ARP frame."""
    s = _scapy()
    return s.Ether(dst=frame.eth_dst, src=frame.eth_src, type=ETHERTYPE_ARP) / s.ARP(
        hwtype=1,
        ptype=ETHERTYPE_IPV4,
        hwlen=6,
        plen=4,
        op=frame.op,
        hwsrc=frame.sender_mac,
        psrc=frame.sender_ip,
        hwdst=frame.target_mac,
        pdst=frame.target_ip,
    )


def build_icmp(frame: IcmpFrame) -> Any:
    """The Scapy packet `Ether()/IP()/ICMP()[/Raw()]`; `rest` is mapped to the type's fields."""
    s = _scapy()
    rest = frame.rest
    fields: dict[str, Any]
    if frame.icmp_type in _ICMP_ECHO_TYPES:
        fields = {"id": rest >> 16, "seq": rest & 0xFFFF}
    elif frame.icmp_type == _ICMP_DEST_UNREACHABLE:
        # RFC 792 unused byte, RFC 4884 length (in 32-bit words), RFC 1191 next-hop MTU.
        fields = {
            "reserved": rest >> 24,
            "length": (rest >> 16) & 0xFF,
            "nexthopmtu": rest & 0xFFFF,
        }
    elif frame.icmp_type == 11:
        fields = {"reserved": rest >> 24, "length": (rest >> 16) & 0xFF, "unused": rest & 0xFFFF}
    elif frame.icmp_type == 12:
        fields = {"ptr": rest >> 24, "length": (rest >> 16) & 0xFF, "unused": rest & 0xFFFF}
    elif frame.icmp_type == 5:
        fields = {"gw": socket.inet_ntoa(rest.to_bytes(4, "big"))}
    elif frame.icmp_type in (13, 14, 15, 16, 17, 18, 37, 38):
        # These types carry extra fixed fields Scapy would fill in itself (timestamps, masks).
        raise ValueError(f"ICMP type {frame.icmp_type} is not built by the Scapy codec")
    else:
        fields = {"unused": rest}
    icmp = s.ICMP(type=frame.icmp_type, code=frame.code, chksum=None, **fields)
    pkt = (
        s.Ether(dst=frame.eth_dst, src=frame.eth_src, type=ETHERTYPE_IPV4)
        / _ip_layer(frame.ip, IPPROTO_ICMP)
        / icmp
    )
    if frame.payload:
        pkt = pkt / s.Raw(load=frame.payload)
    return pkt


def _icmpv6_base(eth_src: str, eth_dst: str, ip: Ipv6Header) -> Any:
    if ip.next_header != IPPROTO_ICMPV6:
        raise ValueError(f"IPv6 header says next header {ip.next_header}, frame carries ICMPv6")
    s = _scapy()
    return s.Ether(dst=eth_dst, src=eth_src, type=ETHERTYPE_IPV6) / _ipv6_layer(ip, IPPROTO_ICMPV6)


def build_icmpv6(frame: Icmpv6Frame) -> Any:
    """`Ether()/IPv6()/ICMPv6...()[/Raw()]`, the ICMPv6 layer of the type's own class (RFC 4443)
    so that `show()` names its fields; `rest` is mapped to them."""
    s = _scapy()
    i6 = s.inet6
    rest, code, payload = frame.rest, frame.code, frame.payload
    message: Any
    if frame.icmp_type in (128, 129):
        layer = i6.ICMPv6EchoRequest if frame.icmp_type == 128 else i6.ICMPv6EchoReply
        message = layer(code=code, cksum=None, id=rest >> 16, seq=rest & 0xFFFF, data=payload)
        payload = b""
    elif frame.icmp_type in (1, 3):
        # RFC 4884's length (in 64-bit words) and the unused bits after it.
        layer = i6.ICMPv6DestUnreach if frame.icmp_type == 1 else i6.ICMPv6TimeExceeded
        message = layer(code=code, cksum=None, length=rest >> 24, unused=rest & 0xFFFFFF)
    elif frame.icmp_type == 2:
        message = i6.ICMPv6PacketTooBig(code=code, cksum=None, mtu=rest)
    elif frame.icmp_type == 4:
        message = i6.ICMPv6ParamProblem(code=code, cksum=None, ptr=rest)
    else:
        message = i6.ICMPv6Unknown(
            type=frame.icmp_type, code=code, cksum=None, msgbody=rest.to_bytes(4, "big") + payload
        )
        payload = b""
    pkt = _icmpv6_base(frame.eth_src, frame.eth_dst, frame.ip) / message
    if payload:
        pkt = pkt / s.Raw(load=payload)
    return pkt


def _check_nd(ip: Ipv6Header) -> None:
    if ip.hop_limit != 255:
        raise ValueError(
            f"Neighbor Discovery is sent with hop limit 255 (RFC 4861 7.1), not {ip.hop_limit}"
        )


def build_neighbor_solicitation(frame: NeighborSolicitation) -> Any:
    """`Ether()/IPv6()/ICMPv6ND_NS()[/ICMPv6NDOptSrcLLAddr()]` (RFC 4861 4.3)."""
    _check_nd(frame.ip)
    i6 = _scapy().inet6
    pkt = _icmpv6_base(frame.eth_src, frame.eth_dst, frame.ip) / i6.ICMPv6ND_NS(
        code=0, cksum=None, res=0, tgt=frame.target
    )
    if _canonical_ipv6(frame.ip.src) == "::":
        if frame.source_lladdr is not None:
            raise ValueError("a solicitation from :: (DAD) carries no source link-layer address")
        if not _is_solicited_node(frame.ip.dst):
            raise ValueError("a solicitation from :: (DAD) goes to a solicited-node group")
    if frame.source_lladdr is not None:
        pkt = pkt / i6.ICMPv6NDOptSrcLLAddr(type=1, len=1, lladdr=frame.source_lladdr)
    return pkt


def build_neighbor_advertisement(frame: NeighborAdvertisement) -> Any:
    """`Ether()/IPv6()/ICMPv6ND_NA()[/ICMPv6NDOptDstLLAddr()]` (RFC 4861 4.4)."""
    _check_nd(frame.ip)
    i6 = _scapy().inet6
    pkt = _icmpv6_base(frame.eth_src, frame.eth_dst, frame.ip) / i6.ICMPv6ND_NA(
        code=0,
        cksum=None,
        R=int(frame.router),
        S=int(frame.solicited),
        O=int(frame.override),
        res=0,
        tgt=frame.target,
    )
    if frame.target_lladdr is not None:
        pkt = pkt / i6.ICMPv6NDOptDstLLAddr(type=2, len=1, lladdr=frame.target_lladdr)
    return pkt


def build_ipv6_fragment(fragment: Ipv6Fragment) -> Any:
    """`Ether()/IPv6()/IPv6ExtHdrFragment()/Raw()` for a `fast.Ipv6Fragment`."""
    if fragment.offset % 8 or not 0 <= fragment.offset <= 0xFFF8:
        raise ValueError(f"fragment offset {fragment.offset} is not a multiple of 8 below 65536")
    if fragment.more and len(fragment.payload) % 8:
        raise ValueError(f"a fragment followed by others has {len(fragment.payload)} bytes, not 8k")
    s = _scapy()
    pkt = (
        s.Ether(dst=fragment.eth_dst, src=fragment.eth_src, type=ETHERTYPE_IPV6)
        / _ipv6_layer(fragment.ip, 44)
        / s.inet6.IPv6ExtHdrFragment(
            nh=fragment.ip.next_header,
            res1=0,
            offset=fragment.offset // 8,
            res2=0,
            m=int(fragment.more),
            id=fragment.identification,
        )
    )
    if fragment.payload:
        pkt = pkt / s.Raw(load=fragment.payload)
    return pkt


def encode_ipv6_fragment(fragment: Ipv6Fragment) -> bytes:
    return bytes(build_ipv6_fragment(fragment))


def build(frame: Frame) -> Any:
    """The Scapy packet for any frame the stack sends (for `show()` in notebooks)."""
    match frame:
        case TcpFrame():
            return build_tcp(frame)
        case ArpFrame():
            return build_arp(frame)
        case IcmpFrame():
            return build_icmp(frame)
        case Icmpv6Frame():
            return build_icmpv6(frame)
        case NeighborSolicitation():
            return build_neighbor_solicitation(frame)
        case NeighborAdvertisement():
            return build_neighbor_advertisement(frame)
        case OtherFrame():
            raise TypeError("an OtherFrame records what was received; it cannot be encoded")


def encode_tcp(frame: TcpFrame) -> bytes:
    return bytes(build_tcp(frame))


def encode_arp(frame: ArpFrame) -> bytes:
    return bytes(build_arp(frame))


def encode_icmp(frame: IcmpFrame) -> bytes:
    return bytes(build_icmp(frame))


def encode(frame: Frame) -> bytes:
    return bytes(build(frame))


# ----------------------------------------------------------------------------------------------
# Dissecting


def decode_ethernet(buf: bytes, *, verify_checksums: bool = True) -> Frame | Dropped:
    """Dissect with Scapy and return the same value (or drop reason) as `fast.decode_ethernet`."""
    s = _scapy()
    if len(buf) < 14:
        return Dropped(DropReason.TRUNCATED_ETHERNET, f"{len(buf)} bytes")
    pkt = _dissect(s.Ether, bytes(buf), DropReason.TRUNCATED_ETHERNET)
    if isinstance(pkt, Dropped):
        return pkt
    eth_src, eth_dst = str(pkt.src), str(pkt.dst)
    # Scapy dissects a type/length field below 0x600 as an 802.3 frame (Dot3) with a `len`.
    ethertype = int(pkt.type) if isinstance(pkt, s.Ether) else int(pkt.len)
    layer = pkt.payload
    while ethertype in _VLAN_ETHERTYPES:
        if len(bytes(layer)) < 4:
            return Dropped(DropReason.TRUNCATED_ETHERNET, "VLAN tag cut")
        if not isinstance(layer, s.Dot1Q):
            # Scapy binds 0x8100 and 0x88a8 but not the pre-standard 0x9100 QinQ tag.
            layer = _dissect(s.Dot1Q, bytes(layer), DropReason.TRUNCATED_ETHERNET)
            if isinstance(layer, Dropped):
                return layer
        ethertype = int(layer.type)
        layer = layer.payload
    if ethertype == ETHERTYPE_IPV4:
        return _decode_ip(bytes(layer), verify_checksums, eth_src, eth_dst)
    if ethertype == ETHERTYPE_IPV6:
        return _decode_ipv6(bytes(layer), verify_checksums, eth_src, eth_dst)
    if ethertype == ETHERTYPE_ARP:
        return _decode_arp(bytes(layer), eth_src, eth_dst)
    return OtherFrame(eth_src, eth_dst, ethertype, None)


def _dissect(layer: Any, raw: bytes, reason: DropReason) -> Any:
    """`layer(raw)`, or a drop: Scapy raises on some short or inconsistent inputs."""
    try:
        return layer(raw)
    except Exception as exc:  # Scapy's field parsers raise struct.error, TypeError, ...
        return Dropped(reason, f"Scapy cannot dissect {layer.__name__}: {exc}")


def _decode_arp(raw: bytes, eth_src: str, eth_dst: str) -> ArpFrame | Dropped:
    if len(raw) < 28:
        return Dropped(DropReason.TRUNCATED_ARP, f"{len(raw)} bytes")
    arp = _dissect(_scapy().ARP, raw, DropReason.BAD_ARP)
    if isinstance(arp, Dropped):
        return arp
    if arp.hwtype != 1 or arp.ptype != ETHERTYPE_IPV4 or arp.hwlen != 6 or arp.plen != 4:
        return Dropped(DropReason.BAD_ARP, f"hwtype={arp.hwtype} ptype={arp.ptype}")
    return ArpFrame(
        eth_src,
        eth_dst,
        int(arp.op),
        str(arp.hwsrc),
        str(arp.psrc),
        str(arp.hwdst),
        str(arp.pdst),
    )


def _decode_ip(raw: bytes, verify: bool, eth_src: str, eth_dst: str) -> Frame | Dropped:
    s = _scapy()
    if len(raw) < 20:
        return Dropped(DropReason.TRUNCATED_IP, f"{len(raw)} bytes")
    ip = _dissect(s.IP, raw, DropReason.TRUNCATED_IP)
    if isinstance(ip, Dropped):
        return ip
    if ip.version != 4:
        return Dropped(DropReason.BAD_IP_VERSION, f"version {ip.version}")
    hlen = int(ip.ihl) * 4
    if hlen < 20:
        return Dropped(DropReason.BAD_IP_HEADER_LENGTH, f"IHL {ip.ihl}")
    total = int(ip.len)
    if total < hlen:
        return Dropped(DropReason.BAD_IP_TOTAL_LENGTH, f"total length {total}")
    if total > len(raw):
        return Dropped(DropReason.TRUNCATED_IP, f"total length {total} > {len(raw)}")
    if verify:
        zeroed = raw[:10] + b"\x00\x00" + raw[12:hlen]
        if s.checksum(zeroed) != ip.chksum:
            return Dropped(DropReason.BAD_IP_CHECKSUM, f"checksum 0x{ip.chksum:04x}")
    flags = int(ip.flags)
    header = Ipv4Header(
        src=str(ip.src),
        dst=str(ip.dst),
        ttl=int(ip.ttl),
        ident=int(ip.id),
        dont_fragment=bool(flags & _IP_FLAG_DF),
        more_fragments=bool(flags & _IP_FLAG_MF),
        fragment_offset=int(ip.frag) * 8,
        tos=int(ip.tos),
        protocol=int(ip.proto),
    )
    if header.more_fragments or header.fragment_offset:
        return Dropped(DropReason.IP_FRAGMENT, f"id={header.ident}")
    body = raw[hlen:total]
    if header.protocol == IPPROTO_TCP:
        seg = _decode_tcp(body, verify, lambda zeroed: int(s.in4_chksum(IPPROTO_TCP, ip, zeroed)))
        if isinstance(seg, Dropped):
            return seg
        return TcpFrame(eth_src, eth_dst, header, seg)
    if header.protocol == IPPROTO_ICMP:
        return _decode_icmp(body, verify, eth_src, eth_dst, header)
    return OtherFrame(eth_src, eth_dst, ETHERTYPE_IPV4, header.protocol)


def _decode_ipv6(raw: bytes, verify: bool, eth_src: str, eth_dst: str) -> Frame | Dropped:
    """The same checks, in the same order, as `lab.wire.fast_ipv6.decode_ipv6`."""
    s = _scapy()
    if len(raw) < 40:
        return Dropped(DropReason.TRUNCATED_IP, f"{len(raw)} bytes")
    if raw[0] >> 4 != 6:
        return Dropped(DropReason.BAD_IP_VERSION, f"version {raw[0] >> 4}")
    end = 40 + int.from_bytes(raw[4:6], "big")
    if end > len(raw):
        return Dropped(DropReason.BAD_IPV6_PAYLOAD_LENGTH, f"payload length {end - 40}")
    raw = raw[:end]
    ip6 = _dissect(s.IPv6, raw, DropReason.BAD_EXTENSION_HEADERS)
    if isinstance(ip6, Dropped):
        return ip6
    next_header = int(ip6.nh)
    layer = ip6.payload
    pos = 40
    count = 0
    while next_header in _IPV6_SKIPPABLE or next_header == 44:
        if next_header == 0 and pos != 40:
            return Dropped(DropReason.BAD_EXTENSION_HEADERS, "hop-by-hop not first")
        count += 1
        if count > 8:
            return Dropped(DropReason.BAD_EXTENSION_HEADERS, "too many extension headers")
        if next_header == 44:
            if pos + 8 > end:
                return Dropped(DropReason.BAD_EXTENSION_HEADERS, "fragment header cut")
            return Dropped(DropReason.IP_FRAGMENT, "IPv6 fragment header")
        if pos + 8 > end or pos + (raw[pos + 1] + 1) * 8 > end or not hasattr(layer, "nh"):
            return Dropped(DropReason.BAD_EXTENSION_HEADERS, f"extension header {next_header} cut")
        next_header = int(layer.nh)
        pos += (int(layer.len) + 1) * 8
        layer = layer.payload
    header = Ipv6Header(
        src=_canonical_ipv6(str(ip6.src)),
        dst=_canonical_ipv6(str(ip6.dst)),
        hop_limit=int(ip6.hlim),
        next_header=next_header,
        traffic_class=int(ip6.tc),
        flow_label=int(ip6.fl),
    )
    body = raw[pos:end]
    if next_header == IPPROTO_TCP:
        seg = _decode_tcp(body, verify, lambda zeroed: int(s.in6_chksum(IPPROTO_TCP, ip6, zeroed)))
        if isinstance(seg, Dropped):
            return seg
        return TcpFrame(eth_src, eth_dst, header, seg)
    if next_header == IPPROTO_ICMPV6:
        recompute = lambda zeroed: int(s.in6_chksum(IPPROTO_ICMPV6, ip6, zeroed))  # noqa: E731
        return _decode_icmpv6(body, verify, recompute, eth_src, eth_dst, header)
    if next_header == IPPROTO_UDP and len(body) >= 8:
        udp = _dissect(s.UDP, body, DropReason.TRUNCATED_IP)
        if not isinstance(udp, Dropped) and int(udp.chksum) == 0:
            return Dropped(DropReason.ZERO_CHECKSUM, "UDP checksum 0 over IPv6")
    return OtherFrame(eth_src, eth_dst, ETHERTYPE_IPV6, next_header)


def _decode_icmpv6(
    raw: bytes,
    verify: bool,
    recompute: Callable[[bytes], int],
    eth_src: str,
    eth_dst: str,
    header: Ipv6Header,
) -> Frame | Dropped:
    i6 = _scapy().inet6
    if len(raw) < 8:
        return Dropped(DropReason.TRUNCATED_ICMP, f"{len(raw)} bytes")
    chksum = int.from_bytes(raw[2:4], "big")
    if verify and recompute(raw[:2] + b"\x00\x00" + raw[4:]) != chksum:
        return Dropped(DropReason.BAD_ICMP_CHECKSUM, f"checksum 0x{chksum:04x}")
    icmp_type, code = raw[0], raw[1]
    if icmp_type in (135, 136):
        return _decode_nd(raw, eth_src, eth_dst, header)
    rest = int.from_bytes(raw[4:8], "big")
    layer = {
        128: i6.ICMPv6EchoRequest,
        129: i6.ICMPv6EchoReply,
        2: i6.ICMPv6PacketTooBig,
        4: i6.ICMPv6ParamProblem,
    }.get(icmp_type)
    if layer is not None:
        message = _dissect(layer, raw, DropReason.TRUNCATED_ICMP)
        if isinstance(message, Dropped):
            return message
        if icmp_type in (128, 129):
            rest = int(message.id) << 16 | int(message.seq)
        elif icmp_type == 2:
            rest = int(message.mtu)
        else:
            rest = int(message.ptr)
    # The invoking packet of an error is kept as bytes: Scapy's IPerror6 view of a quoted
    # packet does not always re-pack to the same bytes.
    return Icmpv6Frame(eth_src, eth_dst, header, icmp_type, code, rest, raw[8:])


def _decode_nd(
    raw: bytes, eth_src: str, eth_dst: str, header: Ipv6Header
) -> NeighborSolicitation | NeighborAdvertisement | Dropped:
    """RFC 4861 7.1.1 and 7.1.2, with the options read from Scapy's option layers."""
    i6 = _scapy().inet6
    if header.hop_limit != 255:
        return Dropped(DropReason.BAD_NDP, f"hop limit {header.hop_limit}")
    if raw[1] != 0:
        return Dropped(DropReason.BAD_NDP, f"code {raw[1]}")
    if len(raw) < 24:
        return Dropped(DropReason.BAD_NDP, f"{len(raw)} bytes")
    solicitation = raw[0] == 135
    message = _dissect(i6.ICMPv6ND_NS if solicitation else i6.ICMPv6ND_NA, raw, DropReason.BAD_NDP)
    if isinstance(message, Dropped):
        return message
    target = _canonical_ipv6(str(message.tgt))
    if _is_multicast(target):
        return Dropped(DropReason.BAD_NDP, f"multicast target {target}")
    # Scapy dissects an option of length 0 as the rest of the message: check lengths first.
    pos = 24
    while pos < len(raw):
        if pos + 2 > len(raw) or raw[pos + 1] == 0 or pos + raw[pos + 1] * 8 > len(raw):
            return Dropped(DropReason.BAD_NDP, "malformed option")
        pos += raw[pos + 1] * 8
    wanted = i6.ICMPv6NDOptSrcLLAddr if solicitation else i6.ICMPv6NDOptDstLLAddr
    option = message.payload
    lladdr = None
    while option and not isinstance(option, _scapy().Raw):
        if isinstance(option, wanted):
            if int(option.len) != 1:
                return Dropped(DropReason.BAD_NDP, f"link-layer address option of {option.len}")
            lladdr = str(option.lladdr)
            break
        option = option.payload
    if solicitation:
        if header.src == "::" and lladdr is not None:
            return Dropped(DropReason.BAD_NDP, "source link-layer address from ::")
        if header.src == "::" and not _is_solicited_node(header.dst):
            return Dropped(DropReason.BAD_NDP, "solicitation from :: not to a solicited-node group")
        return NeighborSolicitation(eth_src, eth_dst, header, target, lladdr)
    if message.S and _is_multicast(header.dst):
        return Dropped(DropReason.BAD_NDP, "solicited advertisement to multicast")
    return NeighborAdvertisement(
        eth_src,
        eth_dst,
        header,
        target,
        router=bool(message.R),
        solicited=bool(message.S),
        override=bool(message.O),
        target_lladdr=lladdr,
    )


def _is_solicited_node(address: str) -> bool:
    return ipaddress.IPv6Address(address) in ipaddress.IPv6Network("ff02::1:ff00:0/104")


def _is_multicast(address: str) -> bool:
    return socket.inet_pton(socket.AF_INET6, address)[0] == 0xFF


def _canonical_ipv6(text: str) -> str:
    return socket.inet_ntop(socket.AF_INET6, socket.inet_pton(socket.AF_INET6, text))


def _decode_tcp(raw: bytes, verify: bool, recompute: Callable[[bytes], int]) -> Segment | Dropped:
    """`recompute(segment with zeroed checksum)` is Scapy's pseudo-header checksum for it."""
    s = _scapy()
    if len(raw) < 20:
        return Dropped(DropReason.TRUNCATED_TCP, f"{len(raw)} bytes")
    # Scapy's option parsers raise on some short values (TCP-AO); the header itself is whole.
    tcp = _dissect(s.TCP, raw, DropReason.BAD_TCP_OPTIONS)
    if isinstance(tcp, Dropped):
        return tcp
    hlen = int(tcp.dataofs) * 4
    if hlen < 20 or hlen > len(raw):
        return Dropped(DropReason.BAD_TCP_HEADER_LENGTH, f"data offset {tcp.dataofs}")
    if verify and recompute(raw[:16] + b"\x00\x00" + raw[18:]) != tcp.chksum:
        return Dropped(DropReason.BAD_TCP_CHECKSUM, f"checksum 0x{tcp.chksum:04x}")
    options: list[TcpOption] = []
    space = raw[20:hlen]
    pos = 0  # where Scapy's current option starts in the option space
    for name, value in tcp.options:
        if name in ("EOL", "NOP"):
            wire = space[pos : pos + 1]
        else:
            length = space[pos + 1] if pos + 1 < len(space) else 0
            if length < 2 or pos + length > len(space):
                break  # as Linux: keep the segment, ignore the options from here on
            wire = space[pos : pos + length]
        option = _our_option(name, value, wire)
        if option is None:
            break  # a malformed value: the same
        options.append(option)
        pos += len(wire)
    return Segment(
        src_port=int(tcp.sport),
        dst_port=int(tcp.dport),
        seq=int(tcp.seq),
        ack=int(tcp.ack),
        flags=Flags(int(tcp.flags) & 0xFF),  # Scapy's 9-bit flags include the NS/AE bit
        window=int(tcp.window),
        options=tuple(options),
        payload=raw[hlen:],
        urgent=int(tcp.urgptr),
    )


def _our_option(name: Any, value: Any, wire: bytes) -> TcpOption | None:
    """Scapy's dissected `(name, value)` as our option; None if Scapy kept a malformed value raw.

    `wire` is the option's bytes in the frame: kinds we do not model keep those verbatim, since
    Scapy's value for some of them (Mood's Pascal string, AO's packet) does not re-pack losslessly.
    """
    # Scapy leaves a value as raw bytes when its length does not fit the kind: malformed.
    if name in ("MSS", "WScale") and not isinstance(value, int):
        return None
    if name in ("Timestamp", "SAck") and not isinstance(value, tuple):
        return None
    match name:
        case "EOL":
            return EndOfOptions()
        case "NOP":
            return NoOperation()
        case "MSS":
            return MaxSegmentSize(value)
        case "WScale":
            return WindowScale(value)
        case "SAckOK":
            return SackPermitted() if value == b"" else None
        case "Timestamp":
            return Timestamps(*value)
        case "SAck":
            if len(value) % 2:
                return None
            return SackBlocks(tuple(zip(value[0::2], value[1::2], strict=True)))
    # An int kind Scapy does not name, or a kind Scapy names but we do not (MD5, UTO, TFO, ...).
    return UnknownOption(wire[0], wire[2:])


def _decode_icmp(
    raw: bytes, verify: bool, eth_src: str, eth_dst: str, header: Ipv4Header
) -> IcmpFrame | Dropped:
    s = _scapy()
    if len(raw) < 8:
        return Dropped(DropReason.TRUNCATED_ICMP, f"{len(raw)} bytes")
    chksum = int.from_bytes(raw[2:4], "big")
    if verify and s.checksum(raw[:2] + b"\x00\x00" + raw[4:]) != chksum:
        return Dropped(DropReason.BAD_ICMP_CHECKSUM, f"checksum 0x{chksum:04x}")
    icmp = _dissect(s.ICMP, raw, DropReason.TRUNCATED_ICMP)
    if isinstance(icmp, Dropped):
        # Scapy wants the extra fixed fields of some types (timestamps, address mask) in full;
        # the 8-byte header is all an IcmpFrame holds, so read it from the bytes.
        return IcmpFrame(
            eth_src, eth_dst, header, raw[0], raw[1], int.from_bytes(raw[4:8], "big"), raw[8:]
        )
    icmp_type = int(icmp.type)
    if icmp_type in _ICMP_ECHO_TYPES:
        rest = int(icmp.id) << 16 | int(icmp.seq)
    elif icmp_type == _ICMP_DEST_UNREACHABLE:
        rest = int(icmp.reserved) << 24 | int(icmp.length) << 16 | int(icmp.nexthopmtu)
    else:
        rest = int.from_bytes(raw[4:8], "big")
    return IcmpFrame(eth_src, eth_dst, header, icmp_type, int(icmp.code), rest, raw[8:])


# ----------------------------------------------------------------------------------------------
# Display


def _as_bytes(frame: bytes | Frame) -> bytes:
    return frame if isinstance(frame, bytes | bytearray) else encode(frame)


def show(frame_bytes: bytes | Frame) -> str:
    """Scapy's field-by-field view (`show2`) of a frame's bytes (or of a frame value)."""
    return str(_scapy().Ether(bytes(_as_bytes(frame_bytes))).show2(dump=True))


def hexdump(frame_bytes: bytes | Frame) -> str:
    """Scapy's tcpdump-like hex and ASCII dump of a frame's bytes (or of a frame value)."""
    return str(_scapy().hexdump(bytes(_as_bytes(frame_bytes)), dump=True))
