"""Exercise `ftp-login`: USER and PASS as hand-made segments on a hand-made connection.

The checker builds a fresh topology, gives the server kernel a permanent ARP entry for the
client, starts the embedded pyftpdlib server (`python -m lab.ftp.server`) with INFO logging in the
server namespace, captures the server's end of the veth and runs the student's `login` in the
client namespace. Grading, from the capture: the handshake; USER and PASS in the client's byte
stream, contiguous (every sequence number right); acknowledgements that never acknowledge bytes
the server did not send and, by the end, acknowledge every byte it did send; no RST. From the
server's side: pyftpdlib's own log saying the user logged in.
"""

from __future__ import annotations

import select
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import (
    REPO_ROOT,
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

USER, PASSWORD = "lab", "lab"
SERVER_PORT = 21
CLIENT_PORT = 40_121


def drive(module: ModuleType, task: dict[str, Any]) -> None:
    module.login(SimpleNamespace(**task["lab"]))


def start_ftp_server(
    topo: Any, workdir: Path, files: dict[str, bytes] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """pyftpdlib in the server namespace, logging at INFO to `workdir`/ftp-server.log; `files`
    are written into the user's home first."""
    root = workdir / "ftp-root"
    for sub in ("anon", USER):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        (root / USER / name).write_bytes(content)
    log = workdir / "ftp-server.log"
    with open(log, "wb") as log_file:
        server: subprocess.Popen[bytes] = topo.popen_server(
            [
                sys.executable,
                "-m",
                "lab.ftp.server",
                "--root",
                str(root),
                "--address",
                topo.info.server_ip,
                "--port",
                str(SERVER_PORT),
                "--log-level",
                "INFO",
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            cwd=str(REPO_ROOT),
        )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 15)
    if not ready or server.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"the FTP server did not start: {log.read_text()[-500:]}")
    return server, log


def _live_run(student_file: Path, workdir: Path, capture: Path) -> tuple[Any, Path, Any]:
    """The live attempt against pyftpdlib in the server namespace (its log, and `capture`)."""
    logs: list[Path] = []

    def prepare(topo: Any) -> dict[str, Any]:
        info, names = topo.info, topo.info.names
        add_static_neighbour(names.server_ns, names.server_if, info.client_ip, info.client_mac)
        _server, server_log = start_ftp_server(topo, workdir)
        logs.append(server_log)
        return {
            "client_port": CLIENT_PORT,
            "server_mac": info.server_mac,
            "server_port": SERVER_PORT,
            "user": USER,
            "password": PASSWORD,
        }

    attempt: LiveAttempt[None] = live_attempt(
        "ftp-login", student_file, workdir, prepare, timeout=60, settle=0.3
    )
    assert attempt.result.capture == capture
    return attempt.info, logs[0], attempt.run


def offline_ftp_plan(
    capture: Path, workdir: Path, files: dict[str, bytes] | None = None
) -> dict[str, Any]:
    """The offline peer of the FTP exercises: the scripted pyftpdlib-alike on port 21, logging
    to `workdir`/ftp-server.log in pyftpdlib's format (lab.exercises.offline)."""
    return {
        "capture": str(capture),
        "neighbour": True,
        "ftp": {
            "port": SERVER_PORT,
            "users": {USER: PASSWORD},
            "files": {name: content.hex() for name, content in (files or {}).items()},
            "log": str(workdir / "ftp-server.log"),
        },
    }


def check_offline(student_file: Path, workdir: Path) -> CheckResult:
    """The same check against the lab's stack and a scripted FTP server, offline."""
    return check(student_file, workdir, offline=True)


def check(student_file: Path, workdir: Path, *, offline: bool = False) -> CheckResult:
    result = CheckResult("ftp-login")
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir / "ftp-login.pcapng"
    result.capture = capture
    server_name = "the server (the lab's stack)" if offline else "the server's kernel"
    if offline:
        info = offline_info()
        log = workdir / "ftp-server.log"
        task = {
            "lab": {
                **offline_lab_info(),
                "client_port": CLIENT_PORT,
                "server_mac": info.server_mac,
                "server_port": SERVER_PORT,
                "user": USER,
                "password": PASSWORD,
            }
        }
        plan = offline_ftp_plan(capture, workdir)
        run = run_offline("ftp-login", student_file, task, workdir, plan, timeout=60)
    else:
        info, log, run = _live_run(student_file, workdir, capture)

    if not run.ok:
        result.student_error = run.error
    frames: list[tuple[WireFrame, Segment]] = [
        (wf, f.segment)
        for wf, f in tcp_frames(read_capture(capture))
        if SERVER_PORT in (f.segment.src_port, f.segment.dst_port)
    ]
    client = [s for wf, s in frames if wf.from_client]
    server = [s for wf, s in frames if not wf.from_client]
    syn = next((s for s in client if s.flags & Flags.SYN), None)
    synack = next((s for s in server if s.flags & Flags.SYN and s.flags & Flags.ACK), None)
    opened = syn is not None and synack is not None and synack.ack == seq_add(syn.seq, 1)
    if not result.add(
        "connection opened",
        opened,
        "SYN, SYN-ACK" + (", then your ACK" if opened else "")
        if opened
        else "no handshake with the server's port 21 on the wire"
        + (f" (your code raised: {run.short_error()})" if not run.ok else ""),
    ):
        return result
    assert syn is not None
    assert synack is not None
    sent, client_gaps, client_conflicts = stream_of(client, syn.seq)
    received, _, _ = stream_of(server, synack.seq)
    commands = sent.decode(errors="replace")
    has_both = f"USER {USER}\r\n" in commands and f"PASS {PASSWORD}\r\n" in commands
    result.add(
        "USER and PASS on the wire",
        has_both,
        "your stream carried USER and PASS, each ended by CRLF"
        if has_both
        else f"your byte stream to the server was {commands[:80]!r}",
    )
    result.add(
        "sequence numbers",
        not client_gaps and not client_conflicts,
        "your data is contiguous: each segment starts where the previous one ended"
        if not client_gaps and not client_conflicts
        else f"your stream has {len(client_gaps)} hole(s) and {client_conflicts} conflicting "
        "overlap(s): a segment's seq must be the previous seq + its length",
    )
    result.add("acknowledgements", *grade_acks(frames, synack, len(received)))
    log_text = log.read_text(errors="replace")
    logged_in = f"USER '{USER}' logged in" in log_text and b"\r\n230" in b"\r\n" + received
    result.add(
        "the server logged you in",
        logged_in,
        "the server's log: USER 'lab' logged in; its 230 reply is in the capture"
        if logged_in
        else "the server's log shows no login ("
        + (log_text.strip().splitlines() or ["empty"])[-1]
        + ")",
    )
    resets = [(wf, s) for wf, s in frames if s.flags & Flags.RST]
    result.add(
        "no RST",
        not resets,
        "no RST in either direction"
        if not resets
        else f"frame #{resets[0][0].number}: "
        + ("you" if resets[0][0].from_client else server_name)
        + f" sent a RST ({resets[0][1].summary()})",
    )
    return result


EXERCISE = Exercise(
    name="ftp-login",
    title="FTP login over a hand-made TCP connection",
    goal="Log in to a real FTP server, speaking both TCP and FTP by hand.",
    background=(
        "FTP's control connection is plain text over TCP (RFC 959): the server greets with 220, "
        "USER is answered by 331, PASS by 230. Underneath, every byte either side sends must be "
        "acknowledged: your ACK number is the server's next sequence number, and a server whose "
        "data is not acknowledged sends it again (RFC 9293 3.8.1)."
    ),
    steps=(
        "sudo lab exercise start ftp-login [DIR]",
        "Complete login() in DIR/ftp_login.py, with Scapy (start from your handshake).",
        "sudo lab exercise check ftp-login [DIR]",
    ),
    hints=(
        "Start an AsyncSniffer before your SYN: the greeting comes as soon as your ACK lands.",
        "A reply can span several segments; a line is complete at CRLF, and the final line of "
        "a reply is 'NNN text' (a space after the code, RFC 959 4.2).",
        "After each data segment from the server: ack += len(payload), then send an ACK.",
        "Commands are data: flags 'PA', and your seq advances by len(command).",
    ),
    starter="ftp_login.py",
    privileged=True,
    check=check,
    check_offline=check_offline,
)
