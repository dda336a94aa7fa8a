"""One-line frame summaries read like tcpdump, and Neighbor Discovery like ARP."""

from __future__ import annotations

from lab.viz.frames import describe_frame
from lab.wire import fast
from lab.wire.frame import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    ArpFrame,
    Dropped,
    DropReason,
    IcmpFrame,
    Icmpv6Frame,
    Ipv4Header,
    Ipv6Header,
    NeighborAdvertisement,
    NeighborSolicitation,
    OtherFrame,
    TcpFrame,
)
from lab.wire.segment import Flags, Segment

A, B = "02:00:00:00:00:01", "02:00:00:00:00:02"
ND = Ipv6Header("2001:2::1", "ff02::1:ff00:2", 255, IPPROTO_ICMPV6)
ICMP6 = Ipv6Header("2001:2::1", "2001:2::2", next_header=IPPROTO_ICMPV6)


def test_neighbor_discovery_reads_like_arp() -> None:
    ns = NeighborSolicitation(A, "33:33:ff:00:00:02", ND, "2001:2::2", A)
    assert describe_frame(ns) == f"NS who has 2001:2::2 tell 2001:2::1 ({A})"
    dad = NeighborSolicitation(A, "33:33:ff:00:00:02", Ipv6Header("::", ND.dst), "2001:2::2")
    assert describe_frame(dad) == "NS who has 2001:2::2 (duplicate address detection)"
    na = NeighborAdvertisement(B, A, ND, "2001:2::2", solicited=True, target_lladdr=B)
    assert describe_frame(na) == f"NA 2001:2::2 is at {B} [solicited, override]"
    bare = NeighborAdvertisement(B, A, ND, "2001:2::2", override=False)
    assert describe_frame(bare) == "NA 2001:2::2"
    request = ArpFrame(
        A, "ff:ff:ff:ff:ff:ff", 1, A, "198.18.0.1", "00:00:00:00:00:00", "198.18.0.2"
    )
    assert describe_frame(request) == "ARP who has 198.18.0.2 tell 198.18.0.1"
    reply = ArpFrame(B, A, 2, B, "198.18.0.2", A, "198.18.0.1")
    assert describe_frame(reply) == f"ARP 198.18.0.2 is at {B}"


def test_tcp_and_icmp_lines_name_the_family() -> None:
    seg = Segment(40000, 21, 7, 0, Flags.SYN, 64240)
    v6 = TcpFrame(A, B, Ipv6Header("2001:2::1", "2001:2::2"), seg)
    assert (
        describe_frame(v6)
        == "IP6 [2001:2::1]:40000 > [2001:2::2]:21 [S] seq=7 ack=0 win=64240 len=0"
    )
    v4 = TcpFrame(A, B, Ipv4Header("198.18.0.1", "198.18.0.2"), seg)
    assert describe_frame(v4).startswith("IP 198.18.0.1:40000 > 198.18.0.2:21 [S]")
    echo = Icmpv6Frame(A, B, ICMP6, 128, 0, 0x00070001, b"ping")
    assert describe_frame(echo) == "ICMP6 2001:2::1 > 2001:2::2: echo request id=7 seq=1 len=4"
    too_big = Icmpv6Frame(A, B, ICMP6, 2, 0, 1280, b"")
    assert describe_frame(too_big) == "ICMP6 2001:2::1 > 2001:2::2: packet too big, mtu 1280"
    port = Icmpv6Frame(A, B, ICMP6, 1, 4, 0, b"")
    assert (
        describe_frame(port)
        == "ICMP6 2001:2::1 > 2001:2::2: destination unreachable, port unreachable"
    )
    frag = IcmpFrame(
        A, B, Ipv4Header("198.18.0.1", "198.18.0.2", protocol=IPPROTO_ICMP), 3, 4, 1400, b""
    )
    assert describe_frame(frag).endswith("fragmentation needed (next-hop MTU 1400)")


def test_other_frames_and_drops_say_what_they_are() -> None:
    assert describe_frame(OtherFrame(A, B, 0x88CC, None)) == "ethertype 0x88cc"
    assert describe_frame(OtherFrame(A, B, 0x86DD, 17)) == "IP6 protocol 17"
    drop = Dropped(DropReason.BAD_NDP, "hop limit 254, not 255")
    assert describe_frame(drop) == "dropped: bad_ndp (hop limit 254, not 255)"


def test_every_decoded_v6_frame_has_a_line() -> None:
    na = NeighborAdvertisement(B, A, ND, "2001:2::2", target_lladdr=B)
    raw = fast.encode(na)
    assert describe_frame(fast.decode_ethernet(raw)) == f"NA 2001:2::2 is at {B} [override]"
    hop_254 = raw[: 14 + 7] + b"\xfe" + raw[14 + 8 :]
    assert describe_frame(fast.decode_ethernet(hop_254)).startswith(
        "dropped: bad_ndp (hop limit 254"
    )
