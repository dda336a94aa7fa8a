"""Exercise `blind-reset`: RSTs injected from a third namespace; RFC 5961 in the stack and kernel.

The checker builds the topology, adds an attacker namespace joined to the server namespace by a
second veth (198.18.1.0/24; the server namespace forwards, accepts forged local sources on that
veth and does no reverse-path filtering, so forged RSTs reach both ends), opens a connection from
the lab stack (client namespace) to a kernel echo server and leaves it idle. The student's
`attack` runs in the attacker namespace and sends RSTs at both ends.

Everything is observed, not reported: both veths are captured (the attacker's RSTs on the
attacker's veth, the ends' answers on the lab link), and a watcher thread polls the lab stack's
connection state and the kernel's /proc/net/tcp every 10 ms to date each reset. Each RST is
classified against the target's RCV.NXT and window (exact, in-window, out-of-window) and its
outcome read from the wire: a challenge ACK to the real peer within 0.45 s, the connection
vanishing, or nothing. The student's table of expected outcomes is graded against that, and the
lab stack's row is compared with the kernel's.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from lab.exercises import CheckResult, Exercise
from lab.exercises.harness import (
    WireFrame,
    read_capture,
    run_student,
    server_sniffer,
)
from lab.topology.kernel_sockets import parse_proc_net_tcp
from lab.topology.peers import start_echo_server
from lab.wire.frame import TcpFrame
from lab.wire.segment import Flags
from lab.wire.seq import seq_diff

SERVER_PORT = 7
ATTACKER_NET = ("198.18.1.1", "198.18.1.2", 24)  # server side, attacker side
KINDS = ("out-of-window", "in-window", "exact")
REACTION_WINDOW_NS = 450_000_000
COMPARISON = "the lab row matches the kernel row"  # the last criterion, in both modes


def drive(module: ModuleType, task: dict[str, Any]) -> dict[str, dict[str, str]]:
    table = module.attack(SimpleNamespace(**task["lab"]))
    return {str(t): {str(k): str(v) for k, v in row.items()} for t, row in table.items()}


@dataclass(frozen=True, slots=True)
class Attacker:
    namespace: str  # /proc/PID/ns/net of the process holding the namespace
    gateway_if: str  # in the server namespace
    attacker_if: str


# The attacker's namespace has no name: a named one (/run/netns) that is not in a topology's
# state file looks like a leftover to `lab clean` and to the test suite's leak check, which a
# concurrent run would then remove under our feet. This holder process keeps the namespace
# alive; it dies with the checker (PR_SET_PDEATHSIG), and the namespace and its veth with it.
HOLDER = """
import ctypes, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
    sys.exit("unshare(CLONE_NEWNET) failed")
print("ready", flush=True)
signal.pause()
"""


def _write_sysctls(settings: dict[str, str]) -> None:
    for name, value in settings.items():
        Path(f"/proc/sys/net/{name}").write_text(value + "\n")


def _configure_attacker(ifname: str, address: str, prefix: int, gateway: str) -> None:
    from pyroute2 import IPRoute

    for conf in ("all", "default", ifname):
        with contextlib.suppress(FileNotFoundError):
            Path(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6").write_text("1\n")
    with IPRoute() as ip:
        index = ip.link_lookup(ifname=ifname)[0]
        ip.addr("add", index=index, address=address, prefixlen=prefix)
        ip.link("set", index=index, state="up")
        ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
        ip.route("add", dst="0.0.0.0/0", gateway=gateway)


@contextlib.contextmanager
def attacker_namespace(topo: Any) -> Iterator[Attacker]:
    """A third namespace on a veth to the server namespace, removed whatever happens."""
    from pyroute2 import NetNS

    from lab.topology.netns import run_in_namespace

    run = topo.names.run_id
    server_ns = topo.names.server_ns
    gw_ip, atk_ip, prefix = ATTACKER_NET
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "ready":
            raise RuntimeError("could not make the attacker's namespace")
        attacker = Attacker(f"/proc/{holder.pid}/ns/net", f"lab{run}g", f"lab{run}a")
        with NetNS(server_ns, flags=0) as ns:
            ns.link(
                "add",
                ifname=attacker.gateway_if,
                kind="veth",
                peer={"ifname": attacker.attacker_if, "net_ns_pid": holder.pid},
            )
            index = ns.link_lookup(ifname=attacker.gateway_if)[0]
            ns.addr("add", index=index, address=gw_ip, prefixlen=prefix)
            ns.link("set", index=index, state="up")
        run_in_namespace(
            attacker.namespace,
            lambda: _configure_attacker(attacker.attacker_if, atk_ip, prefix, gw_ip),
        )
        gw = attacker.gateway_if
        run_in_namespace(
            server_ns,
            lambda: _write_sysctls(
                {
                    "ipv4/ip_forward": "1",
                    "ipv4/conf/all/rp_filter": "0",
                    f"ipv4/conf/{gw}/rp_filter": "0",
                    f"ipv4/conf/{gw}/accept_local": "1",  # forged sources that are local here
                }
            ),
        )
        yield attacker
    finally:
        holder.kill()  # the namespace, and the veth with its end in it, go with the holder
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


class StateWatcher:
    """Polls both ends every 10 ms from a thread inside the server namespace; records, for each
    end, the interval in which its connection disappeared (time.time_ns, the sniffers' clock):
    `alive[end]`, taken just before the last look that still found it, and `gone[end]`, taken
    just after the first look that did not. The death lies between the two, whatever the
    scheduler did to this thread between them (a clock read before the look that finds it gone
    would date the death too early, before the RST that caused it)."""

    def __init__(self, server_ns: str, sock: Any, client: tuple[str, int]) -> None:
        self.server_ns = server_ns
        self.sock = sock
        self.client = client
        self.gone: dict[str, int] = {}
        self.alive: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-watch", daemon=True)
        self._thread.start()

    def _kernel_established(self) -> bool:
        sockets = parse_proc_net_tcp(Path("/proc/thread-self/net/tcp").read_text())
        return any(
            k.remote == self.client and k.local[1] == SERVER_PORT and k.state == "ESTABLISHED"
            for k in sockets
        )

    def _run(self) -> None:
        from lab.tcp.connection import State
        from lab.topology.netns import enter_namespace

        enter_namespace(self.server_ns)  # this thread only; it ends with the watcher
        looks = {
            "lab": lambda: self.sock.state is not State.CLOSED,
            "kernel": self._kernel_established,
        }
        while not self._stop.is_set():
            for end, look in looks.items():
                if end in self.gone:
                    continue
                before = time.time_ns()
                if look():
                    self.alive[end] = before
                else:
                    self.gone[end] = time.time_ns()
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


@dataclass(frozen=True, slots=True)
class Probe:
    target: str  # "lab" or "kernel"
    kind: str
    seq: int
    number: int  # frame number in the attacker capture
    time_ns: int
    outcome: str = "ignored"


def _classify(seq: int, nxt: int, wnd: int) -> str:
    if seq == nxt:
        return "exact"
    return "in-window" if 0 < seq_diff(seq, nxt) < wnd else "out-of-window"


def _probes(
    attack_frames: list[WireFrame],
    lab_frames: list[WireFrame],
    numbers: dict[str, tuple[int, int]],
    ends: dict[str, tuple[str, int]],
    gone: dict[str, int],
    alive: dict[str, int] | None = None,
) -> list[Probe]:
    alive = alive if alive is not None else {}
    probes: list[Probe] = []
    for wf in attack_frames:
        f = wf.frame
        if not wf.from_client or not isinstance(f, TcpFrame) or not f.segment.flags & Flags.RST:
            continue
        for target, (ip, port) in ends.items():
            if f.ip.dst == ip and f.segment.dst_port == port:
                nxt, wnd = numbers[target]
                kind = _classify(f.segment.seq, nxt, wnd)
                probes.append(Probe(target, kind, f.segment.seq, wf.number, wf.time_ns))
    # Which RST ended each connection: the last one sent to it before it was seen gone, if it
    # was not seen alive after that RST's reaction window (see StateWatcher).
    killer: dict[str, int] = {}
    for i, p in enumerate(probes):
        later = [q.time_ns for q in probes[i + 1 :] if q.target == p.target]
        until = min([p.time_ns + REACTION_WINDOW_NS, *later])
        if p.target in gone and p.time_ns <= gone[p.target] and alive.get(p.target, 0) < until:
            killer[p.target] = i
    out = []
    for i, p in enumerate(probes):
        later = [q.time_ns for q in probes[i + 1 :] if q.target == p.target]
        until = min([p.time_ns + REACTION_WINDOW_NS, *later])
        outcome = "ignored"
        if killer.get(p.target) == i:
            outcome = "reset"
        elif any(
            p.time_ns < wf.time_ns < until and _is_challenge(wf, p.target) for wf in lab_frames
        ):
            outcome = "challenge-ack"
        out.append(Probe(p.target, p.kind, p.seq, p.number, p.time_ns, outcome))
    return out


def _is_challenge(wf: WireFrame, target: str) -> bool:
    """A bare ACK from `target` to its real peer, on the lab link."""
    f = wf.frame
    if not isinstance(f, TcpFrame):
        return False
    s = f.segment
    from_lab = wf.from_client  # received by the server's veth end: sent by the lab stack
    if (target == "lab") != from_lab:
        return False
    return bool(s.flags & Flags.ACK) and not s.flags & (Flags.RST | Flags.SYN) and not s.payload


def _session(topo: Any, attacker: Attacker, workdir: Path, student_file: Path) -> Any:
    """Run the whole experiment; returns (run, probes numbers, ends, gone, captures)."""
    from lab.host import Host
    from lab.link.packet import PacketLink
    from lab.runtime import Runtime

    info = topo.info
    start_echo_server(topo, info.server_ip, SERVER_PORT)  # stopped at the topology's teardown
    link = PacketLink.open_client_end(topo)
    host = Host(
        info.client_mac, info.client_ip, info.prefixlen, None, now=time.monotonic_ns() // 1000
    )
    try:
        with Runtime(host, link) as rt:
            sock = rt.connect(info.server_ip, SERVER_PORT, timeout=10)
            sock.sendall(b"hello, idle connection\n", timeout=5)
            sock.recv(100, timeout=5)
            time.sleep(0.2)  # let the last ACKs settle: the numbers below are then stable
            with rt._lock:  # the loop thread owns the connection; read it between two steps
                conn = sock.connection
                lab_nxt, lab_wnd = conn.rcv_nxt, conn.rcv_wnd
                kernel_nxt, kernel_wnd = conn.snd_nxt, conn.snd_wnd
                client_port = conn.local_port
            ends = {
                "lab": (info.client_ip, client_port),
                "kernel": (info.server_ip, SERVER_PORT),
            }
            numbers = {"lab": (lab_nxt, lab_wnd), "kernel": (kernel_nxt, kernel_wnd)}
            task = {
                "lab": {
                    "client_ip": info.client_ip,
                    "client_port": client_port,
                    "server_ip": info.server_ip,
                    "server_port": SERVER_PORT,
                    "lab_rcv_nxt": lab_nxt,
                    "lab_rcv_wnd": lab_wnd,
                    "kernel_rcv_nxt": kernel_nxt,
                    "kernel_rcv_wnd": kernel_wnd,
                }
            }
            watcher = StateWatcher(info.names.server_ns, sock, ends["lab"])
            lab_capture = workdir / "blind-reset-lab-link.pcapng"
            attack_capture = workdir / "blind-reset-attacker-link.pcapng"
            try:
                with (
                    server_sniffer(info.names.server_ns, info.names.server_if, lab_capture),
                    server_sniffer(info.names.server_ns, attacker.gateway_if, attack_capture),
                ):
                    run = run_student(
                        "blind-reset",
                        student_file,
                        task,
                        workdir,
                        timeout=60,
                        namespace=attacker.namespace,
                    )
                    time.sleep(REACTION_WINDOW_NS / 1e9)
            finally:
                watcher.stop()
    finally:
        link.close()
    return (
        run,
        numbers,
        ends,
        (dict(watcher.gone), dict(watcher.alive)),
        lab_capture,
        attack_capture,
    )


def _offline_session(workdir: Path, student_file: Path) -> Any:
    """The experiment on the offline wire: both ends are the lab's stack (BlindResetWorld)."""
    from lab.exercises.offline import run_offline

    lab_capture = workdir / "blind-reset-lab-link.pcapng"
    attack_capture = workdir / "blind-reset-attacker-link.pcapng"
    plan = {
        "world": "blind-reset",
        "capture": str(lab_capture),
        "attack_capture": str(attack_capture),
    }
    run = run_offline("blind-reset", student_file, {"lab": {}}, workdir, plan, timeout=60)
    facts = run.peer or {}
    numbers = {end: (v[0], v[1]) for end, v in facts.get("numbers", {}).items()}
    ends = {end: (v[0], v[1]) for end, v in facts.get("ends", {}).items() if v}
    seen = ({k: int(v) for k, v in facts.get("gone", {}).items()},
            {k: int(v) for k, v in facts.get("alive", {}).items()})  # fmt: skip
    return run, numbers, ends, seen, lab_capture, attack_capture


def check_offline(student_file: Path, workdir: Path) -> CheckResult:
    """Offline: the lab's stack at both ends; the comparison is of the lab stack with itself."""
    return check(student_file, workdir, offline=True)


def check(student_file: Path, workdir: Path, *, offline: bool = False) -> CheckResult:
    result = CheckResult("blind-reset")
    workdir.mkdir(parents=True, exist_ok=True)
    if offline:
        run, numbers, ends, seen, lab_capture, attack_capture = _offline_session(
            workdir, student_file
        )
    else:
        from lab.topology import Topology

        with Topology() as topo, attacker_namespace(topo) as attacker:
            run, numbers, ends, seen, lab_capture, attack_capture = _session(
                topo, attacker, workdir, student_file
            )
    result.capture = lab_capture
    if not run.ok:
        result.student_error = run.error
    gone, alive = seen
    probes = _probes(
        read_capture(attack_capture), read_capture(lab_capture), numbers, ends, gone, alive
    )
    observed: dict[str, dict[str, Probe]] = {"lab": {}, "kernel": {}}
    for p in probes:
        observed[p.target].setdefault(p.kind, p)
    raised = f" (your code raised: {run.short_error()})" if not run.ok else ""
    for kind in KINDS:
        seen = [t for t in ("lab", "kernel") if kind in observed[t]]
        frames = ", ".join(f"{t}: frame #{observed[t][kind].number}" for t in seen)
        if len(seen) == 2:
            reason = frames + " (in the attacker capture)"
        elif seen:
            missing = "kernel" if seen == ["lab"] else "lab"
            reason = (
                f"an {kind} RST reached the {seen[0]} end ({frames}) but none the {missing} "
                f"end{raised}"
            )
        else:
            reason = f"no {kind} RST reached either end{raised}"
        result.add(f"{kind} RST to both ends", len(seen) == 2, reason)
    rows = {
        t: {k: observed[t][k].outcome if k in observed[t] else "-" for k in KINDS} for t in observed
    }
    table = "; ".join(f"{t}: " + ", ".join(f"{k} {rows[t][k]}" for k in KINDS) for t in rows)
    expected = run.result if run.ok and isinstance(run.result, dict) else {}
    wrong = [
        f"{t}/{k}: you expected {expected.get(t, {}).get(k, 'nothing')!r}, the wire shows "
        f"{rows[t][k]!r}"
        for t in ("lab", "kernel")
        for k in KINDS
        if expected.get(t, {}).get(k) != rows[t][k]
    ]
    if not run.ok or not isinstance(run.result, dict):
        got = "raised " + run.short_error() if not run.ok else f"returned {run.result!r}"
        mismatch = f"attack() {got}, not a table of what you expected; the wire shows {table}"
    else:
        mismatch = "; ".join(wrong[:3])
    result.add(
        "your table matches the wire", not wrong, f"observed {table}" if not wrong else mismatch
    )
    unseen = [f"{t}/{k}" for t in rows for k in KINDS if rows[t][k] == "-"]
    # Offline the criteria keep their live names, as the table keeps its "kernel" row: a
    # student's table, a grader reading --json and the tests see one exercise in both modes;
    # what the server end was is said in the reason.
    offline_note = (
        " (offline: no kernel here, the kernel row is the lab stack playing the server, so this "
        "compares the lab stack with itself; run it as root to compare with Linux)"
        if offline
        else ""
    )
    result.add(
        COMPARISON,
        rows["lab"] == rows["kernel"] and not unseen,
        (
            f"observed {table}"
            if not unseen
            else f"nothing to compare for {', '.join(unseen)}: no such RST crossed the wire"
        )
        + offline_note,
    )
    result.capture = lab_capture
    return result


EXERCISE = Exercise(
    name="blind-reset",
    title="Blind reset: RFC 5961 from the attacker's side",
    goal="Inject RSTs into a connection you are not part of; see what each end accepts.",
    background=(
        "RFC 793 accepted any RST whose sequence number fell in the receive window, so an "
        "attacker who knew the four-tuple needed only about 2**32 / window guesses to kill a "
        "connection. RFC 5961 3.2 narrows it: a RST is accepted only at exactly RCV.NXT; one "
        "elsewhere in the window earns a 'challenge ACK' to the real peer (whose own RST, if the "
        "connection is really gone, will be exact); outside the window it is dropped silently. "
        "Linux implements it; so should the lab stack. Here you check both."
    ),
    steps=(
        "sudo lab exercise start blind-reset [DIR]",
        "Complete attack() in DIR/blind_reset.py, with Scapy.",
        "sudo lab exercise check blind-reset [DIR]   (captures of both links in DIR/.lab-check/)",
    ),
    hints=(
        "A forged RST to the kernel claims the lab stack's address and port as its source, and "
        "the other way round.",
        "In the window: RCV.NXT + something between 1 and RCV.WND - 1 (modulo 2**32).",
        "You will not see the challenge ACKs: they go to the real peer. The checker does.",
    ),
    starter="blind_reset.py",
    privileged=True,
    check=check,
    check_offline=check_offline,
)
