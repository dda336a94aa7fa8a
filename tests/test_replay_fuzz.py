"""Fuzzing `lab replay`: mutated real captures never make it raise, hang or grow without bound.

The inputs are real captures (suricata-verify's FTP downloads, in classic pcap and rewritten to
pcapng), mutated where parsers break: the file's bytes (truncations, bit flips, runs of bytes
overwritten), its framing (record and block length fields, pcapng block types, section headers)
and the packets' own headers (IP header length and total length, TCP data offset, flags,
sequence numbers, ports). Whatever comes out, replay must return a result whose report is valid
JSON, an exit status of 0, 1 or 2, and never an exception. Each test carries a timeout, so a
loop that never ends fails instead of stalling the suite; `tracemalloc` bounds the memory of a
replay whose sequence numbers were scrambled across a long transfer.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab.capture.reader import BLOCK_EPB, BLOCK_IDB, BLOCK_SPB, PCAPNG_SHB, CaptureReader
from lab.capture.writer import (
    PacketRecord,
    pcap_bytes,
    pcapng_bytes,
    pcapng_idb,
    pcapng_packet,
    pcapng_shb,
)
from lab.replay import steps
from lab.replay.decode import decode_packet
from lab.replay.report import replay_capture
from lab.wire.fast import encode_tcp
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add

PEER = Path(__file__).resolve().parent.parent / "captures" / "peer"
PASSIVE = PEER / "tests_ftp_ftp-download-passive_input.pcap"
ACTIVE = PEER / "tests_ftp_ftp-download-active_input.pcap"

FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _records(path: Path) -> list[PacketRecord]:
    return [
        PacketRecord(p.timestamp_ns, p.data, p.orig_len, comment=f"frame {p.number}")
        for p in CaptureReader(path)
    ]


def _null(records: list[PacketRecord], byteorder: str) -> list[PacketRecord]:
    """The same packets on BSD loopback (link type 0): a 4-byte family in place of Ethernet."""
    return [
        PacketRecord(r.timestamp_ns, (2).to_bytes(4, byteorder) + r.data[14:])  # type: ignore[arg-type]
        for r in records
    ]


_PASSIVE_RECORDS = _records(PASSIVE)
BASES: dict[str, bytes] = {
    "pcap-le-us": PASSIVE.read_bytes(),
    "pcap-active": ACTIVE.read_bytes(),
    "pcap-be-ns": pcap_bytes(_PASSIVE_RECORDS, endian=">", nanos=True),
    "pcapng": pcapng_bytes(_PASSIVE_RECORDS),
    "pcapng-be-2if": pcapng_bytes(_PASSIVE_RECORDS, linktypes=(1, 1), endian=">", tsresol=6),
    "null-le": pcap_bytes(_null(_PASSIVE_RECORDS, "little"), linktype=0),
    "null-be": pcapng_bytes(_null(_PASSIVE_RECORDS, "big"), linktypes=(0,), endian=">"),
}


def _framing_offsets(data: bytes) -> list[int]:
    """Where each record (pcap) or block (pcapng) of an undamaged capture starts."""
    offsets = []
    if data[:4] == struct.pack("<I", PCAPNG_SHB):
        endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos = 0
        while pos + 8 <= len(data):
            offsets.append(pos)
            (total,) = struct.unpack_from(endian + "I", data, pos + 4)
            pos += total
    else:
        endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        pos = 24
        while pos + 16 <= len(data):
            offsets.append(pos)
            (caplen,) = struct.unpack_from(endian + "I", data, pos + 8)
            pos += 16 + caplen
    return offsets


_OFFSETS = {name: _framing_offsets(data) for name, data in BASES.items()}

# Values that break length checks: zero, too small, not a multiple of 4, just past the limits,
# the largest u32, and plausible ones pointing into the middle of the next record.
_NASTY_U32 = st.sampled_from(
    [0, 1, 3, 4, 11, 12, 13, 28, 60, 1500, 65535, 262_144, 262_145, 1 << 26, 0x7FFFFFFF, 0xFFFFFFFF]
) | st.integers(0, 0xFFFFFFFF)
_BLOCK_TYPES = st.sampled_from(
    [PCAPNG_SHB, BLOCK_IDB, 2, BLOCK_SPB, 4, 5, BLOCK_EPB, 0xBAD, 0x80000001, 0, 0xFFFFFFFF]
)

# One mutation of the file's bytes: (kind, where as a fraction of the file or a record index,
# value). Positions are drawn as fractions so the same strategy serves files of any length.
_MUTATION = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(0)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("byte"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("smear"), st.floats(0, 1), st.integers(0, 255)),
    st.tuples(st.just("caplen"), st.integers(0, 200), _NASTY_U32),
    st.tuples(st.just("origlen"), st.integers(0, 200), _NASTY_U32),
    st.tuples(st.just("block_type"), st.integers(0, 200), _BLOCK_TYPES),
    st.tuples(st.just("duplicate"), st.integers(0, 200), st.integers(1, 3)),
)


def mutate(name: str, mutations: list[tuple[str, float | int, int]]) -> bytes:
    data = bytearray(BASES[name])
    offsets = _OFFSETS[name]
    big = data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d") or data[8:12] == bytes.fromhex(
        "1a2b3c4d"
    )
    u32 = ">I" if big else "<I"
    pcapng = bool(offsets) and offsets[0] == 0
    for kind, where, value in mutations:
        if not data:
            break
        if isinstance(where, float):
            pos = min(int(where * len(data)), len(data) - 1)
            if kind == "truncate":
                del data[pos:]
            elif kind == "flip":
                data[pos] ^= 1 << value
            elif kind == "byte":
                data[pos] = value
            else:  # a run of up to 64 bytes overwritten with one value
                data[pos : pos + 64] = bytes([value]) * len(data[pos : pos + 64])
            continue
        start = offsets[int(where) % len(offsets)]
        if start + 24 > len(data):  # the furthest field written below ends at start + 24
            continue
        if kind == "caplen":  # pcap: captured length; pcapng: the block's total length
            struct.pack_into(u32, data, start + (4 if pcapng else 8), value)
        elif kind == "origlen":  # pcap: original length; pcapng: the trailing total length
            at = start + 12 if not pcapng else start + 20
            struct.pack_into(u32, data, at, value)
        elif kind == "block_type":  # pcapng: type; pcap: the seconds field (harmless)
            struct.pack_into(u32, data, start, value)
        else:  # the record or block repeated in place
            (length,) = struct.unpack_from(u32, data, start + (4 if pcapng else 8))
            end = start + (length if pcapng else 16 + length)
            if end <= len(data):
                data[start:start] = data[start:end] * value
    return bytes(data)


def test_the_mutator_skips_length_fields_cut_off_by_a_truncation() -> None:
    # Found by hypothesis in a full run: a pcapng truncated 18 bytes into its last block, then
    # that block's trailing length written, raised struct.error in the mutator itself.
    for name in ("null-be", "pcapng", "pcapng-be-2if"):
        start = _OFFSETS[name][-1]
        cut = (start + 18) / len(BASES[name])
        data = mutate(name, [("truncate", cut, 0), ("origlen", len(_OFFSETS[name]) - 1, 5)])
        assert len(data) == start + 18


def replay_ok(path: Path, out: Path) -> dict:  # type: ignore[type-arg]
    result = replay_capture(path, out_dir=out)
    report = json.loads(json.dumps(result.report))
    assert result.unreadable == (report["format"] is None)
    assert result.unreadable or report["format"] in ("pcap", "pcapng")
    assert report["packets"] == result.packets
    return report  # type: ignore[no-any-return]


# -- the file's bytes -----------------------------------------------------------------------------


@pytest.mark.timeout(40)
@FUZZ
@given(
    name=st.sampled_from(sorted(BASES)),
    mutations=st.lists(_MUTATION, min_size=1, max_size=6),
)
def test_mutated_capture_file_replays_without_raising(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    mutations: list[tuple[str, float | int, int]],
) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "cap"
    path.write_bytes(mutate(name, mutations))
    replay_ok(path, tmp / "out")


@pytest.mark.timeout(30)
@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(BASES)), cut=st.integers(0, 7000))
def test_every_truncation_is_reported_and_the_packets_before_it_are_kept(
    name: str, cut: int
) -> None:
    whole = BASES[name]
    data = whole[: min(cut, len(whole))]
    reader = CaptureReader(io.BytesIO(data))
    packets = list(reader)
    complete = list(CaptureReader(io.BytesIO(whole)))
    # every packet is the original one; only the last may be cut (and is then still used)
    kept = max(0, len(packets) - 1)
    assert [p.data for p in packets[:kept]] == [p.data for p in complete[:kept]]
    if packets:
        assert complete[len(packets) - 1].data.startswith(packets[-1].data)
    if len(data) < len(whole):
        # every cut loses something: either the reader says so, or it stopped on a boundary
        on_boundary = len(data) in _OFFSETS[name] or len(data) == 0
        assert reader.problems or on_boundary
        if reader.problems and reader.format is not None:
            assert all(0 <= p.offset <= len(data) for p in reader.problems)


@pytest.mark.timeout(30)
@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(BASES)), mutations=st.lists(_MUTATION, max_size=4))
def test_steps_api_survives_mutated_captures(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    mutations: list[tuple[str, float | int, int]],
) -> None:
    path = tmp_path_factory.mktemp("steps") / "cap"
    path.write_bytes(mutate(name, mutations))
    count = sum(1 for _ in steps(path))
    assert count == len(list(CaptureReader(path)))


@pytest.mark.timeout(30)
@settings(max_examples=100, deadline=None)
@given(
    linktypes=st.lists(
        st.sampled_from([0, 1, 12, 101, 113, 228, 229, 276]) | st.integers(0, 0xFFFF),
        min_size=1,
        max_size=3,
    ),
    tsresol=st.none() | st.integers(0, 255),
    endian=st.sampled_from("<>"),
    interface=st.integers(0, 4),
    timestamp=st.integers(0, (1 << 64) - 1),
)
def test_interface_descriptions_of_any_kind_replay_without_raising(
    tmp_path_factory: pytest.TempPathFactory,
    linktypes: list[int],
    tsresol: int | None,
    endian: str,
    interface: int,
    timestamp: int,
) -> None:
    # link types replay does not know, timestamp resolutions up to 2**-127 s and 10**-255 s,
    # packets naming interfaces that were never described, timestamps at the end of 64 bits
    head = pcapng_shb(endian) + b"".join(
        pcapng_idb(lt, endian=endian, tsresol=tsresol) for lt in linktypes
    )
    body = b"".join(
        pcapng_packet(
            PacketRecord(timestamp, r.data, interface=interface % (len(linktypes) + 1)),
            endian=endian,
            tsresol=None,
        )
        for r in _PASSIVE_RECORDS[:12]
    )
    path = tmp_path_factory.mktemp("idb") / "cap"
    path.write_bytes(head + body)
    replay_ok(path, path.parent / "out")


# -- the packets' headers -------------------------------------------------------------------------

ETH = 14
# (name, offset from the start of the Ethernet frame, width in bytes)
_FIELDS = [
    ("ethertype", 12, 2),
    ("ip_version_ihl", ETH, 1),
    ("ip_total_length", ETH + 2, 2),
    ("ip_flags_fragment", ETH + 6, 2),
    ("ip_protocol", ETH + 9, 1),
    ("ip_checksum", ETH + 10, 2),
    ("tcp_src_port", ETH + 20, 2),
    ("tcp_dst_port", ETH + 22, 2),
    ("tcp_seq", ETH + 24, 4),
    ("tcp_ack", ETH + 28, 4),
    ("tcp_data_offset", ETH + 32, 1),
    ("tcp_flags", ETH + 33, 1),
    ("tcp_window", ETH + 34, 2),
    ("tcp_urgent", ETH + 38, 2),
    ("tcp_option", ETH + 40, 4),
]
_HEADER_MUTATION = st.tuples(
    st.integers(0, len(_PASSIVE_RECORDS) - 1),
    st.sampled_from(_FIELDS),
    st.integers(0, 0xFFFFFFFF),
    st.booleans(),  # also cut the packet right after the mutated field
)


@pytest.mark.timeout(40)
@FUZZ
@given(
    mutations=st.lists(_HEADER_MUTATION, min_size=1, max_size=8),
    reorder=st.lists(st.integers(0, len(_PASSIVE_RECORDS) - 1), max_size=4),
    linktype=st.sampled_from(["ethernet", "pcapng"]),
)
def test_mutated_packet_headers_replay_without_raising(
    tmp_path_factory: pytest.TempPathFactory,
    mutations: list[tuple[int, tuple[str, int, int], int, bool]],
    reorder: list[int],
    linktype: str,
) -> None:
    records = list(_PASSIVE_RECORDS)
    for index, (_name, at, width), value, cut in mutations:
        data = bytearray(records[index].data)
        if at + width > len(data):
            continue
        data[at : at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")
        if cut:
            del data[at + width :]
        records[index] = PacketRecord(records[index].timestamp_ns, bytes(data))
    for index in reorder:  # move a packet to the end: late, out of order, after the FIN
        records.append(records.pop(index))
    blob = pcapng_bytes(records) if linktype == "pcapng" else pcap_bytes(records)
    tmp = tmp_path_factory.mktemp("hdr")
    path = tmp / "cap"
    path.write_bytes(blob)
    for pkt in CaptureReader(path):
        decode_packet(pkt)  # the decoder alone never raises either
    replay_ok(path, tmp / "out")


# -- memory ---------------------------------------------------------------------------------------

MSS = 1400
LONG_TRANSFER = 2 << 20  # bytes of payload in the synthetic data connection
MEMORY_LIMIT = 8 << 20  # bytes of Python allocations at the peak of one replay (seen: < 3 MB)


SERVER_PORT, CLIENT_PORT = 21008, 46999
SERVER_ISN = 0x0FFF


def _long_transfer() -> list[tuple[int, Segment]]:
    """A data connection between a real capture's hosts carrying 2 MiB: (index, segment)."""
    pattern = bytes(range(256)) * (MSS // 256 + 2)
    seq = seq_add(SERVER_ISN, 1)
    segments = []
    for n in range(LONG_TRANSFER // MSS):
        payload = pattern[n % 256 : n % 256 + MSS]
        seg = Segment(SERVER_PORT, CLIENT_PORT, seq, 1, Flags.ACK | Flags.PSH, 65535, (), payload)
        segments.append((n, seg))
        seq = seq_add(seq, MSS)
    return segments


SERVER_IP = Ipv4Header("172.23.0.2", "172.23.0.3")
CLIENT_IP = Ipv4Header("172.23.0.3", "172.23.0.2")
SERVER_MAC, CLIENT_MAC = "02:42:ac:17:00:02", "02:42:ac:17:00:03"


def _frame(seg: Segment) -> bytes:
    return encode_tcp(TcpFrame(SERVER_MAC, CLIENT_MAC, SERVER_IP, seg))


def _handshake() -> list[bytes]:
    syn = Segment(CLIENT_PORT, SERVER_PORT, 0, 0, Flags.SYN, 65535, (), b"")
    syn_ack = Segment(
        SERVER_PORT, CLIENT_PORT, SERVER_ISN, 1, Flags.SYN | Flags.ACK, 65535, (), b""
    )
    ack = Segment(CLIENT_PORT, SERVER_PORT, 1, seq_add(SERVER_ISN, 1), Flags.ACK, 65535, (), b"")
    return [
        encode_tcp(TcpFrame(CLIENT_MAC, SERVER_MAC, CLIENT_IP, syn)),
        _frame(syn_ack),
        encode_tcp(TcpFrame(CLIENT_MAC, SERVER_MAC, CLIENT_IP, ack)),
    ]


_TRANSFER = _long_transfer()
_ENCODED = [_frame(seg) for _, seg in _TRANSFER]


@pytest.mark.timeout(40)
@settings(max_examples=6, deadline=None)
@given(
    # every k-th segment gets a sequence number anywhere in the 2**32 space (far ahead, behind,
    # inside the window): the reassembler must refuse what it cannot hold, not buffer it
    stride=st.integers(2, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_scrambled_sequence_numbers_keep_memory_bounded(
    tmp_path_factory: pytest.TempPathFactory, stride: int, seed: int
) -> None:
    records = list(_PASSIVE_RECORDS)  # a real FTP session, then a long data connection
    clock = records[-1].timestamp_ns
    for data in _handshake():
        clock += 1000
        records.append(PacketRecord(clock, data))
    for n, seg in _TRANSFER:
        if n % stride == 0:
            scrambled = Segment(
                seg.src_port,
                seg.dst_port,
                seq_add(seg.seq, (seed * (n + 1) * 2_654_435_761) % (1 << 32)),
                seg.ack,
                seg.flags,
                seg.window,
                (),
                seg.payload,
            )
            data = _frame(scrambled)
        else:
            data = _ENCODED[n]
        clock += 1000
        records.append(PacketRecord(clock, data))
    tmp = tmp_path_factory.mktemp("mem")
    path = tmp / "cap"
    path.write_bytes(pcap_bytes(records))
    del records
    tracemalloc.start()
    try:
        report = replay_ok(path, tmp / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT, (
        f"peak {peak / 1e6:.1f} MB for a {path.stat().st_size / 1e6:.1f} MB capture"
    )
    (long,) = [f for f in report["flows"] if f["client"].endswith(f":{CLIENT_PORT}")]
    assert long["packets"] == len(_TRANSFER) + 3
    assert 0 < long["bytes_server_to_client"] <= LONG_TRANSFER


@pytest.mark.timeout(30)
def test_a_flood_of_interface_blocks_keeps_memory_bounded() -> None:
    idbs = 50_000  # 1 MB of 20-byte blocks
    data = pcapng_shb() + pcapng_idb(1, tsresol=None) * idbs
    tracemalloc.start()
    try:
        reader = CaptureReader(io.BytesIO(data))
        assert list(reader) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(data)


# -- link type 0 and pcapng block lengths ---------------------------------------------------------


def test_null_loopback_bases_replay_like_the_ethernet_original(tmp_path: Path) -> None:
    """The fuzz bases on link type 0 are real input: unmutated, they give the same file."""
    want = replay_ok(_write(tmp_path, "eth", BASES["pcap-le-us"]), tmp_path / "a")
    for name in ("null-le", "null-be"):
        got = replay_ok(_write(tmp_path, name, BASES[name]), tmp_path / name)
        shas = [[t["sha256"] for t in s["transfers"]] for s in got["ftp_sessions"]]
        assert shas == [[t["sha256"] for t in s["transfers"]] for s in want["ftp_sessions"]]
        assert shas[0]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / f"{name}.cap"
    path.write_bytes(data)
    return path


@pytest.mark.timeout(40)
@FUZZ
@given(
    block=st.integers(1, 200),
    delta=st.integers(-3, 3).filter(lambda d: d != 0),
    pad_counted=st.booleans(),
    endian=st.sampled_from(["<", ">"]),
)
def test_pcapng_block_lengths_off_by_one_to_three_never_lose_earlier_packets(
    block: int, delta: int, pad_counted: bool, endian: str
) -> None:
    """A block length that is not a multiple of 4 (or the trailer disagreeing) is reported as
    `bad_block` or stops the reading with a reported fault; every packet before it is kept."""
    data = bytearray(pcapng_bytes(_PASSIVE_RECORDS, endian=endian))
    offsets = _framing_offsets(bytes(data))
    start = offsets[block % len(offsets)]
    u32 = endian + "I"
    (total,) = struct.unpack_from(u32, data, start + 4)
    struct.pack_into(u32, data, start + 4, total + delta)
    if pad_counted:  # the trailer agrees with the (wrong) header length
        struct.pack_into(u32, data, start + total - 4, total + delta)
    reader = CaptureReader(io.BytesIO(bytes(data)))
    packets = list(reader)
    earlier = sum(1 for o in offsets[2:] if o < start)  # SHB and IDB come first
    assert len(packets) >= min(earlier, len(_PASSIVE_RECORDS))
    assert [p.data for p in packets[:earlier]] == [r.data for r in _PASSIVE_RECORDS[:earlier]]
    assert reader.problems  # never silent
