"""Exercise `active-data`: PORT, accept the server's SYN on the data port, receive a file by hand.

The checker builds a fresh topology with the embedded pyftpdlib server (INFO log) holding a small
seeded file, gives the server kernel a permanent ARP entry for the client, captures the server's
end of the veth and runs the student's `download` in the client namespace. Grading, from the
capture: PORT announced the student's address and was accepted (200); the server's SYN to the
data port was answered by a SYN-ACK acknowledging its ISN + 1, and the server completed the
handshake; every data byte and the FIN were acknowledged; no RST on either connection. From the
server's side: pyftpdlib's log says the RETR completed (`completed=1`), and the bytes the
student's code returned are the file's.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from lab.exercises import CheckResult, Exercise
from lab.exercises.ftp_login import PASSWORD, USER, offline_ftp_plan, start_ftp_server
from lab.exercises.harness import (
    LiveAttempt,
    WireFrame,
    add_static_neighbour,
    grade_acks,
    live_attempt,
    read_capture,
    stream_of,
    tcp_frames,
)
from lab.exercises.offline import offline_info, offline_lab_info, run_offline
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add

SERVER_PORT = 21
CLIENT_PORT = 40_221
DATA_PORT = 40_222
FILE_NAME = "notes.txt"


def file_content() -> bytes:
    rng = random.Random("active-data/notes")
    words = ["segment", "window", "ack", "syn", "fin", "port", "retr", "stack", "wire", "byte"]
    lines = [f"{i:04d} " + " ".join(rng.choice(words) for _ in range(8)) for i in range(120)]
    return ("\r\n".join(lines) + "\r\n").encode()


def drive(module: ModuleType, task: dict[str, Any]) -> str:
    return bytes(module.download(SimpleNamespace(**task["lab"]))).hex()


def _task(lab: dict[str, Any], server_mac: str) -> dict[str, Any]:
    return {
        "lab": {
            **lab,
            "client_port": CLIENT_PORT,
            "data_port": DATA_PORT,
            "server_mac": server_mac,
            "server_port": SERVER_PORT,
            "user": USER,
            "password": PASSWORD,
            "file_name": FILE_NAME,
        }
    }


def _live_run(
    student_file: Path, workdir: Path, capture: Path, content: bytes
) -> tuple[Any, Path, Any]:
    """The live attempt against pyftpdlib serving `content` (its log, and `capture`)."""
    logs: list[Path] = []

    def prepare(topo: Any) -> dict[str, Any]:
        info, names = topo.info, topo.info.names
        add_static_neighbour(names.server_ns, names.server_if, info.client_ip, info.client_mac)
        _server, server_log = start_ftp_server(topo, workdir, {FILE_NAME: content})
        logs.append(server_log)
        task: dict[str, Any] = _task({}, info.server_mac)["lab"]
        return task

    attempt: LiveAttempt[None] = live_attempt(
        "active-data", student_file, workdir, prepare, timeout=60, settle=0.3
    )
    assert attempt.result.capture == capture
    return attempt.info, logs[0], attempt.run


def check_offline(student_file: Path, workdir: Path) -> CheckResult:
    """The same check against the lab's stack and a scripted FTP server, offline."""
    return check(student_file, workdir, offline=True)


def check(student_file: Path, workdir: Path, *, offline: bool = False) -> CheckResult:
    result = CheckResult("active-data")
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir / "active-data.pcapng"
    result.capture = capture
    content = file_content()
    server_name = "the server (the lab's stack)" if offline else "the server's kernel"
    if offline:
        info: Any = offline_info()
        log = workdir / "ftp-server.log"
        plan = offline_ftp_plan(capture, workdir, {FILE_NAME: content})
        task = _task(offline_lab_info(), info.server_mac)
        run = run_offline("active-data", student_file, task, workdir, plan, timeout=60)
    else:
        info, log, run = _live_run(student_file, workdir, capture, content)
    if not run.ok:
        result.student_error = run.error
    frames = list(tcp_frames(read_capture(capture)))
    control = [(wf, f.segment) for wf, f in frames if SERVER_PORT in _ports(f.segment)]
    data = [(wf, f.segment) for wf, f in frames if DATA_PORT in _ports(f.segment)]
    _grade_control(result, control, info.client_ip, run.short_error() if not run.ok else "")
    _grade_data(result, data, len(content))
    log_text = log.read_text(errors="replace")
    completed = f"{FILE_NAME} completed=1" in log_text
    result.add(
        "the server completed the transfer",
        completed,
        "the server's log: RETR completed=1"
        if completed
        else "the server's log does not show the RETR completed ("
        + (log_text.strip().splitlines() or ["empty"])[-1][-120:]
        + ")",
    )
    got = bytes.fromhex(run.result) if run.ok and isinstance(run.result, str) else None
    if got == content:
        reason = f"{len(content)} bytes, sha256 {hashlib.sha256(content).hexdigest()[:12]}..."
    elif got is None:
        reason = f"your code returned nothing: {run.short_error()}"
    else:
        reason = f"you returned {len(got)} bytes, not the file's {len(content)} bytes"
    result.add("your file", got == content, reason)
    resets = [(wf, s) for wf, s in control + data if s.flags & Flags.RST]
    result.add(
        "no RST",
        not resets,
        "no RST on either connection"
        if not resets
        else f"frame #{resets[0][0].number}: "
        + ("you" if resets[0][0].from_client else server_name)
        + f" sent a RST ({resets[0][1].summary()})",
    )
    return result


def _ports(s: Segment) -> tuple[int, int]:
    return s.src_port, s.dst_port


def _grade_control(
    result: CheckResult, control: list[tuple[WireFrame, Segment]], client_ip: str, error: str
) -> None:
    client = [s for wf, s in control if wf.from_client]
    server = [s for wf, s in control if not wf.from_client]
    syn = next((s for s in client if s.flags & Flags.SYN), None)
    synack = next((s for s in server if s.flags & Flags.SYN and s.flags & Flags.ACK), None)
    if syn is None or synack is None:
        result.add(
            "PORT accepted",
            False,
            "no control connection to port 21 on the wire" + (f" ({error})" if error else ""),
        )
        return
    sent, _, _ = stream_of(client, syn.seq)
    received, _, _ = stream_of(server, synack.seq)
    h = client_ip.replace(".", ",")
    announced = f"PORT {h},{DATA_PORT // 256},{DATA_PORT % 256}"
    commands = [c for c in sent.decode(errors="replace").split("\r\n") if c]
    replies = [
        ln
        for ln in received.decode(errors="replace").split("\r\n")
        if len(ln) >= 4 and ln[:3].isdigit() and ln[3] == " "
    ][1:]  # the greeting answers no command
    answers: dict[int, str] = {}
    for i, _command in enumerate(commands):  # RFC 959 4.2: 1yz replies precede the final one
        while replies and replies[0].startswith("1"):
            replies.pop(0)
        if replies:
            answers[i] = replies.pop(0)
    ports = [i for i, c in enumerate(commands) if c.upper().startswith("PORT")]
    if not ports:
        ok, reason = False, "no PORT command in your control stream"
    else:
        i = ports[-1]
        reply = answers.get(i, "no reply")
        ok = commands[i] == announced and reply.startswith("200")
        if ok:
            reason = f"you announced {announced} and the server answered {reply[:40]!r}"
        elif commands[i] != announced:
            reason = f"you sent {commands[i]!r}; it should announce {announced}"
        else:
            reason = f"the server answered {announced} with {reply!r}"
    result.add("PORT accepted", ok, reason)


def _grade_data(result: CheckResult, data: list[tuple[WireFrame, Segment]], size: int) -> None:
    syn = next(
        (
            s
            for wf, s in data
            if not wf.from_client and s.flags & Flags.SYN and not s.flags & Flags.ACK
        ),
        None,
    )
    if syn is None:
        result.add(
            "data connection accepted",
            False,
            f"the server never sent a SYN to port {DATA_PORT}: was PORT accepted, RETR sent?",
        )
        return
    synacks = [
        (wf, s) for wf, s in data if wf.from_client and s.flags & Flags.SYN and s.flags & Flags.ACK
    ]
    good = [(wf, s) for wf, s in synacks if s.ack == seq_add(syn.seq, 1)]
    completed = good and any(
        not wf.from_client
        and s.flags & Flags.ACK
        and not s.flags & Flags.SYN
        and s.ack == seq_add(good[0][1].seq, 1)
        for wf, s in data
    )
    if completed:
        reason = f"frame #{good[0][0].number}: your SYN-ACK, and the server's ACK of it"
    elif synacks:
        s = synacks[0][1]
        reason = (
            f"your SYN-ACK (frame #{synacks[0][0].number}) acknowledges {s.ack}; the server's "
            f"SYN had seq={syn.seq}, so it must acknowledge {seq_add(syn.seq, 1)}"
        )
    else:
        reason = "the server's SYN got no SYN-ACK from you"
    if not result.add("data connection accepted", bool(completed), reason):
        return
    server = [s for wf, s in data if not wf.from_client]
    received, _, _ = stream_of(server, syn.seq)
    fin = any(s.flags & Flags.FIN for s in server)
    ok, why = grade_acks(data, syn, len(received), peer_fin=fin)
    result.add("data acknowledged", ok and len(received) == size, why)


EXERCISE = Exercise(
    name="active-data",
    title="Active-mode FTP: the server calls you back",
    goal="Fetch a file in active mode, accepting and receiving the data connection by hand.",
    background=(
        "In active mode (RFC 959 3.2) the client listens and tells the server where, with "
        "PORT h1,h2,h3,h4,p1,p2 (the port is p1 * 256 + p2); on RETR the server connects to that "
        "address, sends the file and closes the data connection to mark its end. So you play the "
        "passive side of a handshake (SYN-ACK) and the receiving side of a close (ACK the FIN, "
        "which takes one sequence number, then send your own)."
    ),
    steps=(
        "sudo lab exercise start active-data [DIR]",
        "Complete download() in DIR/active_data.py (start from your ftp-login solution).",
        "sudo lab exercise check active-data [DIR]",
    ),
    hints=(
        "Be ready on the data port before you send PORT: pyftpdlib connects at once and "
        "answers 200 only when connected (other servers connect on RETR).",
        "Your SYN-ACK: flags 'SA', your own ISN, ack = the server's ISN + 1.",
        "The 150 reply comes on the control connection while the data flows on the other: "
        "each connection needs its own sequence and acknowledgement numbers.",
        "TYPE I first, so that the file arrives byte for byte.",
    ),
    starter="active_data.py",
    privileged=True,
    check=check,
    check_offline=check_offline,
)
