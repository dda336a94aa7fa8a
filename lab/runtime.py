"""The only place in `lab` that blocks: a loop between a sans-IO `Host` and a link, and sockets.

One background thread owns the loop. It waits in a selector on the link's file descriptor and on a
wake-up pipe, with the host's next deadline as the timeout; it feeds received frames to the host,
fires the host's timers, and sends what the host has to send. The host is not thread-safe, so
every touch of it, from the loop or from an application thread, happens under one lock; a
condition variable on that lock wakes application threads whenever the loop has done something.

Application threads use a blocking, socket-like API (`connect`, `listen`, `accept`, `send`,
`sendall`, `recv`, `shutdown`, `close`) with timeouts in seconds and exceptions that subclass the
builtin ones (`ConnectionRefused` is a `ConnectionRefusedError`, and so on), so code written for
kernel sockets reads the same. When an application call changes what the host must send (new
data, a FIN, a window opened by reading), it writes a byte to the wake-up pipe so the loop sends
it at once instead of at the next timer.

Capture comments: inbound frames come with the transitions they caused; outbound frames with the
transitions that application calls and timers caused since the connection's previous frame (the
host holds them: `Host.outgoing_frames`), so our SYN is commented "CLOSED -> SYN-SENT" and our FIN
"ESTABLISHED -> FIN-WAIT-1".

`ping` sends an ICMP echo request from the lab stack and waits for its reply (for `lab ping`).

IPv6: on a dual-stack host (`Host(..., ip6=...)`) `connect(addr, port)` and `ping(addr)` take an
IPv6 `addr` as well, in any spelling: it is put in RFC 5952 form first (2001:0002::0001 becomes
2001:2::1), the form the decoder writes, so the connection's 4-tuple matches its inbound segments
and a reply matches its request. `Socket.local_address` / `remote_address` are then
(v6 text, port), as a kernel socket's first two fields. If Duplicate Address Detection finds one
of our v6 addresses in use, v6 calls raise `DuplicateAddressError` (lab.host): the address is
never used, and saying so beats a silent timeout.

Why one loop thread rather than letting the application thread drive the host while it waits:
measured on the live bench (50 MiB RETR from vsftpd), the loop is the bottleneck and, being
behind, finds ~220 frames per wake-up in faithful mode (165 wake-ups, 149 application waits for
36,000 frames), so the hand-off costs nothing measurable there; in offload mode (~5 merged
frames per wake-up) the application's file writes run while the loop decodes, which one thread
would serialise.

Time: the host sees integer microseconds from a monotonic clock (`clock` returns nanoseconds, like
`time.monotonic_ns`), never wall-clock time, so a clock step cannot fire or stall timers.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import selectors
import threading
import time
from collections.abc import Callable
from types import TracebackType

from lab.host.host import (
    DuplicateAddress,
    DuplicateAddressError,
    EchoReply,
    Host,
    IcmpError,
    OutgoingFrame,
    Transition,
)
from lab.link import Annotatable, SelectableLink
from lab.tcp import connection as tcp
from lab.tcp.connection import Connection, Listener, State
from lab.tcp.endpoint import AcceptFrom
from lab.tcp.recvbuf import Chunk

FrameCallback = Callable[[str, bytes, list[str]], None]
"""Called by the loop thread for every frame, just after the link sent or delivered it: ("in" |
"out", frame bytes, TCP state transitions: for "in" those the frame caused, e.g. ["40000 >
198.18.0.1:7: SYN-SENT -> ESTABLISHED"], for "out" those the application call or timer that made
the frame caused, e.g. ["40000 > 198.18.0.1:7: CLOSED -> SYN-SENT"]). Inbound frames are
reported with the runtime's lock held: the callback must be quick and must not call the runtime."""


def canonical_address(addr: str) -> str:
    """An IPv6 address in RFC 5952 text (the decoder's form); anything else as it is. Raises
    ValueError for text with a colon that is no IPv6 address."""
    if ":" not in addr:
        return addr
    try:
        return str(ipaddress.IPv6Address(addr))
    except ValueError as exc:
        raise ValueError(f"not an IPv6 address: {addr!r} ({exc})") from None


def endpoint(ip: str, port: int) -> str:
    """ip:port for messages, an IPv6 address in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def describe_transition(transition: Transition) -> str:
    """The words of a capture comment for one state change, e.g.
    "40000 > 198.18.0.1:21: SYN-SENT -> ESTABLISHED" (the host hands over values, not text)."""
    t, change = transition, transition.change
    peer = endpoint(t.remote_ip, t.remote_port)
    return f"{t.local_port} > {peer}: {change.old.value} -> {change.new.value}"


def annotate_transitions(tap: Annotatable) -> FrameCallback:
    """A callback that writes the TCP state transitions into a capture tap's frame comments."""

    def callback(direction: str, frame: bytes, transitions: list[str]) -> None:
        if transitions:
            tap.annotate("; ".join(transitions))

    return callback


RECEIVE_BATCH = 256  # frames taken from the link per lock acquisition
RECEIVE_BATCH_BYTES = 1 << 20  # and at most about this many bytes: see `Runtime._receive_batch`
MAX_KEPT_ECHO_REPLIES = 1024  # late echo replies nobody waits for any more are forgotten
ICMP_FRAG_NEEDED = 4  # destination-unreachable code that is advice, not failure (RFC 1191)
_PEER_DONE = {State.CLOSE_WAIT, State.LAST_ACK, State.CLOSING, State.TIME_WAIT}


class Timeout(TimeoutError):  # noqa: N818 - the names the API promises
    """A blocking call did not complete in time (or the connection's retransmissions gave up)."""


class ConnectionRefused(ConnectionRefusedError):  # noqa: N818 - the names the API promises
    """The peer answered our SYN with a RST, or an ICMP port unreachable."""


class ConnectionReset(ConnectionResetError):  # noqa: N818 - the names the API promises
    """The peer reset an established connection."""


class HostUnreachable(OSError):  # noqa: N818 - the names the API promises
    """No ARP answer from the next hop, or an ICMP net/host unreachable during the handshake."""

    def __init__(self, message: str) -> None:
        super().__init__(errno.EHOSTUNREACH, message)


class RuntimeStopped(RuntimeError):  # noqa: N818 - the names the API promises
    """The runtime was stopped, or its loop failed (the cause is chained)."""


class Runtime:
    """Drives one `Host` over one link from a background thread; hands out blocking sockets.

    Use as a context manager (`with Runtime(host, link) as rt:`), or call `start()` / `stop()`.
    The link belongs to the caller: `stop()` does not close it.
    """

    def __init__(
        self,
        host: Host,
        link: SelectableLink,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        on_frame: FrameCallback | None = None,
    ) -> None:
        self.host = host
        self.link = link
        self._clock = clock
        self._on_frame = on_frame
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._error: BaseException | None = None
        self._sockets: dict[tuple[str, int, str, int], Socket] = {}
        self._echo_replies: dict[tuple[str, int, int], EchoReply] = {}
        self._unreachable: dict[str, IcmpError] = {}  # next hop or destination -> its error
        self.duplicates: list[DuplicateAddress] = []  # our v6 addresses DAD found in use
        self.send_errors = 0

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> Runtime:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lab-runtime", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """End the loop and join its thread. Connections are left as they are (no FIN, no RST)."""
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("runtime thread did not stop")
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def now(self) -> int:
        """The host's time: integer microseconds of the monotonic clock."""
        return self._clock() // 1000

    def wake(self) -> None:
        """Make the loop run now (after an application call gave the host something to send)."""
        if self._wake_w >= 0:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"\x00")

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(self.link.fileno(), selectors.EVENT_READ, "link")
            selector.register(self._wake_r, selectors.EVENT_READ, "wake")
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    now = self.now()
                    deadline = self.host.next_deadline()
                    if deadline is not None and deadline <= now:
                        self.host.on_timer(now)
                    outgoing = self.host.outgoing_frames(now)
                    self._dispatch_errors(self.host.errors())
                    self.duplicates += self.host.duplicate_addresses()
                    deadline = self.host.next_deadline()
                    self._changed.notify_all()
                self._transmit(outgoing)
                timeout = None if deadline is None else max(0.0, (deadline - now) / 1e6)
                if outgoing:
                    timeout = 0.0  # sending may have been cut short by a full queue: loop again
                for key, _ in selector.select(timeout):
                    if key.data == "wake":
                        self._drain_wake_pipe()
                    else:
                        self._receive_batch()
        except BaseException as exc:  # the loop must not die silently: callers see it
            with self._lock:
                self._error = exc
                self._stopping = True
                self._changed.notify_all()
        finally:
            selector.close()

    def _transmit(self, frames: list[OutgoingFrame]) -> None:
        on_frame = self._on_frame
        for frame in frames:
            try:
                self.link.send(frame.data)
            except OSError:
                # ENOBUFS and friends: the frame is lost as on a congested wire; TCP retransmits.
                self.send_errors += 1
                continue
            if on_frame is not None:
                transitions = frame.transitions
                notes = [describe_transition(t) for t in transitions] if transitions else []
                on_frame("out", frame.data, notes)

    def _receive_batch(self) -> None:
        """Take up to RECEIVE_BATCH frames, each processed before the next is read: a capture tap
        annotates "the most recent frame", so the callback must run before the next receive.

        The batch also ends once RECEIVE_BATCH_BYTES have come: what the host has to send (the
        ACK of those bytes) goes out only between batches, and in offload mode 256 merged
        frames are 16 MB, more than the 4 MiB window. A loop that fell behind took up to 49
        frames (3 MB) in one batch, while the sender, its window nearly used, waited for the
        ACK; then the loop waited for the sender's next burst. A megabyte per batch keeps the
        ACKs coming during a long burst (as `TcpConfig.ack_batch` intends). Offload, 50 MiB,
        alternated in one process on a loaded machine (load 5; 8-12 runs each, three sets):
        291/306/355 MB/s against 273/292/330 unbounded; 256 KiB cost CPU (0.156 s per run
        against 0.136). Faithful mode is bounded by RECEIVE_BATCH first (256 frames, 370 KB)."""
        link = self.link
        receive = link.receive
        host_receive = self.host.receive_frame
        on_frame = self._on_frame
        # Offload mode: the link says, frame by frame, whether the kernel verified the checksum.
        verdicts = bool(getattr(link, "offload", False)) or bool(
            getattr(getattr(link, "link", None), "offload", False)
        )
        limit = RECEIVE_BATCH_BYTES
        with self._lock:
            now = self.now()
            # What an application call queued since the loop last sent (a close's FIN, a window
            # update) leaves before the frames that arrived meanwhile are taken in, as a kernel
            # sends it within the call. Otherwise a close crossing the peer's FIN reached the
            # wire only after that FIN was processed: it acknowledged it, the capture showed
            # "FIN-WAIT-1 -> CLOSING" on their FIN before "ESTABLISHED -> FIN-WAIT-1" on ours.
            early = self.host.outgoing_frames(now)
            if early:
                self._transmit(early)
            taken = 0
            for _ in range(RECEIVE_BATCH):
                frame = receive(0)
                if frame is None:
                    break
                verified = verdicts and bool(getattr(link, "checksum_verified", False))
                transitions = host_receive(frame, now, checksum_verified=verified)
                if on_frame is not None:
                    notes = [describe_transition(t) for t in transitions] if transitions else []
                    on_frame("in", frame, notes)
                taken += len(frame)
                if taken >= limit:
                    break
            self._changed.notify_all()

    def _drain_wake_pipe(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _dispatch_errors(self, errors: list[IcmpError]) -> None:
        """Soft errors go to the sockets they concern, and to `ping` (lock held)."""
        for error in errors:
            if error.remote_port is None:  # no TCP port quoted: an ARP failure or no route
                self._unreachable[error.remote_ip] = error
            for key, sock in self._sockets.items():
                if key[2] != error.remote_ip:
                    continue
                if error.remote_port is not None and (key[3], key[1]) != (
                    error.remote_port,
                    error.local_port,
                ):
                    continue
                sock.soft_errors.append(error)

    # -- helpers for sockets (called with the lock held) ---------------------------------------

    def _check_running(self) -> None:
        if self._error is not None:
            raise RuntimeStopped("the runtime loop failed") from self._error
        if self._stopping:
            raise RuntimeStopped("the runtime is stopped")

    def _wait(self, ready: Callable[[], bool], deadline: int | None, what: str) -> None:
        """Wait (lock held) until `ready()`; `deadline` in clock nanoseconds or None."""
        while not ready():
            self._check_running()
            if deadline is None:
                self._changed.wait()
                continue
            remaining = (deadline - self._clock()) / 1e9
            if remaining <= 0:
                raise Timeout(f"timed out waiting for {what}")
            self._changed.wait(remaining)

    def _check_family(self, addr: str) -> None:
        """Refuse a v6 destination when we have no usable v6 address (lock held)."""
        if ":" not in addr:
            return
        if self.host.ip6 is None:
            raise ValueError(f"{addr} is IPv6 and the lab stack has no IPv6 address")
        if self.duplicates:
            taken = ", ".join(f"{d.address} (used by {d.mac})" for d in self.duplicates)
            raise DuplicateAddressError(
                errno.EADDRNOTAVAIL, f"duplicate address detection: {taken} already in use"
            )

    def _usable_source(self, addr: str, deadline: int | None) -> None:
        """Check that we can send to `addr` and, for a v6 one, wait until DAD is over (lock held).

        The host would hold a packet from a tentative address anyway, but a SYN or an echo
        request built now would carry the timestamp and send time of now: the ~1 s of DAD would
        land in ping's RTT and in the connection's first RTT sample. A kernel cannot send from
        a tentative address either (EADDRNOTAVAIL)."""
        self._check_family(addr)
        if ":" in addr:
            self._wait(self._ipv6_settled, deadline, "duplicate address detection")
            self._check_family(addr)

    def _ipv6_settled(self) -> bool:
        """DAD is over for our v6 address, one way or the other (lock held)."""
        return self.host.ipv6_ready or bool(self.duplicates)

    def _deadline(self, timeout: float | None) -> int | None:
        return None if timeout is None else self._clock() + int(timeout * 1e9)

    def _register(self, conn: Connection) -> Socket:
        for key, old in list(self._sockets.items()):  # forget sockets of finished connections
            if old.connection.state is State.CLOSED:
                del self._sockets[key]
        sock = Socket(self, conn)
        self._sockets[(conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)] = sock
        return sock

    def _forget(self, sock: Socket) -> None:
        conn = sock.connection
        key = (conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)
        if self._sockets.get(key) is sock:
            del self._sockets[key]

    # -- socket API ----------------------------------------------------------------------------

    def connect(
        self, addr: str, port: int, timeout: float | None = None, *, local_port: int | None = None
    ) -> Socket:
        """Active open; returns once ESTABLISHED. Raises ConnectionRefused, HostUnreachable,
        Timeout (the timeout, or the SYN retries running out)."""
        deadline = self._deadline(timeout)
        addr = canonical_address(addr)
        with self._lock:
            self._check_running()
            self._usable_source(addr, deadline)
            conn = self.host.tcp.connect(addr, port, self.now(), local_port)
            sock = self._register(conn)
        self.wake()
        with self._lock:
            try:
                self._wait(sock._handshake_over, deadline, f"connection to {endpoint(addr, port)}")
                sock._raise_if_failed(connecting=True)
            except BaseException:
                if conn.state is not State.CLOSED:
                    conn.abort(self.now())
                self._forget(sock)
                self.wake()
                raise
        return sock

    def ping(
        self,
        addr: str,
        *,
        ident: int,
        seq: int,
        payload: bytes = b"",
        timeout: float | None = None,
    ) -> EchoReply:
        """Send one ICMP echo request and wait for its reply (RTT in `EchoReply.rtt`, us).

        Raises Timeout when no reply comes in time, HostUnreachable when ARP for the next hop
        gives up (or there is no route), ValueError for a request the host refuses to build."""
        deadline = self._deadline(timeout)
        addr = canonical_address(addr)
        key = (addr, ident, seq)
        with self._lock:
            self._check_running()
            self._usable_source(addr, deadline)
            next_hop = self.host.route(addr)
            for ip in (addr, next_hop):
                if ip is not None:
                    self._unreachable.pop(ip, None)  # an old failure says nothing about now
            self._echo_replies.pop(key, None)
            self.host.ping(addr, ident, seq, payload, self.now())
        self.wake()

        def ready() -> bool:
            for reply in self.host.echo_replies():
                self._echo_replies[(reply.src, reply.ident, reply.seq)] = reply
            while len(self._echo_replies) > MAX_KEPT_ECHO_REPLIES:
                del self._echo_replies[next(iter(self._echo_replies))]
            if key in self._echo_replies:
                return True
            for ip in (addr, next_hop):
                error = self._unreachable.get(ip) if ip is not None else None
                if error is not None:
                    arp = "no Neighbor Discovery answer" if ":" in addr else "no ARP reply"
                    how = arp if error.from_arp else "no route"
                    raise HostUnreachable(f"{addr}: {how}")
            return False

        with self._lock:
            try:
                self._wait(ready, deadline, f"an echo reply from {addr}")
                return self._echo_replies.pop(key)
            finally:
                self._echo_replies.pop(key, None)

    def listen(
        self, port: int, backlog: int = 16, *, accept_from: AcceptFrom | None = None
    ) -> ListeningSocket:
        """Passive open on `port` (the FTP data connection in active mode needs this).

        `accept_from(remote_ip, remote_port)` decides, at the SYN, who may connect; the others
        get a RST as from a closed port and never reach `accept`. It is called from the loop
        thread with the runtime's lock held: it must be quick and must not call the runtime.
        """
        with self._lock:
            self._check_running()
            listener = self.host.tcp.listen(port, backlog, accept_from)
        return ListeningSocket(self, port, listener)


class ListeningSocket:
    """A listening port; `accept` hands out established connections in arrival order."""

    def __init__(self, runtime: Runtime, port: int, listener: Listener) -> None:
        self.runtime = runtime
        self.port = port
        self.listener = listener
        self._closed = False

    def accept(self, timeout: float | None = None) -> Socket:
        rt = self.runtime
        deadline = rt._deadline(timeout)
        accepted: list[Connection] = []

        def ready() -> bool:
            if self._closed:
                raise OSError(errno.EBADF, "listening socket is closed")
            conn = self.listener.accept()
            if conn is not None:
                accepted.append(conn)
            return bool(accepted)

        with rt._lock:
            rt._wait(ready, deadline, f"a connection on port {self.port}")
            return rt._register(accepted[0])

    def close(self) -> None:
        """Stop listening. Connections already accepted stay open."""
        with self.runtime._lock:
            if not self._closed:
                self._closed = True
                self.runtime.host.tcp.unlisten(self.port)
                self.runtime._changed.notify_all()

    def __enter__(self) -> ListeningSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Socket:
    """One connection, blocking API. Timeouts are in seconds; None waits for ever."""

    def __init__(self, runtime: Runtime, conn: Connection) -> None:
        self.runtime = runtime
        self.connection = conn
        self._connected = conn.state is State.ESTABLISHED
        self._eof = False
        self._reset: str | None = None
        self._refused = False
        self._timed_out = False
        self._closed = False
        self._shut_write = False
        # Every ICMP error seen, in order (also for the curious); those from `_errors_handled` on
        # have not yet been turned into an exception or waved through.
        self.soft_errors: list[IcmpError] = []
        self._errors_handled = 0

    @property
    def local_address(self) -> tuple[str, int]:
        return self.connection.local_ip, self.connection.local_port

    @property
    def remote_address(self) -> tuple[str, int]:
        return self.connection.remote_ip, self.connection.remote_port

    @property
    def state(self) -> State:
        return self.connection.state

    # -- event bookkeeping (lock held) ---------------------------------------------------------

    def _absorb(self) -> None:
        for event in self.connection.events():
            if type(event) is tcp.DataReceived:
                continue  # one per segment in a transfer, and nothing to note: skipped first
            if isinstance(event, tcp.Connected):
                self._connected = True
            elif isinstance(event, tcp.PeerClosed):
                self._eof = True
            elif isinstance(event, tcp.Reset):
                self._reset = event.reason
            elif isinstance(event, tcp.ConnectionRefused):
                self._refused = True
            elif isinstance(event, tcp.TimedOut):
                self._timed_out = True
        if self.connection.state in _PEER_DONE:
            self._eof = True

    def _failed(self) -> bool:
        return self._reset is not None or self._refused or self._timed_out

    def _handshake_over(self) -> bool:
        self._absorb()
        if any(error.code != ICMP_FRAG_NEEDED for error in self._pending_errors()):
            return True
        return (
            self._connected
            or self._failed()
            or self.connection.state not in (State.SYN_SENT, State.SYN_RECEIVED)
        )

    def _raise_if_failed(self, *, connecting: bool = False) -> None:
        if self._refused:
            raise ConnectionRefused(f"connection to {self._peer()} refused")
        if self._reset is not None:
            raise ConnectionReset(f"connection to {self._peer()} reset: {self._reset}")
        if self._timed_out:
            raise Timeout(f"connection to {self._peer()} timed out (retransmissions exhausted)")
        if connecting:
            # RFC 1122 4.2.3.9 makes ICMP errors soft, but like Linux we fail a handshake on
            # them: nothing else will tell the caller before the SYN retries run out. Except
            # "fragmentation needed": it lowers the path MTU and the handshake goes on (as in
            # Linux's tcp_v4_err), so `_handshake_over` does not stop waiting for it.
            for error in self._pending_errors():
                if error.code in (2, 3) and not error.from_arp:
                    what = "port" if error.code == 3 else "protocol"
                    raise ConnectionRefused(f"{self._peer()}: ICMP {what} unreachable")
                if error.code != ICMP_FRAG_NEEDED:
                    how = (
                        "no ARP reply"
                        if error.from_arp
                        else f"ICMP unreachable (code {error.code})"
                    )
                    raise HostUnreachable(f"{self._peer()}: {how}")
            if not self._connected and self.connection.state is not State.ESTABLISHED:
                raise ConnectionRefused(
                    f"connection to {self._peer()} failed in {self.connection.state.value}"
                )
        self._errors_handled = len(self.soft_errors)

    def _pending_errors(self) -> list[IcmpError]:
        return self.soft_errors[self._errors_handled :]

    def _peer(self) -> str:
        return endpoint(self.connection.remote_ip, self.connection.remote_port)

    # -- data ----------------------------------------------------------------------------------

    def send(self, data: bytes, timeout: float | None = None) -> int:
        """Queue some of `data` for sending; blocks until at least one byte fits (or timeout)."""
        if not data:
            return 0
        rt = self.runtime
        deadline = rt._deadline(timeout)
        accepted = 0

        def ready() -> bool:
            nonlocal accepted
            self._absorb()
            self._raise_if_failed()
            if self._closed or self._shut_write:
                raise BrokenPipeError("socket is shut down for writing")
            try:
                accepted = self.connection.send(data, rt.now())
            except tcp.TcpUsageError as exc:  # the peer closed it under us (state CLOSED)
                raise BrokenPipeError(str(exc)) from exc
            return accepted > 0

        with rt._lock:
            rt._wait(ready, deadline, "room in the send buffer")
        rt.wake()
        return accepted

    def sendall(self, data: bytes, timeout: float | None = None) -> None:
        """Send every byte of `data`; `timeout` bounds the whole call."""
        deadline = self.runtime._deadline(timeout)
        view = memoryview(data)
        while view:
            remaining = None if deadline is None else (deadline - self.runtime._clock()) / 1e9
            if remaining is not None and remaining <= 0:
                raise Timeout(f"sendall to {self._peer()} timed out with {len(view)} bytes left")
            sent = self.send(bytes(view[: 1 << 20]), remaining)
            view = view[sent:]

    def recv(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Up to `max_bytes` received bytes; b"" once the peer has closed and all was read."""
        return b"".join(self.recv_chunks(max_bytes, timeout))  # one chunk: itself, no copy

    def recv_chunks(self, max_bytes: int, timeout: float | None = None) -> list[Chunk]:
        """`recv`'s bytes as the received payloads themselves, in order ([] once the peer has
        closed and all was read): whole segments while they fit in `max_bytes`, never joined;
        a GRO-merged payload as a memoryview of the frame it came in (`lab.tcp.recvbuf.Chunk`).

        A bulk reader takes everything buffered in one call and writes it with one writev(2):
        one wake-up, one lock and one system call for a burst of segments, where a read per
        segment made the application take the GIL (and the runtime's lock) twice per frame
        and the loop thread wait for it."""
        if max_bytes <= 0:
            return []
        rt = self.runtime

        def ready() -> bool:
            self._absorb()
            if self.connection.recv_buffered > 0:
                return True
            self._raise_if_failed()
            return self._eof or self.connection.state is State.CLOSED

        with rt._lock:
            rt._wait(ready, rt._deadline(timeout), f"data from {self._peer()}")
            chunks = self.connection.read_chunks(max_bytes)
            owed = self.connection.ack_pending
        if owed:
            # Reading opened the window enough to announce: the loop sends the update now.
            # Otherwise it is not woken: a loop turn per read cost the bulk path a tenth.
            rt.wake()
        return chunks

    def shutdown(self) -> None:
        """Half-close: our FIN goes out after the queued data; receiving continues."""
        with self.runtime._lock:
            self._absorb()
            if not self._shut_write and self.connection.state is not State.CLOSED:
                self._shut_write = True
                with contextlib.suppress(tcp.TcpUsageError):  # already closing: nothing to do
                    self.connection.close(self.runtime.now())
        self.runtime.wake()

    def close(self) -> None:
        """Shut down writing (FIN) and stop using the socket. The connection finishes its close
        in the background (FIN-WAIT, TIME-WAIT) as with kernel sockets; `wait_closed` waits."""
        if self._closed:
            return
        self.shutdown()
        with self.runtime._lock:
            self._closed = True

    def abort(self) -> None:
        """Reset the connection (RST) and stop using the socket."""
        with self.runtime._lock:
            if self.connection.state is not State.CLOSED:
                self.connection.abort(self.runtime.now())
            self._closed = True
            self.runtime._forget(self)
        self.runtime.wake()

    def wait_closed(self, timeout: float | None = None) -> State:
        """Wait until both FINs are acknowledged (TIME-WAIT or CLOSED); returns the state."""
        rt = self.runtime

        def done() -> bool:
            self._absorb()
            return self.connection.state in (State.TIME_WAIT, State.CLOSED)

        with rt._lock:
            rt._wait(done, rt._deadline(timeout), f"the close of {self._peer()}")
            if self.connection.state is State.CLOSED:
                rt._forget(self)
            return self.connection.state

    def __enter__(self) -> Socket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
