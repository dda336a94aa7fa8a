"""Sans-IO FTP protocol pieces (RFC 959, RFC 2428, RFC 3659), shared by replay and the live client.

Nothing here owns a socket: commands become bytes, bytes become replies (or commands, for replay
reading the client's side), and the address arguments of PORT / EPRT / PASV / EPSV are encoded and
decoded both ways. Parsers are incremental (`feed` any split of the stream) and bounded: a peer that
never ends a line or a multi-line reply gets a precise exception instead of our memory, because the
same parser reads captures from hostile networks.

Errors are typed by who is at fault (h11's habit): `InvalidCommandError` is our caller's misuse
(an argument that would smuggle a second command through CR/LF, or a NUL); `ReplyError` subclasses
are the peer's faults, raised by the parser and turned into anomalies by replay.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass

MAX_LINE_LENGTH = 8192  # bytes per line, CRLF excluded; far above any real server's lines
MAX_REPLY_LINES = 1000  # lines in one multi-line reply (a long FEAT or HELP is ~50)

_VERB_RE = re.compile(r"[A-Za-z]{3,4}\Z")


# -- errors -------------------------------------------------------------------------------------


class FtpProtocolError(ValueError):
    """Base of every error this module raises."""


class InvalidCommandError(FtpProtocolError):
    """Our caller asked to encode a command that cannot be sent as one line."""


class InvalidAddressError(FtpProtocolError):
    """A PORT/EPRT argument or PASV/EPSV reply text whose address cannot be decoded."""


class ReplyError(FtpProtocolError):
    """The server's reply stream broke a rule; `replies` holds those completed before the fault."""

    def __init__(self, message: str, replies: tuple[Reply, ...] = ()) -> None:
        super().__init__(message)
        self.replies = replies


class ReplyLineTooLongError(ReplyError):
    """A reply line longer than the parser's bound; the line is discarded up to its LF."""


class TooManyReplyLinesError(ReplyError):
    """A multi-line reply with more lines than the bound; the reply is discarded."""


class MalformedReplyError(ReplyError):
    """A reply's first line does not start with a three-digit code (1yz to 5yz)."""


class CommandLineTooLongError(FtpProtocolError):
    """A client command line longer than the bound (replay reading a client stream)."""


# -- commands -----------------------------------------------------------------------------------


def encode_command(verb: str, arg: str | None = None, *, encoding: str = "utf-8") -> bytes:
    """One command line with CRLF (RFC 959 4.1). UTF-8 arguments per RFC 2640.

    CR, LF and NUL are refused inside the argument: a file name holding "\\r\\nDELE x" would
    otherwise make us send a second command the user never asked for.
    """
    if not _VERB_RE.match(verb):
        raise InvalidCommandError(f"verb {verb!r} is not 3 or 4 ASCII letters")
    if arg is None:
        return verb.upper().encode("ascii") + b"\r\n"
    for i, ch in enumerate(arg):
        if ch in "\r\n\x00":
            name = {"\r": "CR", "\n": "LF", "\x00": "NUL"}[ch]
            raise InvalidCommandError(
                f"argument of {verb.upper()} holds {name} at index {i}: {arg!r}"
            )
    return verb.upper().encode("ascii") + b" " + arg.encode(encoding) + b"\r\n"


@dataclass(frozen=True, slots=True)
class Command:
    """A client command as read from a stream: verb upper-cased, argument as sent (or None)."""

    verb: str
    arg: str | None
    line: str


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_command_line(line: str) -> Command:
    """Split one command line (without CRLF) into verb and argument (RFC 959 5.3.1)."""
    verb, sep, arg = line.partition(" ")
    return Command(verb.upper(), arg if sep else None, line)


class _LineOverflowError(Exception):
    """A line passed the bound: `length` when complete, None while still unfinished."""

    def __init__(self, length: int | None) -> None:
        super().__init__(length)
        self.length = length


class _BoundedLines:
    """Splits a byte stream into LF-terminated lines of at most `max_length` bytes.

    Both control-connection parsers need the same bound, which keeps a peer from growing our
    buffer without end: an unfinished line past the bound raises once, and the rest of it is
    skipped up to its LF; a complete line past the bound raises too. Lines come back without
    their CR: every trailing CR for commands, one for replies (whose text may end in a CR).
    """

    def __init__(self, max_length: int, *, strip_every_cr: bool) -> None:
        self.max_length = max_length
        self.strip_every_cr = strip_every_cr
        self.buf = bytearray()
        self._skipping = False  # discarding the rest of an overlong line

    def feed(self, data: bytes) -> Iterator[bytes]:
        self.buf += data
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > self.max_length:
                    self.buf.clear()
                    if not self._skipping:
                        self._skipping = True
                        raise _LineOverflowError(None)
                return
            raw = bytes(self.buf[:nl])
            del self.buf[: nl + 1]
            if self._skipping:
                self._skipping = False
                continue
            if self.strip_every_cr:
                raw = raw.rstrip(b"\r")
            elif raw.endswith(b"\r"):
                raw = raw[:-1]
            if len(raw) > self.max_length:
                raise _LineOverflowError(len(raw))
            yield raw


class CommandParser:
    """Incremental parser of the client's side of a control connection (for replay)."""

    def __init__(self, max_line_length: int = MAX_LINE_LENGTH) -> None:
        self.max_line_length = max_line_length
        self._lines = _BoundedLines(max_line_length, strip_every_cr=True)

    def feed(self, data: bytes) -> list[Command]:
        out: list[Command] = []
        try:
            for raw in self._lines.feed(data):
                out.append(parse_command_line(_decode(raw)))
        except _LineOverflowError as exc:
            if exc.length is None:
                raise CommandLineTooLongError(
                    f"command line longer than {self.max_line_length} bytes"
                ) from None
            raise CommandLineTooLongError(f"command line of {exc.length} bytes") from None
        return out

    @property
    def pending(self) -> bytes:
        """Bytes of an unfinished line (a capture that ends mid-command)."""
        return bytes(self._lines.buf)


# -- replies ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete reply: its code and its lines as received (CRLF removed, code prefixes kept)."""

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply's text without the code prefixes, lines joined with LF."""
        parts = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            if (i == 0 or i == last) and len(line) >= 3 and line[:3] == f"{self.code:03d}":
                parts.append(line[4:])
            else:
                parts.append(line)
        return "\n".join(parts)

    @property
    def preliminary(self) -> bool:
        return 100 <= self.code < 200

    @property
    def positive(self) -> bool:
        return 100 <= self.code < 400

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _reply_code(line: str) -> int | None:
    head = line[:3]
    if len(head) < 3 or not (head.isascii() and head.isdigit()) or head[0] not in "12345":
        return None
    return int(head) if len(line) == 3 or line[3] in " -" else None


class ReplyParser:
    """Incremental RFC 959 4.2 reply parser: `feed(bytes) -> list[Reply]`.

    A multi-line reply starts with "ddd-" and ends at the first line starting "ddd " with the same
    code; lines in between are kept verbatim even when they start with digits. Bare LF is accepted
    as a line end (some servers send it); a trailing CR is stripped.
    """

    def __init__(
        self, max_line_length: int = MAX_LINE_LENGTH, max_lines: int = MAX_REPLY_LINES
    ) -> None:
        self.max_line_length = max_line_length
        self.max_lines = max_lines
        self._split = _BoundedLines(max_line_length, strip_every_cr=False)
        self._code: int | None = None  # set while inside a multi-line reply
        self._lines: list[str] = []

    @property
    def pending(self) -> bytes:
        """Bytes not yet part of a complete line."""
        return bytes(self._split.buf)

    @property
    def in_multiline(self) -> bool:
        return self._code is not None

    def feed(self, data: bytes) -> list[Reply]:
        out: list[Reply] = []
        try:
            for raw in self._split.feed(data):
                reply = self._line(_decode(raw), out)
                if reply is not None:
                    out.append(reply)
        except _LineOverflowError as exc:
            self._abandon()
            if exc.length is None:
                raise ReplyLineTooLongError(
                    f"reply line longer than {self.max_line_length} bytes", tuple(out)
                ) from None
            raise ReplyLineTooLongError(f"reply line of {exc.length} bytes", tuple(out)) from None
        return out

    def _abandon(self) -> None:
        self._code = None
        self._lines = []

    def _line(self, line: str, done: list[Reply]) -> Reply | None:
        if self._code is None:
            code = _reply_code(line)
            if code is None:
                raise MalformedReplyError(f"reply line without a code: {line[:80]!r}", tuple(done))
            if len(line) > 3 and line[3] == "-":
                self._code = code
                self._lines = [line]
                return None
            return Reply(code, (line,))
        self._lines.append(line)
        code_text = f"{self._code:03d}"
        if line == code_text or (len(line) >= 4 and line[3] == " " and line[:3] == code_text):
            reply = Reply(self._code, tuple(self._lines))
            self._abandon()
            return reply
        if len(self._lines) >= self.max_lines:
            code = self._code
            self._abandon()
            raise TooManyReplyLinesError(
                f"multi-line {code} reply longer than {self.max_lines} lines", tuple(done)
            )
        return None


# -- PORT / EPRT / PASV / EPSV ------------------------------------------------------------------


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise InvalidAddressError(f"port {port} out of range 1-65535")


def encode_port(host: str, port: int) -> str:
    """PORT argument h1,h2,h3,h4,p1,p2 (RFC 959 4.1.2). IPv4 only."""
    _check_port(port)
    try:
        addr = ipaddress.IPv4Address(host)
    except ValueError as exc:
        raise InvalidAddressError(f"PORT needs an IPv4 address, not {host!r}") from exc
    return ",".join([*(str(b) for b in addr.packed), str(port >> 8), str(port & 0xFF)])


def _six_numbers(parts: list[str], what: str) -> tuple[str, int]:
    try:
        nums = [int(p) for p in parts]
    except ValueError as exc:
        raise InvalidAddressError(f"{what}: non-numeric field in {parts}") from exc
    if len(nums) != 6 or any(not 0 <= n <= 255 for n in nums):
        raise InvalidAddressError(f"{what}: need six numbers 0-255, got {parts}")
    port = nums[4] << 8 | nums[5]
    _check_port(port)
    return ".".join(str(n) for n in nums[:4]), port


def parse_port(arg: str) -> tuple[str, int]:
    """(host, port) of a PORT argument."""
    return _six_numbers([p.strip() for p in arg.strip().split(",")], "PORT")


def encode_eprt(host: str, port: int) -> str:
    """EPRT argument |af|addr|port| (RFC 2428 2): af 1 = IPv4, 2 = IPv6."""
    _check_port(port)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidAddressError(f"EPRT needs an IP address, not {host!r}") from exc
    af = 1 if addr.version == 4 else 2
    return f"|{af}|{addr.compressed}|{port}|"


def parse_eprt(arg: str) -> tuple[str, int]:
    """(host, port) of an EPRT argument; the delimiter is whatever the first character is."""
    arg = arg.strip()
    if len(arg) < 2 or not 33 <= ord(arg[0]) <= 126:
        raise InvalidAddressError(f"EPRT argument {arg!r} has no delimiter")
    d = arg[0]
    fields = arg.split(d)
    if len(fields) != 5 or fields[0] or fields[4]:
        raise InvalidAddressError(f"EPRT argument {arg!r} is not {d}af{d}addr{d}port{d}")
    af, host, port_s = fields[1:4]
    try:
        addr = ipaddress.ip_address(host)
        port = int(port_s)
    except ValueError as exc:
        raise InvalidAddressError(f"EPRT argument {arg!r}: {exc}") from exc
    if (af, addr.version) not in (("1", 4), ("2", 6)):
        raise InvalidAddressError(f"EPRT address family {af!r} does not match {host!r}")
    _check_port(port)
    return addr.compressed, port


_PASV_RE = re.compile(r"\s*,\s*".join([r"(\d{1,3})"] * 6))


def encode_pasv_reply(host: str, port: int) -> str:
    """The text of a 227 reply (without the code)."""
    return f"Entering Passive Mode ({encode_port(host, port)})."


def parse_pasv_reply(text: str) -> tuple[str, int]:
    """(host, port) from a 227 reply's text, wherever the six numbers are (RFC 1123 4.1.2.6)."""
    m = _PASV_RE.search(text)
    if m is None:
        raise InvalidAddressError(f"no h1,h2,h3,h4,p1,p2 in 227 text {text[:100]!r}")
    return _six_numbers(list(m.groups()), "227 reply")


_EPSV_RE = re.compile(r"\(([\x21-\x7e])\1\1(\d{1,5})\1\)")


def encode_epsv_reply(port: int) -> str:
    """The text of a 229 reply (RFC 2428 3)."""
    _check_port(port)
    return f"Entering Extended Passive Mode (|||{port}|)"


def parse_epsv_reply(text: str) -> int:
    """The port of a 229 reply's "(|||port|)" (any delimiter repeated, per RFC 2428 3)."""
    m = _EPSV_RE.search(text)
    if m is None:
        raise InvalidAddressError(f"no (|||port|) in 229 text {text[:100]!r}")
    port = int(m.group(2))
    _check_port(port)
    return port


# -- expected replies -----------------------------------------------------------------------------

_TRANSFER = frozenset({110, 125, 150, 226, 250, 421, 425, 426, 450, 451, 500, 501, 530})
_STORE = _TRANSFER | {452, 532, 551, 552, 553}

# RFC 959 5.4 "Command-Reply Sequences", plus RFC 2428 (EPRT, EPSV), RFC 3659 (SIZE, MDTM, MLSD,
# MLST, REST), RFC 2389 (FEAT, OPTS). Servers also send 502 (not implemented) to anything.
EXPECTED_REPLIES: dict[str, frozenset[int]] = {
    "USER": frozenset({230, 331, 332, 421, 500, 501, 530}),
    "PASS": frozenset({202, 230, 332, 421, 500, 501, 503, 530}),
    "ACCT": frozenset({202, 230, 421, 500, 501, 503, 530}),
    "CWD": frozenset({250, 421, 500, 501, 502, 530, 550}),
    "CDUP": frozenset({200, 250, 421, 500, 501, 502, 530, 550}),
    "SMNT": frozenset({202, 250, 421, 500, 501, 502, 530, 550}),
    "REIN": frozenset({120, 220, 421, 500, 502}),
    "QUIT": frozenset({221, 500}),
    "PORT": frozenset({200, 421, 500, 501, 530}),
    "PASV": frozenset({227, 421, 500, 501, 502, 530}),
    "EPRT": frozenset({200, 421, 500, 501, 522, 530}),
    "EPSV": frozenset({229, 421, 500, 501, 502, 522, 530}),
    "TYPE": frozenset({200, 421, 500, 501, 504, 530}),
    "STRU": frozenset({200, 421, 500, 501, 504, 530}),
    "MODE": frozenset({200, 421, 500, 501, 504, 530}),
    "ALLO": frozenset({200, 202, 421, 500, 501, 504, 530}),
    "REST": frozenset({350, 421, 500, 501, 502, 530}),
    "RETR": _TRANSFER | {550},
    "STOR": _STORE,
    "STOU": _STORE,
    "APPE": _STORE | {550},
    "LIST": _TRANSFER | {502, 550},
    "NLST": _TRANSFER | {502, 550},
    "MLSD": _TRANSFER | {502, 550},
    "RNFR": frozenset({350, 421, 450, 500, 501, 502, 530, 550}),
    "RNTO": frozenset({250, 421, 500, 501, 502, 503, 530, 532, 553}),
    "ABOR": frozenset({225, 226, 421, 500, 501, 502}),
    "DELE": frozenset({250, 421, 450, 500, 501, 502, 530, 550}),
    "RMD": frozenset({250, 421, 500, 501, 502, 530, 550}),
    "MKD": frozenset({257, 421, 500, 501, 502, 530, 550}),
    "PWD": frozenset({257, 421, 500, 501, 502, 550}),
    "SYST": frozenset({215, 421, 500, 501, 502}),
    "STAT": frozenset({211, 212, 213, 421, 450, 500, 501, 502, 530}),
    "HELP": frozenset({211, 214, 421, 500, 501, 502}),
    "SITE": frozenset({200, 202, 500, 501, 530}),
    "NOOP": frozenset({200, 421, 500}),
    "SIZE": frozenset({213, 421, 500, 501, 502, 530, 550}),
    "MDTM": frozenset({213, 421, 500, 501, 502, 530, 550}),
    "MLST": frozenset({250, 421, 500, 501, 502, 530, 550}),
    "FEAT": frozenset({211, 500, 502}),
    "OPTS": frozenset({200, 451, 500, 501, 502}),
}

# Commands that move bytes over a data connection, and which way (True: server to client).
TRANSFER_COMMANDS: dict[str, bool] = {
    "RETR": True,
    "LIST": True,
    "NLST": True,
    "MLSD": True,
    "STOR": False,
    "STOU": False,
    "APPE": False,
}


def reply_expected(verb: str, code: int) -> bool:
    """Whether `code` is an answer RFC 959 (and extensions) allow to `verb`; 502 always is."""
    allowed = EXPECTED_REPLIES.get(verb.upper())
    return allowed is None or code in allowed or code == 502
