"""The replay fast path gives exactly what the full decoder gives, or steps aside.

`lab.replay.fastpath` may only be faster: for any frame, either it returns None (the full
decoder takes over), NOT_TCP (and the full decoder finds no TCP segment), or the very values
the full decoder finds in a packet it trusts (good checksums, nothing cut).
"""

from __future__ import annotations

import random
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.capture.reader import CapturedPacket
from lab.replay.decode import decode_packet
from lab.replay.fastpath import NOT_TCP, endpoints, fast_ethernet_segment
from lab.replay.flows import HalfStream
from lab.replay.report import ReplayResult
from lab.wire.checksum import _mod_ffff
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
    key, *rest = fast
    assert endpoints(key) == (tcp.ip.src, seg.src_port, tcp.ip.dst, seg.dst_port)
    assert rest == [seg.seq, seg.ack, int(seg.flags), seg.payload]


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
    # around the three-piece sum of full-sized segments (frames of 1058..1570 bytes)
    for size in (0, 1, 2, 3, 1003, 1004, 1005, 1447, 1448, 1515, 1516, 1517, 1600):
        data = _frame(bytes((i * 7) & 255 for i in range(size)), 0x18, 5)
        fast = fast_ethernet_segment(data, len(data))
        assert fast not in (None, NOT_TCP)
        _check(data)
        for pos in (50, 545, 546, 1057, 1058, len(data) - 1):  # in each piece, at their ends
            if pos < len(data):
                bad = bytearray(data)
                bad[pos] ^= 0x40
                assert fast_ethernet_segment(bytes(bad), len(bad)) is None  # the full decoder


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


# -- the flow table's own fast route (FlowTable.fast_segment) -----------------------------------


def _state(result: ReplayResult) -> list[Any]:
    """Every flow's every field, each half's reassembler counters and stored extents: what the
    report shows and what it does not (arrival marks, ACK bookkeeping, file layout)."""
    out: list[Any] = []
    for flow in result.table.flows:
        values: list[Any] = []
        for f in fields(flow):
            value = getattr(flow, f.name)
            if isinstance(value, HalfStream):
                half = {h.name: getattr(value, h.name) for h in fields(value)}
                data, r = half.pop("data"), half.pop("reassembler")
                assert half.pop("pending") is None  # all flushed by `finish`
                del half["pending_seq"]  # where the last bulk run began (only the fast route)
                half["data"] = (data.extents, data.stored_bytes, data.length)
                if r is not None:
                    stats = asdict(r.stats)
                    del stats["segments"]  # pushes: bulk data is joined into fewer on purpose
                    half["reassembler"] = (
                        r.next_offset,
                        r.fin_offset,
                        r.held_ranges(),
                        stats,
                        r.conflicts,
                    )
                value = half
            values.append(value)
        out.append(values)
    return out


def _replay_both_ways(path: Path) -> tuple[Any, Any]:
    """Report and flow state through the fast route, and through the full decoder and
    `FlowTable.process` for every packet (the fast decoder made to step aside)."""
    from lab.replay import report

    fast = report.replay_capture(path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "fast_ethernet_segment", lambda data, orig_len: None)
        slow = report.replay_capture(path)
    return (fast.report, _state(fast)), (slow.report, _state(slow))


@settings(max_examples=6, deadline=None)
@given(faults=st.lists(_FAULT, max_size=4, unique_by=lambda f: f[0]))
def test_bulk_download_through_the_fast_route_gives_the_full_decoders_report(
    tmp_path_factory: pytest.TempPathFactory, faults: list[tuple[int, str]]
) -> None:
    path = tmp_path_factory.mktemp("route") / "bulk.pcap"
    path.write_bytes(_bulk_capture(faults))
    fast, slow = _replay_both_ways(path)
    assert fast == slow
    assert fast[0]["flows"][0]["bytes_server_to_client"] >= ((4 << 20) // MSS - 40) * MSS


_KINDS = ["dup", "swap", "drop", "corrupt", "conflict", "rst", "fin", "syn"]


def _interleaved_capture(rng: random.Random, flows: int, segments: int, fault_rate: float) -> bytes:
    """A few connections sharing the capture, segment by segment in random turns (so a flow is
    left and found again), some without a handshake (midstream), with random sizes, ACKs from
    either side, and faults: duplicates, reordering, losses, bad checksums, conflicting copies,
    resets, early FINs and a SYN reusing the 4-tuple."""
    from lab.capture.writer import PacketRecord, pcap_bytes

    out: list[PacketRecord] = []
    t = [1_700_000_000_000_000_000]

    def send(
        src: tuple[str, int],
        dst: tuple[str, int],
        seq: int,
        ack: int,
        flags: int,
        payload: bytes = b"",
        corrupt: bool = False,
    ) -> None:
        seg = Segment(src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, Flags(flags), 65535)
        seg = Segment(seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, 65535, (), payload)
        data = bytearray(
            encode_tcp(
                TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", Ipv4Header(src[0], dst[0]), seg)
            )
        )
        if corrupt:
            data[-1 if payload else 40] ^= 0x5A
        t[0] += rng.randrange(1, 3_000_000_000)  # sometimes seconds apart: archived flows
        out.append(PacketRecord(t[0], bytes(data)))

    state: list[Any] = []
    for f in range(flows):
        client, server = (f"198.18.0.{2 + f}", 40000 + f), ("198.18.0.1", rng.choice([21, 8080]))
        isn_c, isn_s = rng.randrange(2**32), rng.randrange(2**32)
        if rng.random() < 0.8:
            send(client, server, isn_c, 0, 0x02)
            send(server, client, isn_s, isn_c + 1, 0x12)
            send(client, server, isn_c + 1, isn_s + 1, 0x10)
        state.append([client, server, isn_c + 1, isn_s + 1, 0])
    pending: list[tuple[int, bool, int]] = []  # a swapped segment sent later
    for _ in range(segments):
        f = rng.randrange(flows)
        client, server, cseq, sseq, _n = st_ = state[f]
        from_server = rng.random() < 0.7
        src, dst = (server, client) if from_server else (client, server)
        seq, ack = (sseq, cseq) if from_server else (cseq, sseq)
        size = rng.choice([0, 1, 7, 100, 536, 1448])
        payload = bytes(rng.randrange(256) for _ in range(size))
        kind = rng.choice(_KINDS) if rng.random() < fault_rate else "ok"
        if kind == "swap":
            pending.append((f, from_server, seq))
        if kind == "corrupt":
            send(src, dst, seq, ack, 0x18, payload, corrupt=True)
        if kind == "conflict" and size:
            send(src, dst, seq, ack, 0x18, bytes(size))
        if kind == "rst":
            send(src, dst, seq, ack, 0x14)
        elif kind == "fin":
            send(src, dst, seq, ack, 0x11, payload)
        elif kind == "syn":
            send(client, server, rng.randrange(2**32), 0, 0x02)
        elif kind not in ("drop", "swap"):
            send(src, dst, seq, ack, 0x18 if size else 0x10, payload)
            if kind == "dup":
                send(src, dst, seq, ack, 0x18 if size else 0x10, payload)
        elif kind == "swap":
            send(src, dst, seq + size, ack, 0x18, payload)  # the next one first...
        if rng.random() < 0.4:  # an ACK from the other side
            send(dst, src, ack, seq + size, 0x10)
        if from_server:
            st_[3] += size
        else:
            st_[2] += size
    for f, from_server, seq in pending:  # ... and the swapped ones at the end
        client, server = state[f][0], state[f][1]
        src, dst = (server, client) if from_server else (client, server)
        send(src, dst, seq, 0, 0x18, b"late")
    for client, server, cseq, sseq, _n in state:
        if rng.random() < 0.7:
            send(server, client, sseq, cseq, 0x11)
            send(client, server, cseq, sseq + 1, 0x11)
            send(server, client, sseq + 1, cseq + 1, 0x10)
    return pcap_bytes(out)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    flows=st.integers(1, 4),
    segments=st.integers(1, 200),
    fault_rate=st.sampled_from([0.0, 0.02, 0.1, 0.5]),
)
def test_interleaved_flows_through_the_fast_route_give_the_full_decoders_report(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    flows: int,
    segments: int,
    fault_rate: float,
) -> None:
    from lab.replay import flows as flows_module

    path = tmp_path_factory.mktemp("route") / "mixed.pcap"
    path.write_bytes(_interleaved_capture(random.Random(seed), flows, segments, fault_rate))
    with pytest.MonkeyPatch.context() as mp:
        # small enough that these flows pass the marked bytes and join bulk data, and archive
        mp.setattr(flows_module, "MARKED_BYTES", 3000)
        mp.setattr(flows_module, "BULK_LIMIT", 5000)
        mp.setattr(flows_module, "ARCHIVE_AFTER_FLOWS", 1)
        fast, slow = _replay_both_ways(path)
    assert fast == slow


@given(st.integers(0, 2**32 - 1))
def test_addresses_are_written_as_inet_ntoa_writes_them(address: int) -> None:
    import socket

    from lab.replay.fastpath import _remember

    assert _remember(address) == socket.inet_ntoa(address.to_bytes(4, "big"))
