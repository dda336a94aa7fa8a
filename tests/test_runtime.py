"""The runtime: a loop between host and link, blocking sockets, timers from a monotonic clock.

Two layers of tests. Unprivileged ones run two lab stacks against each other over a UDP loopback
"wire" (a real file descriptor for the selector, with real loss when a socket buffer overflows).
Privileged ones put the stack on the lab topology and talk to the Linux kernel in the server
namespace: an echo server there, a kernel client connecting to our listener, ping, ARP.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from privileges import skip_unless_root

from lab.host import Host
from lab.link.packet import PacketLink
from lab.link.tap import CaptureTap
from lab.runtime import (
    RECEIVE_BATCH,
    RECEIVE_BATCH_BYTES,
    ConnectionRefused,
    ConnectionReset,
    HostUnreachable,
    Runtime,
    Socket,
    Timeout,
    annotate_transitions,
)
from lab.tcp.connection import State, TcpConfig
from lab.tcp.endpoint import TcpEndpoint
from lab.topology import Topology, TopologyInfo
from lab.topology.peers import start_echo_server

A_MAC, A_IP = "02:00:00:00:00:0a", "198.18.0.10"
B_MAC, B_IP = "02:00:00:00:00:0b", "198.18.0.11"
FAST_CLOSE = TcpConfig(msl=200_000)  # TIME-WAIT of 0.4 s so tests end soon


class UdpWire:
    """One end of a point-to-point "Ethernet" made of two UDP sockets on loopback."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.setblocking(False)
        self.dropped = 0

    @classmethod
    def pair(cls) -> tuple[UdpWire, UdpWire]:
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            s.bind(("127.0.0.1", 0))
        a.connect(b.getsockname())
        b.connect(a.getsockname())
        return cls(a), cls(b)

    def send(self, frame: bytes) -> None:
        try:
            self.sock.send(frame)
        except (BlockingIOError, ConnectionRefusedError):
            self.dropped += 1  # a full buffer is a lossy wire; TCP retransmits

    def receive(self, timeout: float) -> bytes | None:
        try:
            return self.sock.recv(65535)
        except (BlockingIOError, ConnectionRefusedError):
            return None

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def now_us() -> int:
    return time.monotonic_ns() // 1000


@pytest.fixture
def pair() -> Iterator[tuple[Runtime, Runtime]]:
    """Two runtimes (a: 198.18.0.10, b: 198.18.0.11) on one wire, stopped afterwards."""
    wire_a, wire_b = UdpWire.pair()
    host_a = Host(A_MAC, A_IP, 24, None, now=now_us(), tcp=TcpEndpoint(A_IP, config=FAST_CLOSE))
    host_b = Host(
        B_MAC, B_IP, 24, None, now=now_us(), tcp=TcpEndpoint(B_IP, config=FAST_CLOSE, rng_seed=1)
    )
    with Runtime(host_a, wire_a) as a, Runtime(host_b, wire_b) as b:
        yield a, b
    wire_a.close()
    wire_b.close()


def echo_once(listening_runtime: Runtime, port: int, ready: threading.Event) -> threading.Thread:
    """Accept one connection on `port` and echo it until EOF, in a thread."""
    listener = listening_runtime.listen(port)

    def serve() -> None:
        ready.set()
        with listener, listener.accept(timeout=10) as conn:
            while data := conn.recv(65536, timeout=10):
                conn.sendall(data, timeout=10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def exchange(sock: Socket, payload: bytes, timeout: float = 30) -> bytes:
    """Send `payload` from a thread while receiving; half-close after sending; read to EOF."""
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            sock.sendall(payload, timeout=timeout)
            sock.shutdown()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    received = bytearray()
    while chunk := sock.recv(1 << 16, timeout=timeout):
        received += chunk
    thread.join(timeout)
    if errors:
        raise errors[0]
    return bytes(received)


# -- unprivileged: two lab stacks ---------------------------------------------------------------


def test_connect_send_recv_and_close_between_two_runtimes(pair: tuple[Runtime, Runtime]) -> None:
    a, b = pair
    ready = threading.Event()
    server = echo_once(b, 7, ready)
    ready.wait(5)
    payload = os.urandom(1 << 20)
    with a.connect(B_IP, 7, timeout=5) as sock:
        assert sock.state is State.ESTABLISHED
        assert exchange(sock, payload) == payload
        assert sock.wait_closed(timeout=5) in (State.TIME_WAIT, State.CLOSED)
    server.join(5)
    assert not server.is_alive()
    # ARP resolved both ways without any static entry.
    assert a.host.arp.lookup(B_IP, now_us()) == B_MAC
    assert b.host.arp.lookup(A_IP, now_us()) == A_MAC


def test_connect_to_a_closed_port_raises_connection_refused(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, _ = pair
    with pytest.raises(ConnectionRefused):
        a.connect(B_IP, 9, timeout=5)
    assert isinstance(ConnectionRefused(), ConnectionRefusedError)


def test_connect_to_a_silent_address_reports_host_unreachable(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, _ = pair
    started = time.monotonic()
    with pytest.raises(HostUnreachable):
        a.connect("198.18.0.99", 7, timeout=10)
    assert 2.5 < time.monotonic() - started < 6  # three ARP requests one second apart


def test_recv_times_out_with_the_builtin_timeout_error(pair: tuple[Runtime, Runtime]) -> None:
    a, b = pair
    listener = b.listen(8)
    sock = a.connect(B_IP, 8, timeout=5)
    peer = listener.accept(timeout=5)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        sock.recv(10, timeout=0.2)
    assert time.monotonic() - started >= 0.2
    peer.sendall(b"late", timeout=5)
    assert sock.recv(10, timeout=5) == b"late"


def test_peer_abort_raises_connection_reset(pair: tuple[Runtime, Runtime]) -> None:
    a, b = pair
    listener = b.listen(9)
    sock = a.connect(B_IP, 9, timeout=5)
    listener.accept(timeout=5).abort()
    with pytest.raises(ConnectionReset):
        sock.recv(10, timeout=5)


def test_half_close_lets_the_peer_keep_sending(pair: tuple[Runtime, Runtime]) -> None:
    a, b = pair
    listener = b.listen(10)
    sock = a.connect(B_IP, 10, timeout=5)
    peer = listener.accept(timeout=5)
    sock.sendall(b"request", timeout=5)
    sock.shutdown()
    assert peer.recv(100, timeout=5) == b"request"
    assert peer.recv(100, timeout=5) == b""  # our FIN
    peer.sendall(b"answer after your FIN", timeout=5)
    peer.close()
    assert sock.recv(100, timeout=5) == b"answer after your FIN"
    assert sock.recv(100, timeout=5) == b""
    assert sock.wait_closed(timeout=5) is State.TIME_WAIT


def test_accept_times_out(pair: tuple[Runtime, Runtime]) -> None:
    _, b = pair
    with b.listen(11) as listener, pytest.raises(Timeout):
        listener.accept(timeout=0.1)


def test_a_source_the_listener_does_not_admit_is_refused_at_the_syn(
    pair: tuple[Runtime, Runtime],
) -> None:
    a, b = pair
    asked: list[tuple[str, int]] = []

    def nobody(ip: str, port: int) -> bool:
        asked.append((ip, port))
        return False

    listener = b.listen(14, accept_from=nobody)
    started = time.monotonic()
    with pytest.raises(ConnectionRefused):
        a.connect(B_IP, 14, timeout=5)
    assert time.monotonic() - started < 2  # the RST came at once, not after a handshake
    assert [ip for ip, _ in asked] == [A_IP]
    assert b.host.tcp.stats.syn_rejected == 1
    with pytest.raises(Timeout):
        listener.accept(timeout=0.1)  # nothing ever reached the backlog
    b.listen(15, accept_from=lambda ip, port: ip == A_IP)
    a.connect(B_IP, 15, timeout=5).close()


def test_lab_data_listener_resets_a_foreign_address_at_the_syn_and_logs_it(
    pair: tuple[Runtime, Runtime], caplog: pytest.LogCaptureFixture
) -> None:
    from lab.ftp.transport import LabDataListener, LabTransport

    a, b = pair
    with caplog.at_level(logging.WARNING, logger="lab.ftp"):
        data = LabTransport(b, seed=1).listen(B_IP, peer_ip="198.18.0.1")
        assert isinstance(data, LabDataListener)
        with pytest.raises(ConnectionRefused):
            a.connect(*data.address, timeout=5)
        data.close()
    assert [ip for ip, _ in data.rejected] == [A_IP]
    assert any(A_IP in r.getMessage() and "rejected" in r.getMessage() for r in caplog.records)


def test_frame_callback_sees_both_directions_and_state_transitions() -> None:
    wire_a, wire_b = UdpWire.pair()
    seen: list[tuple[str, list[str]]] = []
    host_a = Host(A_MAC, A_IP, 24, None, now=now_us())
    host_b = Host(B_MAC, B_IP, 24, None, now=now_us(), tcp=TcpEndpoint(B_IP, rng_seed=1))

    def callback(direction: str, frame: bytes, transitions: list[str]) -> None:
        seen.append((direction, transitions))

    with Runtime(host_a, wire_a, on_frame=callback) as a, Runtime(host_b, wire_b) as b:
        b.listen(12)
        a.connect(B_IP, 12, timeout=5)
    wire_a.close()
    wire_b.close()
    assert {d for d, _ in seen} == {"in", "out"}
    notes = [n for _, ns in seen for n in ns]
    assert any("SYN-SENT -> ESTABLISHED" in n for n in notes)


@dataclass
class QueuedFrames:
    """A link whose frames wait in a queue (never readable to a selector: not started)."""

    frames: deque[bytes]

    def send(self, frame: bytes) -> None:
        pass

    def receive(self, timeout: float) -> bytes | None:
        return self.frames.popleft() if self.frames else None

    def fileno(self) -> int:
        return -1


def test_a_receive_batch_ends_after_a_megabyte_so_the_acks_owed_go_out_mid_burst() -> None:
    # GRO-merged frames of 64 KB: the loop takes about RECEIVE_BATCH_BYTES of them, then turns
    # (timers, output: the ACK for them) before the next; small frames stop at RECEIVE_BATCH.
    merged = 65_226
    link = QueuedFrames(deque(b"\x00" * merged for _ in range(60)))
    host = Host(A_MAC, A_IP, 24, None, now=now_us())
    runtime = Runtime(host, link)
    runtime._receive_batch()
    taken = 60 - len(link.frames)
    assert taken == -(-RECEIVE_BATCH_BYTES // merged)
    link.frames = deque(b"\x00" * 60 for _ in range(RECEIVE_BATCH + 10))
    runtime._receive_batch()
    assert len(link.frames) == 10
    runtime.stop()


def test_stop_joins_the_loop_thread_and_blocked_calls_fail(pair: tuple[Runtime, Runtime]) -> None:
    _, b = pair
    listener = b.listen(13)
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            listener.accept(timeout=10)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()
    time.sleep(0.1)
    b.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert errors
    assert isinstance(errors[0], RuntimeError)


# -- privileged: the lab stack against the Linux kernel -----------------------------------------

KERNEL_CLIENT = textwrap.dedent(
    """
    import hashlib, os, socket, sys, threading
    size = int(sys.argv[3])
    data = b"".join(b"%09d kernel to lab\\n" % i for i in range(size // 24 + 1))[:size]
    sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=60)
    def writer():
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=writer)
    t.start()
    back = hashlib.sha256()
    n = 0
    while chunk := sock.recv(65536):
        back.update(chunk)
        n += len(chunk)
    t.join()
    sock.close()
    ok = back.hexdigest() == hashlib.sha256(data).hexdigest()
    print(n, "ok" if ok else "MISMATCH", flush=True)
    """
)

TEN_MB = 10 * 1024 * 1024


def numbered_lines(size: int) -> bytes:
    """Text whose every line is numbered: a lost, repeated or misplaced byte changes the hash.

    Not random bytes: tshark's heuristic dissectors (Thrift) misread random payloads as broken
    protocols, and the capture must pass `tshark -z expert` without errors."""
    line = len(b"%09d lab to kernel\n" % 0)
    return b"".join(b"%09d lab to kernel\n" % i for i in range(size // line + 1))[:size]


def kernel_tcp_counters() -> dict[str, int]:
    """The Tcp: line of /proc/net/snmp of the calling thread's namespace."""
    lines = [ln.split() for ln in Path("/proc/thread-self/net/snmp").read_text().splitlines()]
    names, values = [ln for ln in lines if ln[0] == "Tcp:"][:2]
    return dict(zip(names[1:], map(int, values[1:]), strict=True))


def ping_once(target: str, timeout: float = 3.0) -> bool:
    """One ICMP echo through a raw socket (no `ping` binary needed); True when answered."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(timeout)
    ident, seq, data = os.getpid() & 0xFFFF, 1, b"lab ping"
    header = bytes((8, 0, 0, 0)) + ident.to_bytes(2) + seq.to_bytes(2)
    from lab.wire.checksum import internet_checksum

    checksum = internet_checksum(header + data)
    sock.sendto(header[:2] + checksum.to_bytes(2) + header[4:] + data, (target, 0))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            packet, (source, _) = sock.recvfrom(2048)
            icmp = packet[(packet[0] & 0x0F) * 4 :]
            if source == target and icmp[0] == 0 and icmp[4:8] == header[4:8]:
                return icmp[8:] == data
    except TimeoutError:
        return False
    finally:
        sock.close()
    return False


NUD_PERMANENT = 0x80


@dataclass
class Live:
    """The topology with the lab stack running on the client end."""

    topo: Topology
    runtime: Runtime
    tap: CaptureTap[PacketLink]
    capture: Path

    @property
    def info(self) -> TopologyInfo:
        return self.topo.info


def forget_neighbour(topo: Topology, ip: str) -> None:
    """Delete the server kernel's ARP entry for `ip`, if it has one."""
    from pyroute2 import NetNS
    from pyroute2.netlink.exceptions import NetlinkError

    with NetNS(topo.names.server_ns, flags=0) as ns:
        index = ns.link_lookup(ifname=topo.names.server_if)[0]
        with contextlib.suppress(NetlinkError):
            ns.neigh("del", dst=ip, ifindex=index)


def kernel_neighbour(topo: Topology, ip: str) -> tuple[str, bool] | None:
    """(MAC, is static) of the server kernel's ARP entry for `ip`, or None."""
    from pyroute2 import NetNS

    with NetNS(topo.names.server_ns, flags=0) as ns:
        for entry in ns.get_neighbours(dst=ip):
            mac = entry.get_attr("NDA_LLADDR")
            if mac:
                return str(mac), bool(entry["state"] & NUD_PERMANENT)
    return None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """The topology with the lab stack on the client end, its frames captured to pcapng."""
    skip_unless_root()
    capture = tmp_path_factory.mktemp("runtime") / "runtime.pcapng"
    with Topology() as topo:
        info = topo.info
        link = PacketLink.open_client_end(topo)
        tap = CaptureTap(link, capture, ifname=info.names.client_if)
        host = Host(info.client_mac, info.client_ip, info.prefixlen, None, now=now_us())
        try:
            with Runtime(host, tap, on_frame=annotate_transitions(tap)) as runtime:
                yield Live(topo, runtime, tap, capture)
        finally:
            tap.close()
            link.close()


def start_in_server(live: Live, script: str, *args: str) -> subprocess.Popen[str]:
    """A python child in the server namespace (stopped at teardown if still running)."""
    return live.topo.popen_server(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.privileged
def test_lab_client_moves_10_mb_each_way_through_a_kernel_echo_server(live: Live) -> None:
    rt, info = live.runtime, live.info
    before = live.topo.run_in_server(kernel_tcp_counters)
    tcp_in_before = rt.host.stats.frames_in["tcp"]
    server = start_echo_server(live.topo, info.server_ip, 7)
    try:
        payload = numbered_lines(TEN_MB)
        with rt.connect(info.server_ip, 7, timeout=10) as sock:
            echoed = exchange(sock, payload, timeout=60)
            assert len(echoed) == len(payload)
            assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            # We sent FIN first: FIN-WAIT-1/2 then TIME-WAIT after the kernel's FIN.
            assert sock.wait_closed(timeout=10) is State.TIME_WAIT
    finally:
        server.terminate()
        server.wait(5)
    after = live.topo.run_in_server(kernel_tcp_counters)
    assert after["OutRsts"] == before["OutRsts"], "the kernel sent a RST"
    assert after["EstabResets"] == before["EstabResets"]
    # Offloads are off: the echo came back in real MSS-sized segments, not GRO/TSO super-frames.
    assert rt.host.stats.frames_in["tcp"] - tcp_in_before >= TEN_MB // 1460
    # We found the kernel by ARP (no static entry).
    assert rt.host.arp.lookup(info.server_ip, now_us()) == info.server_mac


@pytest.mark.privileged
def test_kernel_client_moves_10_mb_each_way_through_a_lab_listener(live: Live) -> None:
    rt, info = live.runtime, live.info
    before = live.topo.run_in_server(kernel_tcp_counters)
    # Make the kernel resolve us afresh: it must ARP, and we must answer.
    forget_neighbour(live.topo, info.client_ip)
    replies_before = rt.host.stats.frames_out["arp_reply"]
    with rt.listen(2121) as listener:
        client = start_in_server(live, KERNEL_CLIENT, info.client_ip, "2121", str(TEN_MB))
        try:
            with listener.accept(timeout=10) as sock:
                total = 0
                while data := sock.recv(1 << 16, timeout=30):
                    sock.sendall(data, timeout=30)
                    total += len(data)
                sock.shutdown()
                assert total == TEN_MB
                out, err = client.communicate(timeout=60)
                assert out.split() == [str(TEN_MB), "ok"], err
                # We closed second (after the kernel's FIN): LAST-ACK -> CLOSED.
                assert sock.wait_closed(timeout=10) is State.CLOSED
        finally:
            if client.poll() is None:
                client.kill()
                client.wait(5)
    after = live.topo.run_in_server(kernel_tcp_counters)
    assert after["OutRsts"] == before["OutRsts"], "the kernel sent a RST"
    assert rt.host.stats.frames_out["arp_reply"] > replies_before
    assert kernel_neighbour(live.topo, info.client_ip) == (info.client_mac, False)


@pytest.mark.privileged
def test_ping_from_the_server_namespace_is_answered(live: Live) -> None:
    client_ip = live.info.client_ip
    assert live.topo.run_in_server(lambda: ping_once(client_ip))
    assert live.runtime.host.stats.frames_out["icmp_echo_reply"] >= 1


@pytest.mark.privileged
def test_lab_connect_to_a_closed_kernel_port_is_refused(live: Live) -> None:
    with pytest.raises(ConnectionRefused):
        live.runtime.connect(live.info.server_ip, 9, timeout=5)


@pytest.mark.privileged
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_the_capture_passes_tshark_expert_checks_and_names_transitions(live: Live) -> None:
    """Runs last in this module: everything the other live tests did is in the capture."""
    with live.runtime._lock:  # the loop may be writing: flush between two of its frames
        live.tap.flush()
    result = subprocess.run(
        ["tshark", "-r", str(live.capture), "-q", "-z", "expert"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Malformed" not in result.stdout
    assert "Errors (" not in result.stdout, result.stdout
    comments = subprocess.run(
        [
            "tshark",
            "-r",
            str(live.capture),
            "-Y",
            "frame.comment",
            "-T",
            "fields",
            "-e",
            "frame.comment",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "SYN-SENT -> ESTABLISHED" in comments


# -- unprivileged: a scripted peer that sends ICMP errors -----------------------------------------


class ScriptedPeer:
    """The far end of a UdpWire played by the test itself, frame by frame (fast codec)."""

    def __init__(self, wire: UdpWire) -> None:
        self.wire = wire
        wire.sock.setblocking(True)
        wire.sock.settimeout(5)

    def next_frame(self, kind: type[object]) -> tuple[bytes, object]:
        from lab.wire.fast import decode_ethernet

        while True:
            raw = self.wire.sock.recv(65535)
            frame = decode_ethernet(raw)
            if isinstance(frame, kind):
                return raw, frame

    def send(self, frame: object) -> None:
        from lab.wire.fast import encode

        self.wire.sock.send(encode(frame))  # type: ignore[arg-type]

    def handshake_until_syn(self) -> tuple[bytes, object]:
        """Answer the runtime's ARP for B_IP; return the SYN that follows (raw, decoded)."""
        from lab.wire.frame import ArpFrame, TcpFrame

        while True:
            _, arp = self.next_frame(ArpFrame)
            assert isinstance(arp, ArpFrame)
            if arp.op == 1 and arp.target_ip == B_IP:
                break
        self.send(ArpFrame(B_MAC, A_MAC, 2, B_MAC, B_IP, A_MAC, A_IP))
        return self.next_frame(TcpFrame)

    def frag_needed(self, quoted_raw: bytes, mtu: int) -> None:
        from lab.wire.frame import IPPROTO_ICMP, IcmpFrame, Ipv4Header

        header = Ipv4Header(src=B_IP, dst=A_IP, protocol=IPPROTO_ICMP, dont_fragment=False)
        self.send(IcmpFrame(B_MAC, A_MAC, header, 3, 4, mtu, quoted_raw[14 : 14 + 28]))


@pytest.fixture
def scripted() -> Iterator[tuple[Runtime, ScriptedPeer]]:
    wire_a, wire_b = UdpWire.pair()
    host_a = Host(A_MAC, A_IP, 24, None, now=now_us(), tcp=TcpEndpoint(A_IP, config=FAST_CLOSE))
    with Runtime(host_a, wire_a) as rt:
        yield rt, ScriptedPeer(wire_b)
    wire_a.close()
    wire_b.close()


def test_fragmentation_needed_during_the_handshake_does_not_fail_connect(
    scripted: tuple[Runtime, ScriptedPeer],
) -> None:
    """Linux's tcp_v4_err lowers the MTU and lets the handshake go on; so must `connect`."""
    from lab.wire.frame import Ipv4Header, TcpFrame
    from lab.wire.segment import Flags, Segment

    rt, peer = scripted
    result: list[object] = []
    thread = threading.Thread(
        target=lambda: result.append(_connect_or_error(rt, B_IP, 7)), daemon=True
    )
    thread.start()
    raw_syn, syn = peer.handshake_until_syn()
    assert isinstance(syn, TcpFrame)
    peer.frag_needed(raw_syn, 1280)
    time.sleep(0.3)  # the runtime has processed the ICMP error before the SYN-ACK comes
    assert result == []  # still waiting for the SYN-ACK, not failed
    seg = syn.segment
    synack = Segment(7, seg.src_port, 5000, (seg.seq + 1) % 2**32, Flags.SYN | Flags.ACK, 65535)
    peer.send(TcpFrame(B_MAC, A_MAC, Ipv4Header(src=B_IP, dst=A_IP), synack))
    thread.join(5)
    (sock,) = result
    assert isinstance(sock, Socket), sock
    assert sock.state is State.ESTABLISHED
    assert [e.mtu for e in sock.soft_errors] == [1280]
    assert rt.host.mss_for(B_IP, rt.now()) == 1240


def test_each_icmp_error_is_listed_once_however_often_the_socket_waits(
    scripted: tuple[Runtime, ScriptedPeer],
) -> None:
    from lab.wire.frame import Ipv4Header, TcpFrame
    from lab.wire.segment import Flags, Segment

    rt, peer = scripted
    result: list[object] = []
    thread = threading.Thread(
        target=lambda: result.append(_connect_or_error(rt, B_IP, 7)), daemon=True
    )
    thread.start()
    _, syn = peer.handshake_until_syn()
    assert isinstance(syn, TcpFrame)
    seg = syn.segment
    synack = Segment(7, seg.src_port, 5000, (seg.seq + 1) % 2**32, Flags.SYN | Flags.ACK, 65535)
    peer.send(TcpFrame(B_MAC, A_MAC, Ipv4Header(src=B_IP, dst=A_IP), synack))
    thread.join(5)
    (sock,) = result
    assert isinstance(sock, Socket), sock
    sock.send(b"x" * 3000, timeout=5)
    raw_data, _ = peer.next_frame(TcpFrame)
    peer.frag_needed(raw_data, 1280)
    for _ in range(3):
        with pytest.raises(Timeout):
            sock.wait_closed(timeout=0.1)
    assert [e.mtu for e in sock.soft_errors] == [1280]


def _connect_or_error(
    rt: Runtime, addr: str, port: int, timeout: float = 5
) -> Socket | BaseException:
    try:
        return rt.connect(addr, port, timeout=timeout)
    except BaseException as exc:
        return exc


def test_a_connect_timeout_gives_up_the_handshake_and_sends_nothing_more(
    scripted: tuple[Runtime, ScriptedPeer],
) -> None:
    """The peer answers ARP but swallows SYNs: Timeout on time, then no SYN retransmission."""
    from lab.wire.frame import TcpFrame

    rt, peer = scripted
    result: list[object] = []
    started = time.monotonic()
    thread = threading.Thread(
        target=lambda: result.append(_connect_or_error(rt, B_IP, 7, timeout=0.5)), daemon=True
    )
    thread.start()
    peer.handshake_until_syn()
    thread.join(5)
    elapsed = time.monotonic() - started
    (error,) = result
    assert isinstance(error, Timeout), error
    assert 0.5 <= elapsed < 1.5
    with rt._lock:
        assert all(c.state is State.CLOSED for c in rt.host.tcp.connections.values())
    peer.wire.sock.settimeout(1.5)  # the first SYN retransmission would come after 1 s
    with pytest.raises(socket.timeout):
        peer.next_frame(TcpFrame)
