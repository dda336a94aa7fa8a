"""The live exercises without privileges: the student's own Scapy code against the lab's stack.

Live, a check builds namespaces, runs the student's code in the client namespace, and captures
the server's end of the veth. Offline (no root and no user namespaces, or `--offline`), the same
student file runs unchanged in the same child process (`lab.exercises.runner`), but:

* Scapy's sockets (`conf.L2socket`, `conf.L2listen`, `conf.L3socket`) are replaced there by
  sockets on an in-process wire, and the interface the task names (`lab-offline0`) is made known
  to Scapy. `srp`, `srp1`, `sendp`, `send` and `AsyncSniffer` work as on a real interface: every
  frame from the server reaches every open socket; a listening socket (a sniffer) also sees
  the frames the student's other sockets sent, as AF_PACKET shows outgoing frames.
* The far end of that wire is the lab's own `Host` with its TCP (`OfflinePeer`): it answers ARP
  and ping, listens where the live server's kernel would, and, for the FTP exercises, runs a
  scripted FTP server (`ExerciseFtpServer`) that speaks pyftpdlib's words, logs in pyftpdlib's
  format, checks the password, and opens active data connections as pyftpdlib does.
* The wire is captured where the live sniffer sits, at the server's end, with the same
  directions and comments, into the same file name; the checkers grade from it with the same
  code and the same criteria. What live checks read from the server kernel (/proc/net/tcp, the
  server's log) the peer writes in the same form.

Why in the child: the student's Scapy calls and the peer must share one process for the socket
replacement to reach them; the checker itself stays out of the student's process, as live.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lab.capture.writer import PcapngWriter
from lab.ftp.protocol import CommandParser
from lab.host.arp import ArpCache
from lab.host.host import Host
from lab.tcp.connection import Connection, State
from lab.tcp.endpoint import TcpEndpoint
from lab.wire.seq import seq_diff

OFFLINE_IFACE = "lab-offline0"
SERVER_IP, CLIENT_IP = "198.18.0.1", "198.18.0.2"
SERVER_MAC, CLIENT_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
SERVER_IP6, CLIENT_IP6 = "2001:2::1", "2001:2::2"  # as the live topology (2001:2::/48, RFC 5180)
PREFIXLEN = 24
GRACE = 0.3  # seconds the peer keeps running after the student's code returned, as live checks
# wait before they read the server's state
MAX_FRAME = 65536
FOREVER = 10**15  # microseconds: a neighbour entry that never expires (live: NUD_PERMANENT)

# /proc/net/tcp's names for the RFC states that differ (include/net/tcp_states.h)
_PROC_NAMES = {"SYN-RECEIVED": "SYN-RECV", "CLOSED": "CLOSE"}


def offline_info() -> SimpleNamespace:
    """The `topo.info` a live checker reads, for the offline wire (same attribute names)."""
    names = SimpleNamespace(client_if=OFFLINE_IFACE, client_ns="(offline)", server_ns="(offline)")
    return SimpleNamespace(
        names=names,
        server_ip=SERVER_IP,
        client_ip=CLIENT_IP,
        server_mac=SERVER_MAC,
        client_mac=CLIENT_MAC,
        prefixlen=PREFIXLEN,
        server_ip6=SERVER_IP6,
        client_ip6=CLIENT_IP6,
    )


def offline_lab_info() -> dict[str, Any]:
    """What the student's code is told, as `lab_info` tells it live."""
    return {
        "iface": OFFLINE_IFACE,
        "client_ip": CLIENT_IP,
        "client_mac": CLIENT_MAC,
        "server_ip": SERVER_IP,
    }


# -- the scripted FTP server -------------------------------------------------------------------


@dataclass(slots=True)
class _Session:
    conn: Connection
    parser: CommandParser = field(default_factory=CommandParser)
    user: str | None = None
    logged_in: bool = False
    data: Connection | None = None
    port_pending: bool = False  # PORT answered once the data connection is established
    port_deadline: int = 0
    retr: tuple[str, int, int] | None = None  # (path, bytes, started) while the data goes


class ExerciseFtpServer:
    """An FTP server on a lab `TcpEndpoint`, sans-IO, answering as pyftpdlib does.

    Why not pyftpdlib: offline there is no kernel socket to run it on. Why these words: the
    exercises' students read the replies, and the checkers grade pyftpdlib's log lines
    (`USER 'lab' logged in.`, `RETR /notes.txt completed=1`), written here in its format.
    Like pyftpdlib, PORT connects at once (from port 20) and is answered 200 when connected.
    """

    def __init__(
        self,
        endpoint: TcpEndpoint,
        port: int,
        users: dict[str, str],
        files: dict[str, bytes],
        log: Path,
    ) -> None:
        from lab.ftp.scripted import PYFTPDLIB_GREETING, PYFTPDLIB_REPLIES

        self.endpoint = endpoint
        self.listener = endpoint.listen(port)
        self.users = users
        self.files = files
        self.log_path = log
        self.greeting = PYFTPDLIB_GREETING
        self.replies = PYFTPDLIB_REPLIES
        self.sessions: list[_Session] = []
        log.write_text("")

    def _log(self, session: _Session, text: str) -> None:
        who = f"{session.conn.remote_ip}:{session.conn.remote_port}-[{session.user or ''}]"
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self.log_path.open("a") as f:
            f.write(f"[I {stamp}] {who} {text}\n")

    def serve(self, now: int) -> None:
        """Accept, read commands, answer; move pending data transfers on. Call after every
        input and timer of the host."""
        while (conn := self.listener.accept()) is not None:
            session = _Session(conn)
            self.sessions.append(session)
            conn.send(self.greeting, now)
            self._log(session, "FTP session opened (connect)")
        for session in self.sessions:
            self._progress(session, now)
            conn = session.conn
            if conn.state not in (State.ESTABLISHED, State.CLOSE_WAIT):
                continue
            for command in session.parser.feed(conn.read()):
                reply = self._answer(session, command.verb, command.arg or "", now)
                if reply:
                    conn.send(reply.encode() + b"\r\n", now)
                if command.verb == "QUIT":
                    conn.close(now)
                    break
            else:
                if conn.state is State.CLOSE_WAIT:
                    conn.close(now)

    def _answer(self, session: _Session, verb: str, arg: str, now: int) -> str:
        canned = self.replies.get(verb, b"").decode().rstrip("\r\n")
        if verb == "USER":
            session.user, session.logged_in = arg, False
            return canned
        if verb == "PASS":
            if session.user is None:
                return "503 Login with USER first."
            if self.users.get(session.user) != arg:
                self._log(session, f"USER '{session.user}' failed login.")
                return "530 Authentication failed."
            session.logged_in = True
            self._log(session, f"USER '{session.user}' logged in.")
            return canned
        if verb in ("QUIT", "NOOP", "SYST", "FEAT", "TYPE", "PWD"):
            return canned.replace("Binary.", "ASCII.") if arg.upper() == "A" else canned
        if not session.logged_in:
            return "530 Log in with USER and PASS first."
        if verb in ("PORT", "EPRT"):
            return self._port(session, verb, arg, now)
        if verb == "RETR":
            return self._retr(session, arg, now)
        return "500 Command not understood."

    def _port(self, session: _Session, verb: str, arg: str, now: int) -> str:
        try:
            if verb == "PORT":
                parts = [int(p) for p in arg.split(",")]
                ip, port = ".".join(str(p) for p in parts[:4]), parts[4] * 256 + parts[5]
            else:
                _, _family, ip, text = arg.split(arg[0])[:4]
                port = int(text)
        except (ValueError, IndexError):
            return f"501 Invalid {verb} format."
        if ip != session.conn.remote_ip:
            return f"501 Rejected data connection to foreign address {ip}:{port}."
        session.data = self.endpoint.connect(ip, port, now, local_port=20)
        session.port_pending = True
        session.port_deadline = now + 10_000_000
        return ""  # 200 once connected, as pyftpdlib answers

    def _retr(self, session: _Session, arg: str, now: int) -> str:
        name = arg.lstrip("/")
        if name not in self.files:
            return f'550 No such file or directory: "/{name}".'
        data = session.data
        if data is None or data.state is not State.ESTABLISHED:
            return "425 Can't open data connection."
        content = self.files[name]
        data.send(content, now)
        data.close(now)
        session.retr = (f"/{name}", len(content), now)
        return "125 Data connection already open. Transfer starting."

    def _progress(self, session: _Session, now: int) -> None:
        data = session.data
        if data is None:
            return
        if session.port_pending:
            if data.state is State.ESTABLISHED:
                session.port_pending = False
                session.conn.send(b"200 Active data connection established.\r\n", now)
            elif data.state is State.CLOSED or now > session.port_deadline:
                session.port_pending = False
                session.data = None
                session.conn.send(b"425 Can't connect to specified address.\r\n", now)
            return
        # As pyftpdlib: complete once the file's bytes are acknowledged, its FIN or not.
        if session.retr is not None and (
            data.state is State.CLOSED or seq_diff(data.snd_una, data.iss) > session.retr[1]
        ):
            path, size, started = session.retr
            session.retr = None
            session.data = None
            seconds = (now - started) / 1e6
            self._log(session, f"RETR {path} completed=1 bytes={size} seconds={seconds:.3f}")
            session.conn.send(b"226 Transfer complete.\r\n", now)


# -- the peer and its wire ---------------------------------------------------------------------


class OfflinePeer:
    """The server end of the offline wire, in a thread: the lab's Host, what listens on it, and
    the capture of every frame, written as the live `server_sniffer` (a `FrameSniffer`) writes
    it."""

    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        now = _now_us()
        self.endpoint = TcpEndpoint(SERVER_IP, rng_seed=int(plan.get("seed", 7)))
        self.host = Host(
            SERVER_MAC,
            SERVER_IP,
            PREFIXLEN,
            None,
            tcp=self.endpoint,
            now=now,
            arp=ArpCache(lifetime=FOREVER),
            gratuitous_arp=False,
            # IPv6 only for the exercises about it, ready at once as live (nodad): no DAD
            # solicitation in the other exercises' captures.
            ip6=SERVER_IP6 if plan.get("ipv6") else None,
            dad_transmits=0,
        )
        if plan.get("neighbour"):
            self.host.arp.learn(CLIENT_IP, CLIENT_MAC, now)  # as live: a permanent ARP entry
        self.listeners = [self.endpoint.listen(p) for p in plan.get("listen", [])]
        self.held: list[Connection] = []
        self.ftp: ExerciseFtpServer | None = None
        ftp = plan.get("ftp")
        if ftp is not None:
            self.ftp = ExerciseFtpServer(
                self.endpoint,
                int(ftp["port"]),
                dict(ftp["users"]),
                {name: bytes.fromhex(h) for name, h in ftp["files"].items()},
                Path(ftp["log"]),
            )
        self.writer = PcapngWriter(
            Path(plan["capture"]), ifname=OFFLINE_IFACE, application="lab exercise check (offline)"
        )
        self._ends: list[tuple[socket.socket, bool]] = []  # (far end, listening)
        self._layer3: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-offline-peer", daemon=True)

    def start(self) -> OfflinePeer:
        self._thread.start()
        return self

    def prepare(self) -> dict[str, Any]:
        """Anything the student's task needs from the running world (nothing, here)."""
        return {}

    # the student's side
    def attach(self, listening: bool, layer3: bool = False) -> socket.socket:
        """A new socket for one of the student's Scapy sockets; its far end joins the wire.
        (`layer3`: IP packets, given an Ethernet header by the socket; see BlindResetWorld.)"""
        near, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        far.setblocking(False)
        with self._lock:
            self._ends.append((far, listening))
            if layer3:
                self._layer3.add(far)
        self._wake_w.send(b"x")
        return near

    # the wire
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ends = [far for far, _ in self._ends]
                deadline = self.host.next_deadline()
            wait = 0.02 if deadline is None else max(0.0, min(0.02, (deadline - _now_us()) / 1e6))
            try:
                ready, _, _ = select.select([*ends, self._wake_r], [], [], wait)
            except (OSError, ValueError):
                ready = []  # an end closed meanwhile: the next round drops it
            with self._lock:
                for far in ready:
                    if far is self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            self._wake_r.recv(4096)
                        continue
                    self._take(far)
                now = _now_us()
                due = self.host.next_deadline()
                if due is not None and due <= now:
                    self.host.on_timer(now)
                self._serve(now)
                self._drain(now)

    def _take(self, far: socket.socket) -> None:
        try:
            frame = far.recv(MAX_FRAME)
        except BlockingIOError:
            return
        except OSError:
            frame = b""
        if not frame:  # the student's socket closed
            self._ends = [(f, listening) for f, listening in self._ends if f is not far]
            far.close()
            return
        now = _now_us()
        self.writer.write(frame, time.time_ns(), direction="in", comment="client -> server")
        for other, listening in self._ends:
            if listening and other is not far:
                _offer(other, frame)
        self.host.receive_frame(frame, now)
        self._serve(now)
        self._drain(now)

    def _serve(self, now: int) -> None:
        for listener in self.listeners:
            while (conn := listener.accept()) is not None:
                self.held.append(conn)  # kept open: its state is what is graded
        if self.ftp is not None:
            self.ftp.serve(now)

    def _drain(self, now: int) -> None:
        for frame in (out.data for out in self.host.outgoing_frames(now)):
            self.writer.write(frame, time.time_ns(), direction="out", comment="server -> client")
            for far, _ in self._ends:
                _offer(far, frame)
        self.writer.flush()

    def finish(self) -> dict[str, Any]:
        """Stop after a grace period and report the server's side: its TCP sockets as
        /proc/net/tcp would list them."""
        time.sleep(GRACE)
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(2)
        with self._lock:
            sockets = [
                [k[0], k[1], k[2], k[3], _PROC_NAMES.get(c.state.value, c.state.value)]
                for k, c in self.endpoint.connections.items()
            ]
            sockets += [[SERVER_IP, p, "0.0.0.0", 0, "LISTEN"] for p in self.plan.get("listen", [])]
            self.writer.close()
            for far, _ in self._ends:
                far.close()
        return {"sockets": sockets}


def _offer(far: socket.socket, frame: bytes) -> None:
    """Give a frame to one student socket; a full or closed one drops it, as a NIC ring does."""
    with contextlib.suppress(OSError):
        far.send(frame)


def _now_us() -> int:
    return time.monotonic_ns() // 1000


# -- blind reset: two lab stacks and an attacker ---------------------------------------------


class BlindResetWorld(OfflinePeer):
    """The blind-reset exercise offline: the lab's stack at both ends of an idle connection
    (198.18.0.2 the client, 198.18.0.1 an echo server), and the student's `send(IP(...))` as
    the attacker, on a link of its own. Live, the server end is the Linux kernel; offline there
    is no kernel, so both rows of the table are the lab stack's, and the checker says so.

    Recorded as live records it: the lab link at the server's end (`capture`), the attacker's
    link (`attack_capture`), and when each end's connection was last seen alive and first seen
    gone (time.time_ns, the captures' clock), looked at every 10 ms.
    """

    ECHO_PORT = 7
    ATTACKER_MAC = "02:00:00:00:00:03"

    def __init__(self, plan: dict[str, Any]) -> None:
        super().__init__({**plan, "neighbour": True})
        now = _now_us()
        self.client = Host(
            CLIENT_MAC,
            CLIENT_IP,
            PREFIXLEN,
            None,
            tcp=TcpEndpoint(CLIENT_IP, rng_seed=11),
            now=now,
            arp=ArpCache(lifetime=FOREVER),
            gratuitous_arp=False,
        )
        self.client.arp.learn(SERVER_IP, SERVER_MAC, now)
        self.echo = self.endpoint.listen(self.ECHO_PORT)
        self.attack_writer = PcapngWriter(
            Path(plan["attack_capture"]), ifname="attacker", application="lab exercise check"
        )
        self.conns: dict[str, Connection] = {}
        self.gone: dict[str, int] = {}
        self.alive: dict[str, int] = {}
        self._last_look = 0
        self.numbers: dict[str, list[int]] = {}

    def prepare(self) -> dict[str, Any]:
        """Open the idle connection and say what the attacker is told live."""
        with self._lock:
            conn = self.client.tcp.connect(SERVER_IP, self.ECHO_PORT, _now_us())
            self.conns["lab"] = conn
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                if conn.state is State.ESTABLISHED and "kernel" in self.conns:
                    conn.send(b"hello, idle connection\n", _now_us())
                    break
            time.sleep(0.01)
        time.sleep(0.3)  # the echo and the last ACKs settle: the numbers below are then stable
        with self._lock:
            self.numbers = {
                "lab": [conn.rcv_nxt, conn.rcv_wnd],
                "kernel": [conn.snd_nxt, conn.snd_wnd],
            }
            return {
                "client_ip": CLIENT_IP,
                "client_port": conn.local_port,
                "server_ip": SERVER_IP,
                "server_port": self.ECHO_PORT,
                "lab_rcv_nxt": conn.rcv_nxt,
                "lab_rcv_wnd": conn.rcv_wnd,
                "kernel_rcv_nxt": conn.snd_nxt,
                "kernel_rcv_wnd": conn.snd_wnd,
            }

    def _take(self, far: socket.socket) -> None:
        if far not in self._layer3:
            return super()._take(far)
        try:
            frame = far.recv(MAX_FRAME)
        except OSError:
            return None
        if not frame:
            return None
        now = _now_us()
        stamp = time.time_ns()
        self.attack_writer.write(frame, stamp, direction="in", comment="attacker")
        self.attack_writer.flush()
        dst_ip = socket.inet_ntoa(frame[14 + 16 : 14 + 20]) if len(frame) >= 34 else ""
        if dst_ip == SERVER_IP:
            self.host.receive_frame(
                bytes.fromhex(_mac(SERVER_MAC) + _mac(self.ATTACKER_MAC)) + frame[12:], now
            )
        elif dst_ip == CLIENT_IP:
            # Forwarded by the server side, as the live server namespace routes it: it crosses
            # the lab link from the server's MAC.
            forwarded = bytes.fromhex(_mac(CLIENT_MAC) + _mac(SERVER_MAC)) + frame[12:]
            self.writer.write(forwarded, stamp, direction="out", comment="forwarded")
            self.client.receive_frame(forwarded, now)
        self._serve(now)
        self._drain(now)
        return None

    def _serve(self, now: int) -> None:
        super()._serve(now)
        while (conn := self.echo.accept()) is not None:
            self.conns["kernel"] = conn
        for conn in self.endpoint.connections.values():
            data = conn.read()
            if data and conn.state is State.ESTABLISHED:
                conn.send(data, now)  # the echo server
        if now - self._last_look >= 10_000:
            self._last_look = now
            for end, conn in self.conns.items():
                if end in self.gone:
                    continue
                stamp = time.time_ns()
                if conn.state is State.ESTABLISHED:
                    self.alive[end] = stamp
                elif conn.state is not State.SYN_SENT and conn.state is not State.SYN_RECEIVED:
                    self.gone[end] = time.time_ns()

    def _drain(self, now: int) -> None:
        due = self.client.next_deadline()
        if due is not None and due <= now:
            self.client.on_timer(now)
        for _ in range(8):  # until both hosts are quiet: frames between them cross at once
            moved = False
            for frame in (out.data for out in self.client.outgoing_frames(now)):
                moved = True
                self.writer.write(frame, time.time_ns(), direction="in", comment="client -> server")
                self.host.receive_frame(frame, now)
            super()._serve(now)
            for frame in (out.data for out in self.host.outgoing_frames(now)):
                moved = True
                self.writer.write(
                    frame, time.time_ns(), direction="out", comment="server -> client"
                )
                self.client.receive_frame(frame, now)
            if not moved:
                break
        self.writer.flush()

    def finish(self) -> dict[str, Any]:
        time.sleep(0.45)  # the reaction window the live check waits too
        facts = super().finish()
        self.attack_writer.close()
        ends = {
            "lab": [CLIENT_IP, self.conns["lab"].local_port] if "lab" in self.conns else None,
            "kernel": [SERVER_IP, self.ECHO_PORT],
        }
        return {
            **facts,
            "ends": ends,
            "numbers": self.numbers,
            "gone": self.gone,
            "alive": self.alive,
        }


def _mac(text: str) -> str:
    return text.replace(":", "")


# -- Scapy on the offline wire -----------------------------------------------------------------

_PEER: OfflinePeer | None = None


def install_scapy(peer: OfflinePeer) -> None:
    """Point Scapy's sockets at `peer`'s wire and make the offline interface known to it."""
    global _PEER
    _PEER = peer
    from scapy.config import conf
    from scapy.data import MTU
    from scapy.layers.l2 import Ether
    from scapy.supersocket import SuperSocket

    class OfflineSocket(SuperSocket):
        desc = "lab offline wire (frames to and from the lab's stack)"
        listening = False
        layer3 = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            assert _PEER is not None
            self.ins = self.outs = _PEER.attach(self.listening, self.layer3)
            self.iface = kwargs.get("iface") or OFFLINE_IFACE
            self.promisc = True
            self.basecls = Ether

        def recv_raw(self, x: int = MTU) -> tuple[Any, bytes | None, float | None]:
            try:
                data = self.ins.recv(MAX_FRAME)
            except OSError:
                return None, None, None
            if not data:
                return None, None, None
            return self.basecls, data, time.time()

    class OfflineListen(OfflineSocket):
        listening = True

    class OfflineL3(OfflineSocket):
        """IP packets: an Ethernet header from the client's MAC to the server's is added."""

        layer3 = True

        def send(self, x: Any) -> int:
            frame = Ether(src=CLIENT_MAC, dst=SERVER_MAC) / x
            with contextlib.suppress(AttributeError):
                x.sent_time = time.time()
            assert self.outs is not None
            return self.outs.send(bytes(frame))

        def recv(self, x: int = MTU, **kwargs: Any) -> Any:
            packet = super().recv(x, **kwargs)
            return packet.payload if packet is not None else None

    conf.L2socket = OfflineSocket
    conf.L2listen = OfflineListen
    conf.L3socket = OfflineL3
    conf.ifaces._add_fake_iface(OFFLINE_IFACE, CLIENT_MAC, [CLIENT_IP])
    with contextlib.suppress(Exception):  # `send(IP(dst=...))` routes the lab's range here
        conf.route.add(net="198.18.0.0/15", dev=OFFLINE_IFACE)
    conf.iface = OFFLINE_IFACE  # type: ignore[assignment]  # Scapy resolves a name


def start_in_child(task: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """In `lab.exercises.runner`: start the peer (or world), install Scapy's sockets, complete
    the task with what only the running world knows; returns `finish`."""
    plan = task["offline"]
    peer: OfflinePeer = (
        BlindResetWorld(plan) if plan.get("world") == "blind-reset" else OfflinePeer(plan)
    ).start()
    install_scapy(peer)
    task.setdefault("lab", {}).update(peer.prepare())
    return peer.finish


# -- the checker's side ------------------------------------------------------------------------


def run_offline(
    exercise: str,
    student_file: Path,
    task: dict[str, Any],
    workdir: Path,
    plan: dict[str, Any],
    *,
    timeout: float,
) -> Any:
    """`run_student` with the offline peer in the child; the StudentRun's `peer` holds what the
    peer reported (its sockets), and `plan["capture"]` the capture."""
    from lab.exercises.harness import run_student

    return run_student(exercise, student_file, {**task, "offline": plan}, workdir, timeout=timeout)


def peer_sockets(run: Any) -> list[Any]:
    """The peer's sockets as `KernelSocket`s, as `lab.topology.kernel_sockets.kernel_sockets`
    reads them live."""
    from lab.topology.kernel_sockets import LINUX_TCP_STATES, KernelSocket

    codes = {name: code for code, name in reversed(LINUX_TCP_STATES.items())}
    facts = run.peer or {}
    return [
        KernelSocket((lip, lport), (rip, rport), state, codes.get(state, 0))
        for lip, lport, rip, rport, state in facts.get("sockets", [])
    ]


def live_available() -> bool:
    """Whether this process may build the live topology: root (or the capabilities), or, for an
    ordinary user, a private user namespace (lab.topology.userns: the CLI enters it)."""
    from lab.topology import PrivilegeError, require_privileges

    try:
        require_privileges()
    except PrivilegeError:
        if os.geteuid() == 0:
            return False
        from lab.topology.userns import probe

        return probe()[0]
    return True


__all__ = [
    "OFFLINE_IFACE",
    "ExerciseFtpServer",
    "OfflinePeer",
    "install_scapy",
    "live_available",
    "offline_info",
    "offline_lab_info",
    "peer_sockets",
    "run_offline",
    "start_in_child",
]
