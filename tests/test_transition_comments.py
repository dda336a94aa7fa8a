"""Capture comments name the TCP transition on the frame that shows it, in both directions.

An inbound frame reports what it caused; a transition caused by an application call or a timer
(our SYN: CLOSED -> SYN-SENT; our FIN: ESTABLISHED -> FIN-WAIT-1; an abort's RST) rides on the next
outbound frame of that connection. First in memory between two sans-IO hosts, then through the
runtime over a socketpair, then on the lab topology into a pcapng file read back with
`lab.capture.reader`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.host import Host, OutgoingFrame
from lab.link.socketpair import SocketPairLink
from lab.runtime import Runtime, Socket, describe_transition
from lab.tcp.connection import State, TcpConfig
from lab.tcp.endpoint import TcpEndpoint
from lab.wire.fast import decode_ethernet
from lab.wire.frame import TcpFrame

A_MAC, A_IP = "02:00:00:00:00:0a", "198.18.0.10"
B_MAC, B_IP = "02:00:00:00:00:0b", "198.18.0.11"
FAST_CLOSE = TcpConfig(msl=100_000)


def hosts() -> tuple[Host, Host]:
    a = Host(A_MAC, A_IP, 24, None, now=0, tcp=TcpEndpoint(A_IP, config=FAST_CLOSE))
    b = Host(B_MAC, B_IP, 24, None, now=0, tcp=TcpEndpoint(B_IP, config=FAST_CLOSE, rng_seed=1))
    return a, b


def notes(frame: OutgoingFrame) -> tuple[str, ...]:
    """A frame's transitions in the words of its capture comment."""
    return tuple(describe_transition(t) for t in frame.transitions)


def send(src: Host, dst: Host, now: int) -> list[tuple[OutgoingFrame, list[str]]]:
    """Move `src`'s frames to `dst`: each with the notes it carried and what it caused there."""
    moved = []
    for frame in src.outgoing_frames(now):
        caused = dst.receive_frame(frame.data, now)
        moved.append((frame, [describe_transition(t) for t in caused]))
    return moved


def flags_of(frame: OutgoingFrame) -> str:
    value = decode_ethernet(frame.data)
    return value.segment.flags.name or "" if isinstance(value, TcpFrame) else "-"


def test_our_syn_carries_closed_to_syn_sent_even_when_it_waited_for_arp() -> None:
    a, b = hosts()
    b.tcp.listen(7)
    conn = a.tcp.connect(B_IP, 7, 0, local_port=40000)
    first = send(a, b, 0)  # gratuitous ARP and the ARP request: the SYN waits
    assert all(notes(f) == () for f, _ in first)
    send(b, a, 10)  # b's ARP reply releases the SYN
    (syn, caused) = next(m for m in send(a, b, 20) if "SYN" in flags_of(m[0]))
    assert notes(syn) == ("40000 > 198.18.0.11:7: CLOSED -> SYN-SENT",)
    assert caused[-1] == "7 > 198.18.0.10:40000: LISTEN -> SYN-RECEIVED"
    (syn_ack, caused) = send(b, a, 30)[0]
    assert notes(syn_ack) == ()  # caused by the SYN, already reported on it
    assert caused == ["40000 > 198.18.0.11:7: SYN-SENT -> ESTABLISHED"]
    assert conn.state is State.ESTABLISHED


def test_our_fin_carries_the_close_even_if_an_inbound_frame_came_between() -> None:
    a, b = hosts()
    b.tcp.listen(7)
    conn = a.tcp.connect(B_IP, 7, 0, local_port=40000)
    for now in range(0, 100, 10):
        send(a, b, now)
        send(b, a, now)
    peer = b.tcp.listeners[7].accept()
    assert peer is not None
    assert conn.state is State.ESTABLISHED
    peer.send(b"hello", 100)
    conn.close(100)  # ESTABLISHED -> FIN-WAIT-1, not yet on the wire
    (_data, caused) = send(b, a, 100)[0]
    assert caused == []  # the data frame did not cause the close
    fins = send(a, b, 110)
    assert notes(fins[0][0]) == ("40000 > 198.18.0.11:7: ESTABLISHED -> FIN-WAIT-1",)
    assert all(notes(f) == () for f, _ in fins[1:])
    assert fins[0][1] == ["7 > 198.18.0.10:40000: ESTABLISHED -> CLOSE-WAIT"]
    peer.close(120)  # CLOSE-WAIT -> LAST-ACK rides on b's FIN
    (fin, caused) = next(m for m in send(b, a, 120) if "FIN" in flags_of(m[0]))
    assert notes(fin) == ("7 > 198.18.0.10:40000: CLOSE-WAIT -> LAST-ACK",)
    assert "40000 > 198.18.0.11:7: FIN-WAIT-2 -> TIME-WAIT" in caused


def test_a_close_behind_queued_data_is_named_on_the_fin_not_on_the_data() -> None:
    a, b = hosts()
    b.tcp.listen(7)
    conn = a.tcp.connect(B_IP, 7, 0, local_port=40000)
    for now in range(0, 100, 10):
        send(a, b, now)
        send(b, a, now)
    assert conn.state is State.ESTABLISHED
    conn.send(b"x" * 5000, 100)
    conn.close(100)  # ESTABLISHED -> FIN-WAIT-1 at once; the FIN leaves after the data
    moved = []
    for now in range(110, 300, 10):
        moved += send(a, b, now)
        send(b, a, now)
    assert len(moved) >= 4  # four data segments, the FIN on the last or after it
    assert any("FIN" in flags_of(f) for f, _ in moved)
    noted = [(flags_of(f), notes(f)) for f, _ in moved if notes(f)]
    assert len(noted) == 1
    flags, transitions = noted[0]
    assert "FIN" in flags
    assert transitions == ("40000 > 198.18.0.11:7: ESTABLISHED -> FIN-WAIT-1",)
    assert all("FIN" not in flags_of(f) for f, _ in moved if not notes(f))


def test_an_abort_names_its_transition_on_the_rst_although_the_connection_is_gone() -> None:
    a, b = hosts()
    b.tcp.listen(7)
    conn = a.tcp.connect(B_IP, 7, 0, local_port=40000)
    for now in range(0, 100, 10):
        send(a, b, now)
        send(b, a, now)
    conn.abort(100)
    (rst, caused) = send(a, b, 100)[0]
    assert "RST" in flags_of(rst)
    assert notes(rst) == ("40000 > 198.18.0.11:7: ESTABLISHED -> CLOSED",)
    assert caused == ["7 > 198.18.0.10:40000: ESTABLISHED -> CLOSED"]
    assert a.outgoing_frames(200) == []


def test_a_reset_for_a_closed_port_carries_no_transition() -> None:
    a, b = hosts()
    a.tcp.connect(B_IP, 9, 0, local_port=40000)
    from_b = []
    for now in range(0, 50, 10):
        send(a, b, now)
        from_b += send(b, a, now)
    (rst, caused) = next(m for m in from_b if "RST" in flags_of(m[0]))
    assert notes(rst) == ()
    assert caused == ["40000 > 198.18.0.11:9: SYN-SENT -> CLOSED"]


@contextlib.contextmanager
def connected_runtimes(
    callback: Callable[[str, bytes, list[str]], None],
) -> Iterator[tuple[Runtime, Socket, Socket]]:
    """Our runtime (its frames to `callback`) connected over a socketpair to a peer runtime:
    ours, our socket from port 40000, the peer's accepted socket on port 7."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a, b = hosts()
    a = Host(A_MAC, A_IP, 24, None, now=time.monotonic_ns() // 1000, tcp=a.tcp)
    b = Host(B_MAC, B_IP, 24, None, now=time.monotonic_ns() // 1000, tcp=b.tcp)
    try:
        with (
            Runtime(a, SocketPairLink(left), on_frame=callback) as ra,
            Runtime(b, SocketPairLink(right)) as rb,
        ):
            listener = rb.listen(7)
            sock = ra.connect(B_IP, 7, timeout=5, local_port=40000)
            yield ra, sock, listener.accept(timeout=5)
    finally:
        left.close()
        right.close()


def test_the_runtime_hands_outbound_transitions_to_the_frame_callback() -> None:
    seen: list[tuple[str, list[str]]] = []

    def callback(direction: str, frame: bytes, transitions: list[str]) -> None:
        seen.extend((direction, [t]) for t in transitions)

    with connected_runtimes(callback) as (_, sock, peer):
        sock.close()
        assert peer.recv(10, timeout=5) == b""
        peer.close()
        assert sock.wait_closed(timeout=5) is State.TIME_WAIT
    prefix = "40000 > 198.18.0.11:7: "
    assert ("out", [prefix + "CLOSED -> SYN-SENT"]) in seen
    assert ("in", [prefix + "SYN-SENT -> ESTABLISHED"]) in seen
    assert ("out", [prefix + "ESTABLISHED -> FIN-WAIT-1"]) in seen
    assert ("in", [prefix + "FIN-WAIT-2 -> TIME-WAIT"]) in seen or (
        "in",
        [prefix + "FIN-WAIT-1 -> TIME-WAIT"],
    ) in seen


ECHO_SERVER = textwrap.dedent(
    """
    import socket, sys
    server = socket.socket()
    server.bind((sys.argv[1], int(sys.argv[2])))
    server.listen()
    print("ready", flush=True)
    conn, _ = server.accept()
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
    """
)


@pytest.mark.privileged
def test_a_live_capture_comments_our_syn_and_fin_with_their_transitions(tmp_path: Path) -> None:
    from lab.capture.reader import read_packets
    from lab.session import LabStack

    capture = tmp_path / "comments.pcapng"
    with LabStack.on_topology(capture=capture, tcp_config=FAST_CLOSE) as stack:
        assert stack.topology is not None
        assert stack.server_ip is not None
        server = stack.topology.popen_server(
            [sys.executable, "-c", ECHO_SERVER, stack.server_ip, "7"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        with stack.runtime.connect(stack.server_ip, 7, timeout=10) as sock:
            sock.sendall(b"hello", timeout=5)
            assert sock.recv(10, timeout=5) == b"hello"
        assert sock.wait_closed(timeout=10) is State.TIME_WAIT
        port = sock.local_address[1]
    packets = list(read_packets(capture))
    prefix = f"{port} > {stack.server_ip}:7: "
    tcp_out = [p for p in packets if p.direction == "out" and p.data[23] == 6]
    syn, fin = tcp_out[0], next(p for p in tcp_out if p.data[14 + 20 + 13] & 0x01)
    assert syn.data[14 + 20 + 13] == 0x02  # SYN alone
    assert syn.comment == f"out: {prefix}CLOSED -> SYN-SENT"
    assert fin.comment == f"out: {prefix}ESTABLISHED -> FIN-WAIT-1"
    comments = [p.comment or "" for p in packets]
    assert f"in: {prefix}SYN-SENT -> ESTABLISHED" in comments
    assert all(c.startswith(("in", "out")) for c in comments)


def test_a_close_crossing_the_peers_fin_leaves_before_that_fin_is_taken_in() -> None:
    # The application closes while the peer's FIN waits on the link and the loop waits for the
    # lock to take it in: our FIN goes out first, as a kernel sends it within close(), so the
    # capture tells the simultaneous close in the order the states changed.
    seen: list[tuple[str, str, int]] = []

    def callback(direction: str, frame: bytes, transitions: list[str]) -> None:
        value = decode_ethernet(frame)
        if isinstance(value, TcpFrame):
            for t in transitions:
                seen.append((direction, t, value.segment.ack))

    with connected_runtimes(callback) as (ra, sock, peer):
        with ra._lock:
            peer.close()  # the peer's FIN reaches our link; our loop waits for the lock
            time.sleep(0.3)
            sock.connection.close(ra.now())  # ESTABLISHED -> FIN-WAIT-1, not yet sent
        assert sock.wait_closed(timeout=5) is State.TIME_WAIT
        peer_fin_seq = peer.connection.snd_nxt - 1
    prefix = "40000 > 198.18.0.11:7: "
    closing = [(d, t) for d, t, _ in seen if "FIN-WAIT-1" in t or "CLOSING" in t]
    assert closing[:2] == [
        ("out", prefix + "ESTABLISHED -> FIN-WAIT-1"),
        ("in", prefix + "FIN-WAIT-1 -> CLOSING"),
    ], seen
    our_fin_ack = next(ack for d, t, ack in seen if t.endswith("ESTABLISHED -> FIN-WAIT-1"))
    assert our_fin_ack == peer_fin_seq  # our FIN did not acknowledge theirs: it left first
