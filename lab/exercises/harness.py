"""What checkers share: running an attempt, capturing the wire, and reading the server's side.

* `run_student` runs the student's code through `lab.exercises.runner` in a child process (in a
  namespace, for live exercises) with a timeout, and returns what `drive` returned or the error.
* `server_sniffer` captures every frame on the server's end of the veth, both directions, to
  pcapng (a `lab.link.sniffer.FrameSniffer`).
  Why the server's end: the student's code (Scapy, the lab stack, anything) sends from the client
  end, so the server's end sees exactly what crossed the wire, including what the student did not
  mean to send, and nothing the student can hide. Frames the server kernel sends are marked
  "out" (server -> client), frames it receives "in" (client -> server).
* `read_capture` decodes a capture into `WireFrame`s with the fast codec (checksums verified).
* the kernel's own view of its connections, as `ss` would show it, comes from
  `lab.topology.kernel_sockets` (/proc/net/tcp read in the server namespace).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lab.capture.reader import CaptureReader
from lab.link.sniffer import FrameSniffer
from lab.tcp.reassembly import Reassembler
from lab.topology.netns import enter_namespace
from lab.wire.fast import decode_ethernet
from lab.wire.frame import ArpFrame, Dropped, Frame, TcpFrame
from lab.wire.segment import Flags, Segment
from lab.wire.seq import seq_add, seq_diff

if TYPE_CHECKING:
    from lab.exercises import CheckResult

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0
REPO_ROOT = Path(__file__).resolve().parent.parent.parent
OUTPUT_FILE = "output.txt"  # in the work folder: what the student's code printed


@dataclass(frozen=True, slots=True)
class StudentRun:
    ok: bool
    result: Any
    error: str  # the traceback, "timed out after N s", or ""
    output: str  # what the student's code printed
    peer: Any = None  # offline: what the lab's stack, as the server, reported (offline.py)

    def short_error(self) -> str:
        lines = [ln for ln in self.error.strip().splitlines() if ln.strip()]
        return lines[-1] if lines else "no result"


def run_student(
    exercise: str,
    student_file: Path,
    task: dict[str, Any],
    workdir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    namespace: str | None = None,
) -> StudentRun:
    """Run one attempt of `student_file` on `task` in a child process (in `namespace`)."""
    # Absolute: the child runs in the student's folder, where a path relative to ours (the
    # default `lab-NAME/.lab-check`) would name a file that does not exist.
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    task_file = workdir / "task.json"
    result_file = workdir / "result.json"
    task_file.write_text(json.dumps(task))
    with contextlib.suppress(FileNotFoundError):
        result_file.unlink()
    args = [
        sys.executable,
        "-m",
        "lab.exercises.runner",
        exercise,
        str(student_file.resolve()),
        str(task_file),
        str(result_file),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    kwargs: dict[str, Any] = {
        "stdout": subprocess.PIPE,
        "stderr": subprocess.STDOUT,
        "text": True,
        "env": env,
        "cwd": str(student_file.resolve().parent),
    }
    if namespace is None:
        process = subprocess.Popen(args, **kwargs)
    else:
        target = namespace
        process = subprocess.Popen(args, preexec_fn=lambda: enter_namespace(target), **kwargs)
    where_file = result_file.with_name("where.txt")  # see lab.exercises.runner.WHERE_SIGNAL
    with contextlib.suppress(FileNotFoundError):
        where_file.unlink()
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stuck = _ask_where(process, where_file)
        process.kill()
        output, _ = process.communicate()
        (workdir / OUTPUT_FILE).write_text(output or "")
        error = f"timed out after {timeout:g} s" + (f": still running {stuck}" if stuck else "")
        return StudentRun(False, None, error, output or "")
    # What the student's code printed, kept for `lab exercise check -v` and for the student.
    (workdir / OUTPUT_FILE).write_text(output or "")
    try:
        outcome = json.loads(result_file.read_text())
    except (OSError, ValueError):
        # The child died before it could report (os._exit, a signal, a crash in the runner):
        # what it printed last is all there is to tell the student why.
        tail = "\n".join((output or "").rstrip().splitlines()[-20:])
        how = (
            f"was killed by signal {-process.returncode}"
            if process.returncode < 0
            else f"exited with status {process.returncode}"
        )
        error = f"your code {how} before returning a result"
        if tail:
            error = f"{tail}\n{error} (its last output is above)"
        return StudentRun(False, None, error, output or "")
    return StudentRun(
        bool(outcome.get("ok")),
        outcome.get("result"),
        outcome.get("error", ""),
        output or "",
        outcome.get("peer"),
    )


def _ask_where(process: subprocess.Popen[str], where_file: Path) -> str:
    """What the runner says the attempt was doing (its WHERE_SIGNAL answer), or "" if it does
    not answer within a second (stuck in C code, or not started yet)."""
    from lab.exercises.runner import WHERE_SIGNAL

    with contextlib.suppress(ProcessLookupError):
        process.send_signal(WHERE_SIGNAL)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            text = where_file.read_text()
            if text:
                return text
        time.sleep(0.02)
    return ""


# -- capture -------------------------------------------------------------------------------------


def server_sniffer(namespace: str, ifname: str, path: Path) -> FrameSniffer:
    """Every frame on `ifname` in `namespace` into `path`, each commented with its direction as
    the server side sees it (the exercises' captures)."""
    return FrameSniffer(
        ifname,
        path,
        namespace=namespace,
        application="lab exercise check",
        label=lambda out: "server -> client" if out else "client -> server",
        grace=0.1,
    )


@dataclass(frozen=True, slots=True)
class WireFrame:
    number: int  # frame number in the capture, from 1 (as Wireshark shows it)
    from_client: bool  # received by the sniffed interface (for the server's veth end: client ->)
    frame: Frame | Dropped
    time_ns: int = 0


def read_capture(path: Path) -> list[WireFrame]:
    """Every frame of a capture written by `server_sniffer`, decoded (checksums checked)."""
    frames = []
    for pkt in CaptureReader(path):
        frames.append(
            WireFrame(
                pkt.number, pkt.direction == "in", decode_ethernet(pkt.data), pkt.timestamp_ns
            )
        )
    return frames


def tcp_frames(frames: list[WireFrame]) -> Iterator[tuple[WireFrame, TcpFrame]]:
    for wf in frames:
        if isinstance(wf.frame, TcpFrame):
            yield wf, wf.frame


def arp_frames(frames: list[WireFrame]) -> Iterator[tuple[WireFrame, ArpFrame]]:
    for wf in frames:
        if isinstance(wf.frame, ArpFrame):
            yield wf, wf.frame


def stream_of(segments: list[Segment], isn: int) -> tuple[bytes, list[tuple[int, int]], int]:
    """(in-order bytes, gaps, conflicting overlaps) of one direction whose SYN carried `isn`,
    through the reassembler the live stack and replay use."""
    r = Reassembler(seq_add(isn, 1))
    out = bytearray()
    for s in segments:
        if s.payload:
            out += r.push(s.seq, s.payload).delivered
    return bytes(out), r.gaps(), len(r.conflicts)


def grade_mac_answer(result: CheckResult, run: StudentRun, server_mac: str) -> None:
    """The last criterion of the address-resolution exercises (arp, ndp): the student's code
    returned the server's MAC, in any letter case."""
    if not run.ok:
        result.add("your answer", False, f"your code raised: {run.short_error()}")
        return
    answer = str(run.result).lower()
    right = answer == server_mac.lower()
    result.add(
        "your answer",
        right,
        f"{answer} is the server's MAC"
        if right
        else f"you returned {answer!r}, which is not the server's MAC",
    )


def grade_acks(
    frames: list[tuple[WireFrame, Segment]],
    peer_syn: Segment,
    peer_bytes: int,
    *,
    peer_fin: bool = False,
) -> tuple[bool, str]:
    """Whether the client's ACKs on one connection were right: never beyond what the server
    had sent at that moment, and by the end covering its `peer_bytes` (and its FIN)."""
    first = seq_add(peer_syn.seq, 1)
    sent_end = 0  # offset just past the highest server byte (or FIN) seen so far
    last_ack = 0
    for wf, s in frames:
        if not wf.from_client:
            end = seq_diff(seq_add(s.seq, len(s.payload) + bool(s.flags & Flags.FIN)), first)
            if s.payload or s.flags & Flags.FIN:
                sent_end = max(sent_end, end)
            continue
        if not s.flags & Flags.ACK or s.flags & Flags.SYN:
            continue
        acked = seq_diff(s.ack, first)
        if acked > sent_end:
            return False, (
                f"frame #{wf.number} acknowledges {acked - sent_end} byte(s) the server had "
                "not sent: acknowledge exactly what you received"
            )
        last_ack = max(last_ack, acked)
    wanted = peer_bytes + peer_fin
    if last_ack < wanted:
        what = "bytes and its FIN" if peer_fin else "bytes"
        return False, (
            f"the server sent {peer_bytes} {what} but you acknowledged only up to {last_ack}: "
            f"offsets {last_ack}..{wanted} were never acknowledged"
        )
    fin = " and its FIN" if peer_fin else ""
    return True, f"all {peer_bytes} bytes from the server{fin} acknowledged, none too many"


# -- the server's side ---------------------------------------------------------------------------


def add_static_neighbour(namespace: str, ifname: str, ip: str, mac: str) -> None:
    """A permanent ARP entry in `namespace`: the kernel then needs no ARP answer for `ip`."""
    from pyroute2 import NetNS

    with NetNS(namespace, flags=0) as ns:
        index = ns.link_lookup(ifname=ifname)[0]
        ns.neigh("replace", dst=ip, lladdr=mac, ifindex=index, state=0x80)  # NUD_PERMANENT


@dataclass(slots=True)
class LiveAttempt(Generic[T]):
    """One graded attempt on a fresh topology: the result to fill, the topology it ran on, what
    the student's code did, what crossed the wire, and what `observe` saw right after."""

    result: CheckResult
    info: Any  # the TopologyInfo of the (now removed) topology
    run: StudentRun
    frames: list[WireFrame]
    seen: T | None


def live_attempt(
    exercise: str,
    student_file: Path,
    workdir: Path,
    prepare: Callable[[Any], dict[str, Any]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    settle: float = 0.0,
    observe: Callable[[Any], T] | None = None,
) -> LiveAttempt[T]:
    """The sequence every live checker runs: a fresh topology; `prepare(topo)` starts the server
    side and returns what the student is told beyond `lab_info`; the attempt runs in the client
    namespace while the server's end of the veth is recorded to WORKDIR/EXERCISE.pcapng; after
    `settle` seconds `observe(topo)` looks at the server side (still up); then the capture is
    read back. The caller grades `frames` (and `seen`) into `result`."""
    from lab.exercises import CheckResult
    from lab.topology import Topology

    result = CheckResult(exercise)
    workdir.mkdir(parents=True, exist_ok=True)
    capture = workdir / f"{exercise}.pcapng"
    result.capture = capture
    seen: T | None = None
    with Topology() as topo:
        info = topo.info
        names = info.names
        task = {"lab": {**lab_info(topo), **prepare(topo)}}
        with server_sniffer(names.server_ns, names.server_if, capture):
            run = run_student(
                exercise, student_file, task, workdir, timeout=timeout, namespace=names.client_ns
            )
            if settle:
                time.sleep(settle)  # let the kernel process the last frame before we look
            if observe is not None:
                seen = observe(topo)
    if not run.ok:
        result.student_error = run.error
    return LiveAttempt(result, info, run, read_capture(capture), seen)


def lab_info(topo: Any) -> dict[str, Any]:
    """What a live exercise's student code is told about the topology."""
    info = topo.info
    return {
        "iface": info.names.client_if,
        "client_ip": info.client_ip,
        "client_mac": info.client_mac,
        "server_ip": info.server_ip,
    }
