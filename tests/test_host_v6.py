"""The sans-IO host over IPv6: Neighbor Discovery, DAD, ICMPv6, Packet Too Big, fragments, TCP.

Inbound frames are built by hand with `struct` (as tests/test_host.py does for IPv4), so a bug
shared by the codec and the host cannot hide itself; outbound frames are read back with the fast
decoder. Two hosts talk by handing each other's frames across, under a virtual clock.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_host import frames_out
from test_host import run_until as run_wire_until

from lab.host import AddressState, DuplicateAddress, EchoReply, Host
from lab.host.ndp import NudState, link_local_from_mac
from lab.tcp.connection import Connection, State
from lab.tcp.endpoint import TcpEndpoint
from lab.wire.checksum import internet_checksum, ipv6_pseudo_header_sum
from lab.wire.fast import decode_ethernet
from lab.wire.fast_ipv6 import solicited_node_multicast
from lab.wire.frame import (
    Icmpv6Frame,
    NeighborAdvertisement,
    NeighborSolicitation,
    TcpFrame,
)
from lab.wire.options import MaxSegmentSize
from lab.wire.segment import AddressedSegment, Flags, Segment

OUR_MAC = "02:00:00:00:00:02"
OUR_IP = "198.18.0.2"
OUR_IP6 = "2001:2::2"
PEER_MAC = "02:00:00:00:00:01"
PEER_IP = "198.18.0.1"
PEER_IP6 = "2001:2::1"
PEER_LL = link_local_from_mac(PEER_MAC)
STRANGER_MAC = "02:00:00:00:00:77"
SECOND = 1_000_000


# -- hand-built frames ------------------------------------------------------------------------


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def addr(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def eth6(dst: str, src: str, packet: bytes) -> bytes:
    return mac(dst) + mac(src) + b"\x86\xdd" + packet


def ipv6(
    src: str, dst: str, next_header: int, payload: bytes, *, hop: int = 64, plen: int | None = None
) -> bytes:
    length = len(payload) if plen is None else plen
    return struct.pack("!IHBB", 6 << 28, length, next_header, hop) + addr(src) + addr(dst) + payload


def icmpv6(src: str, dst: str, icmp_type: int, code: int, body: bytes) -> bytes:
    raw = bytes((icmp_type, code, 0, 0)) + body
    checksum = internet_checksum(raw, ipv6_pseudo_header_sum(src, dst, 58, len(raw)))
    return raw[:2] + checksum.to_bytes(2) + raw[4:]


def icmpv6_frame(
    src: str,
    dst: str,
    icmp_type: int,
    code: int,
    body: bytes,
    *,
    hop: int = 64,
    eth_dst: str = OUR_MAC,
    eth_src: str = PEER_MAC,
) -> bytes:
    return eth6(
        eth_dst, eth_src, ipv6(src, dst, 58, icmpv6(src, dst, icmp_type, code, body), hop=hop)
    )


def lladdr_option(kind: int, address: str) -> bytes:
    return bytes((kind, 1)) + mac(address)


def ns_frame(
    src: str,
    dst: str,
    target: str,
    lladdr: str | None = PEER_MAC,
    *,
    hop: int = 255,
    eth_dst: str | None = None,
    eth_src: str = PEER_MAC,
) -> bytes:
    body = bytes(4) + addr(target) + (lladdr_option(1, lladdr) if lladdr else b"")
    if eth_dst is None:
        eth_dst = "33:33:" + addr(dst)[-4:].hex(":")
    return icmpv6_frame(src, dst, 135, 0, body, hop=hop, eth_dst=eth_dst, eth_src=eth_src)


def na_frame(
    src: str,
    dst: str,
    target: str,
    lladdr: str | None = PEER_MAC,
    *,
    solicited: bool = True,
    override: bool = True,
    eth_dst: str = OUR_MAC,
    eth_src: str = PEER_MAC,
) -> bytes:
    flags = (0x40 if solicited else 0) | (0x20 if override else 0)
    body = bytes((flags, 0, 0, 0)) + addr(target) + (lladdr_option(2, lladdr) if lladdr else b"")
    return icmpv6_frame(src, dst, 136, 0, body, hop=255, eth_dst=eth_dst, eth_src=eth_src)


def tcp6(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    raw = header + payload
    checksum = internet_checksum(raw, ipv6_pseudo_header_sum(src, dst, 6, len(raw)))
    return raw[:16] + checksum.to_bytes(2) + raw[18:]


def tcp6_frame(
    sport: int, dport: int, seq: int, ack: int, flags: int, *, src: str = PEER_IP6
) -> bytes:
    segment = tcp6(src, OUR_IP6, sport, dport, seq, ack, flags)
    return eth6(OUR_MAC, PEER_MAC, ipv6(src, OUR_IP6, 6, segment))


def fragment6(
    src: str, dst: str, next_header: int, data: bytes, ident: int, offset: int, more: bool
) -> bytes:
    header = struct.pack("!BBHI", next_header, 0, offset | int(more), ident)
    return eth6(OUR_MAC, PEER_MAC, ipv6(src, dst, 44, header + data))


# -- helpers ----------------------------------------------------------------------------------


def make_host(now: int = 0, **kwargs: object) -> Host:
    """Our host, its DAD skipped unless asked for, its start-up frames drained."""
    kwargs.setdefault("dad_transmits", 0)
    host = Host(OUR_MAC, OUR_IP, 24, None, now=now, ip6=OUR_IP6, **kwargs)  # type: ignore[arg-type]
    frames_out(host, now)
    return host


def decoded(host: Host, now: int) -> list[object]:
    return [decode_ethernet(raw) for raw in frames_out(host, now)]


def knowing_peer(now: int = 0) -> Host:
    """Our host with the peer in its neighbor cache (it solicited us, so it is STALE)."""
    host = make_host(now)
    host.receive_frame(ns_frame(PEER_IP6, solicited_node_multicast(OUR_IP6), OUR_IP6), now)
    frames_out(host, now)
    return host


def echo_body(ident: int, seq: int, data: bytes) -> bytes:
    return struct.pack("!HH", ident, seq) + data


# -- Duplicate Address Detection -------------------------------------------------------------


def test_a_new_host_runs_dad_for_its_link_local_and_global_addresses() -> None:
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6)
    solicitations = [f for f in decoded(host, 0) if isinstance(f, NeighborSolicitation)]
    assert {f.target for f in solicitations} == {OUR_IP6, link_local_from_mac(OUR_MAC)}
    for ns in solicitations:
        assert ns.ip.src == "::"
        assert ns.ip.dst == solicited_node_multicast(ns.target)
        assert ns.ip.hop_limit == 255
        assert ns.source_lladdr is None  # RFC 4862 5.4.2: no option from ::
        assert ns.eth_dst == "33:33:ff:" + addr(ns.target)[-3:].hex(":")
    assert host.address_state(OUR_IP6) is AddressState.TENTATIVE
    ready_before = host.ipv6_ready
    assert host.next_deadline() == SECOND
    host.on_timer(SECOND)
    assert host.address_state(OUR_IP6) is AddressState.PREFERRED
    assert (ready_before, host.ipv6_ready) == (False, True)
    assert decoded(host, SECOND) == []  # one probe only by default


def test_dad_transmits_is_configurable() -> None:
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6, dad_transmits=2)
    frames_out(host, 0)
    host.on_timer(SECOND)
    again = [f for f in decoded(host, SECOND) if isinstance(f, NeighborSolicitation)]
    assert len(again) == 2
    assert host.address_state(OUR_IP6) is AddressState.TENTATIVE
    host.on_timer(2 * SECOND)
    assert host.ipv6_ready


def test_an_advertisement_for_our_tentative_address_makes_it_duplicate() -> None:
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6)
    frames_out(host, 0)
    host.receive_frame(
        na_frame(PEER_IP6, "ff02::1", OUR_IP6, solicited=False, eth_dst="33:33:00:00:00:01"), 10
    )
    assert host.address_state(OUR_IP6) is AddressState.DUPLICATE
    assert host.duplicate_addresses() == [DuplicateAddress(OUR_IP6, PEER_MAC)]
    assert host.duplicate_addresses() == []
    host.on_timer(SECOND)
    assert not host.ipv6_ready  # never becomes preferred


def test_a_dad_probe_from_another_node_for_our_tentative_address_is_a_duplicate() -> None:
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6)
    frames_out(host, 0)
    host.receive_frame(ns_frame("::", solicited_node_multicast(OUR_IP6), OUR_IP6, None), 10)
    assert host.address_state(OUR_IP6) is AddressState.DUPLICATE
    assert [d.address for d in host.duplicate_addresses()] == [OUR_IP6]


def test_packets_from_a_tentative_address_wait_for_dad_then_leave() -> None:
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6)
    frames_out(host, 0)
    host.tcp.connect(PEER_IP6, 80, 0)
    assert decoded(host, 0) == []  # the SYN waits for DAD
    host.on_timer(SECOND)
    out = decoded(host, SECOND)
    assert len(out) == 1
    assert isinstance(out[0], NeighborSolicitation)  # now ND for the peer, from our address
    assert out[0].target == PEER_IP6
    assert out[0].ip.src == OUR_IP6
    assert out[0].source_lladdr == OUR_MAC


def test_our_preferred_address_is_defended_against_a_dad_probe() -> None:
    host = make_host()
    host.receive_frame(ns_frame("::", solicited_node_multicast(OUR_IP6), OUR_IP6, None), 10)
    (na,) = decoded(host, 10)
    assert isinstance(na, NeighborAdvertisement)
    assert (na.ip.dst, na.eth_dst, na.solicited, na.override) == (
        "ff02::1",
        "33:33:00:00:00:01",
        False,
        True,
    )
    assert host.ipv6_ready


# -- Neighbor Discovery ----------------------------------------------------------------------


def test_solicitation_for_our_address_gets_a_solicited_override_advertisement() -> None:
    host = make_host()
    host.receive_frame(ns_frame(PEER_IP6, solicited_node_multicast(OUR_IP6), OUR_IP6), 5)
    (na,) = decoded(host, 5)
    assert isinstance(na, NeighborAdvertisement)
    assert na.eth_dst == PEER_MAC
    assert (na.ip.src, na.ip.dst, na.ip.hop_limit) == (OUR_IP6, PEER_IP6, 255)
    assert (na.target, na.target_lladdr) == (OUR_IP6, OUR_MAC)
    assert na.solicited
    assert na.override
    assert not na.router
    # RFC 4861 7.2.3: the solicitation taught us its sender, as STALE.
    assert host.ndp.state(PEER_IP6, 5) is NudState.STALE


def test_solicitation_for_our_link_local_address_is_answered_from_it() -> None:
    host = make_host()
    ours = link_local_from_mac(OUR_MAC)
    host.receive_frame(ns_frame(PEER_LL, solicited_node_multicast(ours), ours), 5)
    (na,) = decoded(host, 5)
    assert isinstance(na, NeighborAdvertisement)
    assert (na.ip.src, na.ip.dst, na.target) == (ours, PEER_LL, ours)


def test_solicitation_for_another_address_is_not_answered() -> None:
    host = make_host()
    other = "2001:2::2:2"  # same solicited-node group as ours? no: ff02::1:ff02:2
    host.receive_frame(ns_frame(PEER_IP6, solicited_node_multicast(OUR_IP6), other), 5)
    assert decoded(host, 5) == []
    assert host.stats.drops["ndp_not_our_target"] == 1


def test_first_packet_to_a_neighbor_solicits_its_group_and_waits_for_the_answer() -> None:
    host = make_host()
    host.ping(PEER_IP6, 1, 1, b"hi", 0)
    (ns,) = decoded(host, 0)
    assert isinstance(ns, NeighborSolicitation)
    assert (ns.ip.src, ns.ip.dst, ns.eth_dst) == (OUR_IP6, "ff02::1:ff00:1", "33:33:ff:00:00:01")
    assert host.ndp.state(PEER_IP6, 0) is NudState.INCOMPLETE
    host.receive_frame(na_frame(PEER_IP6, OUR_IP6, PEER_IP6), 100)
    (echo,) = decoded(host, 100)
    assert isinstance(echo, Icmpv6Frame)
    assert (echo.icmp_type, echo.eth_dst, echo.ip.dst) == (128, PEER_MAC, PEER_IP6)
    assert host.ndp.state(PEER_IP6, 100) is NudState.REACHABLE


def test_unanswered_solicitations_give_up_after_three_and_report_the_neighbor_unreachable() -> None:
    host = make_host()
    conn = host.tcp.connect(PEER_IP6, 80, 0)
    assert len(decoded(host, 0)) == 1
    for t in (1, 2):
        host.on_timer(t * SECOND)
        assert len(decoded(host, t * SECOND)) == 1
    host.on_timer(3 * SECOND)
    (error,) = host.errors()
    assert (error.remote_ip, error.remote_port, error.local_port) == (PEER_IP6, 80, conn.local_port)
    assert error.from_arp
    assert error.icmpv6 == (1, 3)
    assert host.stats.drops["ndp_unresolved"] == 2  # the SYN and its retransmission at 1 s


def test_a_stale_neighbor_in_use_is_probed_by_unicast_after_the_delay() -> None:
    host = knowing_peer()
    host.ping(PEER_IP6, 1, 1, b"", 0)
    (echo,) = decoded(host, 0)  # STALE is used at once, and DELAY starts
    assert isinstance(echo, Icmpv6Frame)
    assert host.ndp.state(PEER_IP6, 0) is NudState.DELAY
    host.on_timer(5 * SECOND)
    (probe,) = decoded(host, 5 * SECOND)
    assert isinstance(probe, NeighborSolicitation)
    assert (probe.ip.dst, probe.eth_dst) == (PEER_IP6, PEER_MAC)
    host.receive_frame(na_frame(PEER_IP6, OUR_IP6, PEER_IP6, None), 5 * SECOND + 10)
    assert host.ndp.state(PEER_IP6, 5 * SECOND + 10) is NudState.REACHABLE


def test_an_advertisement_for_an_address_never_asked_about_is_dropped_and_creates_nothing() -> None:
    host = make_host()
    host.receive_frame(na_frame(PEER_IP6, OUR_IP6, "2001:2::66"), 5)
    assert host.stats.drops["ndp_na_unsolicited_no_entry"] == 1
    assert host.ndp.entries == {}
    assert decoded(host, 5) == []


def test_an_advertisement_claiming_our_preferred_address_is_counted_not_obeyed() -> None:
    host = make_host()
    host.receive_frame(
        na_frame(PEER_IP6, "ff02::1", OUR_IP6, solicited=False, eth_dst="33:33:00:00:00:01"), 5
    )
    assert host.stats.drops["ndp_address_conflict"] == 1
    assert host.ipv6_ready
    assert host.duplicate_addresses() == []


def test_solicitation_with_hop_limit_254_is_dropped_as_forwarded() -> None:
    host = make_host()
    host.receive_frame(ns_frame(PEER_IP6, solicited_node_multicast(OUR_IP6), OUR_IP6, hop=254), 5)
    assert decoded(host, 5) == []
    assert host.stats.drops["bad_ndp"] == 1
    assert host.ndp.entries == {}


def test_a_solicited_advertisement_to_a_multicast_address_is_dropped() -> None:
    host = make_host()
    host.ping(PEER_IP6, 1, 1, b"", 0)
    frames_out(host, 0)
    frame = na_frame(PEER_IP6, "ff02::1", PEER_IP6, eth_dst="33:33:00:00:00:01")
    host.receive_frame(frame, 5)
    assert host.stats.drops["bad_ndp"] == 1
    assert host.ndp.state(PEER_IP6, 5) is NudState.INCOMPLETE


def test_a_bad_payload_length_reaches_the_host_as_a_decoder_drop() -> None:
    host = make_host()
    body = icmpv6(PEER_IP6, OUR_IP6, 128, 0, echo_body(1, 1, b"x"))
    host.receive_frame(eth6(OUR_MAC, PEER_MAC, ipv6(PEER_IP6, OUR_IP6, 58, body, plen=200)), 5)
    assert host.stats.drops["bad_ipv6_payload_length"] == 1
    assert host.stats.frames_in["malformed"] == 1
    assert decoded(host, 5) == []


def test_frames_to_another_multicast_group_are_not_ours() -> None:
    host = make_host()
    frame = ns_frame(PEER_IP6, "ff02::1:ff00:99", "2001:2::99")
    host.receive_frame(frame, 5)
    assert host.stats.drops["not_our_mac"] == 1


# -- ICMPv6 ----------------------------------------------------------------------------------


def test_echo_request_is_answered_with_the_same_identifier_sequence_and_data() -> None:
    host = knowing_peer()
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 128, 0, echo_body(7, 3, b"abc")), 5)
    (reply,) = decoded(host, 5)
    assert isinstance(reply, Icmpv6Frame)
    assert (reply.icmp_type, reply.code, reply.rest, reply.payload) == (129, 0, 7 << 16 | 3, b"abc")
    assert (reply.ip.src, reply.ip.dst, reply.eth_dst) == (OUR_IP6, PEER_IP6, PEER_MAC)


def test_echo_request_to_all_nodes_is_not_answered() -> None:
    host = make_host()
    frame = icmpv6_frame(
        PEER_IP6, "ff02::1", 128, 0, echo_body(1, 1, b""), eth_dst="33:33:00:00:00:01"
    )
    host.receive_frame(frame, 5)
    assert decoded(host, 5) == []
    assert host.stats.drops["icmpv6_multicast_echo"] == 1


def test_echo_from_a_multicast_or_unspecified_source_is_dropped() -> None:
    host = make_host()
    host.receive_frame(icmpv6_frame("ff02::1", OUR_IP6, 128, 0, echo_body(1, 1, b"")), 5)
    host.receive_frame(icmpv6_frame("::", OUR_IP6, 128, 0, echo_body(1, 1, b"")), 5)
    assert decoded(host, 5) == []
    assert host.stats.drops["ip_bad_source"] == 1
    assert host.stats.drops["ipv6_unspecified_source"] == 1


def test_ping6_reply_is_matched_and_timed() -> None:
    host = knowing_peer()
    host.ping(PEER_IP6, 9, 2, b"data", 100)
    (request,) = decoded(host, 100)
    assert isinstance(request, Icmpv6Frame)
    assert (request.icmp_type, request.rest, request.ip.src) == (128, 9 << 16 | 2, OUR_IP6)
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 129, 0, echo_body(9, 2, b"data")), 350)
    (reply,) = host.echo_replies()
    assert (reply.src, reply.ident, reply.seq, reply.payload, reply.rtt) == (
        PEER_IP6,
        9,
        2,
        b"data",
        250,
    )
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 129, 0, echo_body(9, 2, b"data")), 400)
    assert host.echo_replies() == []
    assert host.stats.drops["icmp_echo_reply_unexpected"] == 1


def test_ping6_refuses_a_group_and_a_host_without_ipv6() -> None:
    host = make_host()
    with pytest.raises(ValueError, match="multicast"):
        host.ping("ff02::1", 1, 1, b"", 0)
    v4_only = Host(OUR_MAC, OUR_IP, 24, None, now=0)
    with pytest.raises(ValueError, match="no IPv6"):
        v4_only.ping(PEER_IP6, 1, 1, b"", 0)
    with pytest.raises(ValueError, match="MTU"):
        host.ping(PEER_IP6, 1, 1, bytes(1500 - 48 + 1), 0)


def test_a_v4_only_host_sends_no_ipv6_and_drops_what_comes() -> None:
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0)
    assert all(not isinstance(f, NeighborSolicitation) for f in decoded(host, 0))
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 128, 0, echo_body(1, 1, b"")), 5)
    assert decoded(host, 5) == []


def quoted6(sport: int, dport: int, seq: int) -> bytes:
    segment = struct.pack("!HHI", sport, dport, seq) + bytes(12)
    return ipv6(OUR_IP6, PEER_IP6, 6, segment)


def test_port_unreachable_about_our_syn_is_a_soft_error_with_the_v4_meaning() -> None:
    host = knowing_peer()
    conn = host.tcp.connect(PEER_IP6, 80, 0)
    frames_out(host, 0)
    quoted = quoted6(conn.local_port, 80, conn.iss)
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 1, 4, bytes(4) + quoted), 5)
    (error,) = host.errors()
    assert (error.remote_ip, error.code, error.icmpv6) == (PEER_IP6, 3, (1, 4))


def test_unreachable_quoting_a_sequence_we_never_sent_is_ignored() -> None:
    host = knowing_peer()
    conn = host.tcp.connect(PEER_IP6, 80, 0)
    frames_out(host, 0)
    quoted = quoted6(conn.local_port, 80, conn.iss + 5000)
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 1, 4, bytes(4) + quoted), 5)
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 2, 0, (1280).to_bytes(4) + quoted), 5)
    assert host.errors() == []
    assert host.stats.drops["icmp_unreachable_stale"] == 2
    assert host.mss_for(PEER_IP6, 5) == 1440


def test_packet_too_big_lowers_the_path_mtu_but_never_below_1280() -> None:
    host = knowing_peer()
    conn = host.tcp.connect(PEER_IP6, 80, 0)
    frames_out(host, 0)
    quoted = quoted6(conn.local_port, 80, conn.iss)
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 2, 0, (600).to_bytes(4) + quoted), 5)
    assert host.path_mtu[PEER_IP6][0] == 1280
    assert host.mss_for(PEER_IP6, 5) == 1220
    (error,) = host.errors()
    assert (error.code, error.mtu, error.icmpv6) == (4, 1280, (2, 0))


def test_tcp_from_a_multicast_or_unspecified_source_is_dropped_without_a_reset() -> None:
    host = make_host()
    host.receive_frame(tcp6_frame(1000, 80, 1, 0, int(Flags.SYN), src="ff02::1"), 5)
    host.receive_frame(tcp6_frame(1000, 80, 1, 0, int(Flags.SYN), src="::"), 5)
    assert decoded(host, 5) == []


def test_syn_to_a_closed_v6_port_gets_a_reset() -> None:
    host = knowing_peer()
    host.receive_frame(tcp6_frame(1000, 80, 1, 0, int(Flags.SYN)), 5)
    (rst,) = decoded(host, 5)
    assert isinstance(rst, TcpFrame)
    assert rst.segment.flags == Flags.RST | Flags.ACK
    assert (rst.ip.src, rst.ip.dst) == (OUR_IP6, PEER_IP6)


def test_syn_to_a_v6_listener_is_answered_with_mss_1440() -> None:
    host = knowing_peer()
    host.tcp.listen(80)
    host.receive_frame(tcp6_frame(1000, 80, 1, 0, int(Flags.SYN)), 5)
    (syn_ack,) = decoded(host, 5)
    assert isinstance(syn_ack, TcpFrame)
    assert syn_ack.segment.flags == Flags.SYN | Flags.ACK
    assert syn_ack.segment.option(MaxSegmentSize) == MaxSegmentSize(1440)
    assert (OUR_IP6, 80, PEER_IP6, 1000) in host.tcp.connections


# -- fragments -------------------------------------------------------------------------------


def echo_in_fragments(data: bytes, size: int, ident: int = 7) -> list[bytes]:
    message = icmpv6(PEER_IP6, OUR_IP6, 128, 0, echo_body(1, 1, data))
    return [
        fragment6(
            PEER_IP6, OUR_IP6, 58, message[at : at + size], ident, at, at + size < len(message)
        )
        for at in range(0, len(message), size)
    ]


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_fragmented_echo_request_is_reassembled_and_answered(order: str) -> None:
    host = knowing_peer()
    pieces = echo_in_fragments(bytes(range(256)) * 5, 512)
    for piece in pieces if order == "forward" else pieces[::-1]:
        host.receive_frame(piece, 5)
    (reply,) = decoded(host, 5)
    assert isinstance(reply, Icmpv6Frame)
    assert reply.payload == bytes(range(256)) * 5
    assert host.stats.frames_in["ipv6_reassembled"] == 1


def test_overlapping_v6_fragments_discard_the_datagram() -> None:
    host = knowing_peer()
    message = icmpv6(PEER_IP6, OUR_IP6, 128, 0, echo_body(1, 1, bytes(100)))
    host.receive_frame(fragment6(PEER_IP6, OUR_IP6, 58, message[:64], 3, 0, True), 5)
    host.receive_frame(fragment6(PEER_IP6, OUR_IP6, 58, message[56:], 3, 56, False), 5)
    host.receive_frame(fragment6(PEER_IP6, OUR_IP6, 58, message[64:], 3, 64, False), 5)
    assert decoded(host, 5) == []
    assert host.stats.drops["ipv6_fragment_overlap"] == 1


def test_an_atomic_fragment_is_processed_on_its_own() -> None:
    host = knowing_peer()
    message = icmpv6(PEER_IP6, OUR_IP6, 128, 0, echo_body(1, 1, b"atom"))
    # A pending fragment of the same identification must not mix with it (RFC 6946).
    host.receive_frame(fragment6(PEER_IP6, OUR_IP6, 58, bytes(64), 5, 64, True), 5)
    host.receive_frame(fragment6(PEER_IP6, OUR_IP6, 58, message, 5, 0, False), 5)
    (reply,) = decoded(host, 5)
    assert isinstance(reply, Icmpv6Frame)
    assert reply.payload == b"atom"
    assert host.stats.frames_in["ipv6_atomic_fragment"] == 1


def test_incomplete_v6_datagram_times_out() -> None:
    host = knowing_peer()
    host.receive_frame(echo_in_fragments(bytes(1000), 512)[0], 0)
    assert host.next_deadline() is not None
    host.on_timer(30 * SECOND)
    assert host.stats.drops["ipv6_fragment_timeout"] == 1


def test_a_reassembled_request_whose_reply_exceeds_the_mtu_is_not_answered() -> None:
    host = knowing_peer()
    for piece in echo_in_fragments(bytes(1600), 800):
        host.receive_frame(piece, 5)
    assert decoded(host, 5) == []  # never fragment on output
    assert host.stats.drops["echo_reply_exceeds_mtu"] == 1


# -- two hosts -------------------------------------------------------------------------------


def run_until(
    a: Host, b: Host, done: Callable[[], bool], now: int = 0, seen: list[object] | None = None
) -> int:
    """test_host's wire, with room for a megabyte over v6."""
    return run_wire_until(a, b, done, now, seen, rounds=200_000)


def pair(**kwargs: object) -> tuple[Host, Host]:
    client = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6, **kwargs)  # type: ignore[arg-type]
    server = Host(
        PEER_MAC,
        PEER_IP,
        24,
        None,
        now=0,
        ip6=PEER_IP6,
        tcp=TcpEndpoint(PEER_IP, ip6=PEER_IP6, rng_seed=1),
        **kwargs,  # type: ignore[arg-type]
    )
    return client, server


def test_two_hosts_run_dad_resolve_by_nd_handshake_over_v6_and_move_a_megabyte() -> None:
    client, server = pair()
    listener = server.tcp.listen(21)
    conn = client.tcp.connect(PEER_IP6, 21, 0)
    accepted: list[Connection] = []
    seen: list[object] = []

    def established() -> bool:
        got = listener.accept()
        if got is not None:
            accepted.append(got)
        return conn.state is State.ESTABLISHED and bool(accepted)

    now = run_until(client, server, established, seen=seen)
    assert now >= SECOND  # DAD first: nothing left our tentative address before
    kinds = [type(f).__name__ for f in seen if not isinstance(f, TcpFrame)]
    assert "NeighborSolicitation" in kinds
    assert "NeighborAdvertisement" in kinds
    first_tcp = next(f for f in seen if isinstance(f, TcpFrame))
    assert first_tcp.segment.syn
    assert first_tcp.segment.option(MaxSegmentSize) == MaxSegmentSize(1440)
    assert client.ndp.state(PEER_IP6, now) is NudState.REACHABLE
    (server_conn,) = accepted
    assert (server_conn.local_ip, server_conn.remote_ip) == (PEER_IP6, OUR_IP6)

    data = bytes(i * 7 % 251 for i in range(1 << 20))
    received = bytearray()
    sent = 0

    def transferred() -> bool:
        nonlocal sent
        if sent < len(data):
            sent += conn.send(data[sent : sent + 65536], now)
        received.extend(server_conn.read())
        return len(received) == len(data)

    seen.clear()
    run_until(client, server, transferred, now, seen)
    assert bytes(received) == data
    sizes = [len(f.segment.payload) for f in seen if isinstance(f, TcpFrame)]
    assert max(sizes) == 1440 - 12  # MSS minus the timestamp option
    for host in (client, server):
        # Only the other host's DAD probes (another solicited-node group) and gratuitous ARP.
        assert set(host.stats.drops) <= {"not_our_mac", "arp_not_for_us"}
        assert host.decode_stats.dropped == 0


def test_packet_too_big_makes_the_v6_connection_send_1220_byte_segments() -> None:
    client, server = pair(dad_transmits=0)
    listener = server.tcp.listen(21)
    conn = client.tcp.connect(PEER_IP6, 21, 0)
    now = run_until(client, server, lambda: conn.state is State.ESTABLISHED)
    run_until(client, server, lambda: listener.accept() is not None, now)
    conn.send(bytes(20_000), now)
    out = frames_out(client, now)
    first = next(
        f for raw in out if isinstance(f := decode_ethernet(raw), TcpFrame) and f.segment.payload
    )
    assert len(first.segment.payload) == 1440 - 12
    segment = tcp6(OUR_IP6, PEER_IP6, conn.local_port, 21, first.segment.seq, 0, 0x18)
    quoted = ipv6(OUR_IP6, PEER_IP6, 6, segment + bytes(1400))[:1232]
    client.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 2, 0, (1280).to_bytes(4) + quoted), now)
    assert client.mss_for(PEER_IP6, now) == 1220
    for raw in out:
        server.receive_frame(raw, now)
    conn.send(bytes(20_000), now)
    seen: list[object] = []
    run_until(client, server, lambda: conn.send_buffered == 0, now, seen)
    sizes = [
        len(f.segment.payload)
        for f in seen
        if isinstance(f, TcpFrame) and f.ip.src == OUR_IP6 and f.segment.payload
    ]
    assert sizes
    assert max(sizes) == 1220 - 12  # the new MSS minus the timestamp option


def test_acknowledged_data_confirms_the_neighbor_so_no_probe_is_needed() -> None:
    """RFC 4861 7.3.1: forward progress of TCP is reachability confirmation."""
    client, server = pair(dad_transmits=0)
    listener = server.tcp.listen(21)
    conn = client.tcp.connect(PEER_IP6, 21, 0)
    now = run_until(client, server, lambda: conn.state is State.ESTABLISHED)
    run_until(client, server, lambda: listener.accept() is not None, now)
    now += 31 * SECOND  # idle past ReachableTime: the entry is STALE
    assert client.ndp.state(PEER_IP6, now) is NudState.STALE
    conn.send(b"x" * 1000, now)
    now = run_until(client, server, lambda: conn.send_buffered == 0, now)
    assert client.ndp.state(PEER_IP6, now) is NudState.REACHABLE
    client.on_timer(now + 10 * SECOND)
    assert client.stats.frames_out["ndp_probe"] == 0


# -- hostile input ---------------------------------------------------------------------------


def test_a_loop_of_extension_headers_is_a_decoder_drop() -> None:
    host = knowing_peer()
    echo = icmpv6(PEER_IP6, OUR_IP6, 128, 0, echo_body(1, 1, b""))
    chain = b"".join(bytes((60, 0)) + bytes(6) for _ in range(20))  # destination options
    packet = ipv6(PEER_IP6, OUR_IP6, 60, chain[:-8] + bytes((58, 0)) + bytes(6) + echo)
    host.receive_frame(eth6(OUR_MAC, PEER_MAC, packet), 5)
    assert host.stats.drops["bad_extension_headers"] == 1
    assert decoded(host, 5) == []


def test_a_fragment_reaching_past_65535_bytes_is_dropped() -> None:
    host = knowing_peer()
    host.receive_frame(fragment6(PEER_IP6, OUR_IP6, 58, bytes(64), 9, 65528, True), 5)
    assert host.stats.drops["bad_ipv6_payload_length"] == 1
    assert host.fragments6.held_bytes == 0


def test_fragments_to_a_tentative_address_are_dropped() -> None:
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6)
    frames_out(host, 0)
    for piece in echo_in_fragments(bytes(1000), 512):
        host.receive_frame(piece, 5)
    assert host.stats.drops["ipv6_to_tentative_address"] == 2
    assert host.fragments6.held_bytes == 0


V6_SAMPLES = [
    ns_frame(PEER_IP6, solicited_node_multicast(OUR_IP6), OUR_IP6),
    na_frame(PEER_IP6, OUR_IP6, PEER_IP6),
    icmpv6_frame(PEER_IP6, OUR_IP6, 128, 0, echo_body(1, 1, b"abc")),
    icmpv6_frame(PEER_IP6, OUR_IP6, 2, 0, (1280).to_bytes(4) + quoted6(40000, 80, 1)),
    tcp6_frame(1000, 80, 1, 0, int(Flags.SYN)),
    *echo_in_fragments(bytes(300), 160),
]


@given(
    base=st.sampled_from(V6_SAMPLES),
    changes=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    keep=st.integers(0, 400),
)
@settings(max_examples=300, deadline=None)
def test_mutated_v6_frames_never_raise_and_are_always_counted(
    base: bytes, changes: list[tuple[int, int]], keep: int
) -> None:
    host = knowing_peer()
    host.tcp.listen(80)
    frame = bytearray(base[:keep])
    for position, value in changes:
        if position < len(frame):
            frame[position] = value
    host.receive_frame(bytes(frame), 0)
    frames_out(host, 0)
    host.on_timer(40 * SECOND)
    frames_out(host, 40 * SECOND)
    assert sum(host.stats.frames_in.values()) >= 2  # the solicitation of `knowing_peer`, and this


def test_accepted_macs_name_our_mac_broadcast_all_nodes_and_our_solicited_node_groups() -> None:
    host = make_host()
    assert host.accepted_macs == {
        OUR_MAC,
        "ff:ff:ff:ff:ff:ff",
        "33:33:00:00:00:01",
        "33:33:ff:00:00:02",  # 2001:2::2 and fe80::ff:fe00:2 share the low 24 bits
    }
    assert Host(OUR_MAC, OUR_IP, 24, None, now=0).accepted_macs == {OUR_MAC, "ff:ff:ff:ff:ff:ff"}


def test_ipv6_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="1280"):
        Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6, mtu=1000)
    with pytest.raises(ValueError, match="neither link-local"):
        Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6, gateway6="2001:3::1")
    with pytest.raises(ValueError, match="not a global unicast"):
        Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6="fe80::1")


def test_off_prefix_destinations_go_through_the_v6_gateway() -> None:
    host = make_host(gateway6="fe80::1")
    assert host.route("2001:db8::5") == "fe80::1"
    assert host.route(PEER_IP6) == PEER_IP6
    assert host.route("fe80::9") == "fe80::9"
    host.ping("2001:db8::5", 1, 1, b"", 0)
    (ns,) = decoded(host, 0)
    assert isinstance(ns, NeighborSolicitation)
    assert ns.target == "fe80::1"
    assert ns.ip.src == link_local_from_mac(OUR_MAC)  # a link-local target: asked from ours
    assert make_host().route("2001:db8::5") is None


# -- codecs and the endpoint -----------------------------------------------------------------


def everything_a_host_sends(codec: str) -> list[bytes]:
    """DAD probes, an NA, an echo reply, an NS and a SYN, from the same inputs."""
    host = Host(OUR_MAC, OUR_IP, 24, None, now=0, ip6=OUR_IP6, codec=codec, gratuitous_arp=False)
    out = frames_out(host, 0)
    host.on_timer(SECOND)
    host.receive_frame(ns_frame(PEER_IP6, solicited_node_multicast(OUR_IP6), OUR_IP6), SECOND)
    host.receive_frame(icmpv6_frame(PEER_IP6, OUR_IP6, 128, 0, echo_body(7, 3, b"abc")), SECOND)
    host.tcp.connect(PEER_IP6, 21, SECOND, local_port=40000, iss=1)
    host.ping("2001:2::9", 1, 1, b"x", SECOND)
    return out + frames_out(host, SECOND)


def test_fast_scapy_and_mixed_codecs_put_the_same_v6_bytes_on_the_wire() -> None:
    fast_bytes = everything_a_host_sends("fast")
    assert len(fast_bytes) == 6
    assert everything_a_host_sends("scapy") == fast_bytes
    assert everything_a_host_sends("mixed") == fast_bytes


def test_endpoint_picks_the_address_and_mss_of_the_peer_family() -> None:
    endpoint = TcpEndpoint(OUR_IP, ip6=OUR_IP6)
    v6 = endpoint.connect(PEER_IP6, 21, 0)
    v4 = endpoint.connect(PEER_IP, 21, 0)
    assert (v6.local_ip, v6.config.mss) == (OUR_IP6, 1440)
    assert (v4.local_ip, v4.config.mss) == (OUR_IP, 1460)
    with pytest.raises(ValueError, match="no IPv6 address"):
        TcpEndpoint(OUR_IP).connect(PEER_IP6, 21, 0)


def test_one_listener_answers_both_families() -> None:
    host = knowing_peer()
    listener = host.tcp.listen(21)
    host.receive_frame(tcp6_frame(1000, 21, 1, 0, int(Flags.SYN)), 5)
    syn = Segment(src_port=1000, dst_port=21, seq=1, flags=Flags.SYN)
    host.tcp.receive(AddressedSegment(PEER_IP, OUR_IP, syn), 5)
    assert listener.pending == 2
    assert {(c[0], c[2]) for c in host.tcp.connections} == {(OUR_IP6, PEER_IP6), (OUR_IP, PEER_IP)}
    (syn_ack,) = [f for f in decoded(host, 5) if isinstance(f, TcpFrame)]  # v4 waits for ARP
    assert syn_ack.ip.src == OUR_IP6


def test_a_flood_of_solicitations_from_forged_sources_cannot_grow_the_cache_unbounded() -> None:
    host = make_host()
    for n in range(1100):
        source = f"2001:2::1:{n:x}"
        host.receive_frame(ns_frame(source, solicited_node_multicast(OUR_IP6), OUR_IP6), n)
    assert len(host.ndp.entries) == 1024
    assert host.ndp.evictions == 1100 - 1024
    assert host.stats.frames_out["ndp_advertisement"] == 1100


def test_ping6_between_two_fresh_hosts_waits_for_dad_and_times_from_then() -> None:
    client, server = pair()
    client.ping(PEER_IP6, 3, 1, b"hello", 0)
    replies: list[EchoReply] = []

    def answered() -> bool:
        replies.extend(client.echo_replies())
        return bool(replies)

    now = run_until(client, server, answered)
    (reply,) = replies
    assert now > SECOND
    assert reply.sent == SECOND  # left when DAD ended; ND resolution counts, as with ARP
    assert 0 < reply.rtt < 1000
