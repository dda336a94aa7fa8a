"""The TCP part of a host, sans-IO: demultiplexing, listeners, ports, ISNs and RSTs for nobody.

A `TcpEndpoint` owns one IPv4 address and, on a dual-stack host, one IPv6 address (`ip6`).
Ports are shared by both families, as a Linux socket bound to [::] without IPV6_V6ONLY takes the
port for both: a listener answers SYNs to either address, and each connection belongs to the
family of its peer. A v6 connection announces an MSS 20 bytes smaller than `config.mss` (the IPv6
header is 40 bytes, not 20: 1440 on a 1500-byte link, RFC 8200 8.3, RFC 9293 3.7.1).

Segments come in through `receive` and are handed to the connection whose 4-tuple they carry,
else to a listener (a SYN), else answered with a RST as a kernel does for a closed port (RFC 9293
3.10.7.1). What to send is pulled with `packets_to_send`, timers are fired with `on_timer`, and
`next_deadline` says when that is next needed, so the same endpoint runs in memory under a virtual
clock, in a notebook, or behind a live link.

Connections stay in `connections` while they exist in the RFC's sense: a connection in TIME-WAIT
is kept (it still owns its 4-tuple and answers a retransmitted FIN) until its 2*MSL timer moves it
to CLOSED; CLOSED connections are reaped, after anything they still had to send (an abort's RST)
has been collected.

Admission. `listen(port, accept_from=...)` takes a predicate on the SYN's source (address, port).
A SYN it refuses is answered with a RST exactly as if the port were closed (RFC 9293 3.10.7.1),
before any connection state exists: the peer's connect fails with "refused" at once, as with a
kernel socket filtered by the firewall's `reject --reject-with tcp-reset`, instead of completing a
handshake that is torn down afterwards. The FTP client's active-mode data listener uses it to
refuse third addresses (curl and vsftpd do the same check, later, after accept).
"""

from __future__ import annotations

import random
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from lab.tcp.connection import Connection, Listener, State, TcpConfig, TraceEntry
from lab.tcp.isn import IsnGenerator
from lab.wire.segment import AddressedSegment, Flags, Segment
from lab.wire.seq import seq_add

FourTuple = tuple[str, int, str, int]  # (local_ip, local_port, remote_ip, remote_port)

AcceptFrom = Callable[[str, int], bool]
"""Admission predicate of a listener: (remote address, remote port) of a SYN -> admit it?"""

TRACE_LIMIT = 1024  # endpoint trace entries kept: a SYN flood must not grow memory
IPV6_EXTRA_HEADER = 20  # an IPv6 header (40) is 20 bytes longer than an IPv4 one without options


def ipv6_config(config: TcpConfig) -> TcpConfig:
    """The settings of a v6 connection: the same, with an MSS that leaves room for the larger
    IPv6 header (never below the 48 bytes TcpConfig accepts)."""
    return replace(config, mss=max(48, config.mss - IPV6_EXTRA_HEADER))


class AddressInUseError(RuntimeError):
    """The port (for a listener) or the 4-tuple (for a connection) is already taken."""


class PortsExhaustedError(RuntimeError):
    """Every ephemeral port is in use."""


@dataclass(slots=True)
class EndpointStats:
    """Counters of what the demultiplexer did with segments no connection consumed."""

    received: int = 0
    not_for_us: int = 0  # destination address is not ours
    rst_sent: int = 0  # answers to segments for closed ports or bad ACKs in LISTEN
    rst_ignored: int = 0  # RSTs for no connection: never answered (RFC 9293 3.10.7.1)
    syn_dropped: int = 0  # listener backlog full
    syn_rejected: int = 0  # SYNs a listener's `accept_from` refused: answered with RST
    listen_dropped: int = 0  # neither SYN, ACK nor RST to a listening port
    connections_opened: int = 0
    connections_reaped: int = 0


def reset_for(seg: Segment) -> Segment | None:
    """The RST that answers `seg` when no connection exists (RFC 9293 3.10.7.1), or None for a RST.

    If the ACK bit is on: <SEQ=SEG.ACK><CTL=RST>. Otherwise: <SEQ=0><ACK=SEG.SEQ+SEG.LEN>
    <CTL=RST,ACK>. A RST is never answered with a RST: two stacks would otherwise ping-pong.
    """
    if seg.rst:
        return None
    if seg.has_ack:
        return Segment(src_port=seg.dst_port, dst_port=seg.src_port, seq=seg.ack, flags=Flags.RST)
    return Segment(
        src_port=seg.dst_port,
        dst_port=seg.src_port,
        seq=0,
        ack=seq_add(seg.seq, seg.seg_len),
        flags=Flags.RST | Flags.ACK,
    )


class TcpEndpoint:
    """Sans-IO demux for one IP address: connections by 4-tuple, listeners by port."""

    def __init__(
        self,
        ip: str,
        *,
        config: TcpConfig = TcpConfig(),  # noqa: B008 - frozen, so a shared default is safe
        isn_key: bytes | None = None,
        ephemeral_ports: tuple[int, int] = (32768, 60999),
        rng_seed: int = 0,
        isn: IsnGenerator | None = None,
        ip6: str | None = None,
    ) -> None:
        low, high = ephemeral_ports
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad ephemeral port range {ephemeral_ports}")
        self.ip = ip
        self.ip6 = ip6  # the IPv6 address of a dual-stack host, or None
        self.config = config
        # RFC 6528: the key must be secret, so by default a fresh random one per endpoint;
        # tests and reproducible runs (the in-memory demo) pass their own. `isn` lets a test
        # substitute a generator that forces the ISS (e.g. near 2**32).
        if isn_key is None:
            isn_key = secrets.token_bytes(16)
        self.isn = isn if isn is not None else IsnGenerator(isn_key)
        self.ephemeral_ports = ephemeral_ports
        self._rng = random.Random(rng_seed)
        self.connections: dict[FourTuple, Connection] = {}
        self.listeners: dict[int, Listener] = {}
        self._accept_from: dict[int, AcceptFrom] = {}
        self.stats = EndpointStats()
        # What the demultiplexer decided on its own (refused SYNs), newest last, bounded.
        self.trace: deque[TraceEntry] = deque(maxlen=TRACE_LIMIT)
        self._pending: list[AddressedSegment] = []

    # -- opening -----------------------------------------------------------------------------

    def _port_in_use(self, port: int) -> bool:
        if port in self.listeners:
            return True
        return any(key[1] == port for key in self.connections)

    def _allocate_port(self) -> int:
        """A random ephemeral port (RFC 6056 3.3.1 style: random start, then the next free one)."""
        low, high = self.ephemeral_ports
        count = high - low + 1
        start = self._rng.randrange(count)
        for i in range(count):
            port = low + (start + i) % count
            if not self._port_in_use(port):
                return port
        raise PortsExhaustedError(f"all {count} ephemeral ports of {self.ip} are in use")

    def connect(
        self,
        remote_ip: str,
        remote_port: int,
        now: int,
        local_port: int | None = None,
        *,
        iss: int | None = None,
    ) -> Connection:
        """Active open: a new connection in SYN-SENT with its SYN queued.

        `iss` forces the initial send sequence number (tests near the 2**32 wrap); otherwise it
        comes from the RFC 6528 generator.
        """
        local_ip = self.local_address_for(remote_ip)
        if local_port is None:
            local_port = self._allocate_port()
        key = (local_ip, local_port, remote_ip, remote_port)
        if key in self.connections:
            raise AddressInUseError(f"connection {key} already exists")
        if iss is None:
            iss = self.isn.isn(local_ip, local_port, remote_ip, remote_port, now)
        conn = Connection(
            local_ip,
            local_port,
            remote_ip,
            remote_port,
            config=self.config_for(remote_ip),
            iss=iss,
            rng_seed=self._rng.getrandbits(32),
        )
        conn.open(now)
        self.connections[key] = conn
        self.stats.connections_opened += 1
        return conn

    def local_address_for(self, remote_ip: str) -> str:
        """Our address of the family of `remote_ip` (IPv6 text has a colon, dotted quads none).
        Raises ValueError for an IPv6 peer when we have no IPv6 address."""
        if ":" not in remote_ip:
            return self.ip
        if self.ip6 is None:
            raise ValueError(f"{remote_ip} is IPv6 and this endpoint has no IPv6 address")
        return self.ip6

    def config_for(self, remote_ip: str) -> TcpConfig:
        """The connection settings for a peer of that family (a smaller MSS over IPv6)."""
        return ipv6_config(self.config) if ":" in remote_ip else self.config

    def listen(
        self, port: int, backlog: int = 16, accept_from: AcceptFrom | None = None
    ) -> Listener:
        """A passive open on `port`; accepted connections come from the returned listener.

        `accept_from(remote_ip, remote_port)` is asked for every SYN before any state is made;
        a False answer gets the RST a closed port would give (counted in `stats.syn_rejected`,
        recorded in `trace`). It runs inside `receive`, so it must be quick and must not call
        back into the endpoint. None admits everyone.
        """
        if port in self.listeners:
            raise AddressInUseError(f"port {port} of {self.ip} already has a listener")
        listener = Listener(self.ip, port, config=self.config, isn=self.isn, backlog=backlog)
        self.listeners[port] = listener
        if accept_from is not None:
            self._accept_from[port] = accept_from
        return listener

    def unlisten(self, port: int) -> None:
        """Stop listening; connections already made from the listener are not affected."""
        self.listeners.pop(port, None)
        self._accept_from.pop(port, None)

    # -- input -------------------------------------------------------------------------------

    def receive(self, packet: AddressedSegment, now: int) -> None:
        """Hand one segment to its connection, its listener, or answer it with a RST."""
        self.stats.received += 1
        if packet.dst != self.ip and (packet.dst != self.ip6 or self.ip6 is None):
            self.stats.not_for_us += 1
            return
        seg = packet.segment
        key = (packet.dst, seg.dst_port, packet.src, seg.src_port)
        conn = self.connections.get(key)
        if conn is not None and conn.state is State.CLOSED:
            self._reap(now)  # a closed connection no longer owns its 4-tuple
            conn = None
        if conn is not None and seg.syn and conn.state is State.TIME_WAIT:
            listener = self.listeners.get(seg.dst_port)
            if listener is not None and conn.accepts_new_syn_in_time_wait(seg, now):
                # RFC 6191 / Linux: a SYN with a newer ISN or timestamp reopens a 4-tuple in
                # TIME-WAIT: the old incarnation goes, the listener makes the new one.
                iss = conn.end_time_wait(now)
                self._reap(now)
                self._to_listener(listener, packet, now, iss=iss)
                return
        if conn is not None:
            conn.receive_segment(seg, now)
            if conn.state is State.CLOSED:  # others are reaped by segments_to_send and timers
                self._reap(now)
            return
        listener = self.listeners.get(seg.dst_port)
        if listener is not None:
            self._to_listener(listener, packet, now)
            return
        self._reset(packet)

    def receive_established(self, conn: Connection, seg: Segment, now: int) -> None:
        """`receive` for a segment its caller has already matched to `conn`, ESTABLISHED: the
        host's bulk path, which looked the 4-tuple up to choose that path. The effects are
        those of `receive` for such a segment (counted, handed over, reaped if it closed the
        connection); what it skips is the `AddressedSegment` and a second lookup per frame."""
        self.stats.received += 1
        conn.receive_segment(seg, now)
        if conn.state is State.CLOSED:
            self._reap(now)

    def _to_listener(
        self, listener: Listener, packet: AddressedSegment, now: int, iss: int | None = None
    ) -> None:
        """RFC 9293 3.10.7.2, LISTEN: RST ignored, ACK answered with RST, SYN makes a connection."""
        seg = packet.segment
        if seg.rst:
            self.stats.rst_ignored += 1
            return
        if seg.has_ack:
            self._reset(packet)
            return
        if not seg.syn or seg.fin:
            self.stats.listen_dropped += 1  # SYN+FIN included: Linux drops it as well
            return
        admit = self._accept_from.get(seg.dst_port)
        if admit is not None and not admit(packet.src, seg.src_port):
            # Refused before any state exists: the same RST as for a closed port.
            self.stats.syn_rejected += 1
            self.trace.append(
                TraceEntry(
                    now,
                    "rst",
                    f"SYN from {packet.src}:{seg.src_port} to port {seg.dst_port} reset: "
                    "source not admitted by the listener",
                )
            )
            self._reset(packet)
            return
        conn = listener.receive_syn(
            packet.src,
            seg,
            now,
            iss=iss,
            local_ip=packet.dst,
            config=self.config_for(packet.src),
        )
        if conn is None:
            self.stats.syn_dropped += 1
            return
        key = (conn.local_ip, conn.local_port, conn.remote_ip, conn.remote_port)
        self.connections[key] = conn
        self.stats.connections_opened += 1

    def _reset(self, packet: AddressedSegment) -> None:
        rst = reset_for(packet.segment)
        if rst is None:
            self.stats.rst_ignored += 1
            return
        src, dst = packet.reply_addresses()
        self._pending.append(AddressedSegment(src, dst, rst))
        self.stats.rst_sent += 1

    # -- output and timers -------------------------------------------------------------------

    def packets_to_send(self, now: int) -> list[AddressedSegment]:
        """Everything every connection wants to send now, plus RSTs for closed ports."""
        out = self._pending
        self._pending = []
        for conn in list(self.connections.values()):
            for seg in conn.segments_to_send(now):
                out.append(AddressedSegment(conn.local_ip, conn.remote_ip, seg))
        self._reap(now)
        out.extend(self._pending)
        self._pending = []
        return out

    def on_timer(self, now: int) -> None:
        """Fire the timer of every connection that is due (retransmission, delayed ACK, 2*MSL)."""
        for conn in list(self.connections.values()):
            deadline = conn.next_deadline()
            if deadline is not None and deadline <= now:
                conn.on_timer(now)
        self._reap(now)

    def next_deadline(self) -> int | None:
        """The earliest time any connection wants `on_timer`, or None."""
        deadlines = [d for c in self.connections.values() if (d := c.next_deadline()) is not None]
        return min(deadlines, default=None)

    def _reap(self, now: int) -> None:
        """Drop CLOSED connections, keeping whatever they still had queued (an abort's RST)."""
        for key, conn in list(self.connections.items()):
            if conn.state is State.CLOSED:
                for seg in conn.segments_to_send(now):
                    self._pending.append(AddressedSegment(conn.local_ip, conn.remote_ip, seg))
                del self.connections[key]
                self.stats.connections_reaped += 1
