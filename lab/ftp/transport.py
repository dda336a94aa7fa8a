"""The two transports the FTP client runs over: the hand-built stack, and kernel sockets.

The client speaks to a `Transport` (open a control or passive data connection, listen for an
active-mode data connection) and to `Stream`s (blocking `sendall` / `recv` / half-close with
a timeout on every call). Both implementations raise the builtin exceptions (`TimeoutError`,
`ConnectionRefusedError`, `ConnectionResetError`, `OSError`), which the lab runtime's exceptions
subclass, so the FTP logic above never knows which stack moved its bytes: that is what makes a
lab transfer comparable byte for byte with a kernel one.

Active mode safety (as curl and vsftpd do it): a data connection from any address but the
control peer's is reset (RST) and logged, and accepting goes on until the right peer comes or the
timeout passes. The lab stack refuses it at the SYN, through the listener's admission hook
(`Runtime.listen(accept_from=...)`): the intruder's connect fails as on a closed port and no
connection ever exists. Kernel sockets cannot refuse a SYN per address without a firewall, so
`KernelDataListener` resets after `accept`, as curl and vsftpd do.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import random
import socket
import struct
import time
from dataclasses import dataclass
from typing import Protocol

from lab.runtime import Runtime
from lab.runtime import Socket as LabSocket
from lab.tcp.endpoint import AddressInUseError
from lab.tcp.recvbuf import Chunk

log = logging.getLogger("lab.ftp")

KERNEL_READ = 1 << 16  # the most one kernel-socket read asks for
DATA_PORTS = (40000, 60999)  # where the lab stack listens for active-mode data connections


@dataclass(frozen=True, slots=True)
class SegmentStats:
    """TCP counters of one connection, for the summary line (kernel: from TCP_INFO)."""

    segments_sent: int
    segments_received: int
    retransmissions: int


class Stream(Protocol):
    """One established TCP connection with a blocking API; timeouts in seconds."""

    @property
    def local_address(self) -> tuple[str, int]: ...

    @property
    def remote_address(self) -> tuple[str, int]: ...

    def sendall(self, data: bytes, timeout: float | None) -> None: ...

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        """Up to `max_bytes`; b"" once the peer's FIN has been read."""
        ...

    def recv_chunks(self, max_bytes: int, timeout: float | None) -> list[Chunk]:
        """`recv`'s bytes as a list of pieces (bytes or read-only views), in order; [] once
        the peer's FIN has been read. The lab stack hands out the received payloads themselves
        (a bulk reader writes them with one writev); a kernel socket gives one piece."""
        ...

    def shutdown(self) -> None:
        """Send our FIN after the queued data; receiving goes on."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Reset the connection (RST)."""
        ...

    def stats(self) -> SegmentStats | None: ...


class DataListener(Protocol):
    """A listening port for the active-mode data connection."""

    @property
    def address(self) -> tuple[str, int]: ...

    def accept(self, timeout: float | None, peer_ip: str | None) -> Stream:
        """The next connection from `peer_ip` (None: anyone); others are reset and logged."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    name: str

    def connect(self, host: str, port: int, timeout: float | None) -> Stream: ...

    def listen(self, local_ip: str, peer_ip: str | None = None) -> DataListener:
        """Listen on `local_ip` (the control connection's local address) on a free port;
        `peer_ip`, when known, is the only address whose connections are wanted."""
        ...


def same_address(a: str, b: str) -> bool:
    """Whether two textual IP addresses name the same host.

    Compared as values, never as strings: "2001:2::1", "2001:2:0:0:0:0:0:1" and
    "2001:0002::0001" are one address, and a dual-stack kernel socket reports an IPv4 peer as
    "::ffff:198.18.0.1". Text that is not an address (a host name) compares as it is."""
    try:
        x, y = _canonical(a), _canonical(b)
    except ValueError:
        return a == b
    return x == y


def _canonical(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    addr = ipaddress.ip_address(text)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def is_ipv6(host: str) -> bool:
    """Whether `host` is an IPv6 address (a v4-mapped one counts as IPv4: it reaches a v4 peer)."""
    try:
        return isinstance(_canonical(host), ipaddress.IPv6Address)
    except ValueError:
        return False


class ForeignPeerRejected(ConnectionError):  # noqa: N818 - only used as a log record's detail
    """A data connection came from an address other than the control peer's."""


# -- the hand-built stack -------------------------------------------------------------------------


class LabStream:
    """A `lab.runtime.Socket` seen as a `Stream`."""

    def __init__(self, sock: LabSocket) -> None:
        self.sock = sock

    @property
    def local_address(self) -> tuple[str, int]:
        return self.sock.local_address

    @property
    def remote_address(self) -> tuple[str, int]:
        return self.sock.remote_address

    def sendall(self, data: bytes, timeout: float | None) -> None:
        self.sock.sendall(data, timeout)

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        return self.sock.recv(max_bytes, timeout)

    def recv_chunks(self, max_bytes: int, timeout: float | None) -> list[Chunk]:
        return self.sock.recv_chunks(max_bytes, timeout)

    def shutdown(self) -> None:
        self.sock.shutdown()

    def close(self) -> None:
        self.sock.close()

    def abort(self) -> None:
        self.sock.abort()

    def stats(self) -> SegmentStats:
        s = self.sock.connection.stats
        return SegmentStats(s.segments_sent, s.segments_received, s.retransmissions)


REJECTED = "data connection from %s:%d rejected (reset): expected the control peer %s"


class LabDataListener:
    """A lab-stack listener that only hands out connections from the expected peer.

    The peer is known at creation (`peer_ip`) or from the first `accept`; from then on SYNs from
    other addresses are refused by `admit`, the listener's admission hook, with a RST at the
    SYN. Connections that got in while no peer was known are still checked after `accept`.
    """

    MAX_REJECTED = 64  # records kept: an intruder's SYN flood must not grow memory

    def __init__(self, runtime: Runtime, port: int, local_ip: str, peer_ip: str | None) -> None:
        self.expected_peer = peer_ip
        self.rejected: list[tuple[str, int]] = []
        self.listener = runtime.listen(port, backlog=4, accept_from=self.admit)
        self._address = (local_ip, port)

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def admit(self, remote_ip: str, remote_port: int) -> bool:
        """The admission hook, called by the runtime's loop at each SYN (its lock held)."""
        expected = self.expected_peer
        if expected is None or same_address(remote_ip, expected):
            return True
        self._reject(remote_ip, remote_port, expected)
        return False

    def _reject(self, remote_ip: str, remote_port: int, expected: str) -> None:
        if len(self.rejected) < self.MAX_REJECTED:
            self.rejected.append((remote_ip, remote_port))
        log.warning(REJECTED, remote_ip, remote_port, expected)

    def accept(self, timeout: float | None, peer_ip: str | None) -> Stream:
        if peer_ip is not None:
            self.expected_peer = peer_ip
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            sock = self.listener.accept(remaining)
            if peer_ip is None or same_address(sock.remote_address[0], peer_ip):
                return LabStream(sock)
            self._reject(*sock.remote_address, peer_ip)  # came in before the peer was known
            sock.abort()

    def close(self) -> None:
        self.listener.close()


class LabTransport:
    """Connections through a running `lab.runtime.Runtime` (the hand-built stack)."""

    name = "lab"

    def __init__(self, runtime: Runtime, *, seed: int | None = None) -> None:
        self.runtime = runtime
        self._rng = random.Random(seed)

    def connect(self, host: str, port: int, timeout: float | None) -> Stream:
        return LabStream(self.runtime.connect(host, port, timeout))

    def listen(self, local_ip: str, peer_ip: str | None = None) -> DataListener:
        low, high = DATA_PORTS
        for _ in range(100):
            port = self._rng.randint(low, high)
            try:
                return LabDataListener(self.runtime, port, local_ip, peer_ip)
            except AddressInUseError:
                continue
        raise OSError(f"no free port in {low}-{high} for a data listener")


# -- kernel sockets -------------------------------------------------------------------------------

_TCP_INFO_LEN = 144
_TOTAL_RETRANS_OFFSET = 100  # struct tcp_info: 8 u8 bytes, then u32 fields; tcpi_total_retrans
_SEGS_OFFSET = 136  # tcpi_segs_out, tcpi_segs_in (u32 each), after four u64 counters


def tcp_info_stats(sock: socket.socket) -> SegmentStats | None:
    """Segments and retransmissions of a kernel socket from Linux's TCP_INFO (None elsewhere)."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(raw) < _SEGS_OFFSET + 8:
        return None
    (retrans,) = struct.unpack_from("=I", raw, _TOTAL_RETRANS_OFFSET)
    segs_out, segs_in = struct.unpack_from("=II", raw, _SEGS_OFFSET)
    return SegmentStats(segs_out, segs_in, retrans)


class KernelStream:
    """A kernel TCP socket seen as a `Stream`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._stats: SegmentStats | None = None
        self._local = sock.getsockname()[:2]
        self._remote = sock.getpeername()[:2]

    @property
    def local_address(self) -> tuple[str, int]:
        return str(self._local[0]), int(self._local[1])

    @property
    def remote_address(self) -> tuple[str, int]:
        return str(self._remote[0]), int(self._remote[1])

    def sendall(self, data: bytes, timeout: float | None) -> None:
        self.sock.settimeout(timeout)
        self.sock.sendall(data)

    def recv(self, max_bytes: int, timeout: float | None) -> bytes:
        self.sock.settimeout(timeout)
        return self.sock.recv(max_bytes)

    def recv_chunks(self, max_bytes: int, timeout: float | None) -> list[Chunk]:
        # recv(n) allocates n bytes before it knows how many came: a bulk reader's large `n`
        # would cost a fresh mapping per call for a socket that hands out ~64 KB at a time.
        data = self.recv(min(max_bytes, KERNEL_READ), timeout)
        chunks: list[Chunk] = [data] if data else []
        return chunks

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self._stats = tcp_info_stats(self.sock)
        self.sock.close()

    def abort(self) -> None:
        if self.sock.fileno() >= 0:
            self._stats = tcp_info_stats(self.sock)
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def stats(self) -> SegmentStats | None:
        if self.sock.fileno() >= 0:
            return tcp_info_stats(self.sock)
        return self._stats


class KernelDataListener:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self._address = (str(host), int(port))
        self.rejected: list[tuple[str, int]] = []

    @property
    def address(self) -> tuple[str, int]:
        return self._address

    def accept(self, timeout: float | None, peer_ip: str | None) -> Stream:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                # settimeout(0) would make accept non-blocking: BlockingIOError, not a timeout.
                raise TimeoutError("no data connection from the control peer in time")
            self.sock.settimeout(remaining)
            conn, addr = self.sock.accept()
            if peer_ip is None or same_address(str(addr[0]), peer_ip):
                return KernelStream(conn)
            self.rejected.append((str(addr[0]), int(addr[1])))
            log.warning(REJECTED, addr[0], addr[1], peer_ip)
            KernelStream(conn).abort()

    def close(self) -> None:
        self.sock.close()


class KernelTransport:
    """Plain kernel sockets (for `--kernel`, and for comparing against the lab stack).

    `namespace`: create the sockets inside that network namespace (they stay there whoever uses
    them); `source_ip` / `source_ip6`: bind outgoing IPv4 / IPv6 connections to that address.
    The family of each socket follows the address it is for (AF_INET6 for an IPv6 literal).
    """

    name = "kernel"

    def __init__(
        self,
        *,
        namespace: str | None = None,
        source_ip: str | None = None,
        source_ip6: str | None = None,
    ) -> None:
        self.namespace = namespace
        self.source_ip = source_ip
        self.source_ip6 = source_ip6

    def _socket(self, family: int = socket.AF_INET) -> socket.socket:
        if self.namespace is None:
            return socket.socket(family, socket.SOCK_STREAM)
        from lab.topology.netns import socket_in_namespace

        return socket_in_namespace(self.namespace, family, socket.SOCK_STREAM)

    def connect(self, host: str, port: int, timeout: float | None) -> Stream:
        v6 = is_ipv6(host)
        sock = self._socket(socket.AF_INET6 if v6 else socket.AF_INET)
        source = self.source_ip6 if v6 else self.source_ip
        try:
            if source is not None:
                sock.bind((source, 0))
            sock.settimeout(timeout)
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return KernelStream(sock)

    def listen(self, local_ip: str, peer_ip: str | None = None) -> DataListener:
        """`peer_ip` is not used here: the check is made after `accept` (see the module doc)."""
        sock = self._socket(socket.AF_INET6 if ":" in local_ip else socket.AF_INET)
        try:
            sock.bind((local_ip, 0))
            sock.listen(4)
        except BaseException:
            sock.close()
            raise
        return KernelDataListener(sock)
