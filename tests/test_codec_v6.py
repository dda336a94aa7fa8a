"""IPv6 frames: both codecs agree byte for byte, decode what they encode, and drop bad input."""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec import ETH, U8, U32, macs, same_verdict, segments, with_canonical_options

from lab.capture.writer import PacketRecord, pcap_bytes
from lab.wire import fast, fast_ipv6, mixed
from lab.wire import scapy_codec as sc
from lab.wire.checksum import internet_checksum, ones_complement_sum
from lab.wire.frame import (
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
from lab.wire.options import MaxSegmentSize, NoOperation, SackPermitted, Timestamps, WindowScale
from lab.wire.segment import Flags, Segment

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCAPY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DECODERS = [fast.decode_ethernet, sc.decode_ethernet]
V6 = ETH + 40  # where the upper layer starts in a frame without extension headers

# ---------------------------------------------------------------------------------------------
# Strategies


def _v6(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, raw)


ipv6s = st.binary(min_size=16, max_size=16).map(_v6)
unicast_ipv6s = st.binary(min_size=16, max_size=16).filter(lambda b: b[0] != 0xFF).map(_v6)
multicast_ipv6s = st.binary(min_size=15, max_size=15).map(lambda b: _v6(b"\xff" + b))


def v6_headers(next_header: int, hop_limit: st.SearchStrategy[int] = U8) -> st.SearchStrategy:
    return st.builds(
        Ipv6Header,
        src=ipv6s,
        dst=ipv6s,
        hop_limit=hop_limit,
        next_header=st.just(next_header),
        traffic_class=U8,
        flow_label=st.integers(0, 2**20 - 1),
    )


tcp_frames = st.builds(TcpFrame, macs, macs, v6_headers(IPPROTO_TCP), segments)
icmp_headers = v6_headers(IPPROTO_ICMPV6)


@st.composite
def quoted_packets(draw: st.DrawFn) -> bytes:
    """As much of an offending packet as fits in the minimum MTU (RFC 4443 2.4 (c))."""
    packet = fast.encode(draw(tcp_frames))[ETH:]
    return packet[: 1280 - 40 - 8]


echo_frames = st.builds(
    Icmpv6Frame,
    macs,
    macs,
    icmp_headers,
    st.sampled_from((128, 129)),
    st.just(0),
    U32,
    st.binary(max_size=1452),
)
too_big_frames = st.builds(
    Icmpv6Frame,
    macs,
    macs,
    icmp_headers,
    st.just(2),
    st.just(0),
    st.integers(1280, 65535) | U32,
    quoted_packets(),
)
error_frames = st.builds(
    Icmpv6Frame,
    macs,
    macs,
    icmp_headers,
    st.sampled_from((1, 3)),
    st.integers(0, 6),
    st.just(0),
    quoted_packets(),
) | st.builds(
    Icmpv6Frame, macs, macs, icmp_headers, st.just(4), st.integers(0, 3), U32, quoted_packets()
)
icmpv6_frames = echo_frames | too_big_frames | error_frames

nd_headers = v6_headers(IPPROTO_ICMPV6, st.just(255))


@st.composite
def solicitations(draw: st.DrawFn) -> NeighborSolicitation:
    ip = draw(nd_headers)
    target = draw(unicast_ipv6s)
    if draw(st.booleans()) or ip.src == "::":  # duplicate address detection: to the group
        group = fast_ipv6.solicited_node_multicast(target)
        return NeighborSolicitation(
            draw(macs), draw(macs), replace(ip, src="::", dst=group), target
        )
    return NeighborSolicitation(draw(macs), draw(macs), ip, target, draw(st.none() | macs))


@st.composite
def advertisements(draw: st.DrawFn) -> NeighborAdvertisement:
    ip = draw(nd_headers)
    solicited = draw(st.booleans()) and socket.inet_pton(socket.AF_INET6, ip.dst)[0] != 0xFF
    return NeighborAdvertisement(
        draw(macs),
        draw(macs),
        ip,
        draw(unicast_ipv6s),
        router=draw(st.booleans()),
        solicited=solicited,
        override=draw(st.booleans()),
        target_lladdr=draw(st.none() | macs),
    )


nd_frames = solicitations() | advertisements()
v6_frames: st.SearchStrategy[Frame] = tcp_frames | icmpv6_frames | nd_frames


def canonical(frame: Frame) -> Frame:
    return with_canonical_options(frame) if isinstance(frame, TcpFrame) else frame


# ---------------------------------------------------------------------------------------------
# Helpers


def an_ns(**ip_changes: object) -> NeighborSolicitation:
    ip = Ipv6Header("2001:2::1", "ff02::1:ff00:2", 255, IPPROTO_ICMPV6)
    return NeighborSolicitation(
        "02:00:00:00:00:01",
        "33:33:ff:00:00:02",
        replace(ip, **ip_changes),  # type: ignore[arg-type]
        "2001:2::2",
        "02:00:00:00:00:01",
    )


def an_na() -> NeighborAdvertisement:
    ip = Ipv6Header("2001:2::2", "2001:2::1", 255, IPPROTO_ICMPV6)
    return NeighborAdvertisement(
        "02:00:00:00:00:02",
        "02:00:00:00:00:01",
        ip,
        "2001:2::2",
        solicited=True,
        target_lladdr="02:00:00:00:00:02",
    )


def a_v6_tcp_frame(payload: bytes = b"data") -> TcpFrame:
    return TcpFrame(
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        Ipv6Header("2001:2::1", "2001:2::2"),
        Segment(40000, 21, 1000, 2000, Flags.ACK | Flags.PSH, 502, (), payload),
    )


def with_message(frame: bytes, message: bytes, next_header: int = IPPROTO_ICMPV6) -> bytes:
    """The frame's Ethernet and IPv6 header carrying `message` (its checksum field recomputed
    for ICMPv6, kept for anything else), the payload length adjusted."""
    header = bytearray(frame[ETH:V6])
    struct.pack_into("!H", header, 4, len(message))
    header[6] = next_header
    if next_header == IPPROTO_ICMPV6:
        pseudo = bytes(header[8:40]) + struct.pack("!IxxxB", len(message), IPPROTO_ICMPV6)
        zeroed = message[:2] + b"\0\0" + message[4:]
        csum = internet_checksum(zeroed, ones_complement_sum(pseudo))
        message = message[:2] + csum.to_bytes(2, "big") + message[4:]
    return frame[:ETH] + bytes(header) + message


def with_extensions(raw: bytes, kinds: list[int], body: bytes = bytes(6)) -> bytes:
    """`raw` (Ethernet + IPv6 + upper layer) with extension headers of `kinds` inserted."""
    upper = raw[V6:]
    chain = b""
    for i, _kind in enumerate(kinds):
        following = kinds[i + 1] if i + 1 < len(kinds) else raw[ETH + 6]
        chain += bytes((following, (len(body) + 2) // 8 - 1)) + body
    header = bytearray(raw[ETH:V6])
    struct.pack_into("!H", header, 4, len(chain) + len(upper))
    header[6] = kinds[0]
    return raw[:ETH] + bytes(header) + chain + upper


def dropped(result: object, reason: DropReason) -> bool:
    return isinstance(result, Dropped) and result.reason is reason


# ---------------------------------------------------------------------------------------------
# Fast == Scapy


@SCAPY
@given(v6_frames)
def test_fast_and_scapy_encode_every_v6_frame_to_the_same_bytes(frame: Frame) -> None:
    raw = fast.encode(frame)
    assert sc.encode(frame) == raw
    assert mixed.encode(frame) == raw


@SCAPY
@given(v6_frames)
def test_each_codec_decodes_what_the_other_encoded(frame: Frame) -> None:
    frame = canonical(frame)
    assert sc.decode_ethernet(fast.encode(frame)) == frame
    assert fast.decode_ethernet(sc.encode(frame)) == frame
    assert sc.decode_ethernet(sc.encode(frame)) == frame


@SCAPY
@given(
    st.builds(
        fast.Ipv6Fragment,
        macs,
        macs,
        v6_headers(IPPROTO_TCP) | icmp_headers,
        U32,
        st.integers(0, 8000).map(lambda n: n * 8),
        st.booleans(),
        st.binary(max_size=200),
    ).map(lambda f: replace(f, payload=f.payload[: len(f.payload) // 8 * 8]) if f.more else f)
)
def test_fast_and_scapy_encode_v6_fragments_to_the_same_bytes(
    fragment: fast.Ipv6Fragment,
) -> None:
    raw = fast.encode_ipv6_fragment(fragment)
    assert sc.encode_ipv6_fragment(fragment) == raw
    assert fast.decode_ipv6_fragment(raw) == fragment
    for decode in DECODERS:
        assert dropped(decode(raw), DropReason.IP_FRAGMENT)


@SCAPY
@given(
    v6_frames,
    st.lists(st.tuples(st.integers(0, 10_000), U8), max_size=3),
    st.integers(0, 2000),
    st.booleans(),
)
def test_fast_and_scapy_decoders_agree_on_damaged_v6_frames(
    frame: Frame, edits: list[tuple[int, int]], cut: int, verify: bool
) -> None:
    damaged = bytearray(fast.encode(frame))
    for position, value in edits:
        damaged[position % len(damaged)] = value
    raw = bytes(damaged[: max(cut, len(damaged) // 2)])
    assert same_verdict(
        fast.decode_ethernet(raw, verify_checksums=verify),
        sc.decode_ethernet(raw, verify_checksums=verify),
    )


def test_scapy_names_every_v6_field_for_notebooks() -> None:
    text = sc.show(an_ns())
    assert "###[ ICMPv6 Neighbor Discovery - Neighbor Solicitation ]###" in text
    assert "tgt       = 2001:2::2" in text
    assert "lladdr    = 02:00:00:00:00:01" in text
    assert "hlim      = 255" in text
    na = sc.show(an_na())
    assert "S         = 1" in na


# ---------------------------------------------------------------------------------------------
# Round trips through the fast codec


@FAST
@given(v6_frames)
def test_fast_codec_decodes_every_v6_frame_it_encodes(frame: Frame) -> None:
    frame = canonical(frame)
    raw = fast.encode(frame)
    assert fast.decode_ethernet(raw) == frame
    assert fast.decode_ip(raw[ETH:], eth_src=frame.eth_src, eth_dst=frame.eth_dst) == frame


@FAST
@given(v6_frames, st.integers(1, 64))
def test_v6_frames_padded_beyond_their_payload_length_are_trimmed(frame: Frame, extra: int) -> None:
    frame = canonical(frame)
    assert fast.decode_ethernet(fast.encode(frame) + bytes(range(extra))) == frame


@FAST
@given(tcp_frames)
def test_v6_tcp_header_carries_traffic_class_and_flow_label(frame: TcpFrame) -> None:
    raw = fast.encode(frame)
    first = int.from_bytes(raw[ETH : ETH + 4], "big")
    assert first >> 28 == 6
    assert first >> 20 & 0xFF == frame.ip.traffic_class
    assert first & 0xFFFFF == frame.ip.flow_label
    # The pseudo-header (RFC 8200 8.1): 128-bit addresses, 32-bit length, next header 6.
    tcp = raw[V6:]
    pseudo = raw[ETH + 8 : V6] + struct.pack("!IxxxB", len(tcp), IPPROTO_TCP)
    assert internet_checksum(tcp, ones_complement_sum(pseudo)) == 0


def test_neighbor_discovery_bytes_follow_rfc_4861() -> None:
    raw = fast.encode(an_ns())
    assert raw[:6] == bytes.fromhex("3333ff000002")
    assert raw[ETH + 7] == 255  # hop limit
    ns = raw[V6:]
    assert ns[:2] == b"\x87\x00"  # type 135, code 0
    assert ns[8:24] == socket.inet_pton(socket.AF_INET6, "2001:2::2")
    assert ns[24:] == b"\x01\x01\x02\x00\x00\x00\x00\x01"  # source link-layer address option
    na = fast.encode(an_na())[V6:]
    assert na[:2] == b"\x88\x00"
    assert na[4] == 0x60  # S and O set, R clear
    assert na[24:] == b"\x02\x01\x02\x00\x00\x00\x00\x02"


def test_solicited_node_multicast_and_its_mac() -> None:
    assert fast_ipv6.solicited_node_multicast("2001:2::1:2:abcd:ef01") == "ff02::1:ffcd:ef01"
    assert fast_ipv6.ipv6_multicast_mac("ff02::1:ffcd:ef01") == "33:33:ff:cd:ef:01"


def test_tcp_checksum_of_zero_is_a_valid_checksum_not_a_missing_one() -> None:
    # The checksum field is 0 when the one's complement sum is 0xFFFF: choose the last two
    # payload bytes to make it so. Linux sends such segments; they must be accepted.
    frame = a_v6_tcp_frame(b"ab\x00\x00")
    csum = int.from_bytes(fast.encode(frame)[V6 + 16 : V6 + 18], "big")
    zero = replace(frame, segment=replace(frame.segment, payload=b"ab" + csum.to_bytes(2, "big")))
    raw = fast.encode(zero)
    assert raw[V6 + 16 : V6 + 18] == b"\0\0"
    assert fast.decode_ethernet(raw) == zero
    # A 0 that does not verify is a bad checksum like any other.
    wrong = raw[:-1] + bytes((raw[-1] ^ 1,))
    assert dropped(fast.decode_ethernet(wrong), DropReason.BAD_TCP_CHECKSUM)


def test_icmpv6_checksum_is_verified_over_the_pseudo_header() -> None:
    echo = Icmpv6Frame(
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        Ipv6Header("2001:2::1", "2001:2::2", next_header=IPPROTO_ICMPV6),
        128,
        0,
        0x12340001,
        b"ping",
    )
    raw = fast.encode(echo)
    for position in (ETH + 8, ETH + 39, V6 + 2, len(raw) - 1):  # source, destination, message
        damaged = raw[:position] + bytes((raw[position] ^ 0x10,)) + raw[position + 1 :]
        assert dropped(fast.decode_ethernet(damaged), DropReason.BAD_ICMP_CHECKSUM), position
    unchecked = raw[:-1] + bytes((raw[-1] ^ 0x10,))
    assert isinstance(fast.decode_ethernet(unchecked, verify_checksums=False), Icmpv6Frame)
    assert dropped(fast.decode_ethernet(raw[: V6 + 4]), DropReason.BAD_IPV6_PAYLOAD_LENGTH)
    short = with_message(raw, raw[V6 : V6 + 6])
    assert dropped(fast.decode_ethernet(short), DropReason.TRUNCATED_ICMP)


def test_decode_stats_count_icmpv6_and_neighbor_discovery() -> None:
    stats = fast.DecodeStats()
    for frame in (an_ns(), an_na(), a_v6_tcp_frame()):
        stats.count(fast.decode_ethernet(fast.encode(frame)))
    stats.count(fast.decode_ethernet(fast.encode(an_ns(hop_limit=255))[:-3]))
    assert stats.frames == {"ndp": 2, "tcp": 1}
    assert stats.drops == {DropReason.BAD_IPV6_PAYLOAD_LENGTH: 1}


# ---------------------------------------------------------------------------------------------
# Encoder misuse raises


def test_encoders_refuse_v6_values_that_have_no_wire_form() -> None:
    with pytest.raises(ValueError, match="hop limit 255"):
        fast.encode(an_ns(hop_limit=64))
    with pytest.raises(ValueError, match="next header"):
        fast.encode(an_ns(next_header=IPPROTO_TCP))
    for codec in (fast, sc):
        with pytest.raises(ValueError, match="DAD"):
            codec.encode(an_ns(src="::"))
        with pytest.raises(ValueError, match="solicited-node"):
            codec.encode(replace(an_ns(src="::", dst="ff02::1"), source_lladdr=None))
    with pytest.raises(ValueError, match="flow label"):
        fast.encode(replace(a_v6_tcp_frame(), ip=Ipv6Header("::1", "::2", flow_label=2**20)))
    with pytest.raises(ValueError, match="traffic class"):
        fast.encode(replace(a_v6_tcp_frame(), ip=Ipv6Header("::1", "::2", traffic_class=256)))
    fragment = fast.Ipv6Fragment(
        "02:00:00:00:00:01", "02:00:00:00:00:02", an_na().ip, 1, 4, True, b""
    )
    with pytest.raises(ValueError, match="multiple of 8"):
        fast.encode_ipv6_fragment(fragment)
    with pytest.raises(ValueError, match="8k"):
        fast.encode_ipv6_fragment(replace(fragment, offset=8, payload=b"abc"))


# ---------------------------------------------------------------------------------------------
# Malformed input is dropped with a reason, never raised


def test_payload_length_beyond_the_frame_is_dropped() -> None:
    raw = bytearray(fast.encode(a_v6_tcp_frame()))
    for plen in (len(raw) - V6 + 1, 0xFFFF):
        struct.pack_into("!H", raw, ETH + 4, plen)
        for decode in DECODERS:
            assert dropped(decode(bytes(raw)), DropReason.BAD_IPV6_PAYLOAD_LENGTH)


def test_eight_extension_headers_are_skipped_and_a_ninth_is_a_loop() -> None:
    frame = a_v6_tcp_frame()
    raw = fast.encode(frame)
    assert fast.decode_ethernet(with_extensions(raw, [0] + [60] * 7)) == frame
    assert sc.decode_ethernet(with_extensions(raw, [0] + [60] * 7)) == frame
    for chain in ([60] * 9, [0] + [43, 60] * 4, [60] * 200):
        result = fast.decode_ethernet(with_extensions(raw, chain))
        assert dropped(result, DropReason.BAD_EXTENSION_HEADERS), chain
        assert "more than 8" in result.detail  # type: ignore[union-attr]
        scapy = sc.decode_ethernet(with_extensions(raw, chain))
        assert dropped(scapy, DropReason.BAD_EXTENSION_HEADERS), chain


@pytest.mark.parametrize("chain", [[60, 0], [43, 0], [0, 0]])
def test_hop_by_hop_anywhere_but_first_is_dropped(chain: list[int]) -> None:
    raw = with_extensions(fast.encode(a_v6_tcp_frame()), chain)
    result = fast.decode_ethernet(raw)
    assert dropped(result, DropReason.BAD_EXTENSION_HEADERS)
    assert "hop-by-hop" in result.detail  # type: ignore[union-attr]
    assert dropped(sc.decode_ethernet(raw), DropReason.BAD_EXTENSION_HEADERS)


def test_extension_header_cut_by_the_payload_length_is_dropped() -> None:
    raw = with_extensions(fast.encode(a_v6_tcp_frame()), [60])
    for plen in (0, 1, 2, 7):
        cut = bytearray(raw[: V6 + plen])
        struct.pack_into("!H", cut, ETH + 4, plen)
        for decode in DECODERS:
            assert dropped(decode(bytes(cut)), DropReason.BAD_EXTENSION_HEADERS), plen
    long_header = bytearray(raw)
    long_header[V6 + 1] = 50  # (50 + 1) * 8 bytes: past the payload
    for decode in DECODERS:
        assert dropped(decode(bytes(long_header)), DropReason.BAD_EXTENSION_HEADERS)


def test_zero_udp_checksum_over_ipv6_is_dropped_even_unverified() -> None:
    base = fast.encode(a_v6_tcp_frame())
    udp = struct.pack("!HHHH", 5353, 5353, 12, 0) + b"data"
    raw = with_message(base, udp, IPPROTO_UDP)
    with_sum = with_message(base, udp[:6] + b"\x12\x34" + udp[8:], IPPROTO_UDP)
    for decode in DECODERS:
        for verify in (True, False):
            assert dropped(decode(raw, verify_checksums=verify), DropReason.ZERO_CHECKSUM)
        # With extension headers in front, the UDP header is found after them.
        assert dropped(decode(with_extensions(raw, [0, 60])), DropReason.ZERO_CHECKSUM)
        other = decode(with_sum)
        assert other == OtherFrame("02:00:00:00:00:01", "02:00:00:00:00:02", 0x86DD, IPPROTO_UDP)


def _patched(raw: bytes, position: int, value: int) -> bytes:
    return raw[:position] + bytes((value,)) + raw[position + 1 :]


def test_neighbor_discovery_validity_checks_of_rfc_4861() -> None:
    ns = fast.encode(an_ns())
    na = fast.encode(an_na())
    message = ns[V6:]
    dad = fast.encode(replace(an_ns(src="::"), source_lladdr=None))
    cases = {
        # The hop limit is outside the checksum: a forwarded ND message still verifies.
        "hop limit 254": _patched(ns, ETH + 7, 254),
        "code 1": with_message(ns, _patched(message, 1, 1)),
        "option of length 0": with_message(ns, message[:25] + b"\x00" + message[26:]),
        "option past the end": with_message(ns, message[:25] + b"\x02" + message[26:]),
        "option cut": with_message(ns, message + b"\x0e"),
        "lladdr of 14 bytes": with_message(ns, message[:25] + b"\x02" + message[26:] + bytes(8)),
        "fewer than 24 bytes": with_message(ns, message[:20]),
        "multicast target": with_message(ns, message[:8] + b"\xff\x02" + message[10:]),
        "lladdr from ::": with_message(dad, dad[V6:] + message[24:]),
        "DAD to all nodes": with_message(
            dad[: ETH + 24] + socket.inet_pton(socket.AF_INET6, "ff02::1") + dad[V6:], dad[V6:]
        ),
        "solicited NA to multicast": with_message(
            na[: ETH + 24] + socket.inet_pton(socket.AF_INET6, "ff02::1") + na[V6:], na[V6:]
        ),
    }
    for name, raw in cases.items():
        for decode in DECODERS:
            result = decode(raw)
            assert dropped(result, DropReason.BAD_NDP), (name, decode.__module__, result)
            assert dropped(decode(raw, verify_checksums=False), DropReason.BAD_NDP)


def test_unknown_nd_options_are_skipped_and_the_first_lladdr_counts() -> None:
    ns = fast.encode(an_ns())
    nonce = b"\x0e\x01" + bytes(6)  # RFC 7527's nonce option
    second = b"\x01\x01" + bytes.fromhex("0a0b0c0d0e0f")
    raw = with_message(ns, ns[V6 : V6 + 24] + nonce + ns[V6 + 24 :] + second)
    without = with_message(ns, ns[V6 : V6 + 24] + nonce)
    for decode in DECODERS:
        assert decode(raw) == an_ns()
        assert decode(without) == replace(an_ns(), source_lladdr=None)


# ---------------------------------------------------------------------------------------------
# Fragments


def test_fragments_round_trip_and_reassemble_into_the_original_frame() -> None:
    echo = Icmpv6Frame(
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        Ipv6Header("2001:2::1", "2001:2::2", next_header=IPPROTO_ICMPV6, flow_label=7),
        128,
        0,
        0x00010002,
        bytes(range(256)) * 12,
    )
    message = fast.encode(echo)[V6:]
    pieces = fast_ipv6.fragment_ipv6(echo.eth_src, echo.eth_dst, echo.ip, message, 0xABCD)
    assert len(pieces) == 3
    whole = b""
    for piece in pieces:
        raw = fast.encode_ipv6_fragment(piece)
        assert len(raw) - ETH <= 1280
        assert dropped(fast.decode_ethernet(raw), DropReason.IP_FRAGMENT)
        assert fast.decode_ipv6_fragment(raw) == piece
        bare = fast.decode_ipv6_fragment(raw[ETH:], ethernet=False)
        assert bare == replace(piece, eth_src="", eth_dst="")
        assert piece.offset == len(whole)
        whole += piece.payload
    assert [p.more for p in pieces] == [True, True, False]
    packet = fast_ipv6.ipv6_packet(pieces[0].ip, whole)
    assert fast.decode_ip(packet, eth_src=echo.eth_src, eth_dst=echo.eth_dst) == echo


def test_fragment_after_extension_headers_is_found() -> None:
    piece = fast.Ipv6Fragment(
        "02:00:00:00:00:01", "02:00:00:00:00:02", an_na().ip, 77, 1232, False, b"tail"
    )
    raw = with_extensions(fast.encode_ipv6_fragment(piece), [0, 60])
    assert fast.decode_ipv6_fragment(raw) == piece
    assert dropped(fast.decode_ethernet(raw), DropReason.IP_FRAGMENT)


def test_oversized_and_odd_fragments_are_dropped() -> None:
    ip = an_na().ip
    # RFC 8200 4.5: offset + length past 65,535 bytes of reassembled payload.
    big = fast.Ipv6Fragment(
        "02:00:00:00:00:01", "02:00:00:00:00:02", ip, 1, 65528, False, bytes(16)
    )
    raw = fast.encode_ipv6_fragment(big)
    assert dropped(fast.decode_ethernet(raw), DropReason.IP_FRAGMENT)
    result = fast.decode_ipv6_fragment(raw)
    assert dropped(result, DropReason.BAD_IPV6_PAYLOAD_LENGTH)
    assert "65535" in result.detail  # type: ignore[union-attr]
    just_fits = fast.encode_ipv6_fragment(replace(big, payload=bytes(7)))
    assert isinstance(fast.decode_ipv6_fragment(just_fits), fast.Ipv6Fragment)
    # The same limit counts the extension headers in front of the Fragment header.
    assert dropped(
        fast.decode_ipv6_fragment(with_extensions(just_fits, [60])),
        DropReason.BAD_IPV6_PAYLOAD_LENGTH,
    )
    # M set on a fragment whose length is not a multiple of 8.
    odd = bytearray(fast.encode_ipv6_fragment(replace(big, offset=0, payload=bytes(13))))
    odd[V6 + 3] |= 1
    assert dropped(fast.decode_ipv6_fragment(bytes(odd)), DropReason.BAD_IPV6_PAYLOAD_LENGTH)
    # Not a fragment at all, not IPv6, a cut Fragment header.
    not_fragment = fast.decode_ipv6_fragment(fast.encode(an_na()))
    assert dropped(not_fragment, DropReason.BAD_EXTENSION_HEADERS)
    assert isinstance(fast.decode_ipv6_fragment(b"\0" * 12 + b"\x08\x00" + bytes(40)), Dropped)
    cut = bytearray(raw[: V6 + 4])
    struct.pack_into("!H", cut, ETH + 4, 4)
    assert dropped(fast.decode_ethernet(bytes(cut)), DropReason.BAD_EXTENSION_HEADERS)
    assert dropped(fast.decode_ipv6_fragment(bytes(cut)), DropReason.BAD_EXTENSION_HEADERS)


# ---------------------------------------------------------------------------------------------
# Damage


@FAST
@given(v6_frames, st.data())
def test_any_bit_flip_after_the_first_eight_bytes_of_ipv6_is_caught(
    frame: Frame, data: st.DataObject
) -> None:
    # Version/class/flow, payload length, next header and hop limit are not covered by any
    # checksum; the addresses are, through the pseudo-header, and so is the whole message.
    raw = fast.encode(frame)
    bit = data.draw(st.integers((ETH + 8) * 8, len(raw) * 8 - 1))
    damaged = bytearray(raw)
    damaged[bit // 8] ^= 1 << (bit % 8)
    assert isinstance(fast.decode_ethernet(bytes(damaged)), Dropped)


@FAST
@given(icmpv6_frames | nd_frames)
def test_every_truncation_of_a_v6_frame_is_dropped_with_the_right_reason(frame: Frame) -> None:
    raw = fast.encode(frame)
    for cut in range(len(raw)):
        result = fast.decode_ethernet(raw[:cut])
        if cut < ETH:
            assert dropped(result, DropReason.TRUNCATED_ETHERNET)
        elif cut < V6:
            assert dropped(result, DropReason.TRUNCATED_IP)
        else:
            assert dropped(result, DropReason.BAD_IPV6_PAYLOAD_LENGTH)


# ---------------------------------------------------------------------------------------------
# Fuzz


NEXT_HEADERS = (0, 6, 17, 43, 44, 58, 59, 60)


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=160), st.sampled_from(NEXT_HEADERS), U8, st.booleans())
def test_random_bytes_after_an_ipv6_ethertype_never_raise(
    body: bytes, next_header: int, hop_limit: int, plausible: bool
) -> None:
    stats = fast.DecodeStats()
    raws = [bytes(12) + b"\x86\xdd" + body]
    if plausible:
        # A real header with a payload length that fits, so the random bytes reach the
        # extension-header, fragment, ICMPv6 and ND parsers.
        header = struct.pack("!IHBB", 6 << 28, len(body), next_header, hop_limit) + bytes(32)
        raws.append(bytes(12) + b"\x86\xdd" + header + body)
    for raw in raws:
        for verify in (True, False):
            result = stats.count(fast.decode_ethernet(raw, verify_checksums=verify))
            assert isinstance(result, (Dropped, *Frame.__args__))  # type: ignore[attr-defined]
            fragment = fast.decode_ipv6_fragment(raw, verify_checksums=verify)
            assert isinstance(fragment, fast.Ipv6Fragment | Dropped)
    assert stats.dropped + stats.decoded == 2 * len(raws)


@FAST
@given(v6_frames, st.lists(st.tuples(st.integers(0, 10_000), U8), min_size=1, max_size=8))
def test_mutated_v6_frames_never_raise(frame: Frame, edits: list[tuple[int, int]]) -> None:
    damaged = bytearray(fast.encode(frame))
    for position, value in edits:
        damaged[position % len(damaged)] = value
    for verify in (True, False):
        result = fast.decode_ethernet(bytes(damaged), verify_checksums=verify)
        assert isinstance(result, (Dropped, *Frame.__args__))  # type: ignore[attr-defined]
        assert isinstance(fast.decode_ipv6_fragment(bytes(damaged)), fast.Ipv6Fragment | Dropped)


# ---------------------------------------------------------------------------------------------
# A second opinion: Wireshark's dissectors


def realistic_v6_frames() -> list[bytes]:
    """One of each v6 frame the stack sends, as a conversation would carry them."""
    client, server = "02:00:00:00:00:02", "02:00:00:00:00:01"
    c_ip, s_ip = "2001:2::2", "2001:2::1"
    group = fast_ipv6.solicited_node_multicast(s_ip)
    nd = Ipv6Header(c_ip, group, 255, IPPROTO_ICMPV6)
    icmp = Ipv6Header(s_ip, c_ip, next_header=IPPROTO_ICMPV6, flow_label=0x12345)
    syn = Segment(
        40000,
        21,
        1000,
        0,
        Flags.SYN,
        64800,
        (MaxSegmentSize(1440), SackPermitted(), Timestamps(1, 0), NoOperation(), WindowScale(7)),
    )
    data = Segment(
        40000,
        21,
        1001,
        5001,
        Flags.ACK | Flags.PSH,
        502,
        (NoOperation(), NoOperation(), Timestamps(2, 9)),
        b"USER anonymous\r\n",
    )
    tcp_ip = Ipv6Header(c_ip, s_ip, traffic_class=0x10, flow_label=0xBEEF)
    values: list[Frame] = [
        NeighborSolicitation(
            client, fast_ipv6.ipv6_multicast_mac(group), replace(nd, src="::"), s_ip
        ),
        NeighborSolicitation(client, fast_ipv6.ipv6_multicast_mac(group), nd, s_ip, client),
        NeighborAdvertisement(
            server,
            client,
            Ipv6Header(s_ip, c_ip, 255, IPPROTO_ICMPV6),
            s_ip,
            solicited=True,
            target_lladdr=server,
        ),
        TcpFrame(client, server, tcp_ip, syn),
        TcpFrame(client, server, tcp_ip, data),
        Icmpv6Frame(
            client, server, replace(icmp, src=c_ip, dst=s_ip), 128, 0, 0x00010001, b"x" * 56
        ),
        Icmpv6Frame(server, client, icmp, 129, 0, 0x00010001, b"x" * 56),
    ]
    raws = [fast.encode(v) for v in values]
    big = fast.encode(TcpFrame(client, server, tcp_ip, replace(data, payload=bytes(1400))))
    raws.append(fast.encode(Icmpv6Frame(server, client, icmp, 2, 0, 1280, big[ETH : ETH + 1232])))
    raws.append(fast.encode(Icmpv6Frame(server, client, icmp, 1, 4, 0, big[ETH : ETH + 200])))
    echo = fast.encode(
        Icmpv6Frame(
            client, server, replace(icmp, src=c_ip, dst=s_ip), 128, 0, 2, bytes(range(256)) * 8
        )
    )
    raws += [
        fast.encode_ipv6_fragment(piece)
        for piece in fast_ipv6.fragment_ipv6(
            client, server, replace(icmp, src=c_ip, dst=s_ip), echo[V6:], 0x1234
        )
    ]
    return raws


def _tshark(capture: Path, *args: str) -> str:
    result = subprocess.run(
        ["tshark", "-r", str(capture), "-o", "tcp.check_checksum:TRUE", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_finds_no_fault_in_the_v6_frames_we_send(tmp_path: Path) -> None:
    raws = realistic_v6_frames()
    capture = tmp_path / "v6.pcap"
    capture.write_bytes(pcap_bytes([PacketRecord(i * 1000, raw) for i, raw in enumerate(raws)]))
    expert = _tshark(capture, "-q", "-z", "expert")
    assert "Errors (" not in expert, expert
    assert "Warns (" not in expert, expert
    assert "Malformed" not in expert, expert
    fields = _tshark(
        capture,
        "-T",
        "fields",
        "-e",
        "icmpv6.type",
        "-e",
        "icmpv6.checksum.status",
        "-e",
        "tcp.checksum.status",
        "-e",
        "icmpv6.nd.ns.target_address",
        "-e",
        "icmpv6.opt.linkaddr",
        "-e",
        "ipv6.flow",
        "-E",
        "occurrence=f",
    )
    rows = [line.split("\t") for line in fields.splitlines()]
    assert [r[0] for r in rows[:3]] == ["135", "135", "136"]
    assert rows[0][3] == rows[1][3] == "2001:2::1"
    assert rows[1][4] == "02:00:00:00:00:02"
    assert rows[2][4] == "02:00:00:00:00:01"
    assert int(rows[3][5], 16) == 0xBEEF
    # Wireshark's verdict on every checksum it could check (1 = good); the fragments reassemble.
    # (A quoted packet's TCP checksum inside an ICMPv6 error cannot verify: the quote is cut.)
    statuses = [r[1] or r[2] for r in rows if r[1] or r[2]]
    assert set(statuses) == {"1"}, rows
    # Every frame had a checksum checked but the first fragment (checked once reassembled).
    assert [i for i, r in enumerate(rows) if not (r[1] or r[2])] == [len(raws) - 2], rows
    assert _tshark(capture, "-Y", "icmpv6.type == 128 && ipv6.reassembled.length").strip()


@SCAPY
@given(
    st.binary(max_size=120),
    st.sampled_from(NEXT_HEADERS),
    st.sampled_from((64, 255)),
    st.sampled_from((None, 1, 2, 128, 129, 135, 136)),
    st.sampled_from((0, 1)),
    st.binary(min_size=32, max_size=32) | st.just(bytes(32)),
)
def test_scapy_decoder_agrees_with_the_fast_one_on_random_v6_payloads(
    body: bytes,
    next_header: int,
    hop_limit: int,
    icmp_type: int | None,
    code: int,
    addresses: bytes,
) -> None:
    # Both decoders run the same checks in the same order, so random payloads (ND messages with
    # random options included: next header 58, hop limit 255) get the same verdict from both.
    if icmp_type is not None:
        next_header = IPPROTO_ICMPV6
        body = bytes((icmp_type, code)) + body
    header = struct.pack("!IHBB", 6 << 28, len(body), next_header, hop_limit) + addresses
    raw = bytes(12) + b"\x86\xdd" + header + body
    for verify in (True, False):
        assert same_verdict(
            fast.decode_ethernet(raw, verify_checksums=verify),
            sc.decode_ethernet(raw, verify_checksums=verify),
        )
