"""Frame values: what the codecs produce from bytes and turn into bytes.

A link moves bytes; the host and replay see these values. Addresses are kept in the forms people
read (MACs as `aa:bb:cc:dd:ee:ff`, IPs as dotted quads or IPv6 text) so that traces, notebooks
and reports print them directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from lab.wire.frozen import fast_init
from lab.wire.segment import Segment

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
ETHERTYPE_IPV6 = 0x86DD
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


@fast_init
@dataclass(frozen=True, slots=True)
class Ipv4Header:
    """The IPv4 fields the stack sets or checks (RFC 791). Options are skipped, not kept."""

    src: str
    dst: str
    ttl: int = 64
    ident: int = 0
    dont_fragment: bool = True
    more_fragments: bool = False
    fragment_offset: int = 0  # in bytes (the wire field times 8)
    tos: int = 0
    protocol: int = IPPROTO_TCP


@dataclass(frozen=True, slots=True)
class Ipv6Header:
    """The IPv6 fields the stack sets or checks (RFC 8200). Addresses in RFC 5952 text.

    `next_header` is the upper-layer protocol (TCP, ICMPv6...), after any extension headers the
    decoder skipped: hop-by-hop, destination options and routing headers are not kept.
    """

    src: str
    dst: str
    hop_limit: int = 64
    next_header: int = IPPROTO_TCP
    traffic_class: int = 0
    flow_label: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class TcpFrame:
    """Ethernet + IPv4/IPv6 + TCP."""

    eth_src: str
    eth_dst: str
    ip: Ipv4Header | Ipv6Header
    segment: Segment


@dataclass(frozen=True, slots=True)
class ArpFrame:
    """Ethernet + ARP for IPv4 over Ethernet (RFC 826). op 1 = request, 2 = reply."""

    eth_src: str
    eth_dst: str
    op: int
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str


@dataclass(frozen=True, slots=True)
class IcmpFrame:
    """Ethernet + IPv4 + ICMP (RFC 792). `rest` is the 4 bytes after the checksum, as an int.

    For echo, rest = identifier << 16 | sequence; for destination unreachable / fragmentation
    needed, the low 16 bits carry the next-hop MTU (RFC 1191). `payload` is what follows.
    """

    eth_src: str
    eth_dst: str
    ip: Ipv4Header
    icmp_type: int
    code: int
    rest: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Icmpv6Frame:
    """Ethernet + IPv6 + ICMPv6 (RFC 4443), for every type but Neighbor Discovery's.

    `rest` is the 4 bytes after the checksum, as an int: identifier << 16 | sequence for echo
    (types 128/129), the MTU for Packet Too Big (type 2), 0 for destination unreachable (type 1)
    and time exceeded (type 3). `payload` is what follows (echo data, or the invoking packet).
    """

    eth_src: str
    eth_dst: str
    ip: Ipv6Header
    icmp_type: int
    code: int
    rest: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class NeighborSolicitation:
    """Ethernet + IPv6 + ICMPv6 type 135 (RFC 4861 4.3): who has `target`?

    `source_lladdr` is the Source Link-Layer Address option (None when absent: it must be absent
    when the IPv6 source is :: during Duplicate Address Detection). The hop limit must be 255.
    """

    eth_src: str
    eth_dst: str
    ip: Ipv6Header
    target: str
    source_lladdr: str | None = None


@dataclass(frozen=True, slots=True)
class NeighborAdvertisement:
    """Ethernet + IPv6 + ICMPv6 type 136 (RFC 4861 4.4): `target` is at `target_lladdr`.

    The R(outer), S(olicited) and O(verride) flags; `target_lladdr` is the Target Link-Layer
    Address option (None when absent). The hop limit must be 255.
    """

    eth_src: str
    eth_dst: str
    ip: Ipv6Header
    target: str
    router: bool = False
    solicited: bool = False
    override: bool = True
    target_lladdr: str | None = None


@dataclass(frozen=True, slots=True)
class OtherFrame:
    """A well-formed frame the stack does not handle (UDP, other ethertypes): counted, ignored."""

    eth_src: str
    eth_dst: str
    ethertype: int
    protocol: int | None


Frame = (
    TcpFrame
    | ArpFrame
    | IcmpFrame
    | Icmpv6Frame
    | NeighborSolicitation
    | NeighborAdvertisement
    | OtherFrame
)


class DropReason(enum.Enum):
    """Why a frame was rejected by a decoder. Decoders count these; they never raise."""

    TRUNCATED_ETHERNET = "truncated_ethernet"
    TRUNCATED_ARP = "truncated_arp"
    BAD_ARP = "bad_arp"
    TRUNCATED_IP = "truncated_ip"
    BAD_IP_VERSION = "bad_ip_version"
    BAD_IP_HEADER_LENGTH = "bad_ip_header_length"
    BAD_IP_TOTAL_LENGTH = "bad_ip_total_length"
    BAD_IP_CHECKSUM = "bad_ip_checksum"
    IP_FRAGMENT = "ip_fragment"  # handed to fragment reassembly by the host, not a TCP frame yet
    TRUNCATED_TCP = "truncated_tcp"
    BAD_TCP_HEADER_LENGTH = "bad_tcp_header_length"
    BAD_TCP_OPTIONS = "bad_tcp_options"
    BAD_TCP_CHECKSUM = "bad_tcp_checksum"
    TRUNCATED_ICMP = "truncated_icmp"
    BAD_ICMP_CHECKSUM = "bad_icmp_checksum"
    BAD_IPV6_PAYLOAD_LENGTH = "bad_ipv6_payload_length"  # more than the frame holds
    BAD_EXTENSION_HEADERS = "bad_extension_headers"  # cut, too many, or hop-by-hop not first
    ZERO_CHECKSUM = "zero_checksum"  # a UDP/TCP checksum of 0 over IPv6 (RFC 8200 8.1)
    BAD_NDP = "bad_ndp"  # hop limit not 255, code not 0, bad option (RFC 4861 7.1.1, 7.1.2)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A decoder's verdict on a frame it would not turn into a value."""

    reason: DropReason
    detail: str = ""
