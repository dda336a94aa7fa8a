"""The fast codec equals the Scapy codec byte for byte, and its decoder never raises."""

from __future__ import annotations

import socket
import struct
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.wire import fast, mixed
from lab.wire import scapy_codec as sc
from lab.wire.checksum import internet_checksum, ones_complement_sum
from lab.wire.frame import (
    BROADCAST_MAC,
    IPPROTO_ICMP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    ArpFrame,
    Dropped,
    DropReason,
    Frame,
    IcmpFrame,
    Ipv4Header,
    Ipv6Header,
    OtherFrame,
    TcpFrame,
)
from lab.wire.options import (
    MAX_OPTIONS_LEN,
    EndOfOptions,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    SackPermitted,
    TcpOption,
    Timestamps,
    UnknownOption,
    WindowScale,
    encode_option,
)
from lab.wire.segment import Flags, Segment

FRAME_TYPES = (TcpFrame, ArpFrame, IcmpFrame, OtherFrame)
ETH = 14
U32 = st.integers(0, 2**32 - 1)
U16 = st.integers(0, 2**16 - 1)
U8 = st.integers(0, 255)

# ---------------------------------------------------------------------------------------------
# Strategies: every frame value the core can emit

macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":")) | st.just(BROADCAST_MAC)
ipv4s = st.binary(min_size=4, max_size=4).map(socket.inet_ntoa)
ipv6s = st.binary(min_size=16, max_size=16).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))

# Kinds we do not model, including kinds Scapy names (14, 15, 19, 25, 28, 29, 34) and the RFC 4727
# experimental ones; 0-5 and 8 are modelled, so an UnknownOption of those kinds cannot round-trip.
unknown_kinds = st.integers(6, 255).filter(lambda k: k != 8)

single_options: st.SearchStrategy[TcpOption] = st.one_of(
    st.just(EndOfOptions()),
    st.just(NoOperation()),
    st.builds(MaxSegmentSize, U16),
    st.builds(WindowScale, U8),
    st.just(SackPermitted()),
    st.builds(SackBlocks, st.lists(st.tuples(U32, U32), min_size=0, max_size=4).map(tuple)),
    st.builds(Timestamps, U32, U32),
    st.builds(UnknownOption, unknown_kinds, st.binary(max_size=16)).filter(
        # Scapy cannot dissect a TCP-AO option shorter than its key ids (RFC 5925 2.2).
        lambda o: o.kind != 29 or len(o.data) >= 2
    ),
)


@st.composite
def option_lists(draw: st.DrawFn) -> tuple[TcpOption, ...]:
    """Any sequence of options (EOL anywhere, repeats allowed) that fits in 40 bytes."""
    out: list[TcpOption] = []
    used = 0
    for _ in range(draw(st.integers(0, 12))):
        option = draw(single_options)
        size = len(encode_option(option))
        if used + size > MAX_OPTIONS_LEN:
            break
        out.append(option)
        used += size
    return tuple(out)


def canonical(options: tuple[TcpOption, ...]) -> tuple[TcpOption, ...]:
    """The options as a decoder gives them back: EOL only last, present whenever padding is.

    Decoding stops at EOL and reports zero padding as one EOL, so these are the option lists
    that survive encode -> decode unchanged (the wire cannot tell `(WindowScale(7),)` from
    `(WindowScale(7), EndOfOptions())`).
    """
    kept: tuple[TcpOption, ...] = tuple(o for o in options if not isinstance(o, EndOfOptions))
    if sum(len(encode_option(o)) for o in kept) % 4:
        kept += (EndOfOptions(),)
    return kept


def segments_with(
    options: st.SearchStrategy[tuple[TcpOption, ...]],
    payload: st.SearchStrategy[bytes] | None = None,
) -> st.SearchStrategy[Segment]:
    """Segments with any header values, these options and this payload (default: none)."""
    return st.builds(
        Segment,
        src_port=U16,
        dst_port=U16,
        seq=U32,
        ack=U32,
        flags=st.integers(0, 255).map(Flags),
        window=U16,
        options=options,
        payload=st.just(b"") if payload is None else payload,
        urgent=U16,
    )


segments = segments_with(option_lists(), st.binary(max_size=1460))

ipv4_headers = st.builds(
    Ipv4Header,
    src=ipv4s,
    dst=ipv4s,
    ttl=U8,
    ident=U16,
    dont_fragment=st.booleans(),
    tos=U8,
)
ipv6_headers = st.builds(Ipv6Header, src=ipv6s, dst=ipv6s, hop_limit=U8)

tcp_frames_v4 = st.builds(TcpFrame, macs, macs, ipv4_headers, segments)
tcp_frames_v6 = st.builds(TcpFrame, macs, macs, ipv6_headers, segments)
tcp_frames = tcp_frames_v4 | tcp_frames_v6


def with_canonical_options(frame: TcpFrame) -> TcpFrame:
    seg = frame.segment
    return replace(frame, segment=replace(seg, options=canonical(seg.options)))


arp_frames = st.builds(ArpFrame, macs, macs, st.sampled_from((1, 2)), macs, ipv4s, macs, ipv4s)

icmp_ip_headers = ipv4_headers.map(lambda h: replace(h, protocol=IPPROTO_ICMP))
echo_frames = st.builds(
    IcmpFrame,
    macs,
    macs,
    icmp_ip_headers,
    st.sampled_from((0, 8)),
    st.just(0),
    U32,
    st.binary(max_size=1472),
)


@st.composite
def unreachable_frames(draw: st.DrawFn) -> IcmpFrame:
    """Destination unreachable quoting the offending IPv4 header and 8 bytes (RFC 792)."""
    quoted = draw(ipv4_headers)
    quoted_len = draw(st.integers(28, 1500))
    inner = fast._ipv4_header(quoted, IPPROTO_TCP, quoted_len - 20) + draw(
        st.binary(min_size=8, max_size=8)
    )
    code = draw(st.integers(0, 15))
    mtu = draw(st.integers(68, 9000)) if code == 4 else 0
    return IcmpFrame(draw(macs), draw(macs), draw(icmp_ip_headers), 3, code, mtu, inner)


icmp_frames = echo_frames | unreachable_frames()
any_frames: st.SearchStrategy[Frame] = tcp_frames | arp_frames | icmp_frames

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SCAPY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Byte-level helpers for hand-made damage


def fix_ipv4_checksum(frame: bytes, off: int = ETH) -> bytes:
    hlen = (frame[off] & 0x0F) * 4
    header = frame[off : off + 10] + b"\0\0" + frame[off + 12 : off + hlen]
    csum = internet_checksum(header)
    return frame[: off + 10] + csum.to_bytes(2, "big") + frame[off + 12 :]


def fix_tcp_checksum(frame: bytes, off: int = ETH) -> bytes:
    hlen = (frame[off] & 0x0F) * 4
    total = int.from_bytes(frame[off + 2 : off + 4], "big")
    seg = frame[off + hlen : off + total]
    pseudo = ones_complement_sum(frame[off + 12 : off + 20] + bytes((0, 6)) + len(seg).to_bytes(2))
    zeroed = seg[:16] + b"\0\0" + seg[18:]
    csum = internet_checksum(zeroed, pseudo)
    start = off + hlen
    return frame[: start + 16] + csum.to_bytes(2, "big") + frame[start + 18 :]


V4 = Ipv4Header("198.18.0.1", "198.18.0.2", ident=99)


def a_tcp_frame(payload: bytes = b"data", options: tuple[TcpOption, ...] = ()) -> TcpFrame:
    return TcpFrame(
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        V4,
        Segment(40000, 21, 1000, 2000, Flags.ACK | Flags.PSH, 502, options, payload),
    )


def an_arp_frame() -> ArpFrame:
    return ArpFrame(
        "02:00:00:00:00:01",
        BROADCAST_MAC,
        1,
        "02:00:00:00:00:01",
        "198.18.0.1",
        "00:00:00:00:00:00",
        "198.18.0.2",
    )


def an_echo_frame() -> IcmpFrame:
    ip = Ipv4Header("198.18.0.1", "198.18.0.2", protocol=IPPROTO_ICMP)
    return IcmpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", ip, 8, 0, 0x12340001, b"ping")


def is_v6(frame: Frame) -> bool:
    return isinstance(getattr(frame, "ip", None), Ipv6Header)


def assert_is_result(result: object) -> None:
    """What every decoder call must return: a frame value, or a drop with a DropReason."""
    assert isinstance(result, (*FRAME_TYPES, Dropped))
    if isinstance(result, Dropped):
        assert isinstance(result.reason, DropReason)


# ---------------------------------------------------------------------------------------------
# Fast == Scapy


@SCAPY
@given(tcp_frames)
def test_fast_and_scapy_encode_every_tcp_frame_to_the_same_bytes(frame: TcpFrame) -> None:
    assert fast.encode_tcp(frame) == sc.encode_tcp(frame)


bare_v4_frames = st.builds(
    TcpFrame,
    macs,
    macs,
    ipv4_headers,
    segments_with(
        st.builds(Timestamps, U32, U32).map(lambda ts: (NoOperation(), NoOperation(), ts))
    ),
)


@SCAPY
@given(bare_v4_frames)
def test_the_template_path_of_bare_ipv4_acks_encodes_as_scapy_does(frame: TcpFrame) -> None:
    assert fast.encode_tcp(frame) == sc.encode_tcp(frame)
    again = replace(frame, ip=replace(frame.ip, ident=frame.ip.ident ^ 1))  # template reused
    assert fast.encode_tcp(again) == sc.encode_tcp(again)


@SCAPY
@given(arp_frames | icmp_frames)
def test_fast_and_scapy_encode_arp_and_icmp_to_the_same_bytes(frame: Frame) -> None:
    assert fast.encode(frame) == sc.encode(frame)


@SCAPY
@given(any_frames)
def test_mixed_codec_gives_the_same_bytes_whichever_builder_it_picks(frame: Frame) -> None:
    assert mixed.encode(frame) == fast.encode(frame)


def test_mixed_codec_sends_handshakes_commands_arp_and_icmp_to_scapy_and_bulk_to_struct() -> None:
    syn = a_tcp_frame(b"")
    syn = replace(syn, segment=replace(syn.segment, flags=Flags.SYN))
    command = a_tcp_frame(b"RETR 1M.bin\r\n")
    pure_ack = a_tcp_frame(b"")
    bulk = a_tcp_frame(b"x" * 1448)
    fin_with_data = replace(bulk, segment=replace(bulk.segment, flags=Flags.ACK | Flags.FIN))
    chosen = {
        "syn": syn,
        "command": command,
        "arp": an_arp_frame(),
        "icmp": an_echo_frame(),
        "fin": fin_with_data,
    }
    assert all(mixed.built_by_scapy(f) for f in chosen.values())
    assert not mixed.built_by_scapy(pure_ack)
    assert not mixed.built_by_scapy(bulk)


@given(any_frames)
def test_fast_decoder_reads_back_the_value_scapy_built(frame: Frame) -> None:
    if isinstance(frame, TcpFrame):
        frame = with_canonical_options(frame)
    assert fast.decode_ethernet(sc.encode(frame)) == frame


@SCAPY
@given(any_frames)
def test_scapy_decoder_reads_back_the_value_fast_built(frame: Frame) -> None:
    if isinstance(frame, TcpFrame):
        frame = with_canonical_options(frame)
    assert sc.decode_ethernet(fast.encode(frame)) == frame


@FAST
@given(tcp_frames)
def test_decoding_keeps_options_up_to_the_first_eol(frame: TcpFrame) -> None:
    decoded = fast.decode_ethernet(fast.encode(frame))
    assert isinstance(decoded, TcpFrame)
    options = frame.segment.options
    expected = canonical(options)
    eol = next((i for i, o in enumerate(options) if isinstance(o, EndOfOptions)), None)
    if eol is not None:
        expected = options[: eol + 1]
    assert decoded.segment.options == expected
    assert decoded.segment.payload == frame.segment.payload


@FAST
@given(U32, U32, st.binary(max_size=8))
def test_the_nop_nop_timestamps_shortcut_decodes_like_the_generic_parser(
    tsval: int, tsecr: int, tail: bytes
) -> None:
    for options in (
        (NoOperation(), NoOperation(), Timestamps(tsval, tsecr)),
        (NoOperation(), NoOperation(), Timestamps(tsval, tsecr), UnknownOption(99, tail)),
    ):
        frame = a_tcp_frame(options=canonical(options))
        assert fast.decode_ethernet(fast.encode(frame)) == frame


def test_back_to_back_segments_with_the_same_timestamps_share_one_options_value() -> None:
    first = a_tcp_frame(options=(NoOperation(), NoOperation(), Timestamps(7, 9)))
    again = replace(first, segment=replace(first.segment, seq=first.segment.seq + 1))
    later = a_tcp_frame(options=(NoOperation(), NoOperation(), Timestamps(8, 9)))
    a, b, c = (fast.decode_ethernet(fast.encode(f)) for f in (first, again, later))
    assert isinstance(a, TcpFrame)
    assert isinstance(b, TcpFrame)
    assert isinstance(c, TcpFrame)
    assert b.segment.options is a.segment.options  # reused, not decoded again
    assert c.segment.options == (NoOperation(), NoOperation(), Timestamps(8, 9))  # never stale


# ---------------------------------------------------------------------------------------------
# Robustness: random and damaged bytes


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_and_every_drop_has_a_reason(raw: bytes) -> None:
    stats = fast.DecodeStats()
    results = [
        stats.count(fast.decode_ethernet(raw)),
        stats.count(fast.decode_ip(raw)),
        # The same bytes behind an IPv4 / IPv6 ethertype, so the IP parsers see them too.
        stats.count(fast.decode_ethernet(bytes(12) + b"\x08\x00" + raw)),
        stats.count(fast.decode_ethernet(bytes(12) + b"\x86\xdd" + raw)),
    ]
    for result in results:
        assert_is_result(result)
    assert stats.dropped + stats.decoded == len(results)
    fragment = fast.decode_ipv4_fragment(raw, ethernet=False)
    assert isinstance(fragment, fast.Ipv4Fragment | Dropped)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=80).map(lambda b: b"\x45" + b),
    st.sampled_from((IPPROTO_TCP, IPPROTO_ICMP)),
)
def test_random_ipv4_packets_with_plausible_headers_never_raise(raw: bytes, proto: int) -> None:
    # Plausible version/IHL/length/protocol so that random bytes get past the IP checks.
    raw = (raw + bytes(20))[:20] + raw[20:]
    raw = raw[:2] + len(raw).to_bytes(2, "big") + raw[4:9] + bytes((proto,)) + raw[10:]
    packet = fix_ipv4_checksum(raw, 0)
    assert_is_result(fast.decode_ip(packet))
    assert_is_result(fast.decode_ip(packet, verify_checksums=False))


@SCAPY
@given(any_frames)
def test_every_truncation_of_a_valid_frame_is_dropped_with_a_reason(frame: Frame) -> None:
    raw = fast.encode(frame)
    stats = fast.DecodeStats()
    for cut in range(len(raw)):
        result = stats.count(fast.decode_ethernet(raw[:cut]))
        assert isinstance(result, Dropped), cut
        if cut < ETH:
            assert result.reason is DropReason.TRUNCATED_ETHERNET
        elif isinstance(frame, ArpFrame):
            assert result.reason is DropReason.TRUNCATED_ARP
        elif is_v6(frame) and cut >= ETH + 40:
            # The whole IPv6 header is there and its Payload Length promises more.
            assert result.reason is DropReason.BAD_IPV6_PAYLOAD_LENGTH
        else:
            assert result.reason is DropReason.TRUNCATED_IP
    assert stats.dropped == len(raw)
    assert stats.decoded == 0


@FAST
@given(any_frames, st.data())
def test_any_single_bit_flip_after_the_ethernet_header_is_caught(
    frame: Frame, data: st.DataObject
) -> None:
    raw = fast.encode(frame)
    if isinstance(frame, ArpFrame):
        return  # ARP has no checksum: a flipped address bit is a different, valid request
    # IPv6 has no header checksum: its first 8 bytes (class, flow, length, next header, hop
    # limit) are unprotected. The addresses are covered through the TCP pseudo-header.
    v6 = isinstance(frame, TcpFrame) and isinstance(frame.ip, Ipv6Header)
    first = ETH + 8 if v6 else ETH
    bit = data.draw(st.integers(first * 8, len(raw) * 8 - 1))
    damaged = bytearray(raw)
    damaged[bit // 8] ^= 1 << (bit % 8)
    result = fast.decode_ethernet(bytes(damaged))
    assert isinstance(result, Dropped)
    assert_is_result(fast.decode_ethernet(bytes(damaged), verify_checksums=False))


@FAST
@given(any_frames, st.lists(st.tuples(st.integers(0, 10_000), U8), min_size=1, max_size=8))
def test_mutated_valid_frames_never_raise(frame: Frame, edits: list[tuple[int, int]]) -> None:
    damaged = bytearray(fast.encode(frame))
    for position, value in edits:
        damaged[position % len(damaged)] = value
    for verify in (True, False):
        assert_is_result(fast.decode_ethernet(bytes(damaged), verify_checksums=verify))
        assert_is_result(fast.decode_ip(bytes(damaged[ETH:]), verify_checksums=verify))


def same_verdict(a: Frame | Dropped, b: Frame | Dropped) -> bool:
    """Equal values, or drops for the same reason (the details are each decoder's own words)."""
    if isinstance(a, Dropped) and isinstance(b, Dropped):
        return a.reason is b.reason
    return a == b


@SCAPY
@given(
    any_frames,
    st.lists(st.tuples(st.integers(0, 10_000), U8), max_size=3),
    st.integers(0, 2000),
    st.booleans(),
)
def test_fast_and_scapy_decoders_agree_on_damaged_frames(
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


@FAST
@given(tcp_frames_v4, st.integers(0, 15), st.integers(0, 15))
def test_bad_header_lengths_are_dropped_not_raised(frame: TcpFrame, ihl: int, doff: int) -> None:
    raw = bytearray(fast.encode(frame))
    raw[ETH] = 0x40 | ihl
    damaged = fix_ipv4_checksum(bytes(raw))
    result = fast.decode_ethernet(damaged)
    if ihl < 5:
        assert result == Dropped(DropReason.BAD_IP_HEADER_LENGTH, f"IHL {ihl}")
    elif ihl * 4 > len(raw) - ETH:
        assert isinstance(result, Dropped)
        assert result.reason is DropReason.BAD_IP_TOTAL_LENGTH
    else:
        assert_is_result(result)
    raw = bytearray(fast.encode(frame))
    tcp_start = ETH + 20
    original = raw[tcp_start + 12] >> 4
    raw[tcp_start + 12] = doff << 4
    result = fast.decode_ethernet(bytes(raw))
    seg_len = len(raw) - tcp_start
    if doff < 5 or doff * 4 > seg_len:
        assert isinstance(result, Dropped)
        assert result.reason is DropReason.BAD_TCP_HEADER_LENGTH
    elif doff != original:
        assert isinstance(result, Dropped)
        assert result.reason is DropReason.BAD_TCP_CHECKSUM


def test_ip_total_length_beyond_the_buffer_is_a_truncation() -> None:
    raw = bytearray(fast.encode(a_tcp_frame()))
    struct.pack_into("!H", raw, ETH + 2, len(raw) - ETH + 1)
    result = fast.decode_ethernet(fix_ipv4_checksum(bytes(raw)))
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.TRUNCATED_IP


def test_ip_total_length_shorter_than_the_header_is_a_bad_total_length() -> None:
    raw = bytearray(fast.encode(a_tcp_frame()))
    struct.pack_into("!H", raw, ETH + 2, 19)
    result = fast.decode_ethernet(fix_ipv4_checksum(bytes(raw)))
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_IP_TOTAL_LENGTH


def test_wrong_ip_version_behind_the_ipv4_ethertype_is_dropped() -> None:
    raw = bytearray(fast.encode(a_tcp_frame()))
    raw[ETH] = 0x65
    result = fast.decode_ethernet(fix_ipv4_checksum(bytes(raw)))
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_IP_VERSION


@pytest.mark.parametrize(
    ("option_bytes", "kept"),
    [
        (b"\x01\x02\x04\x05", (NoOperation(),)),  # MSS cut short by the end of the option space
        (
            b"\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00"[:10] + b"\x05\x01",  # SACK length 1
            (Timestamps(1, 2),),
        ),
        (b"\x03\x04\x07\x00", ()),  # window scale with length 4
        (b"\x05\x06\x00\x00\x00\x00", ()),  # SACK body not a multiple of 8
        (b"\x01\x01\x01\x22", (NoOperation(),) * 3),  # kind 34 with no length byte
    ],
)
def test_malformed_tcp_options_keep_the_segment_and_the_options_before_them(
    option_bytes: bytes, kept: tuple[TcpOption, ...]
) -> None:
    # As Linux's tcp_parse_options: the segment is processed, the rest of the options ignored.
    padded = option_bytes + bytes(-len(option_bytes) % 4)
    raw = fast.encode(a_tcp_frame(payload=b""))
    tcp = ETH + 20
    hlen = 20 + len(padded)
    ip_total = 20 + hlen
    damaged = bytearray(raw[:tcp] + raw[tcp : tcp + 20] + padded)
    damaged[tcp + 12] = (hlen // 4) << 4
    struct.pack_into("!H", damaged, ETH + 2, ip_total)
    damaged_bytes = fix_tcp_checksum(fix_ipv4_checksum(bytes(damaged)))
    for codec in (fast, sc):
        result = codec.decode_ethernet(damaged_bytes)
        assert isinstance(result, TcpFrame), codec.__name__
        assert result.segment.options == kept, codec.__name__


# ---------------------------------------------------------------------------------------------
# Checksums


def _corrupt(raw: bytes, position: int) -> bytes:
    return raw[:position] + bytes((raw[position] ^ 0xFF,)) + raw[position + 1 :]


@pytest.mark.parametrize("decoder", [fast.decode_ethernet, sc.decode_ethernet])
def test_corrupted_checksums_are_detected_and_can_be_ignored(decoder: object) -> None:
    decode = fast.decode_ethernet if decoder is fast.decode_ethernet else sc.decode_ethernet
    tcp_raw = fast.encode(a_tcp_frame())
    icmp_raw = fast.encode(an_echo_frame())
    cases = [
        (tcp_raw, ETH + 10, DropReason.BAD_IP_CHECKSUM, a_tcp_frame()),
        (tcp_raw, ETH + 20 + 16, DropReason.BAD_TCP_CHECKSUM, a_tcp_frame()),
        (tcp_raw, len(tcp_raw) - 1, DropReason.BAD_TCP_CHECKSUM, None),
        (icmp_raw, ETH + 20 + 2, DropReason.BAD_ICMP_CHECKSUM, an_echo_frame()),
        (icmp_raw, len(icmp_raw) - 1, DropReason.BAD_ICMP_CHECKSUM, None),
    ]
    for raw, position, reason, unverified in cases:
        damaged = _corrupt(raw, position)
        result = decode(damaged)
        assert isinstance(result, Dropped)
        assert result.reason is reason
        if unverified is not None:
            assert decode(damaged, verify_checksums=False) == unverified


@FAST
@given(tcp_frames_v6)
def test_ipv6_tcp_checksum_covers_the_pseudo_header(frame: TcpFrame) -> None:
    raw = fast.encode(frame)
    # Byte 22 is inside the source address: only the pseudo-header carries it into the TCP sum.
    result = fast.decode_ethernet(_corrupt(raw, ETH + 8))
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_TCP_CHECKSUM


# ---------------------------------------------------------------------------------------------
# What is skipped: VLAN tags, IPv4 options, IPv6 extension headers, Ethernet padding


@SCAPY
@given(
    any_frames,
    st.lists(st.tuples(st.sampled_from((0x8100, 0x88A8, 0x9100)), U16), min_size=1, max_size=3),
)
def test_vlan_tags_of_any_depth_are_skipped(frame: Frame, tags: list[tuple[int, int]]) -> None:
    if isinstance(frame, TcpFrame):
        frame = with_canonical_options(frame)
    raw = fast.encode(frame)
    inner_type = raw[12:14]
    stack = b""
    for i, (_tpid, tci) in enumerate(tags):
        next_type = struct.pack("!H", tags[i + 1][0]) if i + 1 < len(tags) else inner_type
        stack += struct.pack("!H", tci) + next_type
    tagged = raw[:12] + struct.pack("!H", tags[0][0]) + stack + raw[14:]
    assert fast.decode_ethernet(tagged) == frame
    assert sc.decode_ethernet(tagged) == frame


def test_a_cut_vlan_tag_is_a_truncated_ethernet_frame() -> None:
    result = fast.decode_ethernet(bytes(12) + b"\x81\x00\x00\x01")
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.TRUNCATED_ETHERNET


def with_ipv4_options(raw: bytes, options: bytes) -> bytes:
    assert len(options) % 4 == 0
    hlen = 20 + len(options)
    header = bytearray(raw[ETH : ETH + 20] + options)
    header[0] = 0x40 | hlen // 4
    struct.pack_into("!H", header, 2, len(raw) - ETH + len(options))
    return fix_ipv4_checksum(raw[:ETH] + bytes(header) + raw[ETH + 20 :])


@pytest.mark.parametrize(
    "options",
    [
        b"\x01\x01\x01\x00",  # NOP NOP NOP EOL
        b"\x07\x0b\x04" + bytes(8) + b"\x00",  # record route with room for two addresses
        b"\x94\x04\x00\x00",  # router alert (RFC 2113)
        b"\x01" * 40,  # the largest option space
    ],
)
def test_ipv4_options_are_skipped(options: bytes) -> None:
    for frame in (a_tcp_frame(), an_echo_frame()):
        with_options = with_ipv4_options(fast.encode(frame), options)
        assert fast.decode_ethernet(with_options) == frame
        assert sc.decode_ethernet(with_options) == frame


@SCAPY
@given(any_frames, st.integers(1, 64), st.booleans())
def test_ethernet_padding_and_trailing_bytes_are_ignored(
    frame: Frame, extra: int, zeros: bool
) -> None:
    if isinstance(frame, TcpFrame):
        frame = with_canonical_options(frame)
    raw = fast.encode(frame)
    trailer = bytes(extra) if zeros else bytes(range(extra))
    assert fast.decode_ethernet(raw + trailer) == frame
    assert sc.decode_ethernet(raw + trailer) == frame


def test_short_frames_padded_to_the_ethernet_minimum_decode_unchanged() -> None:
    for frame in (an_arp_frame(), a_tcp_frame(payload=b"")):
        raw = fast.encode(frame)
        assert len(raw) < 60
        assert fast.decode_ethernet(raw + bytes(60 - len(raw))) == frame


def ipv6_with_extensions(frame: TcpFrame, extensions: list[tuple[int, bytes]]) -> bytes:
    """The frame's bytes with extension headers (type, body) between the IPv6 header and TCP."""
    raw = fast.encode(frame)
    tcp = raw[ETH + 40 :]
    chain = b""
    for i, (_kind, body) in enumerate(extensions):
        following = extensions[i + 1][0] if i + 1 < len(extensions) else IPPROTO_TCP
        chain += bytes((following, (len(body) + 2) // 8 - 1)) + body
    header = bytearray(raw[ETH : ETH + 40])
    struct.pack_into("!H", header, 4, len(chain) + len(tcp))
    header[6] = extensions[0][0]
    return raw[:ETH] + bytes(header) + chain + tcp


@FAST
@given(
    tcp_frames_v6,
    st.booleans(),
    st.lists(st.sampled_from((43, 60)), max_size=3),
)
def test_ipv6_extension_headers_are_skipped(
    frame: TcpFrame, hop_by_hop: bool, others: list[int]
) -> None:
    kinds = [0] * hop_by_hop + others  # hop-by-hop may only come first (RFC 8200 4.3)
    if not kinds:
        return
    frame = with_canonical_options(frame)
    # PadN-only options (hop-by-hop, destination) and a routing header with segments left = 0.
    bodies = {0: b"\x01\x04" + bytes(4), 60: b"\x01\x0c" + bytes(12), 43: b"\x00\x00" + bytes(4)}
    raw = ipv6_with_extensions(frame, [(k, bodies[k]) for k in kinds])
    assert fast.decode_ethernet(raw) == frame
    assert sc.decode_ethernet(raw) == frame


def test_ipv6_fragment_header_means_fragment() -> None:
    frame = TcpFrame(
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        Ipv6Header("2001:db8::1", "2001:db8::2"),
        Segment(1, 2, 3, 4, Flags.ACK, 5),
    )
    raw = ipv6_with_extensions(frame, [(44, bytes(6))])
    for decode in (fast.decode_ethernet, sc.decode_ethernet):
        result = decode(raw)
        assert isinstance(result, Dropped)
        assert result.reason is DropReason.IP_FRAGMENT


def test_ipv6_extension_header_running_past_the_packet_is_dropped() -> None:
    frame = TcpFrame(
        "02:00:00:00:00:01",
        "02:00:00:00:00:02",
        Ipv6Header("2001:db8::1", "2001:db8::2"),
        Segment(1, 2, 3, 4, Flags.ACK, 5),
    )
    raw = bytearray(ipv6_with_extensions(frame, [(60, b"\x01\x04" + bytes(4))]))
    raw[ETH + 41] = 200  # hdr ext len: (200 + 1) * 8 bytes
    result = fast.decode_ethernet(bytes(raw))
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_EXTENSION_HEADERS


# ---------------------------------------------------------------------------------------------
# Fragments, other protocols, bare IP, stats


@pytest.mark.parametrize(("more", "offset"), [(True, 0), (False, 1480), (True, 8)])
def test_ipv4_fragments_are_dropped_and_handed_over_whole(more: bool, offset: int) -> None:
    frame = a_tcp_frame(payload=b"x" * 100)
    ip = replace(V4, more_fragments=more, fragment_offset=offset, dont_fragment=False)
    fragment_frame = replace(frame, ip=ip)
    raw = fast.encode(fragment_frame)
    assert raw == sc.encode(fragment_frame)
    result = fast.decode_ethernet(raw)
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.IP_FRAGMENT
    scapy_result = sc.decode_ethernet(raw)
    assert isinstance(scapy_result, Dropped)
    assert scapy_result.reason is DropReason.IP_FRAGMENT
    handed = fast.decode_ipv4_fragment(raw)
    assert isinstance(handed, fast.Ipv4Fragment)
    assert handed.ip == ip
    assert handed.payload == raw[ETH + 20 :]
    assert handed.eth_src == frame.eth_src
    bare = fast.decode_ipv4_fragment(raw[ETH:], ethernet=False)
    assert isinstance(bare, fast.Ipv4Fragment)
    assert bare.payload == handed.payload


def test_fragment_handover_checks_the_header_too() -> None:
    raw = _corrupt(fast.encode(a_tcp_frame()), ETH + 10)
    result = fast.decode_ipv4_fragment(raw)
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_IP_CHECKSUM
    arp = fast.decode_ipv4_fragment(fast.encode(an_arp_frame()))
    assert isinstance(arp, Dropped)


def test_udp_and_unknown_ethertypes_are_other_frames() -> None:
    raw = bytearray(fast.encode(an_echo_frame()))
    raw[ETH + 9] = IPPROTO_UDP
    udp = fast.decode_ethernet(fix_ipv4_checksum(bytes(raw)))
    assert udp == OtherFrame("02:00:00:00:00:01", "02:00:00:00:00:02", 0x0800, IPPROTO_UDP)
    lldp = bytes.fromhex("0180c200000e020000000001") + b"\x88\xcc" + bytes(30)
    other = fast.decode_ethernet(lldp)
    assert other == OtherFrame("02:00:00:00:00:01", "01:80:c2:00:00:0e", 0x88CC, None)
    assert sc.decode_ethernet(lldp) == other


@FAST
@given(tcp_frames)
def test_bare_ip_packets_decode_by_their_version_nibble(frame: TcpFrame) -> None:
    frame = with_canonical_options(frame)
    packet = fast.encode(frame)[ETH:]
    decoded = fast.decode_ip(packet, eth_src=frame.eth_src, eth_dst=frame.eth_dst)
    assert decoded == frame
    result = fast.decode_ip(bytes((0x50,)) + packet[1:])
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_IP_VERSION


def test_arp_for_other_hardware_is_dropped_as_bad_arp() -> None:
    raw = bytearray(fast.encode(an_arp_frame()))
    raw[ETH + 1] = 6  # IEEE 802 hardware type
    result = fast.decode_ethernet(bytes(raw))
    assert isinstance(result, Dropped)
    assert result.reason is DropReason.BAD_ARP


def test_decode_stats_count_frames_by_kind_and_drops_by_reason() -> None:
    stats = fast.DecodeStats()
    raws = [
        fast.encode(a_tcp_frame()),
        fast.encode(a_tcp_frame()),
        fast.encode(an_arp_frame()),
        fast.encode(an_echo_frame()),
        b"short",
        _corrupt(fast.encode(a_tcp_frame()), ETH + 10),
    ]
    for raw in raws:
        result = fast.decode_ethernet(raw)
        assert stats.count(result) is result
    assert stats.frames == {"tcp": 2, "arp": 1, "icmp": 1}
    assert stats.drops == {DropReason.TRUNCATED_ETHERNET: 1, DropReason.BAD_IP_CHECKSUM: 1}
    assert (stats.decoded, stats.dropped) == (4, 2)
    assert stats.summary() == ("arp=1 icmp=1 tcp=2 | drops: bad_ip_checksum=1 truncated_ethernet=1")


# ---------------------------------------------------------------------------------------------
# Encoder misuse raises (our fault, not the peer's)


def test_encoders_refuse_values_that_have_no_wire_form() -> None:
    other = OtherFrame("02:00:00:00:00:01", "02:00:00:00:00:02", 0x88CC, None)
    with pytest.raises(TypeError):
        fast.encode(other)
    wrong_protocol = replace(a_tcp_frame(), ip=replace(V4, protocol=IPPROTO_UDP))
    with pytest.raises(ValueError, match="protocol"):
        fast.encode(wrong_protocol)
    with pytest.raises(ValueError, match="protocol"):
        sc.encode(wrong_protocol)
    odd_offset = replace(a_tcp_frame(), ip=replace(V4, fragment_offset=3))
    with pytest.raises(ValueError, match="multiple of 8"):
        fast.encode(odd_offset)
    too_many = a_tcp_frame(options=(Timestamps(1, 2),) * 5)
    with pytest.raises(ValueError, match="more than 40"):
        fast.encode(too_many)


# ---------------------------------------------------------------------------------------------
# Display


def test_show_and_hexdump_describe_a_frame_for_notebooks() -> None:
    frame = a_tcp_frame(options=(NoOperation(), NoOperation(), Timestamps(7, 9)))
    text = sc.show(frame)
    assert "###[ TCP ]###" in text
    assert "('Timestamp', (7, 9))" in text
    assert sc.show(fast.encode(frame)) == text
    dump = sc.hexdump(fast.encode(frame))
    assert dump.startswith("0000  02 00 00 00 00 02 02 00 00 00 00 01 08 00")
