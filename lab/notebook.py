"""How a notebook decides between live and offline, and says so in its first output.

Live mode builds network namespaces and opens AF_PACKET sockets, which needs root's capabilities;
offline mode runs the same steps on the in-memory wire or a shipped capture and needs nothing. A
notebook calls `choose_mode()` in its first code cell and prints `banner()`, so whoever reads the
output knows which world the numbers came from. A teacher forces one with `LAB_MODE=live` or
`LAB_MODE=offline`; forcing live without the capabilities is an error, not a silent fallback,
because a class that asked for the real network should not quietly get a simulation.

The rest is what the notebooks share so that one cell can show one segment in either mode:
`WireStepper` (offline: `lab.sim.simulation` stepped one segment at a time) and
`LiveStepper` (live: a `Host` on an AF_PACKET link, cranked by hand) both return `Hop` values and
record them in a `HopLog` (which also feeds `lab.viz`). The offline FTP server is
`lab.ftp.scripted.ScriptedFtpServer`; the Linux side's TCP states come from
`lab.topology.kernel_sockets`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from lab.link import Link
from lab.link.impairment import Impairment
from lab.runtime import describe_transition
from lab.sim.simulation import Party, Simulation
from lab.sim.wire import MemoryWire, Side
from lab.tcp.connection import Connection
from lab.tcp.endpoint import FourTuple
from lab.tcp.events import StateChanged
from lab.topology.privileges import PRIVILEGE_MESSAGE, PrivilegeError, missing_capabilities
from lab.wire.fast import decode_ethernet, encode_tcp
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import AddressedSegment, Segment

if TYPE_CHECKING:
    from lab.host.host import Host
    from lab.runtime import FrameCallback
    from lab.viz.records import WireRecorder

Mode = Literal["live", "offline"]
ENV_VAR = "LAB_MODE"


@dataclass(frozen=True, slots=True)
class NotebookMode:
    """The mode a notebook runs in and why it was chosen."""

    mode: Mode
    reason: str
    # Offline for want of privileges: how to get live mode (LAB_MODE=live would only fail).
    live_hint: str = ""

    @property
    def live(self) -> bool:
        return self.mode == "live"

    @property
    def offline(self) -> bool:
        return self.mode == "offline"

    def banner(self) -> str:
        if self.live_hint:
            return f"mode: {self.mode.upper()} ({self.reason}); {self.live_hint}"
        other = "offline" if self.live else "live"
        return f"mode: {self.mode.upper()} ({self.reason}); {ENV_VAR}={other} chooses the other"


def choose_mode(
    environ: Mapping[str, str] | None = None,
    *,
    capabilities: int | None = None,
    uid: int | None = None,
) -> NotebookMode:
    """Live when the process may build namespaces and raw sockets, else offline (and then the
    banner says how to get live mode); `LAB_MODE` overrides. `capabilities` (an effective-
    capability mask) and `uid` are for tests (default: this process's).
    """
    env = os.environ if environ is None else environ
    missing = missing_capabilities(capabilities)
    forced = env.get(ENV_VAR, "").strip().lower()
    if forced == "offline":
        return NotebookMode("offline", f"forced by {ENV_VAR}=offline")
    if forced == "live":
        if missing:
            raise PrivilegeError(
                f"{ENV_VAR}=live, but {PRIVILEGE_MESSAGE} (missing: {', '.join(missing)}); "
                f"{ROOTLESS_HINT}"
            )
        return NotebookMode("live", f"{_rootless()}forced by {ENV_VAR}=live")
    if forced:
        raise ValueError(f"{ENV_VAR} must be 'live' or 'offline', not {forced!r}")
    if missing:
        reason = f"no privileges for namespaces: {', '.join(missing)}"
        return NotebookMode("offline", reason, _live_hint(os.geteuid() if uid is None else uid))
    if _rootless():
        return NotebookMode("live", f"{_rootless()}namespaces and raw sockets in a user namespace")
    return NotebookMode("live", "root: namespaces and raw sockets are available")


# Jupyter's kernel has threads before any cell runs, too late to enter a user namespace: as a
# user, the kernel must be started inside one (`lab rootless`), and the banner says so.
ROOTLESS_HINT = "as an ordinary user, start Jupyter with: lab rootless jupyter lab notebooks/"


def _live_hint(uid: int) -> str:
    """How this kernel's user gets live mode: as an ordinary user, the kernel started in the
    lab's user namespace where the machine allows one (else what refuses it, and the fix); as
    root without capabilities, a root that keeps them."""
    if uid == 0:
        return (
            "for live mode, run Jupyter as root with CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN "
            "(a container must grant them)"
        )
    from lab.topology.userns import probe

    available, why = probe()
    if available:
        return f"for live mode, {ROOTLESS_HINT} (make notebooks does)"
    return f"no live mode for this user: {why}"


def _rootless() -> str:
    """The banner's "rootless, " when this kernel runs in the lab's user namespace, else empty."""
    from lab.topology.userns import is_rootless

    return "rootless, " if is_rootless() else ""


T = TypeVar("T")


def off_the_event_loop(fn: Callable[[], T]) -> T:
    """Call `fn` in a worker thread and return its result (or raise its exception).

    Why: a Jupyter kernel runs cells inside a running asyncio event loop, and pyroute2, which
    builds the topology, runs its own loop with `run_until_complete`, which refuses to start
    inside a running one. A fresh thread has no running loop. Outside Jupyter this is harmless.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lab-notebook") as pool:
        return pool.submit(fn).result()


# -- stepping a conversation one segment at a time ---------------------------------------------
#
# The notebooks show TCP one segment per cell, with the states of both ends after each. Two
# drivers give the same `Hop` values: `WireStepper` moves two sans-IO parties over the in-memory
# wire under a virtual clock (offline), `LiveStepper` turns the crank of a `Host` on a real link
# by hand (live), which is what `lab.runtime` does on its thread, minus the thread: a cell can
# then stop between any two segments and look at both ends.

Role = Literal["client", "server"]
CLIENT_MAC = "02:00:00:00:00:02"  # the in-memory wire has no Ethernet: these make Scapy happy
SERVER_MAC = "02:00:00:00:00:01"


@dataclass(frozen=True, slots=True)
class Hop:
    """One segment that crossed the wire: when (us), who sent it, the segment, its frame bytes,
    and the TCP state transitions its arrival (or, for our own, its sending) caused."""

    time_us: int
    sender: Role
    packet: AddressedSegment
    frame: bytes
    transitions: tuple[str, ...] = ()
    sent_us: int | None = None  # when it left its sender, when that was before time_us

    @property
    def segment(self) -> Segment:
        return self.packet.segment

    @property
    def departed_us(self) -> int:
        """When the segment left its sender: the time a ladder draws it at (its arrow's top)."""
        return self.time_us if self.sent_us is None else self.sent_us

    def describe(self, start_us: int = 0) -> str:
        """One line: time in ms since `start_us`, direction, tcpdump-like flags and numbers."""
        arrow = "client -> server" if self.sender == "client" else "client <- server"
        seg = self.segment
        text = (
            f"{(self.time_us - start_us) / 1000:9.3f} ms  {arrow}  [{seg.flag_string()}]"
            f" seq={seg.seq} ack={seg.ack} len={len(seg.payload)}"
        )
        if self.transitions:
            text += "   " + "; ".join(self.transitions)
        return text


class HopLog:
    """The hops of a session in wire order, and a `WireRecorder` for `lab.viz` pictures.

    Thread-safe, because the live runtime reports frames from its own thread (`frame_callback`).
    """

    def __init__(self, client_ip: str) -> None:
        from lab.viz.records import WireRecorder  # matplotlib: only when a notebook needs it

        self.client_ip = client_ip
        self.hops: list[Hop] = []
        self.recorder = WireRecorder()
        self._taken = 0
        self._lock = threading.Lock()

    def record(
        self,
        time_us: int,
        sender: Role,
        packet: AddressedSegment,
        frame: bytes,
        transitions: Sequence[str] = (),
        *,
        sent_us: int | None = None,
    ) -> Hop:
        """Add one hop; `sent_us` is when it left its sender, if before `time_us` (arrival)."""
        hop = Hop(time_us, sender, packet, frame, tuple(transitions), sent_us)
        side = "a" if sender == "client" else "b"
        with self._lock:
            self.hops.append(hop)
            self.recorder(time_us if sent_us is None else sent_us, "send", side, packet)
            self.recorder(time_us, "deliver", side, packet)
        return hop

    def take(self) -> list[Hop]:
        """The hops recorded since the previous `take`."""
        with self._lock:
            fresh = self.hops[self._taken :]
            self._taken = len(self.hops)
        return fresh

    def new_recording(self) -> WireRecorder:
        """Start a fresh recorder (for the next connection's picture); return the old one."""
        from lab.viz.records import WireRecorder

        with self._lock:
            old, self.recorder = self.recorder, WireRecorder()
        return old

    def frame_callback(self, clock: Callable[[], int] = time.monotonic_ns) -> FrameCallback:
        """A `Runtime(on_frame=...)` callback recording every TCP frame as a hop."""

        def on_frame(direction: str, frame: bytes, transitions: list[str]) -> None:
            decoded = decode_ethernet(frame)
            if not isinstance(decoded, TcpFrame):
                return
            packet = AddressedSegment(decoded.ip.src, decoded.ip.dst, decoded.segment)
            sender: Role = "client" if decoded.ip.src == self.client_ip else "server"
            self.record(clock() // 1000, sender, packet, frame, transitions)

        return on_frame


class SteppedParty(Party, Protocol):
    """A simulation party whose connections can be watched (a `TcpEndpoint`, or a server on one)."""

    @property
    def connections(self) -> Mapping[FourTuple, Connection]: ...


def _trace_lengths(party: SteppedParty) -> dict[int, tuple[Connection, int]]:
    return {id(c): (c, len(c.trace)) for c in party.connections.values()}


def _new_transitions(
    role: Role, before: dict[int, tuple[Connection, int]], party: SteppedParty
) -> list[str]:
    seen = dict(before)
    for conn in party.connections.values():
        seen.setdefault(id(conn), (conn, 0))
    out = []
    for conn, start in seen.values():
        for entry in conn.trace[start:]:
            if isinstance(entry, StateChanged):
                out.append(f"{role} :{conn.local_port} {entry.old.value} -> {entry.new.value}")
    return out


def frame_of(packet: AddressedSegment, sender: Role) -> bytes:
    """The Ethernet frame bytes of an in-memory packet (for Scapy's `show()` and hexdumps)."""
    src, dst = (CLIENT_MAC, SERVER_MAC) if sender == "client" else (SERVER_MAC, CLIENT_MAC)
    return encode_tcp(TcpFrame(src, dst, Ipv4Header(packet.src, packet.dst), packet.segment))


class WireStepper:
    """Two parties on a `MemoryWire`, moved one delivered segment per `step()`.

    A thin view over `lab.sim.simulation.Simulation.step_segment` (the one in-memory driver) that
    records each segment as a `Hop` with the state transitions its arrival caused. The clock is
    virtual (integer microseconds): it jumps to the next arrival or timer, so a 200 ms delayed
    ACK or a minute of TIME-WAIT costs no wall time.
    """

    def __init__(
        self,
        client: SteppedParty,
        server: SteppedParty,
        wire: MemoryWire | None = None,
        *,
        start: int = 0,
        log: HopLog | None = None,
        client_ip: str = "",
    ) -> None:
        self.parties: dict[Role, SteppedParty] = {"client": client, "server": server}
        self.wire = wire if wire is not None else MemoryWire(Impairment(delay=1_000))
        self.sim = Simulation(client, server, self.wire, start=start, observer=self._observe)
        self.log = log if log is not None else HopLog(client_ip)
        self._sent_at: dict[int, tuple[int, AddressedSegment]] = {}

    @property
    def now(self) -> int:
        return self.sim.now

    def _observe(self, now: int, event: str, side: Side, packet: AddressedSegment) -> None:
        if event == "send":
            self._sent_at[id(packet)] = (now, packet)

    def step(self, limit: int | None = None) -> Hop | None:
        """Deliver the next segment (firing timers due on the way); None if nothing is left to
        happen, or not before `limit` (absolute us)."""
        pending = self.sim.pending_segment(limit)
        if pending is None:
            return None
        side, packet = pending
        receiver: Role = "client" if side == "a" else "server"
        sender: Role = "server" if receiver == "client" else "client"
        party = self.parties[receiver]
        before = _trace_lengths(party)
        self.sim.deliver_pending()
        transitions = _new_transitions(receiver, before, party)
        sent_us, _ = self._sent_at.pop(id(packet), (self.now, packet))
        frame = frame_of(packet, sender)
        return self.log.record(self.now, sender, packet, frame, transitions, sent_us=sent_us)

    def run(self, until: Callable[[], bool], limit_us: int) -> list[Hop]:
        """Step until `until()` holds or nothing happens before now + `limit_us`."""
        end = self.now + limit_us
        hops: list[Hop] = []
        while not until():
            hop = self.step(end)
            if hop is None:
                break
            hops.append(hop)
        return hops

    def idle(self, duration_us: int) -> list[Hop]:
        """Let `duration_us` of virtual time pass: deliver what arrives, fire what is due."""
        end = self.now + duration_us
        hops: list[Hop] = []
        while (hop := self.step(end)) is not None:
            hops.append(hop)
        self.sim.clock.advance_to(max(self.now, end))
        self.sim.fire_timers()
        return hops


class LiveStepper:
    """A `Host` on a real link, moved by hand: each `step()` sends or receives one TCP segment.

    ARP and other non-TCP frames are handled on the way without counting as a step. Our own
    segments wait in an outbox until a step sends them, so a cell can stop between the SYN-ACK
    arriving and our ACK leaving, and look at both ends in between.
    """

    def __init__(
        self,
        host: Host,
        link: Link,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        log: HopLog | None = None,
    ) -> None:
        self.host = host
        self.link = link
        self.clock = clock
        self.log = log if log is not None else HopLog(host.ip)
        self._outbox: deque[tuple[bytes, tuple[str, ...]]] = deque()

    @property
    def now(self) -> int:
        return self.clock() // 1000

    def _pump(self) -> None:
        """Fire due timers and move what the host wants to send: non-TCP frames go at once,
        TCP segments into the outbox."""
        now = self.now
        deadline = self.host.next_deadline()
        if deadline is not None and deadline <= now:
            self.host.on_timer(now)
        for out in self.host.outgoing_frames(now):
            if isinstance(decode_ethernet(out.data), TcpFrame):
                notes = tuple(describe_transition(t) for t in out.transitions)
                self._outbox.append((out.data, notes))
            else:
                self.link.send(out.data)

    def _wait_time(self, end_ns: int) -> float:
        wait = (end_ns - self.clock()) / 1e9
        deadline = self.host.next_deadline()
        if deadline is not None:
            wait = min(wait, max(0.0, (deadline - self.now) / 1e6))
        return max(0.0, wait)

    def step(self, timeout: float = 2.0) -> Hop | None:
        """Send our next segment, else wait up to `timeout` s for the peer's; None if neither."""
        end = self.clock() + int(timeout * 1e9)
        while True:
            self._pump()
            if self._outbox:
                data, transitions = self._outbox.popleft()
                self.link.send(data)
                return self._hop(data, transitions)
            if self.clock() >= end:
                return None
            frame = self.link.receive(self._wait_time(end))
            if frame is None:
                continue
            caused = [describe_transition(t) for t in self.host.receive_frame(frame, self.now)]
            decoded = decode_ethernet(frame)
            if isinstance(decoded, TcpFrame) and decoded.ip.dst == self.host.ip:
                return self._hop(frame, caused)

    def _hop(self, frame: bytes, transitions: Sequence[str]) -> Hop:
        decoded = decode_ethernet(frame)
        assert isinstance(decoded, TcpFrame)
        packet = AddressedSegment(decoded.ip.src, decoded.ip.dst, decoded.segment)
        sender: Role = "client" if decoded.ip.src == self.host.ip else "server"
        return self.log.record(self.now, sender, packet, frame, transitions)

    def idle(self, duration_us: int) -> list[Hop]:
        """Let `duration_us` pass (really), sending and receiving whatever comes on the way."""
        end = self.clock() + duration_us * 1000
        hops: list[Hop] = []
        while (left := (end - self.clock()) / 1e9) > 0:
            hop = self.step(left)
            if hop is not None:
                hops.append(hop)
        self._pump()
        return hops


def numeric_ports() -> None:
    """Show TCP ports as numbers in Scapy's `show()`: students read fields, and Scapy would
    otherwise print the lab's port 2121 as `iprop` (a name from /etc/services)."""
    from scapy.config import conf
    from scapy.layers.inet import TCP, UDP

    conf.noenum.add(TCP.sport, TCP.dport, UDP.sport, UDP.dport)
