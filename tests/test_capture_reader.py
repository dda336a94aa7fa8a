"""The streaming pcap/pcapng reader: formats, damage reported with offsets, flat memory."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.capture import reader as reader_module
from lab.capture.reader import MAX_INTERFACES_PER_SECTION, CaptureReader
from lab.capture.writer import (
    PacketRecord,
    _block,
    pcap_bytes,
    pcapng_bytes,
    pcapng_idb,
    pcapng_packet,
    pcapng_shb,
)

PEER = Path(__file__).resolve().parent.parent / "captures" / "peer"

RECORDS = [
    PacketRecord(1_700_000_000_123_456_000, b"\x01" * 60),
    PacketRecord(1_700_000_001_000_001_000, b"\x02" * 61),
    PacketRecord(1_700_000_002_999_999_000, b"\x03" * 1514),
]


def read_all(data: bytes) -> tuple[list, CaptureReader]:  # type: ignore[type-arg]
    reader = CaptureReader(io.BytesIO(data))
    return list(reader), reader


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nanos", [False, True])
def test_classic_pcap_reads_both_byte_orders_and_resolutions(endian: str, nanos: bool) -> None:
    packets, reader = read_all(pcap_bytes(RECORDS, 101, endian=endian, nanos=nanos))
    assert reader.format == "pcap"
    assert reader.problems == []
    assert [p.number for p in packets] == [1, 2, 3]
    assert [p.timestamp_ns for p in packets] == [r.timestamp_ns for r in RECORDS]
    assert [p.data for p in packets] == [r.data for r in RECORDS]
    assert {p.linktype for p in packets} == {101}
    assert [p.file_offset for p in packets] == [24, 24 + 16 + 60, 24 + 32 + 121]


def test_nanosecond_magic_keeps_nanoseconds() -> None:
    rec = [PacketRecord(1_000_000_000_123_456_789, b"x")]
    packets, _ = read_all(pcap_bytes(rec, nanos=True))
    assert packets[0].timestamp_ns == 1_000_000_000_123_456_789


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("tsresol", [6, 9, 0x80 | 20, None])
def test_pcapng_reads_both_byte_orders_and_if_tsresol(endian: str, tsresol: int | None) -> None:
    packets, reader = read_all(pcapng_bytes(RECORDS, endian=endian, tsresol=tsresol))
    assert reader.format == "pcapng"
    assert reader.problems == []
    assert [p.data for p in packets] == [r.data for r in RECORDS]
    for p, r in zip(packets, RECORDS, strict=True):
        # power-of-two resolution (2**-20 s) is exact only to about a microsecond
        assert abs(p.timestamp_ns - r.timestamp_ns) < 1000


def test_pcapng_keeps_interfaces_link_types_comments_and_direction() -> None:
    data = pcapng_shb() + pcapng_idb(1) + pcapng_idb(276, tsresol=6)
    data += pcapng_packet(PacketRecord(5_000_000_000, b"eth", interface=0, comment="hello"))
    data += pcapng_packet(
        PacketRecord(6_000_000_000, b"sll2", interface=1, direction="out"), tsresol=6
    )
    packets, reader = read_all(data)
    assert reader.problems == []
    assert [(p.linktype, p.interface) for p in packets] == [(1, 0), (276, 1)]
    assert packets[0].comment == "hello"
    assert packets[1].direction == "out"
    assert [p.timestamp_ns for p in packets] == [5_000_000_000, 6_000_000_000]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_section_and_interface_comments_and_names_are_kept(endian: str) -> None:
    data = pcapng_shb(endian, comment="recorded by lab tap; loss 5%")
    data += pcapng_idb(1, endian=endian, name="lab-veth0", comment="client side")
    data += pcapng_idb(113, endian=endian, comment="cooked")
    data += pcapng_packet(PacketRecord(1_000, b"a", interface=1, comment="p1"), endian=endian)
    data += pcapng_shb(endian, comment="second section")
    data += pcapng_idb(101, endian=endian)
    data += pcapng_packet(PacketRecord(2_000, b"b"), endian=endian)
    packets, reader = read_all(data)
    assert reader.problems == []
    assert [(p.linktype, p.interface, p.comment) for p in packets] == [
        (113, 1, "p1"),
        (101, 0, None),
    ]
    assert reader.file_comments == [
        ("section 1", "recorded by lab tap; loss 5%"),
        ("interface 0 of section 1 name", "lab-veth0"),
        ("interface 0 of section 1", "client side"),
        ("interface 1 of section 1", "cooked"),
        ("section 2", "second section"),
    ]


def test_pcapng_simple_and_obsolete_packet_blocks_are_read() -> None:
    data = pcapng_shb() + pcapng_idb(101)
    data += pcapng_packet(PacketRecord(7_000_000_000, b"old", comment="opb"), block="opb")
    data += pcapng_packet(PacketRecord(0, b"simple"), block="spb")
    packets, reader = read_all(data)
    assert reader.problems == []
    assert [p.data for p in packets] == [b"old", b"simple"]
    assert packets[0].comment == "opb"
    # a simple packet block has no timestamp: it repeats the previous one
    assert packets[1].timestamp_ns == 7_000_000_000


def test_pcapng_unknown_blocks_are_skipped() -> None:
    data = pcapng_shb() + pcapng_idb(1)
    data += _block("<", 0x00000005, b"\x00" * 12)  # interface statistics
    data += _block("<", 0x0BAD0BAD, b"whatever")
    data += pcapng_packet(PacketRecord(1, b"after"))
    packets, reader = read_all(data)
    assert [p.data for p in packets] == [b"after"]
    assert reader.problems == []


def test_new_section_resets_interfaces_and_may_change_byte_order() -> None:
    data = pcapng_shb("<") + pcapng_idb(1, endian="<") + pcapng_packet(PacketRecord(1, b"a"))
    data += pcapng_shb(">") + pcapng_idb(101, endian=">")
    data += pcapng_packet(PacketRecord(2, b"b"), endian=">")
    packets, reader = read_all(data)
    assert [(p.data, p.linktype, p.number) for p in packets] == [(b"a", 1, 1), (b"b", 101, 2)]
    assert reader.problems == []


def test_packet_for_undescribed_interface_is_reported_and_skipped() -> None:
    data = pcapng_shb() + pcapng_idb(1) + pcapng_packet(PacketRecord(1, b"x", interface=3))
    data += pcapng_packet(PacketRecord(1, b"y"))
    packets, reader = read_all(data)
    assert [p.data for p in packets] == [b"y"]
    assert [p.kind for p in reader.problems] == ["unknown_interface"]


def test_interfaces_past_the_cap_are_reported_once_and_their_packets_skipped() -> None:
    shb = pcapng_shb()
    idb = pcapng_idb(1, tsresol=None)
    extra = 3
    data = shb + idb * (MAX_INTERFACES_PER_SECTION + extra)
    data += pcapng_packet(PacketRecord(1, b"last kept", interface=MAX_INTERFACES_PER_SECTION - 1))
    data += pcapng_packet(PacketRecord(1, b"dropped", interface=MAX_INTERFACES_PER_SECTION + 1))
    data += pcapng_packet(PacketRecord(1, b"nowhere", interface=MAX_INTERFACES_PER_SECTION + 9))
    packets, reader = read_all(data)
    assert [p.data for p in packets] == [b"last kept"]
    assert [p.kind for p in reader.problems] == [
        "too_many_interfaces",
        "unknown_interface",
        "unknown_interface",
    ]
    cap, dropped, nowhere = reader.problems
    assert cap.offset == len(shb) + len(idb) * MAX_INTERFACES_PER_SECTION  # the first extra IDB
    assert "past the cap" in dropped.detail
    assert dropped.packet_number == nowhere.packet_number == 2
    assert "never described" in nowhere.detail


def test_a_new_section_after_the_cap_starts_with_room_for_interfaces() -> None:
    data = pcapng_shb() + pcapng_idb(1, tsresol=None) * (MAX_INTERFACES_PER_SECTION + 1)
    data += pcapng_shb() + pcapng_idb(101) + pcapng_packet(PacketRecord(5, b"fresh"))
    packets, reader = read_all(data)
    assert [(p.data, p.linktype) for p in packets] == [(b"fresh", 101)]
    assert [p.kind for p in reader.problems] == ["too_many_interfaces"]


def test_bad_magic_is_reported_at_offset_zero_and_nothing_is_yielded() -> None:
    packets, reader = read_all(b"GIF89a" + b"\x00" * 100)
    assert packets == []
    assert reader.unreadable
    assert [(p.kind, p.offset) for p in reader.problems] == [("bad_magic", 0)]


def test_empty_file_is_reported() -> None:
    packets, reader = read_all(b"")
    assert packets == []
    assert reader.unreadable
    assert reader.problems[0].kind == "empty"


def test_truncated_pcap_yields_what_was_readable_and_reports_offset() -> None:
    whole = pcap_bytes(RECORDS)
    cut = whole[: 24 + 16 + 60 + 16 + 30]  # second packet's data cut at 30 of 61
    packets, reader = read_all(cut)
    assert [p.number for p in packets] == [1, 2]
    assert packets[1].data == b"\x02" * 30
    [problem] = reader.problems
    assert (problem.kind, problem.offset, problem.packet_number) == ("truncated", 100, 2)


def test_truncated_record_header_is_reported() -> None:
    whole = pcap_bytes(RECORDS)
    packets, reader = read_all(whole[: 24 + 16 + 60 + 5])
    assert len(packets) == 1
    assert [(p.kind, p.offset, p.packet_number) for p in reader.problems] == [("truncated", 100, 2)]


def test_truncated_pcapng_block_is_reported_with_offset() -> None:
    head = pcapng_shb() + pcapng_idb(1)
    first = pcapng_packet(RECORDS[0])
    second = pcapng_packet(RECORDS[1])
    packets, reader = read_all(head + first + second[:-10])
    assert len(packets) == 1
    [problem] = reader.problems
    assert problem.kind == "truncated"
    assert problem.offset == len(head) + len(first)
    assert problem.packet_number == 2


def test_impossible_length_stops_the_stream_with_offset() -> None:
    good = pcap_bytes(RECORDS[:1])
    bad = struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"\x00" * 64
    packets, reader = read_all(good + bad)
    assert len(packets) == 1
    [problem] = reader.problems
    assert (problem.kind, problem.offset, problem.packet_number) == (
        "impossible_length",
        len(good),
        2,
    )


def test_impossible_pcapng_block_length_is_reported() -> None:
    data = pcapng_shb() + pcapng_idb(1) + struct.pack("<II", 6, 13) + b"\x00" * 20
    packets, reader = read_all(data)
    assert packets == []
    assert reader.problems[0].kind == "impossible_length"


def test_snaplen_cut_packet_is_yielded_and_reported() -> None:
    rec = [PacketRecord(1, b"\x00" * 68, orig_len=1514)]
    for data in (pcap_bytes(rec, snaplen=68), pcapng_bytes(rec)):
        packets, reader = read_all(data)
        assert packets[0].orig_len == 1514
        assert len(packets[0].data) == 68
        [problem] = reader.problems
        assert (problem.kind, problem.packet_number) == ("snaplen_cut", 1)


class _CountingFile(io.BytesIO):
    """Records the biggest single read: the reader must never ask for the whole file."""

    biggest = 0

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None
        assert size >= 0
        self.biggest = max(self.biggest, size)
        return super().read(size)


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_reads_block_by_block_never_the_whole_file(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reader_module, "PCAP_BLOCK", 1000)  # classic pcap: this much at a time
    many = [PacketRecord(i * 1000, bytes(100)) for i in range(2000)]
    data = pcap_bytes(many) if kind == "pcap" else pcapng_bytes(many)
    f = _CountingFile(data)
    assert sum(1 for _ in CaptureReader(f)) == 2000
    assert f.biggest <= 1000


@settings(max_examples=150, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 300), max_size=12),
    cut=st.integers(0, 4000),
    block=st.sampled_from([1, 15, 16, 17, 64, 333]),
)
def test_pcap_blocks_of_any_size_give_the_same_records_and_problems(
    sizes: list[int], cut: int, block: int
) -> None:
    """Packets crossing the end of a block (header or data), files cut anywhere: the same as
    reading the file in one block."""
    records = [
        PacketRecord(i * 1000, bytes((i + k) & 255 for k in range(n)), n + i % 3)
        for i, n in enumerate(sizes)
    ]
    data = pcap_bytes(records)[: 24 + cut]

    def read(size: int) -> tuple[list[object], list[object]]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(reader_module, "PCAP_BLOCK", size)
            reader = CaptureReader(io.BytesIO(data))
            return list(reader.records()), list(reader.problems)

    assert read(block) == read(1 << 20)


def test_peer_captures_match_scapy() -> None:
    scapy_all = pytest.importorskip("scapy.all")
    for path in sorted(PEER.glob("*.pcap"))[:6]:
        ours = list(CaptureReader(path))
        theirs = scapy_all.rdpcap(str(path))
        assert len(ours) == len(theirs), path
        for a, b in zip(ours, theirs, strict=True):
            assert a.data == bytes(b)
            assert (
                a.timestamp_ns // 1000 == int(b.time * 1_000_000 + 0.5)
                or abs(a.timestamp_ns / 1e9 - float(b.time)) < 1e-5
            )


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["pcap", "pcapng"]),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=8),
    st.integers(0, 600),
)
def test_mutated_captures_never_raise(kind: str, flips: list[tuple[int, int]], cut: int) -> None:
    recs = [
        PacketRecord(i, bytes([i]) * (40 + i), comment="c" if i % 2 else None) for i in range(5)
    ]
    data = bytearray(pcap_bytes(recs) if kind == "pcap" else pcapng_bytes(recs))
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    data = data[: len(data) - cut]
    reader = CaptureReader(io.BytesIO(bytes(data)))
    packets = list(reader)
    assert len(packets) <= 5 or kind == "pcapng"
    for p in reader.problems:
        assert 0 <= p.offset <= len(data) + 16


@pytest.mark.skipif(shutil.which("editcap") is None, reason="editcap (wireshark) is not installed")
@pytest.mark.parametrize("fmt", ["pcapng", "nsecpcap"])
def test_files_written_by_editcap_read_like_the_original(tmp_path: Path, fmt: str) -> None:
    original = PEER / "ftp_ipv6.pcap"
    converted = tmp_path / f"c.{fmt}"
    subprocess.run(
        ["editcap", "-F", fmt, str(original), str(converted)], check=True, capture_output=True
    )
    reader = CaptureReader(converted)
    got = [(p.timestamp_ns, p.data, p.linktype) for p in reader]
    want = [(p.timestamp_ns, p.data, p.linktype) for p in CaptureReader(original)]
    assert got == want
    assert reader.format == ("pcapng" if fmt == "pcapng" else "pcap")
    assert reader.problems == []


@pytest.mark.parametrize(
    "data",
    [
        pcap_bytes(RECORDS)[:20],
        pcapng_shb()[:20],
        pcapng_shb()[:8] + b"\x00\x00\x00\x00" + bytes(20),
    ],
    ids=["pcap-header-cut", "shb-cut", "shb-bad-byte-order"],
)
def test_file_without_a_complete_header_is_unreadable(data: bytes) -> None:
    packets, reader = read_all(data)
    assert packets == []
    assert reader.unreadable
    assert reader.problems
