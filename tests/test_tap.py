"""The capture tap: pcapng blocks, direction comments, annotations, nanosecond timestamps."""

from __future__ import annotations

import io
import shutil
import socket
import struct
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.capture.writer import PcapngWriter
from lab.link.packet import PacketLink
from lab.link.tap import CaptureTap

NS = 1_000_000_000


@dataclass
class QueueLink:
    """An in-memory link: `inbound` is what receive() returns, `sent` what send() got."""

    inbound: deque[bytes] = field(default_factory=deque)
    sent: list[bytes] = field(default_factory=list)

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def receive(self, timeout: float) -> bytes | None:
        return self.inbound.popleft() if self.inbound else None


@dataclass(frozen=True)
class Block:
    kind: int
    body: bytes


def read_blocks(data: bytes) -> list[Block]:
    blocks, offset = [], 0
    while offset < len(data):
        kind, total = struct.unpack_from("<II", data, offset)
        assert total % 4 == 0
        assert struct.unpack_from("<I", data, offset + total - 4)[0] == total
        blocks.append(Block(kind, data[offset + 8 : offset + total - 4]))
        offset += total
    assert offset == len(data)
    return blocks


def read_options(raw: bytes) -> dict[int, list[bytes]]:
    options: dict[int, list[bytes]] = {}
    offset = 0
    while offset < len(raw):
        code, length = struct.unpack_from("<HH", raw, offset)
        if code == 0:
            assert length == 0
            assert offset + 4 == len(raw)
            break
        options.setdefault(code, []).append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length + (-length % 4)
    return options


@dataclass(frozen=True)
class Packet:
    interface: int
    timestamp_ns: int
    data: bytes
    original_length: int
    flags: int | None
    comments: list[str]


def read_packets(data: bytes) -> tuple[list[Block], list[Packet]]:
    blocks = read_blocks(data)
    packets = []
    for block in blocks:
        if block.kind != 6:
            continue
        interface, high, low, caplen, origlen = struct.unpack_from("<IIIII", block.body)
        payload = block.body[20 : 20 + caplen]
        options = read_options(block.body[20 + caplen + (-caplen % 4) :])
        flags = struct.unpack("<I", options[2][0])[0] if 2 in options else None
        comments = [c.decode() for c in options.get(1, [])]
        packets.append(Packet(interface, high << 32 | low, payload, origlen, flags, comments))
    return blocks, packets


def ticking_clock(
    start: int = 1_700_000_000 * NS + 123_456_789, step: int = 1_001
) -> Callable[[], int]:
    now = [start - step]

    def clock() -> int:
        now[0] += step
        return now[0]

    return clock


def test_header_blocks_name_the_interface_with_ethernet_and_nanoseconds() -> None:
    buffer = io.BytesIO()
    PcapngWriter(buffer, ifname="lab0abcdefc").close()
    shb, idb = read_blocks(buffer.getvalue())
    assert shb.kind == 0x0A0D0D0A
    magic, major, minor, section_length = struct.unpack_from("<IHHq", shb.body)
    assert (magic, major, minor, section_length) == (0x1A2B3C4D, 1, 0, -1)
    assert idb.kind == 1
    linktype, _reserved, _snaplen = struct.unpack_from("<HHI", idb.body)
    assert linktype == 1
    options = read_options(idb.body[8:])
    assert options[2] == [b"lab0abcdefc"]  # if_name
    assert options[9] == [bytes([9])]  # if_tsresol: 10^-9


def test_every_frame_is_recorded_with_its_direction_and_time() -> None:
    link = QueueLink(inbound=deque([b"\x01" * 60, b"\x02" * 61]))
    buffer = io.BytesIO()
    clock = ticking_clock()
    tap = CaptureTap(link, buffer, ifname="labc", clock_ns=clock)
    tap.send(b"\x03" * 1514)
    assert tap.receive(0.1) == b"\x01" * 60
    assert tap.receive(0.1) == b"\x02" * 61
    assert tap.receive(0.1) is None  # nothing received: nothing recorded
    tap.send(b"\x04" * 63, note="FIN")
    tap.close()
    assert link.sent == [b"\x03" * 1514, b"\x04" * 63]
    _, packets = read_packets(buffer.getvalue())
    assert [p.data for p in packets] == [b"\x03" * 1514, b"\x01" * 60, b"\x02" * 61, b"\x04" * 63]
    assert [p.comments for p in packets] == [["out"], ["in"], ["in"], ["out: FIN"]]
    assert [p.flags for p in packets] == [2, 1, 1, 2]
    start = 1_700_000_000 * NS + 123_456_789
    assert [p.timestamp_ns for p in packets] == [start + i * 1_001 for i in range(4)]
    assert all(p.original_length == len(p.data) and p.interface == 0 for p in packets)


@pytest.mark.parametrize("to_file", [False, True], ids=["file object", "path"])
def test_frames_of_every_size_and_repeated_comments_are_recorded_whole(
    to_file: bool, tmp_path: Path
) -> None:
    # MTU-sized blocks are batched (300 of them cross a batch's end), GRO-merged ones written
    # as they are (into a file object given, or one the writer opened); comment options are made
    # once per (direction, comment) and reused: none of it may show in the file.
    sizes = [60, 1514, 4096, 4097, 65_226, 61, 63] + [1514] * 300 + [65_226, 60]
    link = QueueLink(inbound=deque(bytes([n % 251]) * n for n in sizes))
    buffer = io.BytesIO()
    path = tmp_path / "sizes.pcapng"
    tap = CaptureTap(link, path if to_file else buffer, clock_ns=ticking_clock())
    for n in sizes:
        tap.receive(0)
        if n > 1514:
            tap.annotate("merged")
    tap.close()
    _, packets = read_packets(path.read_bytes() if to_file else buffer.getvalue())
    assert [p.data for p in packets] == [bytes([n % 251]) * n for n in sizes]
    expected = [["in: merged"] if n > 1514 else ["in"] for n in sizes]
    assert [p.comments for p in packets] == expected


def test_frames_above_the_mtu_are_commented_as_gro_merged_with_their_length() -> None:
    # Offload mode: an inbound frame with more IP bytes than the MTU was merged by GRO; its
    # comment says so with its length, before any transition note, whatever the lengths
    # (the options of the plain ones are made once per length and reused).
    sizes = [1514, 65_226, 1515, 65_226, 30_000, 65_226, 60]
    link = QueueLink(inbound=deque(bytes([n % 251]) * n for n in sizes))
    buffer = io.BytesIO()
    tap = CaptureTap(link, buffer, clock_ns=ticking_clock(), merged_above=1500)
    for n in sizes:
        tap.receive(0)
        if n == 30_000:
            tap.annotate("ESTABLISHED -> CLOSE-WAIT")
    tap.send(b"\x07" * 65_226)  # outbound frames are never "merged"
    tap.close()
    _, packets = read_packets(buffer.getvalue())
    assert [p.comments for p in packets] == [
        ["in"],
        ["in: GRO-merged by the kernel: 65226 bytes, MTU 1500"],
        ["in: GRO-merged by the kernel: 1515 bytes, MTU 1500"],
        ["in: GRO-merged by the kernel: 65226 bytes, MTU 1500"],
        ["in: GRO-merged by the kernel: 30000 bytes, MTU 1500; ESTABLISHED -> CLOSE-WAIT"],
        ["in: GRO-merged by the kernel: 65226 bytes, MTU 1500"],
        ["in"],
        ["out"],
    ]


def test_annotate_adds_text_to_the_most_recent_frame_only() -> None:
    link = QueueLink(inbound=deque([b"\x05" * 60]))
    buffer = io.BytesIO()
    tap = CaptureTap(link, buffer, clock_ns=ticking_clock())
    with pytest.raises(RuntimeError):
        tap.annotate("nothing yet")
    tap.send(b"\x06" * 60)
    tap.annotate("CLOSED -> SYN-SENT")
    tap.receive(0)
    tap.annotate("SYN-SENT -> ESTABLISHED")
    tap.annotate("ack 1")
    tap.flush()
    with pytest.raises(RuntimeError):
        tap.annotate("after flush the frame is on disk")
    tap.close()
    _, packets = read_packets(buffer.getvalue())
    assert [p.comments for p in packets] == [
        ["out: CLOSED -> SYN-SENT"],
        ["in: SYN-SENT -> ESTABLISHED; ack 1"],
    ]


def test_real_clock_timestamps_are_nanoseconds_of_the_moment_of_transfer(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    before = time.time_ns()
    with CaptureTap(QueueLink(), path) as tap:
        for i in range(5):
            tap.send(bytes([i]) * 60)
    after = time.time_ns()
    _, packets = read_packets(path.read_bytes())
    stamps = [p.timestamp_ns for p in packets]
    assert stamps == sorted(stamps)
    assert before <= stamps[0]
    assert stamps[-1] <= after
    assert tap.frames_written == 5


def test_scapy_reads_the_capture_with_nanosecond_times_and_comments(tmp_path: Path) -> None:
    from scapy.utils import PcapNgReader

    path = tmp_path / "s.pcapng"
    stamp = 1_700_000_000 * NS + 987_654_321
    with CaptureTap(QueueLink(), path, clock_ns=lambda: stamp) as tap:
        tap.send(sample_frames()[0], note="hello")
    with PcapNgReader(str(path)) as reader:
        packets = list(reader)
    assert len(packets) == 1
    assert bytes(packets[0]) == sample_frames()[0]
    assert packets[0].comments == [b"out: hello"]
    assert int(packets[0].time * NS) == stamp


def sample_frames() -> list[bytes]:
    """Well-formed frames (valid checksums) so tshark has nothing to complain about."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import ARP, Ether

    a, b = "02:00:00:00:00:01", "02:00:00:00:00:02"
    return [
        bytes(
            Ether(src=a, dst="ff:ff:ff:ff:ff:ff")
            / ARP(hwsrc=a, psrc="198.18.0.2", pdst="198.18.0.1")
        ),
        bytes(
            Ether(src=b, dst=a) / ARP(op=2, hwsrc=b, psrc="198.18.0.1", hwdst=a, pdst="198.18.0.2")
        ),
        bytes(
            Ether(src=a, dst=b)
            / IP(src="198.18.0.2", dst="198.18.0.1")
            / TCP(sport=40000, dport=21, flags="S", seq=1000)
        ),
        bytes(
            Ether(src=b, dst=a)
            / IP(src="198.18.0.1", dst="198.18.0.2")
            / TCP(sport=21, dport=40000, flags="SA", seq=5000, ack=1001)
        ),
    ]


TSHARK = shutil.which("tshark")


def tshark_expert(path: Path) -> str:
    assert TSHARK is not None
    result = subprocess.run(
        [TSHARK, "-r", str(path), "-q", "-z", "expert"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Malformed" not in result.stdout + result.stderr
    assert "Errors (" not in result.stdout
    return result.stdout


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    assert TSHARK is not None
    command = [TSHARK, "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for name in fields:
        command += ["-e", name]
    out = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("|") for line in out.splitlines()]


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed (apt-get install tshark)")
def test_tshark_reads_the_capture_without_errors(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    frames = sample_frames()
    link = QueueLink(inbound=deque([frames[1], frames[3]]))
    with CaptureTap(link, path, ifname="lab123456c") as tap:
        tap.send(frames[0])
        tap.receive(0)
        tap.send(frames[2], note="CLOSED -> SYN-SENT")
        tap.receive(0)
        tap.annotate("SYN-SENT -> ESTABLISHED")
    tshark_expert(path)
    rows = tshark_fields(path, "frame.comment", "frame.interface_name", "frame.time_epoch")
    assert [row[0] for row in rows] == [
        "out",
        "in",
        "out: CLOSED -> SYN-SENT",
        "in: SYN-SENT -> ESTABLISHED",
    ]
    assert {row[1] for row in rows} == {"lab123456c"}
    assert all(len(row[2].split(".")[1]) == 9 for row in rows)  # nanosecond resolution


@pytest.mark.privileged
def test_tap_on_a_live_link_captures_an_arp_exchange(tmp_path: Path) -> None:
    from lab.topology import Topology

    path = tmp_path / "live.pcapng"
    with Topology() as topo, PacketLink.open_client_end(topo) as link:
        info = topo.info
        ours = bytes.fromhex(info.client_mac.replace(":", ""))
        request = (
            b"\xff" * 6
            + ours
            + struct.pack("!HHHBBH", 0x0806, 1, 0x0800, 6, 4, 1)
            + ours
            + socket.inet_aton(info.client_ip)
            + b"\x00" * 6
            + socket.inet_aton(info.server_ip)
        )
        with CaptureTap(link, path, ifname=info.client_if) as tap:
            tap.send(request)
            reply = tap.receive(2.0)
            assert reply is not None
    _, packets = read_packets(path.read_bytes())
    assert [p.data for p in packets] == [request, reply]
    assert [p.comments for p in packets] == [["out"], ["in"]]
    assert [p.flags for p in packets] == [2, 1]  # epb_flags: outbound, inbound
    if TSHARK is not None:
        tshark_expert(path)
