"""The replay fast path gives exactly what the full decoder gives, or steps aside.

`lab.replay.fastpath` may only be faster: for any frame, either it returns None (the full
decoder takes over), NOT_TCP (and the full decoder finds no TCP segment), or the very values
the full decoder finds in a packet it trusts (good checksums, nothing cut).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.capture.reader import CapturedPacket
from lab.replay.decode import decode_packet
from lab.replay.fastpath import NOT_TCP, _mod_ffff, fast_ethernet_segment
from lab.wire.fast import encode_tcp
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import Flags, Segment


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


# -- bulk data joined before the reassembler ------------------------------------------------------

MSS = 1448
BULK_SEGMENTS = (4 << 20) // MSS + 120  # past the 4 MiB whose arrival times are kept


def _bulk_capture(faults: list[tuple[int, str]]) -> bytes:
    """One download of BULK_SEGMENTS segments (a client ACK every two), with faults at chosen
    segments: dup (sent twice), swap (with the next), drop, corrupt (bad checksum, then the good
    copy), conflict (different bytes resent), rst (connection reset there), fin (closed early)."""
    from lab.capture.writer import PacketRecord, pcap_bytes

    out: list[PacketRecord] = []
    t = [1_700_000_000_000_000_000]
    client, server = ("198.18.0.2", 40001), ("198.18.0.1", 50000)

    def send(src, dst, seq, ack, flags, payload=b"", corrupt=False):  # type: ignore[no-untyped-def]
        seg = Segment(src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, Flags(flags), 65535)
        seg = Segment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, 65535, (), payload)
        ip = Ipv4Header(src[0], dst[0])
        data = bytearray(encode_tcp(TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", ip, seg)))
        if corrupt:
            data[-1] ^= 0x5A
        t[0] += 10_000
        out.append(PacketRecord(t[0], bytes(data)))

    isn_c, isn_s = 77, 2**32 - 3_000_000  # the server's numbers wrap during the transfer
    send(client, server, isn_c, 0, 0x02)
    send(server, client, isn_s, isn_c + 1, 0x12)
    send(client, server, isn_c + 1, isn_s + 1, 0x10)
    kinds = dict(faults)
    pattern = bytes(range(256)) * 7

    def chunk(i: int) -> bytes:
        start = (i * 31) & 255
        return pattern[start : start + MSS]

    order = list(range(BULK_SEGMENTS))
    for i, kind in faults:
        if kind == "swap" and i + 1 < len(order):
            a, b = order.index(i), order.index(i + 1)
            order[a], order[b] = order[b], order[a]
    for n, i in enumerate(order):
        seq = isn_s + 1 + i * MSS
        kind = kinds.get(i)
        if kind == "drop":
            continue
        if kind == "corrupt":
            send(server, client, seq, isn_c + 1, 0x18, chunk(i), corrupt=True)
        if kind == "conflict":
            send(server, client, seq, isn_c + 1, 0x18, bytes(MSS))
        if kind == "rst":
            send(server, client, seq, isn_c + 1, 0x14)
            continue
        if kind == "fin":
            send(server, client, seq, isn_c + 1, 0x11)
            break
        send(server, client, seq, isn_c + 1, 0x18, chunk(i))
        if kind == "dup":
            send(server, client, seq, isn_c + 1, 0x18, chunk(i))
        if n % 2:
            send(client, server, isn_c + 1, seq + MSS, 0x10)
    end = isn_s + 1 + BULK_SEGMENTS * MSS
    send(server, client, end, isn_c + 1, 0x11)
    send(client, server, isn_c + 1, end + 1, 0x11)
    send(server, client, end + 1, isn_c + 2, 0x10)
    return pcap_bytes(out)


_FAULT = st.tuples(
    st.integers((4 << 20) // MSS - 40, BULK_SEGMENTS - 1),
    st.sampled_from(["dup", "swap", "drop", "corrupt", "conflict", "rst", "fin"]),
)


@settings(max_examples=10, deadline=None)
@given(faults=st.lists(_FAULT, max_size=4, unique_by=lambda f: f[0]))
def test_bulk_data_joined_before_the_reassembler_gives_the_same_report(
    tmp_path_factory: pytest.TempPathFactory, faults: list[tuple[int, str]]
) -> None:
    from lab.replay import flows
    from lab.replay.report import replay_capture

    path = tmp_path_factory.mktemp("bulk") / "bulk.pcap"
    path.write_bytes(_bulk_capture(faults))
    joined = replay_capture(path).report
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(flows, "BULK_LIMIT", 0)  # one push per segment, as before the bulk path
        alone = replay_capture(path).report
    assert joined == alone
    # every fault lies at or after segment (4 MiB // MSS - 40): at least that much came through
    assert joined["flows"][0]["bytes_server_to_client"] >= ((4 << 20) // MSS - 40) * MSS
