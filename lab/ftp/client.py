"""The FTP client: one body of FTP logic over either the hand-built stack or kernel sockets.

`Client(transport)` speaks RFC 959 (with RFC 2428 EPRT/EPSV, RFC 3659 SIZE/MDTM/MLSD/REST,
RFC 2389 FEAT/OPTS) through `lab.ftp.protocol` for every byte of the control dialogue, and through a
`Transport` (`LabTransport`: our own TCP/IP; `KernelTransport`: the kernel's) for every connection.
Because only the transport differs, a lab transfer and a kernel transfer are comparable byte for
byte, segment counts aside.

Data connections. Active mode is the default, as in the seed program: the client listens on its
control connection's local address, announces it with EPRT (falling back to PORT when the server
answers 500, 502 or 522), and accepts the server's SYN. Servers differ in *when* they connect:
pyftpdlib connects as soon as it gets PORT (before its 200), vsftpd only after RETR/LIST. The
listener is opened before PORT and accepted from after the 1xx reply, so both orders work: an early
connection waits, complete, in the listener's queue. Only the control peer's address is accepted;
anyone else gets a RST and a logged warning. Passive mode sends EPSV, then PASV, and connects to
the control peer's address whatever the 227 reply says, unless `trust_pasv_ip` (the 227 address
is where a hostile server would aim us, e.g. at a third host's port: FTP bounce).

IPv6 (RFC 2428): on a control connection over IPv6 there is no fallback. PORT and PASV carry
four address bytes, so they cannot name a v6 host; a refused EPRT or EPSV is then a clear
`FtpPermanentError` (or transient one, as the server answered) saying so, never a PORT or PASV
that would name some IPv4 address. Addresses are compared as values (`same_address`), so the
data-connection rule holds whatever spelling of a v6 address each side uses.

When is a transfer complete? Only after the data connection's FIN, a 226/250 reply and, when SIZE
was known (binary mode), a byte count that matches. Until then the bytes live in `NAME.part`; any
failure raises `TransferIncomplete` saying how many arrived, and `resume=True` continues the
`.part` with REST. Local file names come from our caller only, never from the server.

Every wait has a timeout: `timeout` for replies and connection set-up, `data_timeout` for each
read or write on a data connection (an idle bound, so large transfers are not cut short). A reply
that does not come in time marks the control connection unusable (as a lost sync does): its late
arrival would otherwise be read as the answer to the next command, and `quit()` then closes at
once instead of waiting a second timeout for a 221.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal, TypeVar

from lab.capture.writer import write_all
from lab.ftp import protocol as p
from lab.ftp.protocol import Reply
from lab.ftp.transport import (
    DataListener,
    KernelTransport,
    LabTransport,
    SegmentStats,
    Stream,
    Transport,
    is_ipv6,
)
from lab.tcp.recvbuf import Chunk

__all__ = [
    "AsciiDecoder",
    "AsciiEncoder",
    "Client",
    "DataConnectionError",
    "Dialogue",
    "DialogueArrow",
    "FtpConnectionClosed",
    "FtpError",
    "FtpPermanentError",
    "FtpProtocolViolation",
    "FtpReplyError",
    "FtpTimeout",
    "FtpTransientError",
    "KernelTransport",
    "LabTransport",
    "MlsdEntry",
    "Progress",
    "TransferIncomplete",
    "TransferResult",
    "part_path",
]

log = logging.getLogger("lab.ftp")
_T = TypeVar("_T")
_Lines = list[str]  # `Client.list` hides the builtin inside the class body
_MlsdEntries = list["MlsdEntry"]
_Chunks = list[Chunk]  # what a data-connection read returns (`Stream.recv_chunks`)

CHUNK = 65536
READ_AT_ONCE = 1 << 20  # a data-connection read takes up to this much (in received chunks)
# EPRT/EPSV refused as "not understood", "not implemented", "address family not supported":
EPRT_FALLBACK = frozenset({500, 502, 522})
EPSV_FALLBACK = frozenset({500, 502, 522})
RESYNC_TIMEOUT = 5.0
MAX_DELAY_REPLIES = 3

# The arrow before a control line in the dialogue: not a capture's Direction (lab.capture.reader).
DialogueArrow = Literal[">", "<", "*"]
Dialogue = Callable[[DialogueArrow, str], None]
"""Called for each control line: ">" sent, "<" received, "*" a note from the client itself."""

Progress = Callable[[int, int | None], None]
"""Called as data moves: (bytes of the file so far, expected total or None)."""


# -- errors ---------------------------------------------------------------------------------------


class FtpError(Exception):
    """Base of every error the client raises."""


class FtpReplyError(FtpError):
    """The server refused a command (4yz or 5yz); `reply` is its answer, `command` our line."""

    def __init__(self, command: str, reply: Reply) -> None:
        super().__init__(f"{command}: {reply.code} {reply.text}")
        self.command = command
        self.reply = reply

    @property
    def code(self) -> int:
        return self.reply.code


class FtpTransientError(FtpReplyError):
    """A 4yz reply: the command may succeed if tried again later."""


class FtpPermanentError(FtpReplyError):
    """A 5yz reply."""


class FtpProtocolViolation(FtpError):  # noqa: N818 - reads as what happened
    """The server broke the protocol: malformed or overlong replies, a reply code no RFC allows
    for the command, an unusable PASV/EPSV address."""


class FtpTimeout(FtpError, TimeoutError):  # noqa: N818 - reads as what happened
    """A wait (reply, connection, data) exceeded its timeout."""


class FtpConnectionClosed(FtpError, ConnectionError):  # noqa: N818 - reads as what happened
    """The control connection closed or was reset."""


class DataConnectionError(FtpError, ConnectionError):
    """The data connection could not be opened, or broke."""


class TransferIncomplete(FtpError):  # noqa: N818 - reads as what happened
    """A transfer that did not complete: `received` bytes of the file are in `part_path`."""

    def __init__(
        self,
        received: int,
        expected: int | None,
        part_path: Path | None,
        reason: str,
        reply: Reply | None = None,
    ) -> None:
        of = f" of {expected}" if expected is not None else ""
        where = f", kept in {part_path}" if part_path is not None else ""
        super().__init__(f"transfer incomplete: {received}{of} bytes{where} ({reason})")
        self.received = received
        self.expected = expected
        self.part_path = part_path
        self.reason = reason
        self.reply = reply


def _reply_error(command: str, reply: Reply) -> FtpReplyError:
    cls = FtpTransientError if reply.code < 500 else FtpPermanentError
    return cls(command, reply)


# -- ASCII mode -----------------------------------------------------------------------------------


class AsciiDecoder:
    """TYPE A received: network CRLF becomes LF (RFC 959 3.1.1.1), across chunk boundaries."""

    def __init__(self) -> None:
        self._cr = False

    def feed(self, data: bytes) -> bytes:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            data = data[:-1]
            self._cr = True
        return data.replace(b"\r\n", b"\n")

    def flush(self) -> bytes:
        cr, self._cr = self._cr, False
        return b"\r" if cr else b""


_BARE_LF = re.compile(rb"(?<!\r)\n")


class AsciiEncoder:
    """TYPE A sent: every line end becomes CRLF; a CRLF already there is left as it is."""

    def __init__(self) -> None:
        self._last_cr = False

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        head, rest = b"", data
        if data[:1] == b"\n":  # the look-behind cannot see the previous chunk's last byte
            head, rest = (b"\n" if self._last_cr else b"\r\n"), data[1:]
        self._last_cr = data.endswith(b"\r")
        return head + _BARE_LF.sub(b"\r\n", rest)


# -- results --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MlsdEntry:
    """One MLSD line (RFC 3659 7.2): the name and its facts (keys lower-cased)."""

    name: str
    facts: dict[str, str]

    @property
    def type(self) -> str:
        return self.facts.get("type", "")

    @property
    def size(self) -> int | None:
        value = self.facts.get("size")
        return int(value) if value is not None and value.isdigit() else None


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What one completed transfer did."""

    command: str
    remote: str
    local: Path | None
    bytes: int  # moved over this data connection (payload after ASCII conversion)
    total: int  # size of the local file (download) or bytes sent (upload)
    expected: int | None
    resumed_from: int
    seconds: float
    mode: str  # "active" or "passive"
    data_peer: tuple[str, int]
    stats: SegmentStats | None
    reply: Reply
    transport: str

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


def part_path(local: Path) -> Path:
    """Where the bytes of an unfinished download of `local` are kept."""
    return local.with_name(local.name + ".part")


@dataclass(slots=True)
class _Data:
    """A data connection being set up: either a listener (active) or a stream (passive)."""

    mode: str
    listener: DataListener | None = None
    stream: Stream | None = None
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()


# -- the client -----------------------------------------------------------------------------------


class Client:
    """A blocking FTP client over `transport`. Use as a context manager or call `close()`."""

    def __init__(
        self,
        transport: Transport,
        *,
        timeout: float = 30.0,
        data_timeout: float = 30.0,
        passive: bool = False,
        trust_pasv_ip: bool = False,
        dialogue: Dialogue | None = None,
        encoding: str = "utf-8",
    ) -> None:
        self.transport = transport
        self.timeout = timeout
        self.data_timeout = data_timeout
        self.passive = passive
        self.trust_pasv_ip = trust_pasv_ip
        self.dialogue = dialogue
        self.encoding = encoding
        self.control: Stream | None = None
        self.welcome: Reply | None = None
        self.features: set[str] | None = None
        self.binary: bool | None = None  # the TYPE last set (None: the server's default)
        self.use_eprt = True
        self.use_epsv = True
        self._parser = p.ReplyParser()
        self._replies: deque[Reply] = deque()
        self._broken: str | None = None

    # -- connection ---------------------------------------------------------------------------

    @property
    def peer_ip(self) -> str:
        return self._control().remote_address[0]

    def connect(self, host: str, port: int = 21) -> Reply:
        """Open the control connection and read the greeting (220; 120 means "wait")."""
        self._note(f"connecting to {_endpoint(host, port)} over the {self.transport.name} stack")
        try:
            self.control = self.transport.connect(host, port, self.timeout)
        except TimeoutError as exc:
            raise FtpTimeout(f"connecting to {_endpoint(host, port)}: {exc}") from exc
        except OSError as exc:
            raise FtpConnectionClosed(f"connecting to {_endpoint(host, port)}: {exc}") from exc
        reply = self._read_reply()
        for _ in range(MAX_DELAY_REPLIES):  # "120 ready in nnn minutes", but not for ever
            if reply.code != 120:
                break
            reply = self._read_reply()
        if reply.code != 220:
            if reply.code >= 400:
                raise _reply_error("(greeting)", reply)
            raise FtpProtocolViolation(f"greeting {reply.code} instead of 220")
        self.welcome = reply
        return reply

    def login(self, user: str = "anonymous", password: str = "lab@") -> Reply:
        reply = self._command("USER", user, expect=(230, 331, 332))
        if reply.code == 331:
            reply = self._command("PASS", password, expect=(230, 202))
        elif reply.code == 332:
            raise FtpProtocolViolation("the server asks for an account (ACCT), not supported")
        return reply

    def quit(self) -> Reply | None:
        """QUIT and close; tolerant of a server that already went."""
        reply = None
        if self.control is not None and self._broken is None:
            with contextlib.suppress(FtpError):
                reply = self._command("QUIT", expect=(221,), timeout=min(self.timeout, 5.0))
        self.close()
        return reply

    def close(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.quit()
        else:
            self.close()

    # -- simple commands ----------------------------------------------------------------------

    def syst(self) -> str:
        return self._command("SYST", expect=(215,)).text

    def feat(self) -> set[str]:
        """Feature names (upper-cased first word of each line); empty when FEAT is refused."""
        try:
            reply = self._command("FEAT", expect=(211,))
        except FtpPermanentError:
            self.features = set()
            return self.features
        names = set()
        for line in reply.lines[1:-1]:
            words = line.strip().split()
            if words:
                names.add(words[0].upper())
        self.features = names
        return names

    def opts_utf8(self) -> Reply:
        return self._command("OPTS", "UTF8 ON", expect=(200, 202))

    def type(self, binary: bool = True) -> Reply:
        reply = self._command("TYPE", "I" if binary else "A", expect=(200,))
        self.binary = binary
        return reply

    def _ensure_type(self, binary: bool) -> None:
        if self.binary is not binary:
            self.type(binary)

    def pwd(self) -> str:
        return _quoted_path(self._command("PWD", expect=(257,)))

    def cwd(self, path: str) -> Reply:
        return self._command("CWD", path, expect=(250, 200))

    def cdup(self) -> Reply:
        return self._command("CDUP", expect=(200, 250))

    def size(self, path: str) -> int:
        """Bytes of `path` in binary mode: RFC 3659 4 ties SIZE to the current TYPE, and servers
        refuse it in ASCII mode (pyftpdlib) or count converted bytes, so TYPE I is set first."""
        self._ensure_type(binary=True)
        reply = self._command("SIZE", path, expect=(213,))
        text = reply.text.strip()
        if not text.isdigit():
            raise FtpProtocolViolation(f"SIZE reply without a number: {text[:80]!r}")
        return int(text)

    def mdtm(self, path: str) -> str:
        """The modification time as the server gives it (YYYYMMDDhhmmss[.sss], UTC)."""
        text = self._command("MDTM", path, expect=(213,)).text.strip()
        if not re.fullmatch(r"\d{14}(\.\d+)?", text):
            raise FtpProtocolViolation(f"MDTM reply is not a time: {text[:80]!r}")
        return text

    def dele(self, path: str) -> Reply:
        return self._command("DELE", path, expect=(250,))

    def mkd(self, path: str) -> str:
        reply = self._command("MKD", path, expect=(257,))
        try:
            return _quoted_path(reply)
        except FtpProtocolViolation:
            return path

    def rmd(self, path: str) -> Reply:
        return self._command("RMD", path, expect=(250,))

    def rename(self, source: str, target: str) -> Reply:
        self._command("RNFR", source, expect=(350,))
        return self._command("RNTO", target, expect=(250,))

    def noop(self) -> Reply:
        return self._command("NOOP", expect=(200,))

    def abort(self) -> None:
        """ABOR, then resynchronise the dialogue (stray transfer replies are discarded)."""
        self._resync()

    def rest(self, offset: int) -> Reply:
        return self._command("REST", str(offset), expect=(350,))

    # -- listings -----------------------------------------------------------------------------

    def list(self, path: str | None = None) -> _Lines:
        return _lines(self._listing("LIST", path), self.encoding)

    def nlst(self, path: str | None = None) -> _Lines:
        return _lines(self._listing("NLST", path), self.encoding)

    def mlsd(self, path: str | None = None) -> _MlsdEntries:
        entries = []
        for line in _lines(self._listing("MLSD", path), self.encoding):
            facts_text, sep, name = line.partition(" ")
            if not sep:
                raise FtpProtocolViolation(f"MLSD line without facts: {line[:80]!r}")
            facts: dict[str, str] = {}
            for fact in facts_text.split(";"):
                key, eq, value = fact.partition("=")
                if eq:
                    facts[key.lower()] = value
            entries.append(MlsdEntry(name, facts))
        return entries

    def _listing(self, verb: str, path: str | None) -> bytes:
        chunks: _Chunks = []
        self._transfer_in(verb, path, chunks.extend, received=0, expected=None, progress=None)
        return b"".join(chunks)

    # -- files --------------------------------------------------------------------------------

    def retrieve(
        self,
        remote: str,
        local: Path,
        *,
        resume: bool = False,
        ascii: bool = False,
        progress: Progress | None = None,
        check_size: bool = True,
    ) -> TransferResult:
        """RETR `remote` into `local` (a path our caller chose), through `local`.part.

        With `resume`, an existing .part is continued from its length with REST. Raises
        TransferIncomplete (bytes kept in the .part) unless FIN, 226/250 and size all agree.
        """
        if resume and ascii:
            raise ValueError("resume needs binary mode: REST offsets in ASCII mode are ambiguous")
        part = part_path(local)
        expected = None
        if not ascii and check_size:
            try:
                expected = self.size(remote)
            except FtpReplyError:
                expected = None
        self._ensure_type(binary=not ascii)
        offset = part.stat().st_size if resume and part.exists() else 0
        if expected is not None and offset > expected:
            raise TransferIncomplete(
                offset, expected, part, "the .part is longer than the remote file; not resuming"
            )
        if offset:
            self.rest(offset)
            self._note(f"resuming {part} from byte {offset}")
        decoder = AsciiDecoder() if ascii else None
        # Binary: unbuffered, as `_writer` hands the received chunks to writev(2) itself.
        with open(part, "ab" if offset else "wb", buffering=-1 if ascii else 0) as sink:
            write = _writer(sink, decoder)
            try:
                result = self._transfer_in(
                    "RETR",
                    remote,
                    write,
                    received=offset,
                    expected=expected,
                    progress=progress,
                    part=part,
                    flush=(lambda: sink.write(decoder.flush())) if decoder else None,
                )
            except TransferIncomplete as exc:
                # Count what the .part really holds: an interrupt may land between a write and
                # the counter's update.
                sink.flush()
                held = part.stat().st_size
                if held == exc.received:
                    raise
                raise TransferIncomplete(
                    held, exc.expected, part, exc.reason, exc.reply
                ) from exc.__cause__
            except BaseException:
                # Refused before any data moved (550, no data connection...): no .part to keep,
                # unless it held bytes of an earlier attempt.
                if offset == 0:
                    sink.close()
                    part.unlink(missing_ok=True)
                raise
        total = part.stat().st_size
        if expected is not None and total != expected:
            raise TransferIncomplete(
                total, expected, part, f"size mismatch: SIZE said {expected}", result.reply
            )
        part.replace(local)
        return replace(result, local=local, total=total, expected=expected, resumed_from=offset)

    def store(
        self,
        local: Path,
        remote: str,
        *,
        append: bool = False,
        ascii: bool = False,
        progress: Progress | None = None,
    ) -> TransferResult:
        """STOR (or APPE) the file `local` as `remote`."""
        self._ensure_type(binary=not ascii)
        verb = "APPE" if append else "STOR"
        size = local.stat().st_size
        with open(local, "rb") as source:
            return self._transfer_out(verb, remote, source, size, ascii, progress, local)

    # -- data connections ---------------------------------------------------------------------

    def _open_data(self) -> _Data:
        return self._open_passive() if self.passive else self._open_active()

    @property
    def over_ipv6(self) -> bool:
        """Whether the control connection runs over IPv6 (then EPRT/EPSV only, RFC 2428)."""
        return is_ipv6(self.peer_ip)

    def _open_active(self) -> _Data:
        local_ip = self._control().local_address[0]
        listener = self.transport.listen(local_ip, peer_ip=self.peer_ip)
        data = _Data("active", listener=listener)
        host, port = listener.address
        try:
            if self.use_eprt or self.over_ipv6:
                try:
                    self._command("EPRT", p.encode_eprt(host, port), expect=(200,))
                    return data
                except FtpReplyError as exc:
                    if self.over_ipv6:
                        raise _no_v4_fallback(exc, "EPRT", "PORT") from exc
                    if exc.code not in EPRT_FALLBACK:
                        raise
                    self.use_eprt = False
                    self._note(f"EPRT refused ({exc.code}); falling back to PORT")
            self._command("PORT", p.encode_port(host, port), expect=(200,))
        except BaseException:
            listener.close()
            raise
        return data

    def _open_passive(self) -> _Data:
        peer = self.peer_ip
        port: int | None = None
        host = peer
        if self.use_epsv or self.over_ipv6:
            try:
                reply = self._command("EPSV", expect=(229,))
                port = _decode_address(p.parse_epsv_reply, reply.text)
            except FtpReplyError as exc:
                if self.over_ipv6:
                    raise _no_v4_fallback(exc, "EPSV", "PASV") from exc
                if exc.code not in EPSV_FALLBACK:
                    raise
                self.use_epsv = False
                self._note(f"EPSV refused ({exc.code}); falling back to PASV")
        if port is None:
            reply = self._command("PASV", expect=(227,))
            pasv_host, port = _decode_address(p.parse_pasv_reply, reply.text)
            if pasv_host != peer:
                if self.trust_pasv_ip:
                    host = pasv_host
                    self._note(f"227 names {pasv_host}; using it (--trust-pasv-ip)")
                else:
                    self._note(f"227 names {pasv_host}; ignored, connecting to {peer} instead")
                    log.warning("PASV reply address %s ignored, using %s", pasv_host, peer)
        try:
            stream = self.transport.connect(host, port, self.timeout)
        except TimeoutError as exc:
            raise FtpTimeout(f"data connection to {_endpoint(host, port)} timed out") from exc
        except OSError as exc:
            raise DataConnectionError(f"data connection to {_endpoint(host, port)}: {exc}") from exc
        self._note(f"data connection to {_endpoint(host, port)}")
        return _Data("passive", stream=stream)

    def _start_transfer(self, verb: str, arg: str | None) -> tuple[_Data, Stream]:
        """Set up the data connection, send the command, and get the data stream."""
        data = self._open_data()
        stream = data.stream
        try:
            self._command(verb, arg, expect=(125, 150), preliminary=True)
        except BaseException:
            if stream is not None:
                stream.abort()
            data.close()
            raise
        try:
            if data.listener is not None:
                try:
                    stream = data.listener.accept(self.timeout, self.peer_ip)
                except TimeoutError as exc:
                    raise FtpTimeout(f"no data connection for {verb} within the timeout") from exc
                except OSError as exc:
                    raise DataConnectionError(f"accepting the data connection: {exc}") from exc
                self._note(f"data connection from {_endpoint(*stream.remote_address)}")
            assert stream is not None
            return data, stream
        except BaseException:
            # The server thinks a transfer is under way: its final reply must not be taken for
            # the answer to our next command.
            if stream is not None:
                stream.abort()
            data.close()
            self._resync()
            raise

    def _transfer_in(
        self,
        verb: str,
        arg: str | None,
        write: Callable[[_Chunks], object],
        *,
        received: int,
        expected: int | None,
        progress: Progress | None,
        part: Path | None = None,
        flush: Callable[[], object] | None = None,
    ) -> TransferResult:
        started = time.monotonic()
        data, stream = self._start_transfer(verb, arg)
        moved = 0
        try:
            try:
                while chunks := stream.recv_chunks(READ_AT_ONCE, self.data_timeout):
                    write(chunks)
                    moved += sum(map(len, chunks))
                    if progress is not None:
                        progress(received + moved, expected)
                if flush is not None:
                    flush()
                stats = stream.stats()
                stream.close()
            except BaseException as exc:
                stats = stream.stats()
                stream.abort()
                self._resync()
                raise TransferIncomplete(
                    received + moved, expected, part, _describe(exc, "data connection")
                ) from exc
            reply = self._final_reply(verb, received + moved, expected, part)
        finally:
            data.close()
        return TransferResult(
            command=verb,
            remote=arg or "",
            local=part,
            bytes=moved,
            total=received + moved,
            expected=expected,
            resumed_from=received,
            seconds=time.monotonic() - started,
            mode=data.mode,
            data_peer=stream.remote_address,
            stats=stats,
            reply=reply,
            transport=self.transport.name,
        )

    def _transfer_out(
        self,
        verb: str,
        remote: str,
        source: BinaryIO,
        size: int,
        ascii: bool,
        progress: Progress | None,
        local: Path,
    ) -> TransferResult:
        started = time.monotonic()
        data, stream = self._start_transfer(verb, remote)
        encoder = AsciiEncoder() if ascii else None
        sent = 0
        moved = 0
        try:
            try:
                while block := source.read(CHUNK):
                    sent += len(block)
                    wire = encoder.feed(block) if encoder is not None else block
                    stream.sendall(wire, self.data_timeout)
                    moved += len(wire)
                    if progress is not None:
                        progress(sent, size)
                stream.shutdown()
                # The server closes its side once it has our FIN; wait for that, bounded in
                # total: a server trickling bytes back must not keep us here for ever.
                deadline = time.monotonic() + self.data_timeout
                with contextlib.suppress(TimeoutError, OSError):
                    while (left := deadline - time.monotonic()) > 0 and stream.recv(CHUNK, left):
                        pass
                stats = stream.stats()
                stream.close()
            except BaseException as exc:
                stats = stream.stats()
                stream.abort()
                self._resync()
                raise TransferIncomplete(
                    sent, size, None, _describe(exc, "data connection")
                ) from exc
            reply = self._final_reply(verb, sent, size, None)
        finally:
            data.close()
        return TransferResult(
            command=verb,
            remote=remote,
            local=local,
            bytes=moved,
            total=sent,
            expected=size,
            resumed_from=0,
            seconds=time.monotonic() - started,
            mode=data.mode,
            data_peer=stream.remote_address,
            stats=stats,
            reply=reply,
            transport=self.transport.name,
        )

    def _final_reply(self, verb: str, moved: int, expected: int | None, part: Path | None) -> Reply:
        try:
            reply = self._read_reply()
        except FtpError as exc:
            raise TransferIncomplete(moved, expected, part, f"no final reply: {exc}") from exc
        if reply.code in (226, 250):
            return reply
        if reply.code >= 400:
            raise TransferIncomplete(
                moved, expected, part, f"server replied {reply.code} {reply.text}", reply
            )
        raise FtpProtocolViolation(f"{verb}: final reply {reply.code} instead of 226/250")

    # -- the dialogue -------------------------------------------------------------------------

    def _control(self) -> Stream:
        if self.control is None:
            raise FtpError("not connected")
        if self._broken is not None:
            raise FtpConnectionClosed(f"control connection unusable: {self._broken}")
        return self.control

    def _note(self, text: str) -> None:
        if self.dialogue is not None:
            self.dialogue("*", text)

    def _send(self, verb: str, arg: str | None) -> str:
        line = p.encode_command(verb, arg, encoding=self.encoding)
        shown = f"{verb} ****" if verb == "PASS" else line.decode(self.encoding).rstrip("\r\n")
        if self.dialogue is not None:
            self.dialogue(">", shown)
        try:
            self._control().sendall(line, self.timeout)
        except TimeoutError as exc:
            # Part of the line may be out: what the server reads next is no longer ours to know.
            self._broken = f"sending {shown} timed out"
            raise FtpTimeout(f"sending {shown}: {exc}") from exc
        except OSError as exc:
            self._broken = str(exc)
            raise FtpConnectionClosed(f"sending {shown}: {exc}") from exc
        return shown

    def _command(
        self,
        verb: str,
        arg: str | None = None,
        *,
        expect: tuple[int, ...],
        preliminary: bool = False,
        timeout: float | None = None,
    ) -> Reply:
        """Send one command and read its reply. `expect` are the positive codes we act on; other
        positive codes allowed by the RFCs are a violation too (we would not know what to do),
        negative ones raise FtpReplyError. A 1yz reply is returned only when `preliminary`."""
        shown = self._send(verb, arg)
        reply = self._read_reply(timeout)
        if reply.preliminary and not preliminary:
            raise FtpProtocolViolation(f"{shown}: unexpected preliminary reply {reply.code}")
        if reply.code >= 400:
            raise _reply_error(shown, reply)
        if reply.code not in expect:
            raise FtpProtocolViolation(
                f"{shown}: reply {reply.code} where {'/'.join(map(str, expect))} was expected"
            )
        return reply

    def _read_reply(self, timeout: float | None = None) -> Reply:
        control = self._control()
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._replies:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._reply_timed_out(timeout)
            try:
                chunk = control.recv(4096, remaining)
            except TimeoutError as exc:
                raise self._reply_timed_out(timeout) from exc
            except OSError as exc:
                self._broken = str(exc)
                raise FtpConnectionClosed(f"control connection: {exc}") from exc
            if not chunk:
                self._broken = "closed by the server"
                raise FtpConnectionClosed("the server closed the control connection")
            try:
                replies = self._parser.feed(chunk)
            except p.ReplyError as exc:
                self._replies.extend(exc.replies)
                self._broken = str(exc)
                raise FtpProtocolViolation(str(exc)) from exc
            self._replies.extend(replies)
        reply = self._replies.popleft()
        if self.dialogue is not None:
            for line in reply.lines:
                self.dialogue("<", line)
        if reply.code == 421:
            self._broken = f"421 {reply.text}"
            raise FtpConnectionClosed(f"service closing: {reply}")
        return reply

    def _reply_timed_out(self, timeout: float) -> FtpTimeout:
        """A reply that did not come in time leaves the dialogue out of step: if it comes late,
        it would be read as the answer to our next command (a late 226 taken for QUIT's 221).
        So the control connection is marked unusable: later commands fail at once, and `quit()`
        closes without waiting another timeout for a 221."""
        message = f"no reply within {timeout:g} s"
        self._broken = self._broken or f"a reply did not come in time ({message})"
        return FtpTimeout(message)

    def _resync(self) -> None:
        """After a broken transfer: ABOR, then NOOP, and drop every reply before NOOP's 200.

        The replies in flight are unknowable (426 or 226 for the transfer, 225 or 226 for ABOR,
        in either order), so the NOOP's 200 is the marker; nothing a transfer or ABOR answers is
        200. If even that fails, the control connection is marked unusable.
        """
        if self.control is None or self._broken is not None:
            return
        try:
            self._send("ABOR", None)
            self._send("NOOP", None)
            deadline = time.monotonic() + RESYNC_TIMEOUT
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FtpTimeout("no reply to NOOP after ABOR")
                if self._read_reply(remaining).code == 200:
                    return
        except FtpError as exc:
            self._broken = self._broken or f"lost sync after an aborted transfer: {exc}"


# -- helpers --------------------------------------------------------------------------------------


def _writer(sink: BinaryIO, decoder: AsciiDecoder | None) -> Callable[[_Chunks], object]:
    """What writes the chunks a data-connection read returned: binary, all of them with
    writev(2) on the (unbuffered) file; ASCII, through the decoder."""
    if decoder is None:
        fd = sink.fileno()
        return lambda chunks: write_all(fd, chunks)

    def write_ascii(chunks: _Chunks) -> None:
        for chunk in chunks:
            sink.write(decoder.feed(bytes(chunk)))

    return write_ascii


def _describe(exc: BaseException, what: str) -> str:
    if isinstance(exc, TimeoutError):
        return f"{what} idle too long ({exc})"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, ConnectionResetError):
        return f"{what} reset by the peer"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _endpoint(host: str, port: int) -> str:
    """host:port for people, an IPv6 host in brackets ([2001:2::1]:21), as in a URL."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _no_v4_fallback(exc: FtpReplyError, verb: str, v4_verb: str) -> FtpReplyError:
    """The error for a refused EPRT/EPSV over IPv6: same class and reply, and a message that
    says why no PORT/PASV follows."""
    error = type(exc)(exc.command, exc.reply)
    error.args = (
        f"{exc} (over IPv6 there is no fallback: {v4_verb} cannot carry an IPv6 address, RFC 2428)",
    )
    return error


def _decode_address(parse: Callable[[str], _T], text: str) -> _T:
    try:
        return parse(text)
    except p.InvalidAddressError as exc:
        raise FtpProtocolViolation(str(exc)) from exc


def _quoted_path(reply: Reply) -> str:
    """The path of a 257 reply: between the first quote and its closing one, "" escaping a quote
    (RFC 959 Appendix II)."""
    text = reply.text
    start = text.find('"')
    if start < 0:
        raise FtpProtocolViolation(f"257 reply without a quoted path: {text[:80]!r}")
    out = []
    i = start + 1
    while i < len(text):
        if text[i] == '"':
            if text[i + 1 : i + 2] == '"':
                out.append('"')
                i += 2
                continue
            return "".join(out)
        out.append(text[i])
        i += 1
    raise FtpProtocolViolation(f"257 reply with an unterminated path: {text[:80]!r}")


def _lines(data: bytes, encoding: str) -> list[str]:
    text = data.decode(encoding, errors="replace")
    return [line for line in re.split(r"\r?\n", text) if line]
