"""Run a script against the Linux kernel, as packetdrill does: a TUN device in a lab namespace.

For each script a fresh namespace `lab-<run id>-script` is made, with a TUN device
`lab<run id>t` holding LOCAL_IP/24; the script's REMOTE_IP is on the far side of the TUN, so every
segment the kernel sends to it is read from the TUN file descriptor, and every inbound segment the
script gives is written into it. The socket calls are made on real sockets created inside the
namespace (a socket keeps its namespace whoever uses it, so only their creation needs `setns`).

Time is the wall clock (monotonic), measured from when the namespace is ready. Blocking calls run
in a thread each, so the script goes on while they wait, as in packetdrill. The namespace is
removed on every exit path (`close`, also called on Ctrl-C by the command, and at interpreter exit
as a last resort); `lab clean` recognises the name if a kill -9 leaves it behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import dataclasses
import errno as errno_module
import fcntl
import os
import select
import socket
import stat
import struct
import subprocess
import termios
import threading
import time
from collections import deque

from lab.script.engine import (
    LOCAL_IP,
    REMOTE_IP,
    SCRIPT_PORT,
    CallOutcome,
    TargetUnavailableError,
)
from lab.script.parser import CallEvent, ShellEvent
from lab.wire.fast import decode_ip, encode_tcp
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import Segment

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
PREFIXLEN = 24
_POLL_S = 0.002  # how often waiting loops look at finished blocking calls
_ETHERNET_HEADER = 14
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _errno_name(code: int | None) -> str:
    name = errno_module.errorcode.get(code or 0, "EIO")
    return "EAGAIN" if name == "EWOULDBLOCK" else name


TUN = "/dev/net/tun"


def unavailable_reason(tun: str = TUN) -> str | None:
    """Why the kernel runner cannot run here, or None.

    It needs a namespace of its own and a TUN device in it. Root has both. An ordinary user has
    the namespace in the lab's user namespace (rootless mode), but opening `tun` is still
    decided by its mode on the host: root of a user namespace has no say over a file of the
    host's root. Most systems make it 0666; where it is 0600, only root may run the kernel."""
    if not os.path.exists(tun):
        return f"{tun} is missing: no TUN support here"
    from lab.topology.userns import is_rootless

    info = os.stat(tun)
    mode = f"{stat.filemode(info.st_mode)} (owner uid {info.st_uid})"
    for_others = info.st_mode & 0o006 == 0o006
    if is_rootless() and not os.access(tun, os.R_OK | os.W_OK):
        return (
            f"rootless mode: {tun} is {mode}, which the lab's user namespace cannot open; run "
            f"lab script as root (sudo), or make {tun} mode 0666, the usual default"
        )
    if os.geteuid() != 0 and for_others:
        return (
            "the kernel runner needs a namespace: as an ordinary user, run it in the lab's user "
            "namespace: lab rootless lab script --against kernel ..."
        )
    if os.geteuid() != 0:
        return (
            f"the kernel runner needs root: {tun} is {mode}, which an ordinary user cannot open, "
            "even in a user namespace; run lab script as root (sudo)"
        )
    return None


class KernelTarget:
    """The kernel's TCP behind the engine's `Target` protocol; needs root (CAP_NET_ADMIN)."""

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise TargetUnavailableError(reason)
        from pyroute2 import netns

        from lab.topology.state import (
            Owner,
            StateRecord,
            TopologyNames,
            extra_namespace_name,
            new_run_id,
            state_path,
            write_state,
        )

        run_id = new_run_id()
        self.ns = extra_namespace_name(run_id, "script")
        self.ifname = f"lab{run_id}t"
        # A state record owned by this process: a concurrent `lab clean` spares the namespace
        # while we run, and removes it (with the record) if we die without cleaning up.
        record = StateRecord(TopologyNames.for_run(run_id), Owner.current(), None, (self.ns,))
        self._state_file = state_path(run_id)
        write_state(record)
        self._fds: dict[int, socket.socket] = {}
        self._out: deque[tuple[int, Segment]] = deque()
        self._lock = threading.Lock()
        self._completed: list[tuple[CallEvent, CallOutcome]] = []
        self._threads: list[threading.Thread] = []
        self._tun = -1
        self._closed = False
        try:
            netns.create(self.ns)
        except OSError as exc:
            self._state_file.unlink(missing_ok=True)
            raise TargetUnavailableError(f"cannot create namespace {self.ns}: {exc}") from None
        atexit.register(self.close)
        try:
            self._tun = self._in_namespace(self._make_tun)
        except BaseException:
            self.close()
            raise
        self._start = time.monotonic_ns() // 1000

    def _in_namespace(self, fn: object) -> int:
        from lab.topology.netns import run_in_namespace

        assert callable(fn)
        result: int = run_in_namespace(self.ns, fn)
        return result

    def _make_tun(self) -> int:
        """Inside the namespace: open the TUN device, give it LOCAL_IP, bring it and lo up."""
        from pyroute2 import IPRoute

        fd = os.open(TUN, os.O_RDWR | os.O_NONBLOCK)
        try:
            ifr = struct.pack("16sH", self.ifname.encode(), IFF_TUN | IFF_NO_PI)
            fcntl.ioctl(fd, TUNSETIFF, ifr)
            with IPRoute() as ipr:
                lo = ipr.link_lookup(ifname="lo")[0]
                ipr.link("set", index=lo, state="up")
                idx = ipr.link_lookup(ifname=self.ifname)[0]
                ipr.addr("add", index=idx, address=LOCAL_IP, prefixlen=PREFIXLEN)
                ipr.link("set", index=idx, state="up")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:  # a blocking accept may still add its socket
            socks, self._fds = list(self._fds.values()), {}
        for sock in socks:
            sock.close()
        if self._tun >= 0:
            os.close(self._tun)
            self._tun = -1
        from pyroute2 import netns

        with contextlib.suppress(OSError):
            netns.remove(self.ns)
        self._state_file.unlink(missing_ok=True)
        atexit.unregister(self.close)

    # -- time and segments ----------------------------------------------------------------------

    def now(self) -> int:
        return time.monotonic_ns() // 1000 - self._start

    def _drain(self) -> None:
        while True:
            try:
                packet = os.read(self._tun, 65536)
            except BlockingIOError:
                return
            frame = decode_ip(packet)
            if not isinstance(frame, TcpFrame) or frame.ip.dst != REMOTE_IP:
                continue
            self._out.append((self.now(), frame.segment))

    def _wait(self, until: int) -> None:
        """Read the TUN until `until` or until something is queued, whichever comes first."""
        remaining = until - self.now()
        if remaining > 0:
            select.select([self._tun], [], [], min(remaining / 1e6, _POLL_S))
        self._drain()

    def wait_until(self, t: int) -> None:
        while self.now() < t:
            self._wait(t)
        self._drain()

    def next_outbound(self, limit: int) -> tuple[int, Segment] | None:
        self._drain()
        while not self._out and self.now() <= limit:
            self._wait(limit + 1)
        return self._out.popleft() if self._out else None

    def peek_outbound(self) -> tuple[int, Segment] | None:
        self._drain()
        return self._out[0] if self._out else None

    def inject(self, seg: Segment) -> None:
        frame = TcpFrame(
            "00:00:00:00:00:00", "00:00:00:00:00:00", Ipv4Header(REMOTE_IP, LOCAL_IP), seg
        )
        os.write(self._tun, encode_tcp(frame)[_ETHERNET_HEADER:])

    def shell(self, ev: ShellEvent) -> int:
        from lab.topology.netns import popen_in_namespace

        proc = popen_in_namespace(
            self.ns, ["sh", "-c", ev.command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        return proc.wait()

    # -- sockets -------------------------------------------------------------------------------

    def completed_calls(self) -> list[tuple[CallEvent, CallOutcome]]:
        with self._lock:
            out, self._completed = self._completed, []
        return out

    def call(self, ev: CallEvent) -> CallOutcome | None:
        if ev.name == "socket":
            from lab.topology.netns import socket_in_namespace

            sock = socket_in_namespace(
                self.ns, socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
            )
            new_fd = 3
            while new_fd in self._fds:
                new_fd += 1
            self._fds[new_fd] = sock
            return CallOutcome(new_fd)
        fd = ev.args[0]
        found = self._fds.get(fd) if isinstance(fd, int) else None
        if found is None:
            return CallOutcome(-1, "EBADF")
        sock = found
        blocking = sock.getblocking() and ev.name in ("accept", "connect", "read", "write")
        if blocking and ev.name != "connect":
            # Ready now: call it here, so that its result (a new fd) exists for the next line.
            want_read = ev.name in ("accept", "read")
            readable, writable, _ = select.select(
                [sock] if want_read else [], [] if want_read else [sock], [], 0
            )
            blocking = not (readable or writable)
        if not blocking:
            return self._do(ev, sock)

        def work() -> None:
            outcome = dataclasses.replace(self._do(ev, sock), at=self.now())
            with self._lock:
                self._completed.append((ev, outcome))

        thread = threading.Thread(target=work, name=f"script-{ev.name}-{ev.line}", daemon=True)
        thread.start()
        thread.join(0.002)  # a call that returns at once is reported at once
        if thread.is_alive():
            self._threads.append(thread)
            return None
        with self._lock:
            done = [c for c in self._completed if c[0] is ev]
            self._completed = [c for c in self._completed if c[0] is not ev]
        return done[0][1]

    def _do(self, ev: CallEvent, sock: socket.socket) -> CallOutcome:
        try:
            return self._syscall(ev, sock)
        except OSError as exc:
            return CallOutcome(-1, _errno_name(exc.errno))

    def _syscall(self, ev: CallEvent, sock: socket.socket) -> CallOutcome:
        args = ev.args
        if ev.name == "setsockopt":
            level = socket.SOL_SOCKET if args[1] == "SOL_SOCKET" else socket.IPPROTO_TCP
            value = args[3]
            assert isinstance(value, tuple)
            sock.setsockopt(level, getattr(socket, str(args[2])), value[0])
            return CallOutcome(0)
        if ev.name == "bind":
            sock.bind((LOCAL_IP, SCRIPT_PORT))
            return CallOutcome(0)
        if ev.name == "listen":
            assert isinstance(args[1], int)
            sock.listen(args[1])
            return CallOutcome(0)
        if ev.name == "accept":
            conn, _ = sock.accept()
            conn.setblocking(True)
            fd = 3
            with self._lock:
                while fd in self._fds:
                    fd += 1
                self._fds[fd] = conn
            return CallOutcome(fd)
        if ev.name == "connect":
            # libc's connect, as packetdrill calls it: no wrapper decides for the kernel
            # (e.g. the 0 of a first connect after a nonblocking one completed, then EISCONN).
            address = struct.pack(
                "=HH4s8x", socket.AF_INET, socket.htons(SCRIPT_PORT), socket.inet_aton(REMOTE_IP)
            )
            if _LIBC.connect(sock.fileno(), address, len(address)) == 0:
                return CallOutcome(0)
            return CallOutcome(-1, _errno_name(ctypes.get_errno()))
        if ev.name == "write":
            assert isinstance(args[2], int)
            return CallOutcome(sock.send(bytes(args[2]), socket.MSG_NOSIGNAL))
        if ev.name == "read":
            assert isinstance(args[2], int)
            return CallOutcome(len(sock.recv(args[2])))
        if ev.name == "shutdown":
            how = {"SHUT_RD": socket.SHUT_RD, "SHUT_WR": socket.SHUT_WR}.get(
                str(args[1]), socket.SHUT_RDWR
            )
            sock.shutdown(how)
            return CallOutcome(0)
        if ev.name == "close":
            closing = args[0]
            assert isinstance(closing, int)
            self._fds.pop(closing).close()
            return CallOutcome(0)
        if ev.name == "fcntl":
            if args[1] == "F_GETFL":
                return CallOutcome(fcntl.fcntl(sock.fileno(), fcntl.F_GETFL) & ~0o100000)
            flags = args[2]
            nonblocking = (
                (flags & os.O_NONBLOCK)
                if isinstance(flags, int)
                else ("O_NONBLOCK" in str(flags).split("|"))
            )
            sock.setblocking(not nonblocking)
            return CallOutcome(0)
        if ev.name == "ioctl":
            buf = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
            return CallOutcome(0, value=struct.unpack("i", buf)[0])
        raise AssertionError(f"unhandled call {ev.name}")
