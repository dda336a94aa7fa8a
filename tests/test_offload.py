"""Offload mode: the kernel's checksum verdict (PACKET_AUXDATA), GRO-merged frames, and the mode's
capture; the bulk receive path and header prediction giving the same result as the full path.

The unit tests feed synthetic frames and synthetic auxdata statuses (a fake packet socket) to the
link, the runtime and the host; the live test fetches a file through a veth with GRO on.
"""

from __future__ import annotations

import hashlib
import socket
import struct
from pathlib import Path

import pytest
from test_host import OUR_IP, OUR_MAC, PEER_IP, PEER_MAC, arp, eth, ip_frame, ipv4, make_host

from lab.capture.reader import read_packets
from lab.host import Host
from lab.link.packet import (
    DEFAULT_RCVBUF,
    PACKET_AUXDATA,
    SOL_PACKET,
    TP_STATUS_CSUM_VALID,
    PacketLink,
)
from lab.runtime import Runtime
from lab.tcp.connection import Connection, State
from lab.tcp.endpoint import TcpEndpoint
from lab.wire.checksum import internet_checksum, ipv4_pseudo_header_sum
from lab.wire.fast import DropReason

PEER_PORT, OUR_PORT, PEER_ISN = 21, 40000, 1000
FIRST_SEGMENT = 1448  # what a GRO-merged frame's checksum field was computed over


def tcp_segment(seq: int, ack: int, flags: int, payload: bytes, *, checksum_over: int) -> bytes:
    """A TCP segment whose checksum covers only the first `checksum_over` payload bytes (all of
    them for an honest segment; the first segment's for a GRO-merged frame)."""
    header = struct.pack("!HHIIBBHHH", PEER_PORT, OUR_PORT, seq, ack, 5 << 4, flags, 65535, 0, 0)
    covered = header + payload[:checksum_over]
    pseudo = ipv4_pseudo_header_sum(PEER_IP, OUR_IP, 6, len(covered))
    checksum = internet_checksum(covered, pseudo)
    return header[:16] + checksum.to_bytes(2) + header[18:] + payload


def data_frame(conn: Connection, payload: bytes, *, checksum_over: int | None = None) -> bytes:
    over = len(payload) if checksum_over is None else checksum_over
    segment = tcp_segment(PEER_ISN + 1, conn.snd_nxt, 0x10, payload, checksum_over=over)
    return ip_frame(ipv4(PEER_IP, OUR_IP, 6, segment))


def established(h: Host) -> Connection:
    """Our active open to the peer, answered: the connection is ESTABLISHED."""
    [o.data for o in h.outgoing_frames(0)]
    h.receive_frame(eth(OUR_MAC, PEER_MAC, 0x0806, arp(2, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)), 0)
    conn = h.tcp.connect(PEER_IP, PEER_PORT, 0, local_port=OUR_PORT)
    [o.data for o in h.outgoing_frames(0)]
    syn_ack = tcp_segment(PEER_ISN, conn.snd_nxt, 0x12, b"", checksum_over=0)
    h.receive_frame(ip_frame(ipv4(PEER_IP, OUR_IP, 6, syn_ack)), 1)
    [o.data for o in h.outgoing_frames(1)]
    assert conn.state is State.ESTABLISHED
    return conn


def payload_of(size: int) -> bytes:
    return bytes(i * 7 % 251 for i in range(size))


# -- the host: who vouches for a checksum ---------------------------------------------------------


def test_bad_checksum_is_dropped_when_the_kernel_did_not_vouch_for_it() -> None:
    h = make_host()
    conn = established(h)
    frame = bytearray(data_frame(conn, b"hello"))
    frame[-1] ^= 0xFF  # one payload byte changed after the checksum was computed
    h.receive_frame(bytes(frame), 2)
    assert conn.recv_buffered == 0
    assert h.decode_stats.drops[DropReason.BAD_TCP_CHECKSUM] == 1


def test_gro_merged_frame_is_dropped_without_the_kernels_verdict() -> None:
    """Its checksum field covers the first segment only: computing it must fail."""
    h = make_host()
    conn = established(h)
    h.receive_frame(data_frame(conn, payload_of(20000), checksum_over=FIRST_SEGMENT), 2)
    assert conn.recv_buffered == 0
    assert h.decode_stats.drops[DropReason.BAD_TCP_CHECKSUM] == 1


def test_gro_merged_frame_is_taken_whole_when_the_kernel_vouched() -> None:
    h = make_host()
    conn = established(h)
    data = payload_of(20000)
    frame = data_frame(conn, data, checksum_over=FIRST_SEGMENT)
    h.receive_frame(frame, 2, checksum_verified=True)
    assert conn.read() == data
    assert h.decode_stats.dropped == 0


def test_a_vouched_frame_still_has_its_ip_header_checked() -> None:
    """AF_PACKET sees the frame before IP does: the kernel's verdict is about TCP only."""
    h = make_host()
    conn = established(h)
    segment = tcp_segment(PEER_ISN + 1, conn.snd_nxt, 0x10, b"data", checksum_over=4)
    h.receive_frame(
        ip_frame(ipv4(PEER_IP, OUR_IP, 6, segment, bad_checksum=True)), 2, checksum_verified=True
    )
    assert conn.recv_buffered == 0
    assert h.decode_stats.drops[DropReason.BAD_IP_CHECKSUM] == 1


# -- the link: PACKET_AUXDATA, and the runtime passing its verdict on ---------------------------


class FakePacketSocket:
    """Answers recvmsg_into with queued frames and a synthetic tpacket_auxdata status each
    (None: no control message at all); readable through a socketpair while frames wait."""

    def __init__(self) -> None:
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self.frames: list[tuple[bytes, int | None]] = []

    def push(self, frame: bytes, status: int | None) -> None:
        self.frames.append((frame, status))
        self._w.send(b"x")

    def fileno(self) -> int:
        return self._r.fileno()

    def recvmsg_into(
        self, buffers: list[bytearray], ancbufsize: int
    ) -> tuple[int, list[tuple[int, int, bytes]], int, tuple[str, int, int, int, bytes]]:
        if not self.frames:
            raise BlockingIOError
        self._r.recv(1)
        frame, status = self.frames.pop(0)
        buffers[0][: len(frame)] = frame
        ancillary = []
        if status is not None:
            aux = struct.pack("=IIIHHHH", status, len(frame), len(frame), 0, 14, 0, 0)
            ancillary.append((SOL_PACKET, PACKET_AUXDATA, aux))
        return len(frame), ancillary, 0, ("veth0", 0x0800, 0, 1, bytes.fromhex("020000000001"))

    def send(self, frame: bytes) -> int:
        return len(frame)

    def close(self) -> None:
        self._r.close()
        self._w.close()


@pytest.mark.parametrize(
    ("status", "verified"),
    [(TP_STATUS_CSUM_VALID, True), (0, False), (None, False), (TP_STATUS_CSUM_VALID | 1, True)],
)
def test_link_reads_the_kernels_verdict_from_auxdata(status: int | None, verified: bool) -> None:
    sock = FakePacketSocket()
    link = PacketLink(sock, "veth0", OUR_MAC, offload=True)  # type: ignore[arg-type]
    sock.push(b"\x00" * 60, status)
    assert link.receive(0) == b"\x00" * 60
    assert link.checksum_verified is verified
    assert link.receive(0) is None
    sock.close()


@pytest.mark.parametrize("status", [TP_STATUS_CSUM_VALID, 0])
def test_runtime_hands_the_links_verdict_to_the_host(status: int) -> None:
    """A GRO-merged frame through link, runtime and host: taken only with CSUM_VALID."""
    h = make_host()
    conn = established(h)
    data = payload_of(30000)
    sock = FakePacketSocket()
    link = PacketLink(sock, "veth0", OUR_MAC, offload=True)  # type: ignore[arg-type]
    with Runtime(h, link) as runtime:
        sock.push(data_frame(conn, data, checksum_over=FIRST_SEGMENT), status)
        with runtime._lock:
            runtime._wait(
                lambda: conn.recv_buffered > 0 or h.decode_stats.dropped > 0,
                runtime._deadline(5),
                "the frame to be taken or dropped",
            )
            taken = conn.read()
    assert taken == (data if status else b"")
    assert h.decode_stats.drops[DropReason.BAD_TCP_CHECKSUM] == (0 if status else 1)
    sock.close()


# -- the fast paths agree with the full path ----------------------------------------------------


def test_in_order_segments_give_the_same_bytes_and_acks_on_both_paths() -> None:
    """Header prediction and the bulk decoder are shortcuts: the bytes delivered and the ACKs
    sent are those of the full path (forced here by a frame the bulk path does not take)."""

    def run(fast: bool) -> tuple[bytes, list[bytes]]:
        h = make_host(tcp=TcpEndpoint(OUR_IP, isn_key=b"same-isn-on-both-paths"))
        conn = established(h)
        acks: list[bytes] = []
        seq = PEER_ISN + 1
        for i in range(6):
            chunk = payload_of(1000 + i)
            segment = tcp_segment(seq, conn.snd_nxt, 0x18, chunk, checksum_over=len(chunk))
            frame = ip_frame(ipv4(PEER_IP, OUR_IP, 6, segment))
            if not fast:
                conn._state = State.FIN_WAIT_2  # no prediction, no bulk path; same text rules
            h.receive_frame(frame, 10 + i)
            if not fast:
                conn._state = State.ESTABLISHED
            acks += [f[14 + 20 : 14 + 20 + 20] for f in [o.data for o in h.outgoing_frames(10 + i)]]
            seq += len(chunk)
        return conn.read(), acks

    assert run(fast=True) == run(fast=False)


# -- live: a transfer through a veth with GRO on -------------------------------------------------


@pytest.mark.privileged
def test_offload_mode_retr_is_byte_exact_with_merged_frames(tmp_path: Path) -> None:
    from lab.ftp.client import Client
    from lab.ftp.server import EmbeddedServer, sample_bytes
    from lab.ftp.transport import LabTransport
    from lab.session import LabStack

    capture = tmp_path / "offload.pcapng"
    target = tmp_path / "10M.bin"
    with LabStack.on_topology(codec="fast", capture=capture, offload=True) as stack:
        assert stack.topology is not None
        assert stack.link.offload
        # A receive window as a receiver's autotuning would grow it (lab.session).
        assert stack.host.tcp.config.recv_buffer == 4 << 20
        with (
            EmbeddedServer(stack.topology, big=True) as server,
            Client(LabTransport(stack.runtime), timeout=30, data_timeout=30) as client,
        ):
            client.connect(server.address, 21)
            client.login()
            client.retrieve("pub/10M.bin", target)
    expected = sample_bytes("pub/10M.bin", 10 << 20)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(expected).digest()
    records = list(read_packets(capture))
    merged = [r for r in records if len(r.data) > 1514]
    assert merged, "no GRO-merged frame reached the stack"
    assert all("GRO-merged" in (r.comment or "") for r in merged)
    assert stack.host.decode_stats.drops[DropReason.BAD_TCP_CHECKSUM] == 0


def test_only_offload_mode_grows_the_default_receive_buffer() -> None:
    from lab.session import default_tcp_config
    from lab.tcp.connection import TcpConfig

    faithful = default_tcp_config(offload=False)
    assert faithful.recv_buffer == TcpConfig().recv_buffer  # faithful: the lessons' window
    assert default_tcp_config(offload=True).recv_buffer == 4 << 20
    assert default_tcp_config(offload=True).recv_buffer > TcpConfig().recv_buffer
    assert default_tcp_config(offload=True).ack_batch == 1 << 20  # one ACK per burst
    # A backlog is ACKed once in both modes (Linux's tcp_backlog_ack_defer), a quarter window
    assert faithful.ack_batch == faithful.recv_buffer // 4
    assert TcpConfig().ack_batch == 0  # RFC 5681's every second segment: tests and lab script


@pytest.mark.privileged
def test_the_links_offload_ring_holds_a_window_of_merged_frames_twice_and_a_sniffers_more() -> None:
    # The link's TCP never lets more than its receive window in flight: the ring holds that
    # many merged frames with as many slots again for frames GRO did not merge. A sniffer of
    # the kernel's own transfers is paced by no one of ours: it keeps a larger ring.
    # The sockets are opened in a namespace of the lab's: as an ordinary user (`lab rootless`)
    # AF_PACKET is refused in the host's own network namespace.
    from lab.link.ring import LINK_MERGED_ROOM, open_rx_ring
    from lab.session import OFFLOAD_RECV_BUFFER
    from lab.topology import Topology
    from lab.topology.netns import socket_in_namespace

    merged = 65_226  # what GRO makes of 45 segments of 1448 bytes, with the headers
    window_frames = -(-OFFLOAD_RECV_BUFFER // (merged - 66))
    rings = []
    with Topology(handle_signals=False) as topo:
        for room in (LINK_MERGED_ROOM, 4):
            with socket_in_namespace(
                topo.names.client_ns, socket.AF_PACKET, socket.SOCK_RAW
            ) as sock:
                ring = open_rx_ring(sock, DEFAULT_RCVBUF, offload=True, merged_room=room)
                assert ring is not None
                rings.append(ring.slots)
                assert ring.slot_size >= 65_536 + 48
                ring.close()
    link_slots, sniffer_slots = rings
    assert link_slots >= 2 * window_frames
    assert sniffer_slots > link_slots


def test_a_merged_payload_reaches_the_application_as_a_view_of_its_frame_not_a_copy() -> None:
    # Header prediction hands a GRO-merged payload on as a memoryview of the frame it came in;
    # the connection keeps it by reference, and a bulk read gives it out as it is: the bytes
    # the application writes are the frame's own, exactly and in order.
    from test_prediction import encode, receiver

    r = receiver(prediction=True)
    payloads = [bytes([i]) * 20_000 + bytes(range(256)) for i in range(4)]
    frames = []
    for payload in payloads:
        frames.append(encode(r, payload=payload))
        r.seq += len(payload)
    for frame in frames:
        r.host.receive_frame(frame, 10)
    chunks = r.conn.read_chunks(1 << 20)
    assert b"".join(chunks) == b"".join(payloads)
    predicted = chunks[1:]  # the first frame took the general path, which made the prediction
    assert len(predicted) == 3
    for chunk, frame in zip(predicted, frames[1:], strict=True):
        assert isinstance(chunk, memoryview)
        assert chunk.obj is frame
