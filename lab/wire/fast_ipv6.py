"""IPv6 for the fast codec: the header, extension headers, fragments, ICMPv6 and Neighbor Discovery.

`lab.wire.fast` calls into this module for every IPv6 frame and re-exports its public names, so
users import from `fast` only; the IPv4 paths there stay as they were. It is a module of its own
so that the v6 rules (each next to the RFC words it implements) can be read in one place.

Decoding never raises; each rejection is a `Dropped` with the first fault found:

- fewer than 40 bytes: TRUNCATED_IP; version not 6: BAD_IP_VERSION;
- a Payload Length larger than the bytes present: BAD_IPV6_PAYLOAD_LENGTH. Bytes beyond the
  Payload Length (Ethernet padding of short frames) are trimmed, as for IPv4's total length;
- extension headers (RFC 8200 4.1-4.6): hop-by-hop, routing and destination options are skipped.
  Hop-by-hop anywhere but first (4.3), a header cut by the end of the payload, or more than
  `MAX_EXTENSION_HEADERS` of them (a chain that "loops" through destination options for ever is
  a cheap way to make a receiver walk) give BAD_EXTENSION_HEADERS;
- a Fragment header: `Dropped(IP_FRAGMENT)`, and the host calls `decode_ipv6_fragment`;
- UDP with a checksum field of 0: ZERO_CHECKSUM, whether or not checksums are verified. In IPv4,
  a UDP checksum of 0 means "not computed"; RFC 8200 8.1 forbids that over IPv6, so such a
  datagram is discarded even when its sum is not checked (a kernel that vouched for a checksum
  never vouched for an absent one);
- TCP: the checksum must verify, like any other. A TCP checksum field of 0 is *not* dropped:
  TCP never gave 0 the meaning "absent", and the sender writes 0x0000 whenever the one's
  complement sum of pseudo-header and segment is 0xFFFF (about one segment in 65,536; the sum
  can never be +0, since the pseudo-header's next header is not zero). Dropping those would lose
  valid segments that Linux sends and accepts. An all-zero field on a segment whose sum is not
  0xFFFF fails the check as BAD_TCP_CHECKSUM; with `verify_checksums=False` (or the kernel's
  verdict) it is accepted, as any other value would be;
- ICMPv6 (RFC 4443): the checksum over the pseudo-header (2.3) must verify (BAD_ICMP_CHECKSUM);
  fewer than 8 bytes: TRUNCATED_ICMP;
- Neighbor Solicitation and Advertisement (RFC 4861 7.1.1, 7.1.2): hop limit not 255, code not 0,
  fewer than 24 bytes, an option of length 0 or running past the message, a link-layer address
  option that is not 6 bytes of MAC (Ethernet, 4.6.1), a multicast target, a source link-layer
  address option from the unspecified address (or its solicitation sent anywhere but to a
  solicited-node group), or a solicited NA to a multicast address: BAD_NDP.
  Unknown options are skipped (7.1.1: "ignored"); of two link-layer address options the first
  counts, as in Linux's ndisc_parse_options.

Encoding writes no extension headers (the stack sends none) except the Fragment header of
`encode_ipv6_fragment`. Encoders raise ValueError on values that have no wire form or would be
dropped by our own decoder (a Neighbor Discovery message whose hop limit is not 255, a source
link-layer address option with the unspecified source): that is the caller's bug, not the peer's.
"""

from __future__ import annotations

import socket
import struct

from lab.wire import fast
from lab.wire.checksum import internet_checksum, ones_complement_sum
from lab.wire.frame import (
    ETHERTYPE_IPV6,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Dropped,
    DropReason,
    Frame,
    Icmpv6Frame,
    Ipv6Header,
    NeighborAdvertisement,
    NeighborSolicitation,
    OtherFrame,
    TcpFrame,
)

__all__ = [
    "ICMPV6_DEST_UNREACHABLE",
    "ICMPV6_ECHO_REPLY",
    "ICMPV6_ECHO_REQUEST",
    "ICMPV6_NEIGHBOR_ADVERTISEMENT",
    "ICMPV6_NEIGHBOR_SOLICITATION",
    "ICMPV6_PACKET_TOO_BIG",
    "ICMPV6_PARAMETER_PROBLEM",
    "ICMPV6_TIME_EXCEEDED",
    "MAX_EXTENSION_HEADERS",
    "ND_HOP_LIMIT",
    "decode_ipv6_fragment",
    "encode_icmpv6",
    "encode_ipv6_fragment",
    "encode_neighbor_advertisement",
    "encode_neighbor_solicitation",
    "fragment_ipv6",
    "ipv6_header",
    "ipv6_multicast_mac",
    "ipv6_packet",
    "solicited_node_multicast",
]

IPV6_HEADER_LEN = 40
FRAGMENT_HEADER_LEN = 8
ICMPV6_HEADER_LEN = 8
ND_MESSAGE_LEN = 24  # type, code, checksum, flags/reserved, target (RFC 4861 4.3, 4.4)

ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_PARAMETER_PROBLEM = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129
ICMPV6_NEIGHBOR_SOLICITATION = 135
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136

ND_HOP_LIMIT = 255  # RFC 4861 7.1: proves the message was not forwarded by a router
ND_OPTION_SOURCE_LLADDR = 1
ND_OPTION_TARGET_LLADDR = 2
_NA_ROUTER = 0x8000_0000
_NA_SOLICITED = 0x4000_0000
_NA_OVERRIDE = 0x2000_0000

HOP_BY_HOP = 0
ROUTING = 43
FRAGMENT = 44
DESTINATION_OPTIONS = 60
_SKIPPABLE = frozenset((HOP_BY_HOP, ROUTING, DESTINATION_OPTIONS))
# RFC 8200 4.1 recommends each extension header at most once (destination options twice): eight
# leaves room for anything legitimate and bounds the walk over a hostile chain.
MAX_EXTENSION_HEADERS = 8
MAX_PAYLOAD_LENGTH = 65535

_IPV6 = struct.Struct("!IHBB16s16s")
_ICMPV6 = struct.Struct("!BBHI")
_ND = struct.Struct("!BBHI16s")
_FRAGMENT_HEADER = struct.Struct("!BBHI")
_PSEUDO_TAIL = struct.Struct("!IBBBB")  # upper-layer length, 3 zero bytes, next header
_UNSPECIFIED = bytes(16)
_SOLICITED_NODE_PREFIX = bytes.fromhex("ff02" + "00" * 9 + "01ff")  # ff02::1:ff00:0/104


# ----------------------------------------------------------------------------------------------
# Addresses


def solicited_node_multicast(address: str) -> str:
    """The solicited-node multicast address of `address` (RFC 4291 2.7.1): ff02::1:ff + low 24 bits.

    Where a Neighbor Solicitation for `address` is sent: only the hosts whose addresses end in
    the same 24 bits listen there, instead of every host on the link as ARP's broadcast."""
    low = socket.inet_pton(socket.AF_INET6, address)[13:]
    raw = _SOLICITED_NODE_PREFIX + low
    return socket.inet_ntop(socket.AF_INET6, raw)


def ipv6_multicast_mac(address: str) -> str:
    """The Ethernet address of an IPv6 multicast group (RFC 2464 7): 33:33 + the low 32 bits."""
    low = socket.inet_pton(socket.AF_INET6, address)[12:]
    return (b"\x33\x33" + low).hex(":")


def _text(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, raw)


# ----------------------------------------------------------------------------------------------
# Encoding


def ipv6_header(ip: Ipv6Header, next_header: int, payload_len: int) -> bytes:
    """The 40-byte IPv6 header (RFC 8200 3) for `payload_len` bytes of `next_header`."""
    if not 0 <= ip.traffic_class <= 0xFF:
        raise ValueError(f"traffic class {ip.traffic_class} is not 8 bits")
    if not 0 <= ip.flow_label <= 0xFFFFF:
        raise ValueError(f"flow label {ip.flow_label} is not 20 bits")
    if payload_len > MAX_PAYLOAD_LENGTH:
        raise ValueError(f"payload of {payload_len} bytes needs a jumbogram (RFC 2675)")
    first = 6 << 28 | ip.traffic_class << 20 | ip.flow_label
    return _IPV6.pack(
        first,
        payload_len,
        next_header,
        ip.hop_limit,
        fast._ipv6_bytes(ip.src),
        fast._ipv6_bytes(ip.dst),
    )


def pseudo_header(header: bytes, next_header: int, length: int) -> bytes:
    """RFC 8200 8.1: source and destination (from the 40-byte `header`), length, next header."""
    return header[8:40] + _PSEUDO_TAIL.pack(length, 0, 0, 0, next_header)


def ipv6_packet(ip: Ipv6Header, payload: bytes) -> bytes:
    """A bare IPv6 packet (no Ethernet) carrying `payload` as `ip.next_header`.

    For a host that reassembled fragments: `decode_ip(ipv6_packet(fragment.ip, whole))`."""
    return ipv6_header(ip, ip.next_header, len(payload)) + payload


def _check_icmpv6_header(ip: Ipv6Header) -> None:
    if ip.next_header != IPPROTO_ICMPV6:
        raise ValueError(f"IPv6 header says next header {ip.next_header}, frame carries ICMPv6")


def _icmpv6_frame(eth_src: str, eth_dst: str, ip: Ipv6Header, message: bytes) -> bytes:
    """Ethernet + IPv6 + the ICMPv6 `message` (checksum field zero), its checksum filled in."""
    header = ipv6_header(ip, IPPROTO_ICMPV6, len(message))
    # RFC 4443 2.3: the checksum covers the pseudo-header (RFC 8200 8.1) and the message.
    initial = ones_complement_sum(pseudo_header(header, IPPROTO_ICMPV6, len(message)))
    csum = internet_checksum(message, initial)
    return b"".join(
        (
            fast._ethernet(eth_src, eth_dst, ETHERTYPE_IPV6),
            header,
            message[:2],
            csum.to_bytes(2, "big"),
            message[4:],
        )
    )


def encode_icmpv6(frame: Icmpv6Frame) -> bytes:
    """Ethernet + IPv6 + ICMPv6 (RFC 4443), length and checksum computed.

    Types 135 and 136 are allowed (a test crafts a malformed solicitation this way), but they
    decode as `NeighborSolicitation`/`NeighborAdvertisement` or `Dropped(BAD_NDP)`, not back to
    an `Icmpv6Frame`."""
    _check_icmpv6_header(frame.ip)
    message = _ICMPV6.pack(frame.icmp_type, frame.code, 0, frame.rest) + frame.payload
    return _icmpv6_frame(frame.eth_src, frame.eth_dst, frame.ip, message)


def _nd_header(ip: Ipv6Header) -> None:
    _check_icmpv6_header(ip)
    if ip.hop_limit != ND_HOP_LIMIT:
        raise ValueError(
            f"Neighbor Discovery is sent with hop limit 255 (RFC 4861 7.1), not {ip.hop_limit}"
        )


def _lladdr_option(kind: int, mac: str | None) -> bytes:
    """A link-layer address option for Ethernet (RFC 4861 4.6.1): type, length 1 (x 8), MAC."""
    if mac is None:
        return b""
    return bytes((kind, 1)) + fast._mac_bytes(mac)


def encode_neighbor_solicitation(frame: NeighborSolicitation) -> bytes:
    """Ethernet + IPv6 + Neighbor Solicitation (RFC 4861 4.3) with its source link-layer option."""
    _nd_header(frame.ip)
    if fast._ipv6_bytes(frame.ip.src) == _UNSPECIFIED:
        if frame.source_lladdr is not None:
            raise ValueError("a solicitation from :: (DAD) carries no source link-layer address")
        if fast._ipv6_bytes(frame.ip.dst)[:13] != _SOLICITED_NODE_PREFIX:
            raise ValueError("a solicitation from :: (DAD) goes to a solicited-node group")
    message = _ND.pack(
        ICMPV6_NEIGHBOR_SOLICITATION, 0, 0, 0, fast._ipv6_bytes(frame.target)
    ) + _lladdr_option(ND_OPTION_SOURCE_LLADDR, frame.source_lladdr)
    return _icmpv6_frame(frame.eth_src, frame.eth_dst, frame.ip, message)


def encode_neighbor_advertisement(frame: NeighborAdvertisement) -> bytes:
    """Ethernet + IPv6 + Neighbor Advertisement (RFC 4861 4.4) with its target link-layer option."""
    _nd_header(frame.ip)
    flags = (
        (_NA_ROUTER if frame.router else 0)
        | (_NA_SOLICITED if frame.solicited else 0)
        | (_NA_OVERRIDE if frame.override else 0)
    )
    message = _ND.pack(
        ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, flags, fast._ipv6_bytes(frame.target)
    ) + _lladdr_option(ND_OPTION_TARGET_LLADDR, frame.target_lladdr)
    return _icmpv6_frame(frame.eth_src, frame.eth_dst, frame.ip, message)


def encode_ipv6_fragment(fragment: fast.Ipv6Fragment) -> bytes:
    """Ethernet + IPv6 + Fragment header (RFC 8200 4.5) + the fragment's bytes.

    `fragment.ip.next_header` is the protocol of the whole packet (written in the Fragment
    header); the IPv6 header's own next header is 44."""
    if fragment.offset % 8 or not 0 <= fragment.offset <= 0xFFF8:
        raise ValueError(f"fragment offset {fragment.offset} is not a multiple of 8 below 65536")
    if fragment.more and len(fragment.payload) % 8:
        raise ValueError(f"a fragment followed by others has {len(fragment.payload)} bytes, not 8k")
    frag = _FRAGMENT_HEADER.pack(
        fragment.ip.next_header,
        0,
        fragment.offset | int(fragment.more),
        fragment.identification,
    )
    body = frag + fragment.payload
    return b"".join(
        (
            fast._ethernet(fragment.eth_src, fragment.eth_dst, ETHERTYPE_IPV6),
            ipv6_header(fragment.ip, FRAGMENT, len(body)),
            body,
        )
    )


def fragment_ipv6(
    eth_src: str,
    eth_dst: str,
    ip: Ipv6Header,
    payload: bytes,
    identification: int,
    mtu: int = 1280,
) -> list[fast.Ipv6Fragment]:
    """`payload` (a whole upper-layer message of protocol `ip.next_header`) cut into fragments
    whose packets fit `mtu` (RFC 8200 4.5; only the source fragments in IPv6).

    Each fragment but the last carries a multiple of 8 bytes; encode each with
    `encode_ipv6_fragment`."""
    room = (mtu - IPV6_HEADER_LEN - FRAGMENT_HEADER_LEN) // 8 * 8
    if room <= 0:
        raise ValueError(f"MTU {mtu} leaves no room for a fragment")
    pieces = [payload[at : at + room] for at in range(0, len(payload), room)] or [b""]
    return [
        fast.Ipv6Fragment(
            eth_src,
            eth_dst,
            ip,
            identification,
            index * room,
            index < len(pieces) - 1,
            piece,
        )
        for index, piece in enumerate(pieces)
    ]


# ----------------------------------------------------------------------------------------------
# Decoding


def _walk(buf: bytes, offset: int) -> tuple[Ipv6Header, bytes, int, int, int] | Dropped:
    """Validate the IPv6 header at `offset` and skip extension headers.

    Returns (header value with the upper-layer or Fragment next header, the 32 address bytes,
    start of what follows the skipped headers, end of the payload, start of the payload)."""
    avail = len(buf) - offset
    if avail < IPV6_HEADER_LEN:
        return Dropped(DropReason.TRUNCATED_IP, f"{avail} bytes")
    first, plen, next_header, hop_limit, src, dst = _IPV6.unpack_from(buf, offset)
    if first >> 28 != 6:
        return Dropped(DropReason.BAD_IP_VERSION, f"version {first >> 28}")
    payload = offset + IPV6_HEADER_LEN
    end = payload + plen
    if end > len(buf):
        return Dropped(
            DropReason.BAD_IPV6_PAYLOAD_LENGTH,
            f"payload length {plen} > {avail - IPV6_HEADER_LEN} bytes present",
        )
    pos = payload
    count = 0
    while next_header in _SKIPPABLE or next_header == FRAGMENT:
        if next_header == HOP_BY_HOP and pos != payload:
            # RFC 8200 4.3: hop-by-hop "MUST immediately follow the IPv6 header".
            return Dropped(DropReason.BAD_EXTENSION_HEADERS, "hop-by-hop header not first")
        count += 1
        if count > MAX_EXTENSION_HEADERS:
            return Dropped(
                DropReason.BAD_EXTENSION_HEADERS,
                f"more than {MAX_EXTENSION_HEADERS} extension headers",
            )
        if next_header == FRAGMENT:
            if pos + FRAGMENT_HEADER_LEN > end:
                return Dropped(DropReason.BAD_EXTENSION_HEADERS, "fragment header cut")
            break
        # Every skippable header is at least 8 bytes: next header, length in 8-byte units - 1.
        size = (buf[pos + 1] + 1) * 8 if pos + 2 <= end else 8
        if pos + size > end:
            return Dropped(DropReason.BAD_EXTENSION_HEADERS, f"extension header {next_header} cut")
        next_header = buf[pos]
        pos += size
    traffic = first >> 20 & 0xFF
    header = Ipv6Header(_text(src), _text(dst), hop_limit, next_header, traffic, first & 0xFFFFF)
    return header, buf[offset + 8 : offset + 40], pos, end, payload


def decode_ipv6(
    buf: bytes, offset: int, verify: bool, eth_src: str, eth_dst: str
) -> Frame | Dropped:
    """The IPv6 packet at `buf[offset:]` as a frame value (see the module docstring)."""
    walked = _walk(buf, offset)
    if isinstance(walked, Dropped):
        return walked
    header, addresses, pos, end, _payload = walked
    next_header = header.next_header
    if next_header == IPPROTO_TCP:
        # RFC 8200 8.1: the upper-layer length excludes the extension headers before it.
        pseudo = addresses + _PSEUDO_TAIL.pack(end - pos, 0, 0, 0, IPPROTO_TCP)
        seg = fast._decode_tcp(buf, pos, end, pseudo, verify)
        if isinstance(seg, Dropped):
            return seg
        return TcpFrame(eth_src, eth_dst, header, seg)
    if next_header == IPPROTO_ICMPV6:
        return _decode_icmpv6(buf, pos, end, verify, eth_src, eth_dst, header, addresses)
    if next_header == FRAGMENT:
        frag_field, ident = struct.unpack_from("!HI", buf, pos + 2)
        return Dropped(
            DropReason.IP_FRAGMENT,
            f"IPv6 fragment id={ident} offset={frag_field & 0xFFF8} more={bool(frag_field & 1)}",
        )
    if next_header == IPPROTO_UDP and end - pos >= 8 and buf[pos + 6 : pos + 8] == b"\0\0":
        return Dropped(DropReason.ZERO_CHECKSUM, "UDP checksum 0 over IPv6 (RFC 8200 8.1)")
    return OtherFrame(eth_src, eth_dst, ETHERTYPE_IPV6, next_header)


def _decode_icmpv6(
    buf: bytes,
    pos: int,
    end: int,
    verify: bool,
    eth_src: str,
    eth_dst: str,
    header: Ipv6Header,
    addresses: bytes,
) -> Frame | Dropped:
    length = end - pos
    if length < ICMPV6_HEADER_LEN:
        return Dropped(DropReason.TRUNCATED_ICMP, f"{length} bytes")
    icmp_type, code, csum, rest = _ICMPV6.unpack_from(buf, pos)
    if verify:
        initial = ones_complement_sum(
            addresses + _PSEUDO_TAIL.pack(length, 0, 0, 0, IPPROTO_ICMPV6)
        )
        if internet_checksum(memoryview(buf)[pos:end], initial) != 0:
            return Dropped(DropReason.BAD_ICMP_CHECKSUM, f"checksum 0x{csum:04x}")
    if icmp_type in (ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_NEIGHBOR_ADVERTISEMENT):
        return _decode_nd(buf, pos, end, eth_src, eth_dst, header, addresses)
    return Icmpv6Frame(
        eth_src, eth_dst, header, icmp_type, code, rest, buf[pos + ICMPV6_HEADER_LEN : end]
    )


def nd_lladdr(buf: bytes, start: int, end: int, wanted: int) -> bytes | Dropped | None:
    """The 6-byte MAC of the first option of type `wanted` in `buf[start:end]` (RFC 4861 4.6),
    None if there is none, or a drop if the options are malformed (7.1.1: length 0, or past
    the end) or the address is not Ethernet's."""
    found: bytes | None = None
    pos = start
    while pos < end:
        if pos + 2 > end:
            return Dropped(DropReason.BAD_NDP, "option cut")
        kind, units = buf[pos], buf[pos + 1]
        if units == 0:
            return Dropped(DropReason.BAD_NDP, f"option {kind} of length 0")
        if pos + units * 8 > end:
            return Dropped(DropReason.BAD_NDP, f"option {kind} runs past the message")
        if kind == wanted and found is None:
            if units != 1:
                return Dropped(DropReason.BAD_NDP, f"link-layer address of {units * 8 - 2} bytes")
            found = buf[pos + 2 : pos + 8]
        pos += units * 8
    return found


def _decode_nd(
    buf: bytes,
    pos: int,
    end: int,
    eth_src: str,
    eth_dst: str,
    header: Ipv6Header,
    addresses: bytes,
) -> NeighborSolicitation | NeighborAdvertisement | Dropped:
    """RFC 4861 7.1.1 (solicitations) and 7.1.2 (advertisements) validity checks."""
    if header.hop_limit != ND_HOP_LIMIT:
        return Dropped(DropReason.BAD_NDP, f"hop limit {header.hop_limit}, not 255")
    if buf[pos + 1] != 0:
        return Dropped(DropReason.BAD_NDP, f"code {buf[pos + 1]}")
    if end - pos < ND_MESSAGE_LEN:
        return Dropped(DropReason.BAD_NDP, f"{end - pos} bytes, fewer than 24")
    icmp_type, _code, _csum, rest, target = _ND.unpack_from(buf, pos)
    if target[0] == 0xFF:
        return Dropped(DropReason.BAD_NDP, f"multicast target {_text(target)}")
    solicitation = icmp_type == ICMPV6_NEIGHBOR_SOLICITATION
    wanted = ND_OPTION_SOURCE_LLADDR if solicitation else ND_OPTION_TARGET_LLADDR
    lladdr = nd_lladdr(buf, pos + ND_MESSAGE_LEN, end, wanted)
    if isinstance(lladdr, Dropped):
        return lladdr
    mac = None if lladdr is None else fast._mac(lladdr)
    if solicitation:
        if addresses[:16] == _UNSPECIFIED:
            if mac is not None:
                return Dropped(DropReason.BAD_NDP, "source link-layer address from ::")
            if addresses[16:29] != _SOLICITED_NODE_PREFIX:
                return Dropped(
                    DropReason.BAD_NDP, "solicitation from :: not to a solicited-node group"
                )
        return NeighborSolicitation(eth_src, eth_dst, header, _text(target), mac)
    solicited = bool(rest & _NA_SOLICITED)
    if solicited and addresses[16] == 0xFF:
        return Dropped(DropReason.BAD_NDP, "solicited advertisement to a multicast address")
    return NeighborAdvertisement(
        eth_src,
        eth_dst,
        header,
        _text(target),
        router=bool(rest & _NA_ROUTER),
        solicited=solicited,
        override=bool(rest & _NA_OVERRIDE),
        target_lladdr=mac,
    )


def decode_ipv6_fragment(
    buf: bytes, *, verify_checksums: bool = True, ethernet: bool = True
) -> fast.Ipv6Fragment | Dropped:
    """The fragment in a frame (or a bare packet, `ethernet=False`), for the host's reassembly.

    What a host calls after `decode_ethernet` answered `Dropped(IP_FRAGMENT)`. The same header
    and extension-header checks are made, then RFC 8200 4.5's: a fragment followed by others
    whose length is not a multiple of 8, or one that would make the reassembled payload longer
    than 65,535 bytes, is BAD_IPV6_PAYLOAD_LENGTH (the RFC says to send a Parameter Problem,
    code 0: the detail names which). A packet without a Fragment header is
    BAD_EXTENSION_HEADERS. `verify_checksums` mirrors `decode_ipv4_fragment`; IPv6 has no
    header checksum, and the upper layer's is checked after reassembly."""
    del verify_checksums
    eth_src = eth_dst = ""
    offset = 0
    buf = bytes(buf)
    if ethernet:
        parsed = fast._parse_ethernet(buf)
        if isinstance(parsed, Dropped):
            return parsed
        eth_src, eth_dst, ethertype, offset = parsed
        if ethertype != ETHERTYPE_IPV6:
            return Dropped(DropReason.BAD_IP_VERSION, f"ethertype 0x{ethertype:04x} is not IPv6")
    walked = _walk(buf, offset)
    if isinstance(walked, Dropped):
        return walked
    header, _addresses, pos, end, payload = walked
    if header.next_header != FRAGMENT:
        return Dropped(DropReason.BAD_EXTENSION_HEADERS, "no fragment header")
    next_header, _reserved, frag_field, ident = _FRAGMENT_HEADER.unpack_from(buf, pos)
    data = buf[pos + FRAGMENT_HEADER_LEN : end]
    more = bool(frag_field & 1)
    frag_offset = frag_field & 0xFFF8
    if more and len(data) % 8:
        return Dropped(
            DropReason.BAD_IPV6_PAYLOAD_LENGTH,
            f"parameter problem pointer 4: fragment of {len(data)} bytes is not 8k and M is set",
        )
    unfragmentable = pos - payload  # extension headers before the Fragment header
    if unfragmentable + frag_offset + len(data) > MAX_PAYLOAD_LENGTH:
        return Dropped(
            DropReason.BAD_IPV6_PAYLOAD_LENGTH,
            f"parameter problem pointer {pos - offset + 2}: offset {frag_offset} + "
            f"{len(data)} bytes passes 65535",
        )
    ip = Ipv6Header(
        header.src,
        header.dst,
        header.hop_limit,
        next_header,
        header.traffic_class,
        header.flow_label,
    )
    return fast.Ipv6Fragment(eth_src, eth_dst, ip, ident, frag_offset, more, data)
