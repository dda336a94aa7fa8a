"""Exercise `handshake`: craft SYN, read SYN-ACK, send ACK; the server's kernel must agree.

The checker builds a fresh topology, gives the server's kernel a permanent ARP entry for the client
(the student's namespace does not answer ARP), starts a kernel listener in the server namespace,
captures the server's end of the veth, and runs the student's `handshake` in the client
namespace. Grading, from the capture and from the server's side: the SYN, the SYN-ACK, an ACK with
the right numbers, the server kernel showing the connection ESTABLISHED in its own
/proc/net/tcp (what `ss -tan` reads), and no RST in either direction.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import (
    LiveAttempt,
    add_static_neighbour,
    live_attempt,
    read_capture,
    tcp_frames,
)
from lab.exercises.offline import offline_info, offline_lab_info, peer_sockets, run_offline
from lab.topology.kernel_sockets import KernelSocket, kernel_sockets
from lab.wire.segment import Flags
from lab.wire.seq import seq_add

SERVER_PORT = 8021
CLIENT_PORT = 40_021

LISTENER = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], int(sys.argv[2])))
server.listen(8)
print("ready", flush=True)
held = []
while True:
    conn, _ = server.accept()
    held.append(conn)  # keep it open: the kernel's state is what is graded
"""


def drive(module: ModuleType, task: dict[str, Any]) -> None:
    module.handshake(SimpleNamespace(**task["lab"]))


def _prepare(topo: Any) -> dict[str, Any]:
    """A kernel listener in the server namespace, and a static ARP entry for the client."""
    info, names = topo.info, topo.info.names
    add_static_neighbour(names.server_ns, names.server_if, info.client_ip, info.client_mac)
    server = topo.popen_server(
        [sys.executable, "-c", LISTENER, info.server_ip, str(SERVER_PORT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    server.stdout.readline()
    return {"client_port": CLIENT_PORT, "server_mac": info.server_mac, "server_port": SERVER_PORT}


def _live_run(student_file: Path, workdir: Path, capture: Path) -> tuple[Any, Any, list[Any]]:
    """The live attempt (lab.exercises.harness.live_attempt writes `capture`), and the server
    kernel's sockets 0.3 s after it."""
    attempt: LiveAttempt[list[KernelSocket]] = live_attempt(
        "handshake",
        student_file,
        workdir,
        _prepare,
        timeout=30,
        settle=0.3,
        observe=lambda topo: kernel_sockets(topo.info.names.server_ns),
    )
    assert attempt.result.capture == capture
    return attempt.info, attempt.run, attempt.seen or []


def check_offline(student_file: Path, workdir: Path) -> CheckResult:
    """The same check against the lab's own TCP on the offline wire (lab.exercises.offline)."""
    return check(student_file, workdir, offline=True)


def _offline_run(student_file: Path, workdir: Path, capture: Path) -> tuple[Any, Any, list[Any]]:
    info = offline_info()
    task = {
        "lab": {
            **offline_lab_info(),
            "client_port": CLIENT_PORT,
            "server_mac": info.server_mac,
            "server_port": SERVER_PORT,
        }
    }
    plan = {"capture": str(capture), "listen": [SERVER_PORT], "neighbour": True}
    run = run_offline("handshake", student_file, task, workdir, plan, timeout=30)
    return info, run, peer_sockets(run)


def check(student_file: Path, workdir: Path, *, offline: bool = False) -> CheckResult:
    result = CheckResult("handshake")
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir / "handshake.pcapng"
    result.capture = capture
    server = "the server (the lab's stack)" if offline else "the server's kernel"
    if offline:
        info, run, kernel = _offline_run(student_file, workdir, capture)
    else:
        info, run, kernel = _live_run(student_file, workdir, capture)
    if not run.ok:
        result.student_error = run.error
    segments = [
        (wf, f.segment)
        for wf, f in tcp_frames(read_capture(capture))
        if SERVER_PORT in (f.segment.src_port, f.segment.dst_port)
    ]
    syns = [(wf, s) for wf, s in segments if wf.from_client and s.flags & Flags.SYN]
    if not result.add(
        "SYN",
        bool(syns),
        f"frame #{syns[0][0].number}: SYN seq={syns[0][1].seq} to port {SERVER_PORT}"
        if syns
        else f"no SYN to {info.server_ip}:{SERVER_PORT} crossed the wire"
        + (f" (your code raised: {run.short_error()})" if not run.ok else ""),
    ):
        return result
    isn = syns[-1][1].seq
    synacks = [
        (wf, s)
        for wf, s in segments
        if not wf.from_client
        and s.flags & Flags.SYN
        and s.flags & Flags.ACK
        and s.ack == seq_add(isn, 1)
    ]
    if not result.add(
        "SYN-ACK",
        bool(synacks),
        f"frame #{synacks[0][0].number}: the server's ISN is {synacks[0][1].seq}"
        if synacks
        else "the server never answered your SYN with a SYN-ACK (is the SYN well-formed? "
        "right MAC, IP, port, checksum?)",
    ):
        return result
    server_isn = synacks[-1][1].seq
    acks = [
        (wf, s)
        for wf, s in segments
        if wf.from_client and not s.flags & Flags.SYN and s.flags & Flags.ACK
    ]
    want = (seq_add(isn, 1), seq_add(server_isn, 1))
    good = [(wf, s) for wf, s in acks if (s.seq, s.ack) == want]
    if good:
        reason = f"frame #{good[0][0].number}: seq={want[0]} ack={want[1]}"
    elif acks:
        s = acks[0][1]
        reason = (
            f"your ACK (frame #{acks[0][0].number}) has seq={s.seq} ack={s.ack}; it needs "
            f"seq={want[0]} (your ISN + 1) and ack={want[1]} (the server's ISN + 1)"
        )
    else:
        reason = "no ACK followed the SYN-ACK"
    result.add("ACK", bool(good), reason)
    ours = [
        k
        for k in kernel
        if k.local == (info.server_ip, SERVER_PORT) and k.remote[0] == info.client_ip
    ]
    established = [k for k in ours if k.state == "ESTABLISHED"]
    result.add(
        "server in ESTABLISHED",  # one name in both modes; the reason says whose sockets
        bool(established),
        (
            "the lab's stack as the server: "
            if offline
            else "/proc/net/tcp in the server namespace: "
        )
        + f"{established[0].local[0]}:{SERVER_PORT} <-> "
        f"{established[0].remote[0]}:{established[0].remote[1]} ESTABLISHED"
        if established
        else f"{server} shows "
        + (", ".join(k.state for k in ours) if ours else "no connection from you")
        + ", not ESTABLISHED",
    )
    resets = [(wf, s) for wf, s in segments if s.flags & Flags.RST]
    if resets:
        wf, s = resets[0]
        who = "you" if wf.from_client else server
        reason = f"frame #{wf.number}: {who} sent a RST ({s.summary()})"
    else:
        reason = "no RST in either direction"
    result.add("no RST", not resets, reason)
    return result


EXERCISE = Exercise(
    name="handshake",
    title="The three-way handshake, by hand",
    goal="Open a TCP connection to a real kernel with three hand-made segments.",
    background=(
        "A TCP connection starts with SYN (the client's initial sequence number, ISN), SYN-ACK "
        "(the server's ISN, acknowledging the client's + 1) and ACK (acknowledging the server's "
        "ISN + 1), RFC 9293 3.5. Each side's SYN takes one sequence number. The server's kernel "
        "moves the connection from SYN-RECV to ESTABLISHED only on an acceptable ACK; an ACK "
        "that acknowledges something never sent earns a RST."
    ),
    steps=(
        "sudo lab exercise start handshake [DIR]",
        "Complete handshake() in DIR/handshake.py, with Scapy.",
        "sudo lab exercise check handshake [DIR]",
    ),
    hints=(
        "Ether(src=lab.client_mac, dst=lab.server_mac) / IP(src=..., dst=...) / TCP(sport=..., "
        "dport=..., flags='S', seq=ISN)",
        "srp1() sends one frame and returns the first answer (or None after its timeout).",
        "Sequence numbers are modulo 2**32: (isn + 1) % 2**32.",
        "Read the capture in Wireshark with tcp.flags.reset == 1 to see who reset what.",
    ),
    starter="handshake.py",
    privileged=True,
    check=check,
    check_offline=check_offline,
)
