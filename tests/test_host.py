"""The sans-IO host: ARP, IPv4 checks, fragment reassembly, ICMP and TCP demux, all in memory.

Inbound frames are built by hand with `struct` (independent of the codecs under test elsewhere),
so a bug shared by a codec and the host cannot hide itself.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.host import Host
from lab.host.arp import ArpCache
from lab.host.fragments import Fragment, FragmentReassembler
from lab.host.host import Transition
from lab.tcp.connection import Connection, State
from lab.tcp.endpoint import TcpEndpoint
from lab.tcp.events import StateChanged
from lab.wire.checksum import internet_checksum, ipv4_pseudo_header_sum
from lab.wire.fast import decode_ethernet
from lab.wire.frame import ArpFrame, IcmpFrame, TcpFrame
from lab.wire.segment import Flags


def frames_out(host: Host, now: int) -> list[bytes]:
    """The bytes of what `host` sends now (`Host.outgoing_frames` without the transitions)."""
    return [frame.data for frame in host.outgoing_frames(now)]


OUR_MAC = "02:00:00:00:00:02"
OUR_IP = "198.18.0.2"
PEER_MAC = "02:00:00:00:00:01"
PEER_IP = "198.18.0.1"
GATEWAY = "198.18.0.254"
GW_MAC = "02:00:00:00:00:fe"
BROADCAST = "ff:ff:ff:ff:ff:ff"


# -- hand-built frames ------------------------------------------------------------------------


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def eth(dst: str, src: str, ethertype: int, body: bytes) -> bytes:
    return mac(dst) + mac(src) + ethertype.to_bytes(2) + body


def arp(op: int, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str) -> bytes:
    return struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        0x0800,
        6,
        4,
        op,
        mac(sender_mac),
        socket.inet_aton(sender_ip),
        mac(target_mac),
        socket.inet_aton(target_ip),
    )


def ipv4(
    src: str,
    dst: str,
    protocol: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 1,
    flags_offset: int = 0x4000,
    bad_checksum: bool = False,
) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        ident,
        flags_offset,
        ttl,
        protocol,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    checksum = internet_checksum(header) ^ (0x1234 if bad_checksum else 0)
    return header[:10] + checksum.to_bytes(2) + header[12:] + payload


def icmp(icmp_type: int, code: int, rest: int, payload: bytes) -> bytes:
    raw = struct.pack("!BBHI", icmp_type, code, 0, rest) + payload
    return raw[:2] + internet_checksum(raw).to_bytes(2) + raw[4:]


def tcp(
    src: str,
    dst: str,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    window: int = 65535,
) -> bytes:
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, window, 0, 0)
    raw = header + payload
    pseudo = ipv4_pseudo_header_sum(src, dst, 6, len(raw))
    checksum = internet_checksum(raw, pseudo)
    return raw[:16] + checksum.to_bytes(2) + raw[18:]


def ip_frame(payload_ip: bytes, dst_mac: str = OUR_MAC, src_mac: str = PEER_MAC) -> bytes:
    return eth(dst_mac, src_mac, 0x0800, payload_ip)


def tcp_frame(sport: int, dport: int, seq: int, ack: int, flags: int, data: bytes = b"") -> bytes:
    segment = tcp(PEER_IP, OUR_IP, sport, dport, seq, ack, flags, data)
    return ip_frame(ipv4(PEER_IP, OUR_IP, 6, segment))


def echo_request(ident: int, seq: int, data: bytes, **ip_kwargs: Any) -> bytes:
    message = icmp(8, 0, ident << 16 | seq, data)
    return ip_frame(ipv4(PEER_IP, OUR_IP, 1, message, **ip_kwargs))


# -- fixtures ---------------------------------------------------------------------------------


def make_host(now: int = 0, **kwargs: object) -> Host:
    return Host(OUR_MAC, OUR_IP, 24, GATEWAY, now=now, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["fast", "scapy"])
def host(request: pytest.FixtureRequest) -> Host:
    """A host past its gratuitous ARP, that knows the peer's MAC; frames encoded by each codec."""
    h = make_host(codec=request.param)
    frames_out(h, 0)
    h.receive_frame(eth(OUR_MAC, PEER_MAC, 0x0806, arp(2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)), 0)
    assert h.arp.lookup(PEER_IP, 0) == PEER_MAC
    return h


def decoded(h: Host, now: int) -> list[object]:
    return [decode_ethernet(f) for f in frames_out(h, now)]


# -- ARP --------------------------------------------------------------------------------------


def test_host_announces_itself_with_a_gratuitous_arp_at_start() -> None:
    h = make_host()
    (frame,) = decoded(h, 0)
    assert frame == ArpFrame(OUR_MAC, BROADCAST, 1, OUR_MAC, OUR_IP, "00:00:00:00:00:00", OUR_IP)


@pytest.mark.parametrize("codec", ["fast", "scapy"])
def test_arp_request_for_our_address_gets_the_exact_reply_bytes(codec: str) -> None:
    h = make_host(codec=codec)
    frames_out(h, 0)
    request = eth(BROADCAST, PEER_MAC, 0x0806, arp(1, PEER_MAC, PEER_IP, "00" * 6, OUR_IP))
    h.receive_frame(request, 0)
    (reply,) = frames_out(h, 0)
    expected = eth(PEER_MAC, OUR_MAC, 0x0806, arp(2, OUR_MAC, OUR_IP, PEER_MAC, PEER_IP))
    assert reply[:42] == expected
    assert set(reply[42:]) <= {0}  # only Ethernet padding, if the codec pads
    assert h.arp.lookup(PEER_IP, 0) == PEER_MAC  # learned from a request addressed to us


def test_arp_request_for_another_address_is_not_answered_nor_learned() -> None:
    h = make_host()
    frames_out(h, 0)
    other = "198.18.0.77"
    h.receive_frame(eth(BROADCAST, PEER_MAC, 0x0806, arp(1, PEER_MAC, PEER_IP, "00" * 6, other)), 0)
    assert frames_out(h, 0) == []
    assert h.arp.lookup(PEER_IP, 0) is None
    assert h.stats.drops["arp_not_for_us"] == 1


def test_packets_wait_for_arp_and_leave_when_the_reply_comes() -> None:
    h = make_host()
    frames_out(h, 0)
    h.tcp.connect(PEER_IP, 7, 0, local_port=40000)
    (request,) = decoded(h, 0)
    assert isinstance(request, ArpFrame)
    assert (request.op, request.target_ip, request.eth_dst) == (1, PEER_IP, BROADCAST)
    h.receive_frame(eth(OUR_MAC, PEER_MAC, 0x0806, arp(2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)), 5)
    (syn,) = decoded(h, 5)
    assert isinstance(syn, TcpFrame)
    assert syn.eth_dst == PEER_MAC
    assert syn.segment.flags == Flags.SYN
    assert syn.ip.dont_fragment  # type: ignore[union-attr]


def test_arp_is_retried_every_second_three_times_then_the_host_is_unreachable() -> None:
    h = make_host()
    frames_out(h, 0)
    h.tcp.connect(PEER_IP, 7, 0, local_port=40000)
    assert len(decoded(h, 0)) == 1
    assert h.next_deadline() == 1_000_000
    h.on_timer(999_999)
    assert frames_out(h, 999_999) == []
    for t in (1_000_000, 2_000_000):
        h.on_timer(t)
        (again,) = decoded(h, t)
        assert isinstance(again, ArpFrame)
        assert again.target_ip == PEER_IP
    h.on_timer(3_000_000)  # third request unanswered for a second: give up on the next hop
    (error,) = h.errors()
    assert (error.remote_ip, error.remote_port, error.local_port, error.code) == (
        PEER_IP,
        7,
        40000,
        1,
    )
    assert error.from_arp
    assert h.stats.drops["arp_unresolved"] >= 1


def test_an_arp_entry_in_use_past_its_lifetime_is_reprobed_by_unicast_not_dropped(
    host: Host,
) -> None:
    # Linux's NUD: REACHABLE for 60 s, then STALE but still used; the first use starts a 5 s
    # DELAY, then unicast requests to the MAC we hold (PROBE); a reply makes it REACHABLE.
    assert (host.arp.lookup(PEER_IP, 59_999_999), host.arp.state(PEER_IP, 59_999_999)) == (
        PEER_MAC,
        "REACHABLE",
    )
    assert host.arp.lookup(PEER_IP, 60_000_000) == PEER_MAC
    assert host.arp.state(PEER_IP, 60_000_000) == "DELAY"
    assert host.next_deadline() == 65_000_000
    host.on_timer(65_000_000)
    probe = ArpFrame(OUR_MAC, PEER_MAC, 1, OUR_MAC, OUR_IP, "00:00:00:00:00:00", PEER_IP)
    assert decoded(host, 65_000_000) == [probe]
    assert host.arp.state(PEER_IP, 65_000_000) == "PROBE"
    reply = eth(OUR_MAC, PEER_MAC, 0x0806, arp(2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP))
    host.receive_frame(reply, 65_000_100)
    assert host.arp.state(PEER_IP, 65_000_100) == "REACHABLE"
    assert host.next_deadline() is None
    assert host.arp.lookup(PEER_IP, 125_000_099) == PEER_MAC


def test_an_arp_entry_whose_unicast_probes_go_unanswered_is_forgotten(host: Host) -> None:
    assert host.arp.lookup(PEER_IP, 60_000_000) == PEER_MAC
    probes = []
    while (t := host.next_deadline()) is not None:
        host.on_timer(t)
        probes += [(t, f.eth_dst) for f in decoded(host, t) if isinstance(f, ArpFrame)]
    assert probes == [(65_000_000, PEER_MAC), (66_000_000, PEER_MAC), (67_000_000, PEER_MAC)]
    assert host.arp.state(PEER_IP, 68_000_000) == "NONE"
    assert host.arp.lookup(PEER_IP, 68_000_000) is None  # the next packet asks by broadcast


def test_a_stale_arp_entry_left_unused_for_another_lifetime_is_forgotten(host: Host) -> None:
    assert host.arp.state(PEER_IP, 119_999_999) == "STALE"
    assert host.arp.lookup(PEER_IP, 120_000_000) is None


def test_off_subnet_destinations_go_through_the_gateway(host: Host) -> None:
    assert host.route("203.0.113.9") == GATEWAY
    assert host.route(PEER_IP) == PEER_IP
    host.tcp.connect("203.0.113.9", 80, 0, local_port=40001)
    (request,) = decoded(host, 0)
    assert isinstance(request, ArpFrame)
    assert request.target_ip == GATEWAY


def test_arp_queue_is_bounded_and_drops_the_oldest() -> None:
    cache: ArpCache[int] = ArpCache(max_queued=2)
    assert cache.enqueue("a", 1, 0)
    assert not cache.enqueue("a", 2, 0)
    cache.enqueue("a", 3, 0)
    assert cache.learn("a", "m", 0) == [2, 3]
    assert cache.overflow_drops == 1


def test_arp_table_is_bounded_against_a_flood_of_forged_senders(host: Host) -> None:
    for i in range(1500):
        sender = f"198.19.{i >> 8}.{i & 255}"  # 1500 different senders
        request = arp(1, "02:00:00:00:11:11", sender, "00:00:00:00:00:00", OUR_IP)
        host.receive_frame(eth(BROADCAST, "02:00:00:00:11:11", 0x0806, request), 1)
    assert len(host.arp.entries) == 1024
    assert host.arp.evictions == 1500 + 1 - 1024  # the peer learned first went too
    assert host.arp.lookup("198.19.5.219", 1) == "02:00:00:00:11:11"  # the newest stays


def test_a_full_arp_table_forgets_expired_entries_before_live_ones() -> None:
    cache: ArpCache[int] = ArpCache(max_entries=3, lifetime=100)
    cache.learn("a", "m", 0)
    cache.learn("b", "m", 50)
    cache.learn("c", "m", 60)
    cache.learn("a", "m2", 70)  # re-learning refreshes: a is now the youngest
    cache.learn("d", "m", 155)  # b expired at 150: it goes, nothing live is evicted
    assert set(cache.entries) == {"a", "c", "d"}
    assert cache.evictions == 0
    cache.learn("e", "m", 156)  # all live: the least recently learned (c) goes
    assert set(cache.entries) == {"a", "d", "e"}
    assert cache.evictions == 1


def test_an_unknown_codec_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown codec"):
        make_host(codec="pcap")


# -- IPv4 checks ------------------------------------------------------------------------------


def test_bad_ip_checksum_is_dropped_and_counted(host: Host) -> None:
    frame = echo_request(1, 1, b"x", bad_checksum=True)
    host.receive_frame(frame, 0)
    assert frames_out(host, 0) == []
    assert host.stats.drops["bad_ip_checksum"] == 1


def test_bad_tcp_checksum_is_dropped_without_a_reset(host: Host) -> None:
    frame = bytearray(tcp_frame(5555, 80, 1000, 0, Flags.SYN))
    frame[-1] ^= 0xFF  # last byte of the urgent pointer: the TCP checksum no longer matches
    host.receive_frame(bytes(frame), 0)
    assert frames_out(host, 0) == []
    assert host.stats.drops["bad_tcp_checksum"] == 1


def test_datagram_for_another_address_is_dropped(host: Host) -> None:
    seg = tcp(PEER_IP, "198.18.0.9", 5555, 80, 1, 0, Flags.SYN)
    host.receive_frame(ip_frame(ipv4(PEER_IP, "198.18.0.9", 6, seg)), 0)
    assert frames_out(host, 0) == []
    assert host.stats.drops["ip_not_our_address"] == 1


def test_ttl_zero_is_dropped(host: Host) -> None:
    host.receive_frame(echo_request(1, 1, b"x", ttl=0), 0)
    assert frames_out(host, 0) == []
    assert host.stats.drops["ip_ttl_zero"] == 1


# -- ICMP -------------------------------------------------------------------------------------


def test_ping_is_answered_with_the_same_identifier_sequence_and_data(host: Host) -> None:
    host.receive_frame(echo_request(0x1234, 7, b"hello ping"), 0)
    (raw,) = frames_out(host, 0)
    expected_ip = ipv4(OUR_IP, PEER_IP, 1, icmp(0, 0, 0x1234 << 16 | 7, b"hello ping"), ident=1)
    assert raw == eth(PEER_MAC, OUR_MAC, 0x0800, expected_ip)
    reply = decode_ethernet(raw)
    assert isinstance(reply, IcmpFrame)
    assert (reply.icmp_type, reply.code, reply.rest, reply.payload) == (
        0,
        0,
        0x1234 << 16 | 7,
        b"hello ping",
    )
    assert (reply.ip.src, reply.ip.dst, reply.eth_dst) == (OUR_IP, PEER_IP, PEER_MAC)
    assert host.stats.frames_out["icmp_echo_reply"] == 1


def test_broadcast_ping_is_ignored(host: Host) -> None:
    message = icmp(8, 0, 1, b"x")
    host.receive_frame(ip_frame(ipv4(PEER_IP, "198.18.0.255", 1, message), BROADCAST), 0)
    assert frames_out(host, 0) == []


def quoted_tcp(sport: int, dport: int, seq: int) -> bytes:
    """The first 28 bytes of one of our segments, as an ICMP error quotes it."""
    header = ipv4(OUR_IP, PEER_IP, 6, b"\x00" * 20)[:20]
    return header + struct.pack("!HHI", sport, dport, seq)


def test_port_unreachable_about_our_syn_is_reported_as_a_soft_error(host: Host) -> None:
    conn = host.tcp.connect(PEER_IP, 7, 0, local_port=40000)
    frames_out(host, 0)
    error_frame = ip_frame(
        ipv4(PEER_IP, OUR_IP, 1, icmp(3, 3, 0, quoted_tcp(40000, 7, conn.snd_una)))
    )
    host.receive_frame(error_frame, 0)
    (error,) = host.errors()
    assert (error.remote_port, error.local_port, error.code) == (7, 40000, 3)


def test_unreachable_quoting_a_sequence_number_we_never_sent_is_ignored(host: Host) -> None:
    conn = host.tcp.connect(PEER_IP, 7, 0, local_port=40000)
    frames_out(host, 0)
    forged = quoted_tcp(40000, 7, (conn.snd_una + 100_000) % 2**32)
    host.receive_frame(ip_frame(ipv4(PEER_IP, OUR_IP, 1, icmp(3, 4, 600, forged))), 0)
    assert host.errors() == []
    assert host.stats.drops["icmp_unreachable_stale"] == 1
    assert PEER_IP not in host.path_mtu


def test_fragmentation_needed_lowers_the_path_mtu(host: Host) -> None:
    conn = host.tcp.connect(PEER_IP, 7, 0, local_port=40000)
    frames_out(host, 0)
    quoted = quoted_tcp(40000, 7, conn.snd_una)
    host.receive_frame(ip_frame(ipv4(PEER_IP, OUR_IP, 1, icmp(3, 4, 1280, quoted))), 10)
    assert host.path_mtu[PEER_IP][0] == 1280
    assert host.mss_for(PEER_IP, 10) == 1240
    (error,) = host.errors()
    assert error.mtu == 1280


# -- TCP demux --------------------------------------------------------------------------------


def test_syn_to_a_closed_port_gets_a_reset(host: Host) -> None:
    host.receive_frame(tcp_frame(5555, 81, 1000, 0, Flags.SYN), 0)
    (rst,) = decoded(host, 0)
    assert isinstance(rst, TcpFrame)
    assert rst.segment.flags == Flags.RST | Flags.ACK
    assert (rst.segment.seq, rst.segment.ack) == (0, 1001)
    assert (rst.segment.src_port, rst.segment.dst_port) == (81, 5555)
    assert rst.eth_dst == PEER_MAC


def test_tcp_in_a_link_broadcast_frame_is_dropped_without_a_reset(host: Host) -> None:
    segment = tcp(PEER_IP, OUR_IP, 5555, 81, 1000, 0, Flags.SYN)
    host.receive_frame(ip_frame(ipv4(PEER_IP, OUR_IP, 6, segment), BROADCAST), 0)
    assert frames_out(host, 0) == []
    assert host.stats.drops["tcp_link_broadcast"] == 1


def test_syn_to_a_listener_gets_a_syn_ack_and_reports_the_transition(host: Host) -> None:
    host.tcp.listen(21)
    notes = host.receive_frame(tcp_frame(5555, 21, 1000, 0, Flags.SYN), 0)
    (synack,) = decoded(host, 0)
    assert isinstance(synack, TcpFrame)
    assert synack.segment.flags == Flags.SYN | Flags.ACK
    assert synack.segment.ack == 1001
    assert notes == [
        Transition(21, PEER_IP, 5555, StateChanged(0, State.CLOSED, State.LISTEN)),
        Transition(21, PEER_IP, 5555, StateChanged(0, State.LISTEN, State.SYN_RECEIVED)),
    ]


# -- fragments --------------------------------------------------------------------------------


def fragments_of(payload: bytes, size: int, ident: int = 9, protocol: int = 1) -> list[bytes]:
    """IPv4 fragments (Ethernet frames) of one datagram carrying `payload`."""
    out = []
    for start in range(0, len(payload), size):
        chunk = payload[start : start + size]
        more = start + size < len(payload)
        flags_offset = (0x2000 if more else 0) | start // 8
        out.append(
            ip_frame(ipv4(PEER_IP, OUR_IP, protocol, chunk, ident=ident, flags_offset=flags_offset))
        )
    return out


BIG_PING = icmp(8, 0, 0x0001_0002, bytes(range(256)) * 4)


@pytest.mark.parametrize("order", ["in_order", "reverse"])
def test_fragmented_ping_is_reassembled_and_answered(host: Host, order: str) -> None:
    frames = fragments_of(BIG_PING, 256)
    if order == "reverse":
        frames.reverse()
    for f in frames:
        host.receive_frame(f, 0)
    (reply,) = decoded(host, 0)
    assert isinstance(reply, IcmpFrame)
    assert reply.payload == bytes(range(256)) * 4
    assert host.stats.frames_in["ipv4_reassembled"] == 1


def test_fragmented_tcp_syn_reaches_the_endpoint(host: Host) -> None:
    segment = tcp(PEER_IP, OUR_IP, 5555, 81, 1000, 0, Flags.SYN, b"x" * 40)
    for f in fragments_of(segment, 32, protocol=6):
        host.receive_frame(f, 0)
    (rst,) = decoded(host, 0)
    assert isinstance(rst, TcpFrame)
    assert rst.segment.ack == 1000 + 1 + 40


def test_overlapping_fragments_discard_the_datagram(host: Host) -> None:
    frames = fragments_of(BIG_PING, 256)
    host.receive_frame(frames[0], 0)
    overlapping = ip_frame(ipv4(PEER_IP, OUR_IP, 1, b"Z" * 256, ident=9, flags_offset=0x2000 | 16))
    host.receive_frame(overlapping, 0)
    for f in frames[1:]:
        host.receive_frame(f, 0)
    assert frames_out(host, 0) == []
    assert host.stats.drops["fragment_overlap"] == 1
    assert host.fragments.held_bytes == 0


def test_exact_duplicate_fragment_is_ignored(host: Host) -> None:
    frames = fragments_of(BIG_PING, 256)
    host.receive_frame(frames[0], 0)
    host.receive_frame(frames[0], 0)
    for f in frames[1:]:
        host.receive_frame(f, 0)
    assert len(decoded(host, 0)) == 1
    assert host.stats.drops["fragment_duplicate"] == 1


def test_incomplete_datagram_times_out_after_thirty_seconds(host: Host) -> None:
    frames = fragments_of(BIG_PING, 256)
    host.receive_frame(frames[0], 0)
    assert host.next_deadline() == 30_000_000
    host.on_timer(30_000_000)
    for f in frames[1:]:
        host.receive_frame(f, 30_000_001)
    assert frames_out(host, 30_000_001) == []
    assert host.stats.drops["fragment_timeout"] == 1


def test_fragment_memory_is_bounded_by_evicting_the_oldest() -> None:
    r = FragmentReassembler(max_bytes=1000, max_datagrams=100)
    for ident in range(10):
        r.push(Fragment(PEER_IP, OUR_IP, 1, ident, 0, True, b"x" * 400), 0)
        assert r.held_bytes <= 1000
    assert r.drops["fragment_evicted"] == 8


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=600),
    size=st.sampled_from([8, 16, 64, 200]),
    seed=st.randoms(use_true_random=False),
)
def test_any_order_of_disjoint_fragments_reassembles_the_datagram(
    data: bytes, size: int, seed: object
) -> None:
    pieces = [
        Fragment(PEER_IP, OUR_IP, 6, 1, s, s + size < len(data), data[s : s + size])
        for s in range(0, len(data), size)
    ]
    seed.shuffle(pieces)  # type: ignore[attr-defined]
    r = FragmentReassembler()
    results = [r.push(p, 0) for p in pieces]
    assert all(x is None for x in results[:-1])
    assert results[-1] is not None
    assert results[-1].payload == data
    assert r.held_bytes == 0


# -- robustness -------------------------------------------------------------------------------

SAMPLES = [
    eth(BROADCAST, PEER_MAC, 0x0806, arp(1, PEER_MAC, PEER_IP, "00" * 6, OUR_IP)),
    tcp_frame(5555, 81, 1000, 0, Flags.SYN, b"data"),
    echo_request(1, 2, b"ping data"),
    *fragments_of(BIG_PING, 256)[:2],
]


@settings(max_examples=300, deadline=None)
@given(
    base=st.sampled_from(SAMPLES),
    changes=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), max_size=6),
    keep=st.integers(0, 400),
)
def test_mutated_frames_never_raise_and_are_always_counted(
    base: bytes, changes: list[tuple[int, int]], keep: int
) -> None:
    h = make_host()
    frames_out(h, 0)
    frame = bytearray(base[:keep])
    for position, value in changes:
        if position < len(frame):
            frame[position] = value
    h.receive_frame(bytes(frame), 0)
    frames_out(h, 0)
    h.on_timer(40_000_000)
    frames_out(h, 40_000_000)
    assert sum(h.stats.frames_in.values()) >= 1


# -- two hosts over an in-memory wire ---------------------------------------------------------


def exchange(a: Host, b: Host, now: int, seen: list[object] | None = None) -> bool:
    """Deliver every frame each host has to send to the other; True if any moved. `seen`
    collects each frame, decoded, in the order it crossed."""
    moved = False
    for src, dst in ((a, b), (b, a)):
        for frame in frames_out(src, now):
            if seen is not None:
                seen.append(decode_ethernet(frame))
            dst.receive_frame(frame, now)
            moved = True
    return moved


def run_until(
    a: Host,
    b: Host,
    done: Callable[[], bool],
    now: int = 0,
    seen: list[object] | None = None,
    *,
    rounds: int = 100_000,
) -> int:
    """Run the wire (10 us per exchange, jumping to timers when idle) until `done()`."""
    for _ in range(rounds):
        if done():
            return now
        if exchange(a, b, now, seen):
            now += 10
            continue
        deadlines = [d for d in (a.next_deadline(), b.next_deadline()) if d is not None]
        if not deadlines:
            raise AssertionError("wire is idle and no timer is set")
        now = max(now + 1, min(deadlines))
        a.on_timer(now)
        b.on_timer(now)
    raise AssertionError("wire did not get there")


def test_two_hosts_resolve_each_other_handshake_and_move_data_both_ways() -> None:
    client = Host(OUR_MAC, OUR_IP, 24, None, now=0)
    server = Host(PEER_MAC, PEER_IP, 24, None, now=0, tcp=TcpEndpoint(PEER_IP, rng_seed=1))
    listener = server.tcp.listen(7)
    conn = client.tcp.connect(PEER_IP, 7, 0)
    accepted: list[Connection] = []

    def handshake_done() -> bool:
        c = listener.accept()
        if c is not None:
            accepted.append(c)
        return conn.state is State.ESTABLISHED and bool(accepted)

    now = run_until(client, server, handshake_done)
    peer = accepted[0]
    up = bytes(range(256)) * 1000
    down = b"reply" * 30_000
    sent = [0, 0]
    got_up = bytearray()
    got_down = bytearray()

    def transfer_done() -> bool:
        if sent[0] < len(up):
            sent[0] += conn.send(up[sent[0] :], now)
        if sent[1] < len(down):
            sent[1] += peer.send(down[sent[1] :], now)
        got_up.extend(peer.read())
        got_down.extend(conn.read())
        return len(got_up) == len(up) and len(got_down) == len(down)

    now = run_until(client, server, transfer_done, now)
    assert bytes(got_up) == up
    assert bytes(got_down) == down
    conn.close(now)
    now = run_until(client, server, lambda: peer.state is State.CLOSE_WAIT, now)
    peer.close(now)
    now = run_until(
        client,
        server,
        lambda: conn.state is State.TIME_WAIT and peer.state is State.CLOSED,
        now,
    )
    assert client.arp.lookup(PEER_IP, now) == PEER_MAC
    assert server.arp.lookup(OUR_IP, now) == OUR_MAC
    assert client.decode_stats.dropped == server.decode_stats.dropped == 0
    assert client.stats.frames_in["tcp"] > 100


def test_fragmentation_needed_makes_the_connection_send_smaller_segments() -> None:
    """RFC 1191 6.5: after "fragmentation needed, MTU 1280" every new segment fits 1280 bytes."""
    client = Host(OUR_MAC, OUR_IP, 24, None, now=0)
    server = Host(PEER_MAC, PEER_IP, 24, None, now=0, tcp=TcpEndpoint(PEER_IP, rng_seed=1))
    listener = server.tcp.listen(7)
    conn = client.tcp.connect(PEER_IP, 7, 0)
    accepted: list[Connection] = []

    def handshake_done() -> bool:
        c = listener.accept()
        if c is not None:
            accepted.append(c)
        return conn.state is State.ESTABLISHED and bool(accepted)

    now = run_until(client, server, handshake_done)
    peer = accepted[0]
    # Both SYNs offered 1460; timestamps take 12 bytes of each segment.
    assert conn.effective_mss == 1448
    quoted = quoted_tcp(conn.local_port, 7, conn.snd_una)
    client.receive_frame(ip_frame(ipv4(PEER_IP, OUR_IP, 1, icmp(3, 4, 1280, quoted))), now)
    assert conn.effective_mss == 1280 - 20 - 20 - 12
    data = bytes(range(256)) * 200
    sent = conn.send(data, now)
    got = bytearray()
    sizes: list[int] = []
    for _ in range(10_000):
        for frame in frames_out(client, now):
            decoded_frame = decode_ethernet(frame)
            if isinstance(decoded_frame, TcpFrame):
                sizes.append(len(decoded_frame.segment.payload))
                assert len(frame) - 14 <= 1280
            server.receive_frame(frame, now)
        for frame in frames_out(server, now):
            client.receive_frame(frame, now)
        got += peer.read()
        if len(got) == sent:
            break
        if sent < len(data):
            sent += conn.send(data[sent:], now)
        now += 1000
        client.on_timer(now)
        server.on_timer(now)
    assert bytes(got) == data
    assert max(sizes) == 1228  # full segments of the new size: 1280-byte IP packets


def test_a_path_mtu_learned_on_one_connection_applies_to_the_next_one() -> None:
    client = Host(OUR_MAC, OUR_IP, 24, None, now=0)
    server = Host(PEER_MAC, PEER_IP, 24, None, now=0, tcp=TcpEndpoint(PEER_IP, rng_seed=1))
    server.tcp.listen(7)
    first = client.tcp.connect(PEER_IP, 7, 0)
    now = run_until(client, server, lambda: first.state is State.ESTABLISHED)
    quoted = quoted_tcp(first.local_port, 7, first.snd_una)
    client.receive_frame(ip_frame(ipv4(PEER_IP, OUR_IP, 1, icmp(3, 4, 1280, quoted))), now)
    second = client.tcp.connect(PEER_IP, 7, now)
    now = run_until(client, server, lambda: second.state is State.ESTABLISHED, now)
    assert second.effective_mss == 1280 - 20 - 20 - 12
