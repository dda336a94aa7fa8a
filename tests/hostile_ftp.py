"""A scripted FTP server for hostile-server tests: a small kernel-socket server in a namespace.

It behaves as a minimal, correct server (anonymous login, TYPE, SIZE, EPRT/PORT, EPSV/PASV, RETR
and LIST of the files it was given) until the script says otherwise. The script is a list of
`On(verb, steps)` rules consumed in order: when the next rule's verb arrives, its steps run
instead of the default answer. Steps are small frozen values (`Send`, `DataConnect`,
`DataSend`, `CloseControl`, `Silence`, ...), so a test reads as the dialogue it stages, and the
client's extra commands (FEAT, TYPE, SIZE, ...) get default answers wherever the script does not
care about them.

Every socket is created inside the server namespace (a socket keeps the namespace it was born
in), so the server thread itself can live in the test process. What happened is recorded in
`commands` (what the client sent) and `events` (data connections made, reset, refused), for the
test to assert on.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from lab.ftp import protocol as p
from lab.topology.netns import socket_in_namespace


def add_address(namespace: str, ifname: str, address: str, prefixlen: int) -> None:
    """One more IPv4 address on `ifname` in `namespace` (a namespace of the lab's), so the
    hostile server can act from a third host."""
    from pyroute2 import NetNS

    with NetNS(namespace, flags=0) as ns:
        index = ns.link_lookup(ifname=ifname)[0]
        ns.addr("add", index=index, address=address, prefixlen=prefixlen)


# -- steps ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Raw bytes on the control connection (a reply, or something that is not one)."""

    data: bytes


def reply(code: int, text: str = "ok") -> Send:
    return Send(f"{code} {text}\r\n".encode())


@dataclass(frozen=True, slots=True)
class Default:
    """Answer the command as the well-behaved server would."""


@dataclass(frozen=True, slots=True)
class PassiveListen:
    """Listen for the data connection on `bind` and announce `announce` in a 227 reply (PASV)
    or the port in a 229 reply (EPSV)."""

    bind: str | None = None  # None: the control connection's local address
    announce: str | None = None  # None: the bound address


@dataclass(frozen=True, slots=True)
class DataConnect:
    """Active mode: connect to the address of the last EPRT/PORT, from `source` (None: the
    control connection's local address). With `expect_reset`, wait for the client's RST and
    record it; the connection is then gone."""

    source: str | None = None
    expect_reset: bool = False


@dataclass(frozen=True, slots=True)
class DataAccept:
    """Passive mode: accept the client's connection on the last PassiveListen."""


@dataclass(frozen=True, slots=True)
class DataSend:
    data: bytes
    pause: float = 0.0  # seconds to wait after sending (lets the client read it)


@dataclass(frozen=True, slots=True)
class DataClose:
    """Close the data connection: FIN, or RST with `abort`."""

    abort: bool = False


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class CloseControl:
    """Close the control connection (and any data connection): the server goes away."""


@dataclass(frozen=True, slots=True)
class Silence:
    """Never answer again: read and discard until the client closes (a reply that never comes)."""


Step = (
    Send | Default | PassiveListen | DataConnect | DataAccept | DataSend | DataClose | Sleep
) | (CloseControl | Silence)


@dataclass(frozen=True, slots=True)
class On:
    """When `verb` next arrives, run `steps` instead of the default answer."""

    verb: str
    steps: tuple[Step, ...]

    def __init__(self, verb: str, *steps: Step) -> None:
        object.__setattr__(self, "verb", verb.upper())
        object.__setattr__(self, "steps", steps)


def transfer(data: bytes, *, active: bool = True) -> tuple[Step, ...]:
    """The steps of a well-behaved RETR: 150, data connection, data, FIN, 226."""
    opening: Step = DataConnect() if active else DataAccept()
    return (reply(150, "here it comes"), opening, DataSend(data), DataClose(), reply(226, "done"))


# -- the server ----------------------------------------------------------------------------------


class _SessionOverError(Exception):
    """The control connection ended; the session is over."""


@dataclass
class _Session:
    control: socket.socket
    local_ip: str
    peer: tuple[str, int] | None = None  # from EPRT/PORT
    listener: socket.socket | None = None
    data: socket.socket | None = None
    binary: bool = True
    buffer: bytearray = field(default_factory=bytearray)


class HostileFtpServer:
    """One-session scripted server on `address:port` inside `namespace` (a thread of ours).

    >>> with HostileFtpServer(ns, "198.18.0.1", 2100, [On("USER", Silence())]) as server:
    ...     ...  # doctest: +SKIP
    """

    def __init__(
        self,
        namespace: str,
        address: str,
        port: int,
        script: Iterable[On] = (),
        *,
        files: Mapping[str, bytes] | None = None,
        banner: bytes = b"220 hostile test server ready\r\n",
    ) -> None:
        self.namespace = namespace
        self.address = address
        self.port = port
        self.script = list(script)
        self.files = dict(files or {})
        self.banner = banner
        self.commands: list[str] = []
        self.events: list[str] = []
        self.errors: list[BaseException] = []
        self.uploads: dict[str, bytes] = {}
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listen = self._socket()
        self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listen.bind((address, port))
        self._listen.listen(4)
        self._thread = threading.Thread(target=self._serve, name="hostile-ftp", daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> HostileFtpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            sockets = [self._listen, *self._sockets]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if self._thread.is_alive():
            self._thread.join(5)

    @property
    def unused_rules(self) -> list[str]:
        """Verbs of rules that never fired (a test's staging went wrong if any remain)."""
        return [rule.verb for rule in self.script]

    def _socket(self) -> socket.socket:
        sock = socket_in_namespace(self.namespace, socket.AF_INET, socket.SOCK_STREAM)
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _event(self, text: str) -> None:
        self.events.append(f"{time.monotonic():.3f} {text}")

    # -- the session --------------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._listen.settimeout(30)
            conn, addr = self._listen.accept()
        except OSError:
            return
        with self._lock:
            self._sockets.append(conn)
        self._event(f"control connection from {addr[0]}:{addr[1]}")
        session = _Session(conn, conn.getsockname()[0])
        try:
            conn.sendall(self.banner)
            while not self._stop.is_set():
                line = self._read_line(session)
                command = p.parse_command_line(line)
                self.commands.append(line)
                steps: tuple[Step, ...] = (Default(),)
                if self.script and self.script[0].verb == command.verb:
                    steps = self.script.pop(0).steps
                for step in steps:
                    self._run(session, step, command)
        except _SessionOverError:
            pass
        except BaseException as exc:  # recorded for the test; the thread must not die silently
            if not self._stop.is_set():
                self.errors.append(exc)
        finally:
            self._close_data(session)
            with contextlib.suppress(OSError):
                conn.close()

    def _read_line(self, session: _Session) -> str:
        while b"\n" not in session.buffer:
            try:
                chunk = session.control.recv(4096)
            except OSError as exc:
                raise _SessionOverError from exc
            if not chunk:
                raise _SessionOverError
            session.buffer += chunk
        raw, _, rest = bytes(session.buffer).partition(b"\n")
        session.buffer = bytearray(rest)
        return raw.rstrip(b"\r").decode("utf-8", errors="replace")

    def _send(self, session: _Session, data: bytes) -> None:
        try:
            session.control.sendall(data)
        except OSError as exc:
            raise _SessionOverError from exc

    def _run(self, session: _Session, step: Step, command: p.Command) -> None:
        if isinstance(step, Send):
            self._send(session, step.data)
        elif isinstance(step, Default):
            self._default(session, command)
        elif isinstance(step, PassiveListen):
            self._passive(session, step, command.verb)
        elif isinstance(step, DataConnect):
            self._data_connect(session, step)
        elif isinstance(step, DataAccept):
            self._data_accept(session)
        elif isinstance(step, DataSend):
            if session.data is None:
                raise RuntimeError("DataSend without a data connection")
            session.data.sendall(step.data)
            self._event(f"sent {len(step.data)} data bytes")
            if step.pause:
                time.sleep(step.pause)
        elif isinstance(step, DataClose):
            self._close_data(session, abort=step.abort)
        elif isinstance(step, Sleep):
            self._stop.wait(step.seconds)
        elif isinstance(step, CloseControl):
            self._event("closing the control connection")
            self._close_data(session)
            raise _SessionOverError
        elif isinstance(step, Silence):
            self._event("silent from now on")
            while not self._stop.is_set():
                self._read_line(session)

    # -- default behaviour --------------------------------------------------------------------

    def _default(self, session: _Session, command: p.Command) -> None:
        verb, arg = command.verb, command.arg or ""
        simple = {
            "USER": (331, "any password will do"),
            "PASS": (230, "logged in"),
            "SYST": (215, "UNIX Type: L8"),
            "NOOP": (200, "ok"),
            "OPTS": (200, "ok"),
            "PWD": (257, '"/" is the directory'),
            "CWD": (250, "ok"),
            "ABOR": (225, "nothing to abort"),
            "REST": (350, "restarting"),
        }
        if verb in simple:
            self._send(session, reply(*simple[verb]).data)
        elif verb == "QUIT":
            self._send(session, reply(221, "bye").data)
            raise _SessionOverError
        elif verb == "FEAT":
            self._send(session, b"211-Features:\r\n EPRT\r\n EPSV\r\n SIZE\r\n211 End\r\n")
        elif verb == "TYPE":
            session.binary = arg.upper().startswith("I")
            self._send(session, reply(200, "type set").data)
        elif verb == "SIZE":
            if arg in self.files:
                self._send(session, reply(213, str(len(self.files[arg]))).data)
            else:
                self._send(session, reply(550, "no such file").data)
        elif verb in ("EPRT", "PORT"):
            parse = p.parse_eprt if verb == "EPRT" else p.parse_port
            session.peer = parse(arg)
            self._send(session, reply(200, f"{verb} ok").data)
        elif verb in ("EPSV", "PASV"):
            self._passive(session, PassiveListen(), verb)
        elif verb in ("RETR", "LIST", "NLST"):
            if verb == "RETR" and arg not in self.files:
                self._send(session, reply(550, "no such file").data)
                return
            body = self.files[arg] if verb == "RETR" else self._listing(verb)
            for step in transfer(body, active=session.listener is None):
                self._run(session, step, command)
        elif verb in ("STOR", "APPE"):
            self._receive_upload(session, arg)
        else:
            self._send(session, reply(502, f"{verb} not implemented here").data)

    def _listing(self, verb: str) -> bytes:
        if verb == "NLST":
            return b"".join(name.encode() + b"\r\n" for name in sorted(self.files))
        return b"".join(
            b"-rw-r--r--   1 ftp ftp %10d Jan 01 00:00 %s\r\n" % (len(data), name.encode())
            for name, data in sorted(self.files.items())
        )

    def _receive_upload(self, session: _Session, name: str) -> None:
        self._send(session, reply(150, "send it").data)
        if session.listener is None:
            self._data_connect(session, DataConnect())
        else:
            self._data_accept(session)
        assert session.data is not None
        received = bytearray()
        while chunk := session.data.recv(65536):
            received += chunk
        self.uploads[name] = bytes(received)
        self._close_data(session)
        self._send(session, reply(226, "stored").data)

    # -- data connections ---------------------------------------------------------------------

    def _passive(self, session: _Session, step: PassiveListen, verb: str) -> None:
        self._close_listener(session)
        bind = step.bind or session.local_ip
        listener = self._socket()
        listener.bind((bind, 0))
        listener.listen(2)
        listener.settimeout(10)
        session.listener = listener
        port = listener.getsockname()[1]
        self._event(f"passive listener on {bind}:{port}")
        if verb == "EPSV":
            text = f"229 {p.encode_epsv_reply(port)}\r\n"
        else:
            text = f"227 {p.encode_pasv_reply(step.announce or bind, port)}\r\n"
        self._send(session, text.encode())

    def _data_connect(self, session: _Session, step: DataConnect) -> None:
        if session.peer is None:
            raise RuntimeError("DataConnect before any EPRT/PORT")
        source = step.source or session.local_ip
        sock = self._socket()
        sock.settimeout(10)
        sock.bind((source, 0))
        try:
            sock.connect(session.peer)
        except ConnectionResetError:
            # The client accepted and reset before this thread saw the handshake complete.
            self._event(f"data connection from {source} reset by the client (during connect)")
            sock.close()
            return
        except ConnectionRefusedError:
            # The client's listener refused the SYN itself (the lab stack's admission hook):
            # a RST instead of a SYN,ACK, as from a closed port.
            self._event(f"data connection from {source} reset by the client (at the SYN)")
            sock.close()
            return
        except OSError as exc:
            self._event(f"data connection from {source} to {session.peer} failed: {exc!r}")
            sock.close()
            return
        self._event(f"data connection from {source} to {session.peer[0]}:{session.peer[1]}")
        if not step.expect_reset:
            session.data = sock
            return
        try:
            sock.settimeout(5)
            got = sock.recv(1)
            self._event(f"data connection from {source}: not reset (read {got!r})")
        except ConnectionResetError:
            self._event(f"data connection from {source} reset by the client")
        except OSError as exc:
            self._event(f"data connection from {source}: {exc!r}")
        finally:
            sock.close()

    def _data_accept(self, session: _Session) -> None:
        if session.listener is None:
            raise RuntimeError("DataAccept without a PassiveListen")
        try:
            conn, addr = session.listener.accept()
        except OSError as exc:
            self._event(f"no data connection: {exc!r}")
            raise
        finally:
            self._close_listener(session)
        with self._lock:
            self._sockets.append(conn)
        session.data = conn
        self._event(f"data connection accepted from {addr[0]}:{addr[1]}")

    def _close_listener(self, session: _Session) -> None:
        if session.listener is not None:
            session.listener.close()
            session.listener = None

    def _close_data(self, session: _Session, *, abort: bool = False) -> None:
        self._close_listener(session)
        if session.data is None:
            return
        sock, session.data = session.data, None
        if abort:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._event("data connection reset (RST)")
        else:
            self._event("data connection closed (FIN)")
        sock.close()
