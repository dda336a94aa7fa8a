"""The replay fast path gives exactly what the full decoder gives, or steps aside.

`lab.replay.fastpath` may only be faster: for any frame, either it returns None (the full
decoder takes over), NOT_TCP (and the full decoder finds no TCP segment), or the very values
the full decoder finds in a packet it trusts (good checksums, nothing cut).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.capture.reader import CapturedPacket
from lab.codec.fast import encode_tcp
from lab.codec.frame import Ipv4Header, TcpFrame
from lab.replay.decode import decode_packet
from lab.replay.fastpath import NOT_TCP, _mod_ffff, fast_ethernet_segment
from lab.tcp.segment import Flags, Segment


def _frame(payload: bytes, flags: int, seq: int) -> bytes:
    seg = Segment(40000, 21, seq, 77, Flags(flags), 65535, (), payload)
    ip = Ipv4Header("198.18.0.2", "198.18.0.1")
    return encode_tcp(TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", ip, seg))


def _check(data: bytes, orig_len: int | None = None) -> None:
    orig = len(data) if orig_len is None else orig_len
    fast = fast_ethernet_segment(data, orig)
    if fast is None:
        return
    decoded = decode_packet(CapturedPacket(1, 0, 1, data, orig))
    tcp = decoded.tcp
    if fast == NOT_TCP:
        assert tcp is None
        return
    assert tcp is not None
    assert not decoded.bad_checksum
    assert not decoded.offloaded
    assert not decoded.missing_bytes
    seg = tcp.segment
    assert fast == (
        tcp.ip.src,
        seg.src_port,
        tcp.ip.dst,
        seg.dst_port,
        seg.seq,
        seg.ack,
        int(seg.flags),
        seg.payload,
    )


@settings(max_examples=400, deadline=None)
@given(
    payload=st.binary(max_size=1600),
    flags=st.integers(0, 255),
    seq=st.integers(0, 2**32 - 1),
    edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=3),
    trailer=st.binary(max_size=8),
    cut=st.integers(0, 3),
)
def test_fast_path_agrees_with_the_full_decoder(
    payload: bytes,
    flags: int,
    seq: int,
    edits: list[tuple[int, int]],
    trailer: bytes,
    cut: int,
) -> None:
    data = bytearray(_frame(payload, flags, seq) + trailer)  # trailer: Ethernet padding
    for pos, value in edits:  # header bytes changed: lengths, protocol, checksums, ...
        if pos < len(data):
            data[pos] = value
    _check(bytes(data))
    _check(bytes(data[: max(0, len(data) - cut)]), orig_len=len(data))  # snaplen cut


def test_good_frames_take_the_fast_path_and_odd_lengths_are_summed_right() -> None:
    for size in (0, 1, 2, 3, 1447, 1448):
        data = _frame(bytes((i * 7) & 255 for i in range(size)), 0x18, 5)
        fast = fast_ethernet_segment(data, len(data))
        assert fast not in (None, NOT_TCP)
        _check(data)
        bad = bytearray(data)
        bad[-1 if size else 50] ^= 0x40
        assert fast_ethernet_segment(bytes(bad), len(bad)) is None  # checksum: full decoder


@given(st.integers(0, 2**20000))
def test_folded_remainder_is_the_remainder(x: int) -> None:
    assert _mod_ffff(x) == x % 0xFFFF
