"""`Host.ping`: our own ICMP echo requests, matched replies with their RTT, all in memory.

Two sans-IO hosts face each other: the one that pings, and one that answers (the host answers
echo requests already, tests/test_host.py), so the whole exchange, ARP included, is real frames.
"""

from __future__ import annotations

import socket
import time

import pytest

from lab.host import EchoReply, Host
from lab.host.host import MAX_OUTSTANDING_PINGS
from lab.link.socketpair import SocketPairLink
from lab.runtime import Runtime, Timeout
from lab.wire import fast
from lab.wire.fast import decode_ethernet
from lab.wire.frame import IPPROTO_ICMP, ArpFrame, IcmpFrame, Ipv4Header


def frames_out(host: Host, now: int) -> list[bytes]:
    """The bytes of what `host` sends now (`Host.outgoing_frames` without the transitions)."""
    return [frame.data for frame in host.outgoing_frames(now)]


A_MAC, A_IP = "02:00:00:00:00:0a", "198.18.0.10"
B_MAC, B_IP = "02:00:00:00:00:0b", "198.18.0.11"


def deliver(src: Host, dst: Host, now: int) -> int:
    """Hand every frame `src` has to send to `dst` at `now`; returns how many moved."""
    frames = frames_out(src, now)
    for frame in frames:
        dst.receive_frame(frame, now)
    return len(frames)


def resolved_pair() -> tuple[Host, Host]:
    """Two hosts past their gratuitous ARP that know each other's MAC."""
    a, b = Host(A_MAC, A_IP, 24, None, now=0), Host(B_MAC, B_IP, 24, None, now=0)
    frames_out(a, 0)
    frames_out(b, 0)
    a.ping(B_IP, 1, 0, b"", 0)
    for _ in range(3):  # ARP request, ARP reply and echo request, echo reply
        deliver(a, b, 0)
        deliver(b, a, 0)
    assert a.echo_replies()
    return a, b


@pytest.mark.parametrize("codec", ["fast", "scapy"])
def test_ping_queues_an_echo_request_with_identifier_sequence_and_data(codec: str) -> None:
    a = Host(A_MAC, A_IP, 24, None, now=0, codec=codec, gratuitous_arp=False)
    a.arp.learn(B_IP, B_MAC, 0)
    a.ping(B_IP, 0x1234, 7, b"abc", 5)
    (frame,) = [decode_ethernet(f) for f in frames_out(a, 5)]
    assert isinstance(frame, IcmpFrame)
    assert (frame.icmp_type, frame.code, frame.rest) == (8, 0, 0x1234 << 16 | 7)
    assert frame.payload == b"abc"
    assert (frame.ip.src, frame.ip.dst, frame.eth_dst) == (A_IP, B_IP, B_MAC)
    assert frame.ip.dont_fragment


def test_ping_to_an_unknown_neighbour_asks_arp_then_reports_the_reply_with_its_rtt() -> None:
    a, b = Host(A_MAC, A_IP, 24, None, now=0), Host(B_MAC, B_IP, 24, None, now=0)
    frames_out(a, 0)
    frames_out(b, 0)
    a.ping(B_IP, 42, 1, b"lab ping", 1_000)
    first = [decode_ethernet(f) for f in frames_out(a, 1_000)]
    assert [type(f) for f in first] == [ArpFrame]  # the echo request waits for the answer
    for frame in first:
        b.receive_frame(fast.encode(frame), 1_000)
    deliver(b, a, 1_200)  # ARP reply: the echo request leaves
    deliver(a, b, 1_300)
    assert a.echo_replies() == []
    deliver(b, a, 1_500)  # echo reply
    (reply,) = a.echo_replies()
    assert reply == EchoReply(B_IP, 42, 1, b"lab ping", 64, 1_000, 1_500)
    assert reply.rtt == 500
    assert a.echo_replies() == []  # drained
    assert b.stats.frames_out["icmp_echo_reply"] == 1


def test_a_duplicate_or_unsolicited_echo_reply_is_dropped_and_counted() -> None:
    a, b = resolved_pair()
    a.ping(B_IP, 9, 3, b"x", 10)
    deliver(a, b, 10)
    replies = frames_out(b, 20)
    for frame in replies + replies:  # the same reply twice
        a.receive_frame(frame, 20)
    assert [r.seq for r in a.echo_replies()] == [3]
    assert a.stats.drops["icmp_echo_reply_unexpected"] == 1


def test_a_reply_must_come_from_the_address_that_was_pinged() -> None:
    a, _ = resolved_pair()
    a.ping(B_IP, 5, 5, b"", 0)
    frames_out(a, 0)
    header = Ipv4Header(src="198.18.0.12", dst=A_IP, protocol=IPPROTO_ICMP)
    forged = IcmpFrame("02:00:00:00:00:0c", A_MAC, header, 0, 0, 5 << 16 | 5, b"")
    a.receive_frame(fast.encode(forged), 10)
    assert a.echo_replies() == []
    assert a.stats.drops["icmp_echo_reply_unexpected"] == 1


def test_outstanding_pings_are_bounded_and_the_oldest_is_forgotten() -> None:
    a, b = resolved_pair()
    count = MAX_OUTSTANDING_PINGS + 1
    for seq in range(count):
        a.ping(B_IP, 77, seq, b"", 100)
    deliver(a, b, 100)
    deliver(b, a, 200)
    replies = a.echo_replies()
    assert len(replies) == MAX_OUTSTANDING_PINGS
    assert 0 not in {r.seq for r in replies}
    assert a.stats.drops["icmp_echo_reply_unexpected"] == 1


def test_ping_refuses_fields_outside_16_bits_and_requests_larger_than_the_mtu() -> None:
    a = Host(A_MAC, A_IP, 24, None, now=0)
    with pytest.raises(ValueError, match="16-bit"):
        a.ping(B_IP, 0x10000, 0, b"", 0)
    with pytest.raises(ValueError, match="16-bit"):
        a.ping(B_IP, 0, -1, b"", 0)
    with pytest.raises(ValueError, match="MTU"):
        a.ping(B_IP, 0, 0, bytes(1500 - 28 + 1), 0)
    a.ping(B_IP, 0, 0, bytes(1500 - 28), 0)  # exactly fits
    assert a.stats.frames_out["icmp_echo_request"] == 1


def test_ping_to_a_neighbour_that_never_answers_arp_is_reported_unreachable() -> None:
    a = Host(A_MAC, A_IP, 24, None, now=0)
    a.ping(B_IP, 1, 1, b"", 0)
    frames = [decode_ethernet(f) for f in frames_out(a, 0)]
    assert any(isinstance(f, ArpFrame) and f.target_ip == B_IP for f in frames)
    now = 0
    while (deadline := a.next_deadline()) is not None:
        now = deadline
        a.on_timer(now)
        frames_out(a, now)
    (error,) = a.errors()
    assert (error.remote_ip, error.code, error.from_arp) == (B_IP, 1, True)
    assert a.echo_replies() == []


# -- through the runtime (blocking API) ------------------------------------------------------


def test_runtime_ping_returns_the_matched_reply_and_times_out_without_one() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    now = time.monotonic_ns() // 1000
    a = Host(A_MAC, A_IP, 24, None, now=now)
    b = Host(B_MAC, B_IP, 24, None, now=now)
    try:
        with Runtime(a, SocketPairLink(left)) as ra, Runtime(b, SocketPairLink(right)):
            replies = [ra.ping(B_IP, ident=3, seq=s, payload=b"p%d" % s, timeout=5) for s in (1, 2)]
            assert [(r.src, r.seq, r.payload) for r in replies] == [
                (B_IP, 1, b"p1"),
                (B_IP, 2, b"p2"),
            ]
            assert all(r.rtt >= 0 for r in replies)
            with pytest.raises(Timeout):  # nobody has .99: ARP is still asking when time is up
                ra.ping("198.18.0.99", ident=3, seq=3, timeout=0.2)
    finally:
        left.close()
        right.close()
