"""Run a script against the lab's TCP: a `TcpEndpoint` in memory, on virtual time.

The socket calls map onto the sans-IO core as a kernel's socket layer would: `listen` makes a
`Listener`, `accept` takes a connection from it, `connect` opens one, `write`/`read` are
`Connection.send`/`read`, `shutdown(SHUT_WR)` is CLOSE, and `close` is CLOSE, or ABORT when unread
data remains (RFC 2525 2.17, what Linux does). Time only moves when the engine asks: to the next
event of the script, or to the next timer of the endpoint, so an RTO of 60 s takes no time.

The lab is given a Linux-like profile so that scripts written for Linux need few notes: Nagle on
unless TCP_NODELAY, an initial window of 10 segments (RFC 6928, Linux's default), SO_RCVBUF and
SO_SNDBUF as the buffer sizes. What still differs is listed in tests/conformance/README.md.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

from lab.script.engine import (
    LOCAL_IP,
    REMOTE_IP,
    SCRIPT_PORT,
    CallOutcome,
)
from lab.script.parser import CallEvent, ShellEvent
from lab.tcp.connection import (
    Closed,
    Connected,
    Connection,
    ConnectionRefused,
    ConnectionStateError,
    Listener,
    PeerClosed,
    Reset,
    State,
    TcpConfig,
    TimedOut,
)
from lab.tcp.endpoint import AddressInUseError, TcpEndpoint
from lab.tcp.isn import FixedIsn, IsnGenerator
from lab.wire.options import decode_options_leniently, encode_options
from lab.wire.segment import AddressedSegment, Segment

LINUX_LIKE = TcpConfig(nagle=True, initial_cwnd_segments=10)
"""The lab's settings under `lab script`: closest to a Linux socket that the core offers."""

_MAX_TIMER_STEPS = 1_000_000  # a guard against a timer that never moves on


@dataclass(slots=True)
class _Socket:
    """A script file descriptor: settings until it is used, then a listener or a connection."""

    nonblocking: bool = False
    nodelay: bool = False
    rcvbuf: int | None = None
    sndbuf: int | None = None
    port: int | None = None
    listener: Listener | None = None
    conn: Connection | None = None
    connected: bool = False
    connect_reported: bool = False  # a connect() has returned 0 (later ones: EISCONN)
    peer_closed: bool = False
    error: str | None = None  # ECONNRESET, ECONNREFUSED, ETIMEDOUT once the connection died
    shut_wr: bool = False
    events: list[object] = field(default_factory=list)

    def config(self, base: TcpConfig) -> TcpConfig:
        cfg = dataclasses.replace(base, nagle=not self.nodelay)
        if self.rcvbuf is not None:
            cfg = dataclasses.replace(cfg, recv_buffer=self.rcvbuf)
        if self.sndbuf is not None:
            cfg = dataclasses.replace(cfg, send_buffer=self.sndbuf)
        return cfg


class LabTarget:
    """The lab's TCP behind the engine's `Target` protocol."""

    def __init__(self, *, local_isn: int | None = None, config: TcpConfig = LINUX_LIKE) -> None:
        isn: IsnGenerator = (
            FixedIsn(local_isn) if local_isn is not None else IsnGenerator(b"lab script")
        )
        self.base_config = config
        self.endpoint = TcpEndpoint(LOCAL_IP, config=config, isn=isn, rng_seed=11)
        self._now = 0
        self._out: deque[tuple[int, Segment]] = deque()
        self._fds: dict[int, _Socket] = {}
        self._pending: list[CallEvent] = []
        self._completed: list[tuple[CallEvent, CallOutcome]] = []
        self.shell_lines_ignored = 0

    # -- time and segments ----------------------------------------------------------------------

    def now(self) -> int:
        return self._now

    def _collect(self) -> None:
        for packet in self.endpoint.packets_to_send(self._now):
            if packet.dst == REMOTE_IP:
                self._out.append((self._now, packet.segment))
        self._update_sockets()
        self._retry_pending()

    def _fire_due(self, limit: int) -> bool:
        """Run the endpoint's next timer if it is due by `limit`; False when none is."""
        deadline = self.endpoint.next_deadline()
        if deadline is None or deadline > limit:
            return False
        self._now = max(self._now, deadline)
        self.endpoint.on_timer(self._now)
        self._collect()
        return True

    def wait_until(self, t: int) -> None:
        self._collect()
        for _ in range(_MAX_TIMER_STEPS):
            if not self._fire_due(t):
                break
        self._now = max(self._now, t)
        self._collect()

    def next_outbound(self, limit: int) -> tuple[int, Segment] | None:
        self._collect()
        for _ in range(_MAX_TIMER_STEPS):
            if self._out:
                return self._out.popleft()
            if not self._fire_due(limit):
                return None
        return None

    def peek_outbound(self) -> tuple[int, Segment] | None:
        return self._out[0] if self._out else None

    def inject(self, seg: Segment) -> None:
        # The options cross the wire codec, as a live segment's do: what follows an EOL is
        # padding, not options (a script may write `<mss 1000,eol,sackOK,nop>`).
        options, _ = decode_options_leniently(encode_options(seg.options))
        seg = dataclasses.replace(seg, options=options)
        self.endpoint.receive(AddressedSegment(REMOTE_IP, LOCAL_IP, seg), self._now)
        self._collect()

    def shell(self, ev: ShellEvent) -> int:
        """Shell lines configure the kernel (sysctls); the lab has nothing to run them on."""
        self.shell_lines_ignored += 1
        return 0

    def close(self) -> None:
        self._fds.clear()

    # -- sockets -------------------------------------------------------------------------------

    def _update_sockets(self) -> None:
        """Fold the connections' events into their sockets (events are drained once)."""
        for sock in self._fds.values():
            conn = sock.conn
            if conn is None:
                continue
            for event in conn.events():
                if isinstance(event, Connected):
                    sock.connected = True
                elif isinstance(event, PeerClosed):
                    sock.peer_closed = True
                elif isinstance(event, ConnectionRefused):
                    sock.error = "ECONNREFUSED"
                elif isinstance(event, Reset):
                    sock.error = "ECONNRESET" if sock.connected else "ECONNREFUSED"
                elif isinstance(event, TimedOut):
                    sock.error = "ETIMEDOUT"
                elif isinstance(event, Closed):
                    pass

    def _new_fd(self, sock: _Socket) -> int:
        fd = 3
        while fd in self._fds:
            fd += 1
        self._fds[fd] = sock
        return fd

    def call(self, ev: CallEvent) -> CallOutcome | None:
        if ev.name == "socket":
            return CallOutcome(self._new_fd(_Socket()))
        fd = ev.args[0]
        sock = self._fds.get(fd) if isinstance(fd, int) else None
        if sock is None:
            return CallOutcome(-1, "EBADF")
        outcome = self._call(ev, sock)
        self._collect()
        if outcome is None:
            self._pending.append(ev)
        return outcome

    def completed_calls(self) -> list[tuple[CallEvent, CallOutcome]]:
        out, self._completed = self._completed, []
        return out

    def _retry_pending(self) -> None:
        still: list[CallEvent] = []
        for ev in self._pending:
            fd = ev.args[0]
            sock = self._fds.get(fd) if isinstance(fd, int) else None
            outcome = (
                self._call(ev, sock, retry=True) if sock is not None else CallOutcome(-1, "EBADF")
            )
            if outcome is None:
                still.append(ev)
            else:
                self._completed.append((ev, dataclasses.replace(outcome, at=self._now)))
        self._pending = still

    def _call(self, ev: CallEvent, sock: _Socket, retry: bool = False) -> CallOutcome | None:
        handler = getattr(self, f"_call_{ev.name}")
        result: CallOutcome | None = handler(ev, sock, retry)
        return result

    def _call_setsockopt(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome:
        value = ev.args[3]
        assert isinstance(value, tuple)
        name = ev.args[2]
        if name == "TCP_NODELAY":
            sock.nodelay = bool(value[0])
            if sock.conn is not None:  # Nagle is read from the config on every send decision
                sock.conn.config = dataclasses.replace(sock.conn.config, nagle=not sock.nodelay)
        elif name == "SO_RCVBUF":
            sock.rcvbuf = max(value[0], 2048)
        elif name == "SO_SNDBUF":
            sock.sndbuf = max(value[0], 2048)
        return CallOutcome(0)

    def _call_bind(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome:
        if any(s.port == SCRIPT_PORT and s.listener is not None for s in self._fds.values()):
            return CallOutcome(-1, "EADDRINUSE")
        sock.port = SCRIPT_PORT
        return CallOutcome(0)

    def _call_listen(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome:
        backlog = ev.args[1]
        assert isinstance(backlog, int)
        if sock.conn is not None:
            return CallOutcome(-1, "EINVAL")
        if sock.listener is not None:
            return CallOutcome(0)
        self.endpoint.config = sock.config(self.base_config)
        try:
            # Linux admits backlog + 1 connections to the accept queue.
            sock.listener = self.endpoint.listen(sock.port or SCRIPT_PORT, max(1, backlog + 1))
        except AddressInUseError:
            return CallOutcome(-1, "EADDRINUSE")
        sock.port = sock.port or SCRIPT_PORT
        return CallOutcome(0)

    def _call_accept(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome | None:
        if sock.listener is None:
            return CallOutcome(-1, "EINVAL")
        conn = sock.listener.accept()
        if conn is None:
            return CallOutcome(-1, "EAGAIN") if sock.nonblocking else None
        child = _Socket(nodelay=sock.nodelay, conn=conn, connected=True, connect_reported=True)
        fd = self._new_fd(child)
        self._update_sockets()
        return CallOutcome(fd)

    def _call_connect(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome | None:
        if sock.conn is None:
            if sock.listener is not None:
                return CallOutcome(-1, "EISCONN")
            self.endpoint.config = sock.config(self.base_config)
            sock.conn = self.endpoint.connect(REMOTE_IP, SCRIPT_PORT, self._now)
            if sock.nonblocking:
                return CallOutcome(-1, "EINPROGRESS")
            return None
        if sock.error is not None:
            error, sock.error = sock.error, None
            return CallOutcome(-1, error)
        if sock.connected:
            # Linux (inet_stream_connect): the first connect() after the handshake completed
            # returns 0, which is how a nonblocking caller learns it; later ones say EISCONN.
            if sock.connect_reported:
                return CallOutcome(-1, "EISCONN")
            sock.connect_reported = True
            return CallOutcome(0)
        if sock.nonblocking:
            return CallOutcome(-1, "EALREADY")
        return None

    def _call_write(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome | None:
        size = ev.args[2]
        assert isinstance(size, int)
        conn = sock.conn
        if conn is None:
            return CallOutcome(-1, "EPIPE" if sock.listener is None else "ENOTCONN")
        if sock.error is not None:
            error, sock.error = sock.error, None
            return CallOutcome(-1, error)
        if sock.shut_wr or conn.state is State.CLOSED:
            return CallOutcome(-1, "EPIPE")
        if conn.state in (State.SYN_SENT, State.SYN_RECEIVED):
            return CallOutcome(-1, "EAGAIN") if sock.nonblocking else None
        try:
            taken = conn.send(bytes(size), self._now)
        except ConnectionStateError:
            return CallOutcome(-1, "EPIPE")
        if taken == 0 and size:
            return CallOutcome(-1, "EAGAIN") if sock.nonblocking else None
        return CallOutcome(taken)

    def _call_read(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome | None:
        size = ev.args[2]
        assert isinstance(size, int)
        conn = sock.conn
        if conn is None:
            return CallOutcome(-1, "ENOTCONN")
        data = conn.read(size)
        self._collect_quiet()
        if data:
            return CallOutcome(len(data))
        if sock.error is not None:
            error, sock.error = sock.error, None
            return CallOutcome(-1, error)
        if sock.peer_closed or conn.state is State.CLOSED:
            return CallOutcome(0)
        return CallOutcome(-1, "EAGAIN") if sock.nonblocking else None

    def _collect_quiet(self) -> None:
        """Pick up a window update that reading caused, without re-entering pending calls."""
        for packet in self.endpoint.packets_to_send(self._now):
            if packet.dst == REMOTE_IP:
                self._out.append((self._now, packet.segment))

    def _call_shutdown(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome:
        how = ev.args[1]
        conn = sock.conn
        if conn is None or not (sock.connected or conn.state is State.SYN_SENT):
            return CallOutcome(-1, "ENOTCONN")
        if how in ("SHUT_WR", "SHUT_RDWR") and not sock.shut_wr:
            sock.shut_wr = True
            if conn.state is not State.CLOSED:
                conn.close(self._now)
        return CallOutcome(0)

    def _call_close(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome:
        fd = ev.args[0]
        assert isinstance(fd, int)
        del self._fds[fd]
        if sock.listener is not None:
            self.endpoint.unlisten(sock.port or SCRIPT_PORT)
            # Connections nobody accepted are reset, as Linux does when a listener closes.
            while (conn := sock.listener.accept()) is not None:
                conn.abort(self._now)
            for conn in list(self.endpoint.connections.values()):
                if conn.state is State.SYN_RECEIVED and conn.local_port == sock.port:
                    conn.abort(self._now)
            return CallOutcome(0)
        conn = sock.conn
        if conn is None or conn.state is State.CLOSED:
            return CallOutcome(0)
        if conn.recv_buffered:
            conn.abort(self._now)  # unread data: RST, not FIN (RFC 2525 2.17)
        elif not sock.shut_wr:
            conn.close(self._now)
        return CallOutcome(0)

    def _call_fcntl(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome:
        if ev.args[1] == "F_GETFL":
            return CallOutcome(0x2 | (0x800 if sock.nonblocking else 0))
        flags = ev.args[2]
        if isinstance(flags, int):
            sock.nonblocking = bool(flags & 0x800)
        else:
            sock.nonblocking = "O_NONBLOCK" in str(flags).split("|")
        return CallOutcome(0)

    def _call_ioctl(self, ev: CallEvent, sock: _Socket, retry: bool) -> CallOutcome:
        conn = sock.conn
        if conn is None:
            return CallOutcome(-1, "EINVAL")
        return CallOutcome(0, value=conn.recv_buffered)
