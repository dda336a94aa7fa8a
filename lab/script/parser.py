"""The packetdrill script language, the subset `lab script` runs, parsed into typed events.

A script is one event per line: a time, then an inbound segment (`<`), an outbound segment (`>`),
a socket call, or a backtick shell command. Times are absolute (`0.100`), relative to the previous
event (`+0.1`), a range (`0.1~0.2`, `+0~+0.05`) or `*` (any time); a blocking call may give
when it returns, `+0...0.1 accept(...)`. Segments read as in packetdrill:

    +0 < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
    +0 > S. 0:0(0) ack 1 <...>
    +.1 < . 1:1001(1000) ack 1 win 502 <nop,nop,sack 1:2>

Sequence numbers are relative, as in packetdrill: an inbound segment's seq (and an outbound one's
ack and SACK blocks) count from the remote side's initial sequence number, an outbound segment's
seq (and an inbound one's ack and SACK blocks) from the local socket's. The runners resolve them;
the parser only keeps the numbers written.

Socket calls: `name(arg, ...) = RET [ERRNO (text)]`. Arguments are integers, symbols (`SOL_SOCKET`,
`O_RDWR|O_NONBLOCK`), `...` and one-element lists `[1]`. Leading `--name=value` lines set options;
`// lab-differs: KEY ...` comments note an intended difference of the lab from Linux (see
`NOTE_KEYS`). Anything else is a `ScriptSyntaxError` naming the line: a script that silently
meant something else would pass or fail for the wrong reason.

Why not run packetdrill's own parser: it is C, GPL, and needs root; this one is a few hundred lines
of Python that the lab runner can use in memory, in notebooks and in tests.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from lab.wire.options import (
    MAX_OPTIONS_LEN,
    EndOfOptions,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    SackPermitted,
    TcpOption,
    Timestamps,
    WindowScale,
    encode_option,
)
from lab.wire.segment import Flags

US_PER_S = 1_000_000
INT_MIN, INT_MAX = -(1 << 31), (1 << 31) - 1  # call arguments are C ints
MAX_IO_BYTES = 1 << 24  # a write or read larger than 16 MiB is a typo, not a test
MAX_TIME = 86_400 * US_PER_S  # so is a time of more than a day (the kernel run is real time)

# Keys a `// lab-differs:` note may name, and what each relaxes when the script runs on the lab.
NOTE_KEYS: dict[str, str] = {
    "option-order": "outbound options compared as a set (kind and value), not byte layout",
    "window": "the window field of outbound segments is not compared",
    "wscale": "the wscale value of outbound SYNs is not compared",
    "mss": "the mss value of outbound SYNs is not compared",
    "rst-ack": "an outbound R. may be a bare R (RFC 9293 3.10.5 ABORT: <SEQ=SND.NXT><CTL=RST>)",
    "window-probe": "a zero-window probe (`> . N-1:N-1(0)`, or a retransmission N:M when the "
    "window shrank) may be one byte of data, N:N+1(1)",
    "dsack": "a leading D-SACK block (RFC 2883) in an outbound ACK is ignored",
    "psh": "the PSH flag of outbound segments is not compared",
    "skip": "the script is not run against the lab at all (behaviour differs by design)",
}
# Keys a `// kernel-differs:` note may name (the script documents lab behaviour Linux lacks).
KERNEL_NOTE_KEYS: dict[str, str] = dict(NOTE_KEYS)

# `--name=value` lines a script may start with.
SCRIPT_OPTIONS = {
    "tolerance_usecs": "timing tolerance of outbound segments, microseconds",
    "remote_isn": "the remote side's initial sequence number (default 1000000)",
    "lab_local_isn": "the lab socket's ISS (lab only; the kernel picks its own)",
}

SUPPORTED_CALLS = (
    "socket",
    "setsockopt",
    "bind",
    "listen",
    "accept",
    "connect",
    "write",
    "read",
    "shutdown",
    "close",
    "fcntl",
    "ioctl",
)

ERRNOS = (
    "EINPROGRESS",
    "EAGAIN",
    "EWOULDBLOCK",
    "ECONNREFUSED",
    "ECONNRESET",
    "ETIMEDOUT",
    "EPIPE",
    "ENOTCONN",
    "EISCONN",
    "EALREADY",
    "EADDRINUSE",
    "EINVAL",
    "EBADF",
)

_FLAG_LETTERS = {
    "S": Flags.SYN,
    "F": Flags.FIN,
    "R": Flags.RST,
    "P": Flags.PSH,
    ".": Flags.ACK,
    "U": Flags.URG,
    "E": Flags.ECE,
    "W": Flags.CWR,
}


class ScriptSyntaxError(ValueError):
    """A line outside the supported subset; `line` is 1-based, `path` may be empty."""

    def __init__(self, line: int, message: str, path: str = "") -> None:
        self.line = line
        self.message = message
        self.path = path
        # `FILE:LINE: message`, as compilers and packetdrill write it; line 0 is the whole file.
        where = (f"{path}:{line}" if line else path) if path else f"line {line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class EventTime:
    """When an event happens: [start, end] in microseconds, absolute or after the previous one.

    `end` equals `start` unless the script gave a range; `anytime` is packetdrill's `*`.
    """

    start: int
    end: int
    relative: bool
    anytime: bool = False


@dataclass(frozen=True, slots=True)
class PacketEvent:
    """A `<` (inbound, injected) or `>` (outbound, expected) TCP segment, numbers as written."""

    line: int
    text: str
    time: EventTime
    inbound: bool
    flags: Flags
    seq: int
    end: int
    ack: int | None = None
    window: int | None = None
    options: tuple[TcpOption, ...] | None = ()  # None: `<...>`, any options

    @property
    def length(self) -> int:
        return (self.end - self.seq) & 0xFFFFFFFF


Arg = int | str | None | tuple[int, ...]
"""A call argument: an integer, a symbol expression, None for `...`, a list `[n]` as a tuple."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A socket call and what it must return (`errno` set when `ret` is -1)."""

    line: int
    text: str
    time: EventTime
    name: str
    args: tuple[Arg, ...]
    ret: int
    errno: str | None = None
    end: int | None = None  # `START...END`: when a blocking call must return (same base as start)


@dataclass(frozen=True, slots=True)
class ShellEvent:
    """A backtick line: run by the kernel runner only."""

    line: int
    text: str
    time: EventTime
    command: str


Event = PacketEvent | CallEvent | ShellEvent


@dataclass(frozen=True, slots=True)
class Note:
    """`// lab-differs: key[, key] - why` (or `kernel-differs`), at `line`."""

    line: int
    target: str  # "lab" or "kernel"
    keys: tuple[str, ...]
    reason: str


@dataclass(slots=True)
class Script:
    """A parsed script: its events in order, options and notes."""

    path: str
    events: list[Event] = field(default_factory=list)
    options: dict[str, int] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    def note_keys(self, target: str) -> set[str]:
        return {k for n in self.notes if n.target == target for k in n.keys}

    @property
    def lines(self) -> dict[int, str]:
        return {e.line: e.text for e in self.events}


_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_TIME_RE = re.compile(rf"^(\*|\+?{_NUMBER}(?:~\+?{_NUMBER})?)(?:\.\.\.({_NUMBER}))?(?=\s|$)")
_NOTE_RE = re.compile(r"^//\s*(lab|kernel)-differs:\s*(.*)$")
_OPTION_LINE_RE = re.compile(r"^--([a-z_]+)=(\S+)$")
_SEQ_RE = re.compile(r"^([^:]*):([^(]*)\(([^)]*)\)$")
_CALL_RE = re.compile(r"^([a-z_]+)\((.*)\)\s*=\s*(.+)$")
_RET_RE = re.compile(r"^(-?(?:0x[0-9a-fA-F]+|\d+))(?:\s+([A-Z][A-Z0-9_]*))?(?:\s*\((.*)\))?$")
_SYMBOL_RE = re.compile(r"^[A-Z_][A-Z0-9_]*(?:\|[A-Z_][A-Z0-9_]*)*$")


def _seconds_to_us(text: str, line: int) -> int:
    whole, _, frac = text.partition(".")
    if len(frac) > 6:
        raise ScriptSyntaxError(line, f"time {text!r} is finer than a microsecond")
    if not (whole or frac) or not (whole or "0").isdigit() or not (frac or "0").isdigit():
        raise ScriptSyntaxError(line, f"bad time {text!r}")
    us = int(whole or "0") * US_PER_S + int((frac + "000000")[:6])
    if us > MAX_TIME:
        raise ScriptSyntaxError(line, f"time {text} s is more than a day")
    return us


def parse_time(text: str, line: int) -> EventTime:
    """`0.1`, `+0.1`, `.1`, `0.1~0.2`, `+0~+0.05` or `*`."""
    if text == "*":
        return EventTime(0, 0, relative=True, anytime=True)
    lo_text, sep, hi_text = text.partition("~")
    relative = lo_text.startswith("+")
    lo = _seconds_to_us(lo_text.lstrip("+"), line)
    hi = lo
    if sep:
        if hi_text.startswith("+") != relative:
            raise ScriptSyntaxError(line, f"time range {text!r} mixes relative and absolute")
        hi = _seconds_to_us(hi_text.lstrip("+"), line)
        if hi < lo:
            raise ScriptSyntaxError(line, f"time range {text!r} ends before it starts")
    return EventTime(lo, hi, relative)


def _int(text: str, line: int, what: str, limit: int = 0xFFFFFFFF) -> int:
    if not re.fullmatch(r"\d+", text):
        raise ScriptSyntaxError(line, f"{what} must be a non-negative integer, not {text!r}")
    value = int(text)
    if value > limit:
        raise ScriptSyntaxError(line, f"{what} {value} is larger than {limit}")
    return value


def parse_flags(text: str, line: int) -> Flags:
    """packetdrill's flag letters (`S.`, `F.`, `P.`, `R`, `.`), or `-` for none."""
    if text == "-":
        return Flags(0)
    flags = Flags(0)
    for ch in text:
        bit = _FLAG_LETTERS.get(ch)
        if bit is None:
            raise ScriptSyntaxError(line, f"unknown TCP flag {ch!r} in {text!r}")
        if flags & bit:
            raise ScriptSyntaxError(line, f"flag {ch!r} repeated in {text!r}")
        flags |= bit
    return flags


def parse_options(text: str, line: int) -> tuple[TcpOption, ...] | None:
    """The inside of `<...>`: comma-separated options, or `...` for any (returns None)."""
    text = text.strip()
    if text == "...":
        return None
    if not text:
        return ()
    out: list[TcpOption] = []
    for item in (part.strip() for part in text.split(",")):
        words = item.split()
        if not words:
            raise ScriptSyntaxError(line, "empty TCP option in the option list")
        name, rest = words[0], words[1:]
        if name == "nop" and not rest:
            out.append(NoOperation())
        elif name == "eol" and not rest:
            out.append(EndOfOptions())
        elif name == "sackOK" and not rest:
            out.append(SackPermitted())
        elif name == "mss" and len(rest) == 1:
            out.append(MaxSegmentSize(_int(rest[0], line, "mss", 0xFFFF)))
        elif name == "wscale" and len(rest) == 1:
            out.append(WindowScale(_int(rest[0], line, "wscale", 0xFF)))
        elif name == "TS" and len(rest) == 4 and rest[0] == "val" and rest[2] == "ecr":
            out.append(Timestamps(_int(rest[1], line, "TS val"), _int(rest[3], line, "TS ecr")))
        elif name == "sack" and rest:
            blocks = []
            for block in rest:
                left, sep, right = block.partition(":")
                if not sep:
                    raise ScriptSyntaxError(line, f"SACK block {block!r} is not LEFT:RIGHT")
                blocks.append((_int(left, line, "SACK edge"), _int(right, line, "SACK edge")))
            if len(blocks) > 4:
                raise ScriptSyntaxError(line, "more than 4 SACK blocks do not fit in a header")
            out.append(SackBlocks(tuple(blocks)))
        else:
            raise ScriptSyntaxError(line, f"unsupported TCP option {item!r}")
    size = sum(len(encode_option(o)) for o in out)
    if size > MAX_OPTIONS_LEN:
        raise ScriptSyntaxError(
            line, f"TCP options take {size} bytes, more than the {MAX_OPTIONS_LEN} a header has"
        )
    if size % 4:
        # packetdrill's rule: the script spells the padding (nop or eol) that makes the header
        # a whole number of 32-bit words, as the segment on the wire has it.
        raise ScriptSyntaxError(
            line,
            f"TCP options take {size} bytes, not a multiple of 4: pad them with nop or eol "
            f"({size % 4} excess bytes)",
        )
    return tuple(out)


def _parse_packet(rest: str, line: int, text: str, time: EventTime) -> PacketEvent:
    inbound = rest[0] == "<"
    body = rest[1:].strip()
    options: tuple[TcpOption, ...] | None = ()
    if body.endswith(">"):
        start = body.rfind("<")
        if start < 0:
            raise ScriptSyntaxError(line, "option list ends with '>' but has no '<'")
        options = parse_options(body[start + 1 : -1], line)
        body = body[:start].strip()
    elif "<" in body or ">" in body:
        raise ScriptSyntaxError(line, "option list must end the line, as <opt,opt,...>")
    words = body.split()
    if len(words) < 2:
        raise ScriptSyntaxError(line, "a segment needs flags and seq:end(len)")
    flags = parse_flags(words[0], line)
    m = _SEQ_RE.match(words[1])
    if m is None:
        raise ScriptSyntaxError(line, f"expected seq:end(len), got {words[1]!r}")
    seq = _int(m.group(1), line, "seq")
    end = _int(m.group(2), line, "end seq")
    length = _int(m.group(3), line, "length")
    if (end - seq) & 0xFFFFFFFF != length:
        raise ScriptSyntaxError(line, f"{words[1]}: end - seq is not the length")
    if length > 65495:
        raise ScriptSyntaxError(line, f"payload of {length} bytes does not fit in one IPv4 packet")
    ack: int | None = None
    window: int | None = None
    i = 2
    while i < len(words):
        key = words[i]
        if i + 1 >= len(words):
            raise ScriptSyntaxError(line, f"{key!r} needs a value")
        value = words[i + 1]
        if key == "ack" and ack is None:
            ack = _int(value, line, "ack")
        elif key == "win" and window is None:
            window = _int(value, line, "win", 0xFFFF)
        else:
            raise ScriptSyntaxError(line, f"unsupported segment field {key!r}")
        i += 2
    if inbound and options is None:
        raise ScriptSyntaxError(line, "<...> (any options) only makes sense on an outbound segment")
    return PacketEvent(line, text, time, inbound, flags, seq, end, ack, window, options)


def _split_args(text: str, line: int) -> list[str]:
    args: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += ch
    if depth != 0:
        raise ScriptSyntaxError(line, "unbalanced brackets in the call's arguments")
    if current.strip() or args:
        args.append(current.strip())
    return args


def _c_int(value: int, text: str, line: int) -> int:
    if not INT_MIN <= value <= INT_MAX:
        raise ScriptSyntaxError(line, f"argument {text} does not fit in a C int")
    return value


def _parse_arg(text: str, line: int) -> Arg:
    if text == "...":
        return None
    if re.fullmatch(r"-?\d+", text):
        return _c_int(int(text), text, line)
    if re.fullmatch(r"0x[0-9a-fA-F]+", text):
        return _c_int(int(text, 16), text, line)
    if _SYMBOL_RE.match(text):
        return text
    m = re.fullmatch(r"\[\s*(-?\d+)\s*\]", text)
    if m:
        return (_c_int(int(m.group(1)), m.group(1), line),)
    raise ScriptSyntaxError(line, f"unsupported call argument {text!r}")


_ARITY = {
    "socket": 3,
    "setsockopt": 5,
    "bind": 3,
    "listen": 2,
    "accept": 3,
    "connect": 3,
    "write": 3,
    "read": 3,
    "shutdown": 2,
    "close": 1,
    "ioctl": 3,
}

SOCKOPTS = {
    ("SOL_SOCKET", "SO_REUSEADDR"),
    ("SOL_SOCKET", "SO_RCVBUF"),
    ("SOL_SOCKET", "SO_SNDBUF"),
    ("IPPROTO_TCP", "TCP_NODELAY"),
}


def _check_call(name: str, args: tuple[Arg, ...], line: int) -> None:
    """Arguments the runners can honour; anything else is refused here, with the line."""
    if name == "fcntl":
        if len(args) == 2 and args[1] == "F_GETFL":
            return
        if len(args) == 3 and args[1] == "F_SETFL" and isinstance(args[2], str | int):
            flags = args[2]
            if isinstance(flags, str) and not set(flags.split("|")) <= {"O_RDWR", "O_NONBLOCK"}:
                raise ScriptSyntaxError(line, f"fcntl flags {flags!r}: only O_RDWR|O_NONBLOCK")
            return
        raise ScriptSyntaxError(line, "fcntl: only fcntl(fd, F_GETFL) and fcntl(fd, F_SETFL, x)")
    arity = _ARITY[name]
    if len(args) != arity:
        raise ScriptSyntaxError(line, f"{name} takes {arity} arguments, not {len(args)}")
    if name != "socket" and not isinstance(args[0], int):
        raise ScriptSyntaxError(line, f"{name}: the first argument must be a file descriptor")
    if name == "socket" and (args[1] != "SOCK_STREAM" or args[2] not in ("IPPROTO_TCP", 0)):
        raise ScriptSyntaxError(line, "socket: only socket(..., SOCK_STREAM, IPPROTO_TCP)")
    if name == "socket" and args[0] not in (None, "AF_INET"):
        raise ScriptSyntaxError(line, "socket: only AF_INET (or ...)")
    if name == "setsockopt":
        if (args[1], args[2]) not in SOCKOPTS:
            raise ScriptSyntaxError(line, f"setsockopt: unsupported option {args[1]}, {args[2]}")
        if not isinstance(args[3], tuple):
            raise ScriptSyntaxError(line, "setsockopt: the value must be written as [n]")
    if name in ("write", "read", "listen") and not isinstance(args[-1], int):
        raise ScriptSyntaxError(line, f"{name}: the last argument must be an integer")
    size = args[-1]
    if name in ("write", "read") and isinstance(size, int) and not 0 <= size <= MAX_IO_BYTES:
        raise ScriptSyntaxError(
            line, f"{name}: the size must be between 0 and {MAX_IO_BYTES}, not {size}"
        )
    if name == "shutdown" and args[1] not in ("SHUT_RD", "SHUT_WR", "SHUT_RDWR"):
        raise ScriptSyntaxError(line, "shutdown: SHUT_RD, SHUT_WR or SHUT_RDWR")
    if name == "ioctl":
        if args[1] not in ("SIOCINQ", "FIONREAD"):
            raise ScriptSyntaxError(line, "ioctl: only SIOCINQ and FIONREAD")
        if not isinstance(args[2], tuple):
            raise ScriptSyntaxError(line, "ioctl: the expected count must be written as [n]")


def _parse_call(rest: str, line: int, text: str, time: EventTime) -> CallEvent:
    m = _CALL_RE.match(rest)
    if m is None:
        raise ScriptSyntaxError(line, f"cannot read {rest!r} as a call `name(args) = result`")
    name, arg_text, ret_text = m.groups()
    if name not in SUPPORTED_CALLS:
        raise ScriptSyntaxError(line, f"unsupported call {name!r}")
    args = tuple(_parse_arg(a, line) for a in _split_args(arg_text, line))
    _check_call(name, args, line)
    r = _RET_RE.match(ret_text.strip())
    if r is None:
        raise ScriptSyntaxError(line, f"cannot read the result {ret_text.strip()!r}")
    ret = int(r.group(1), 0)
    if not -(1 << 63) <= ret < 1 << 63:
        raise ScriptSyntaxError(line, f"result {r.group(1)} does not fit in 64 bits")
    note = r.group(3)
    if note is not None and not re.fullmatch(r"\s*\w+(?:\s+\w+)*\s*", note, re.ASCII):
        # packetdrill reads the note as words (letters, digits, _): `(flags O_RDWR O_NONBLOCK)`
        raise ScriptSyntaxError(line, f"the note ({note}) must be words only, as packetdrill's")
    errno = r.group(2)
    if errno is not None and errno not in ERRNOS:
        raise ScriptSyntaxError(line, f"unsupported errno {errno}")
    if (ret == -1) != (errno is not None):
        raise ScriptSyntaxError(line, "a result of -1 needs an errno, and only -1 takes one")
    if errno == "EWOULDBLOCK":
        errno = "EAGAIN"  # the same value on Linux
    return CallEvent(line, text, time, name, args, ret, errno)


def _parse_note(kind: str, body: str, line: int) -> Note:
    keys_text, _, reason = body.partition(" - ")
    keys = tuple(k.strip() for k in keys_text.split(",") if k.strip())
    allowed = NOTE_KEYS if kind == "lab" else KERNEL_NOTE_KEYS
    if not keys:
        raise ScriptSyntaxError(line, f"{kind}-differs note names no key")
    for key in keys:
        if key not in allowed:
            raise ScriptSyntaxError(
                line, f"unknown {kind}-differs key {key!r}; known: {', '.join(allowed)}"
            )
    return Note(line, kind, keys, reason.strip())


def _strip_comment(raw: str) -> str:
    cut = raw.find("//")
    return raw if cut < 0 else raw[:cut]


def parse_script(text: str, path: str = "") -> Script:
    """Parse a whole script; the first line outside the subset raises `ScriptSyntaxError`."""
    script = Script(path)
    seen_event = False
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            stripped = raw.strip()
            note = _NOTE_RE.match(stripped)
            if note:
                script.notes.append(_parse_note(note.group(1), note.group(2).strip(), number))
                continue
            line = _strip_comment(raw).strip()
            if not line:
                continue
            if "/*" in line:
                raise ScriptSyntaxError(number, "/* */ comments are not supported; use //")
            opt = _OPTION_LINE_RE.match(line)
            if opt:
                if seen_event:
                    raise ScriptSyntaxError(number, "--options must come before the first event")
                name, value = opt.groups()
                if name not in SCRIPT_OPTIONS:
                    raise ScriptSyntaxError(number, f"unknown option --{name}")
                script.options[name] = _int(value, number, f"--{name}")
                continue
            event = parse_event(line, number)
            _check_time_rules(event, script.events[-1] if script.events else None)
            script.events.append(event)
            seen_event = True
        except ScriptSyntaxError as exc:
            raise ScriptSyntaxError(exc.line, exc.message, path) from None
    return script


def _check_time_rules(event: Event, previous: Event | None) -> None:
    """packetdrill's rules for times: the first event at 0; `*` and `~` ranges only on outbound
    segments (the only events whose time is observed rather than chosen); absolute times never
    going backwards from one absolute event to the next."""
    t = event.time
    outbound = isinstance(event, PacketEvent) and not event.inbound
    if previous is None and (t.start != 0 or t.anytime):
        raise ScriptSyntaxError(event.line, "the first event must be at time 0")
    if t.anytime and not outbound:
        raise ScriptSyntaxError(event.line, "time * can only be used with outbound segments (>)")
    if t.end != t.start and not outbound:
        raise ScriptSyntaxError(
            event.line, "a time range (~) can only be used with outbound segments (>)"
        )
    if (
        previous is not None
        and not t.relative
        and not previous.time.relative
        and t.start < previous.time.start
    ):
        raise ScriptSyntaxError(
            event.line,
            f"time goes backwards from {previous.time.start / US_PER_S:g} s "
            f"to {t.start / US_PER_S:g} s",
        )


def parse_event(line: str, number: int) -> Event:
    """One event line (without its comment)."""
    m = _TIME_RE.match(line)
    if m is None:
        raise ScriptSyntaxError(number, f"a line must start with a time, not {line.split()[0]!r}")
    time = parse_time(m.group(1), number)
    rest = line[m.end() :].strip()
    if not rest:
        raise ScriptSyntaxError(number, "a time with no event")
    end = None
    if m.group(2) is not None:
        # packetdrill's `START...END call(...)`: a blocking call that returns at END (counted
        # from the same point as START: `+0...0.1` is 0.1 s after the previous event).
        if rest[0] in "<>`" or time.anytime or time.end != time.start:
            raise ScriptSyntaxError(
                number, "START...END is for a blocking call, after a plain time: +0...0.1 read(...)"
            )
        end = _seconds_to_us(m.group(2), number)
        if end < time.start:
            raise ScriptSyntaxError(number, f"the call ends ({m.group(2)}) before it starts")
    if rest[0] in "<>":
        return _parse_packet(rest, number, line, time)
    if rest[0] == "`":
        if len(rest) < 2 or not rest.endswith("`"):
            raise ScriptSyntaxError(number, "a shell command must be enclosed in backticks")
        return ShellEvent(number, line, time, rest[1:-1])
    return dataclasses.replace(_parse_call(rest, number, line, time), end=end)


def load_script(path: str | Path) -> Script:
    """Read and parse a script file; an unreadable file is a `ScriptSyntaxError` at line 0."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ScriptSyntaxError(0, f"cannot read the script: {reason}", str(path)) from None
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        raise ScriptSyntaxError(0, f"cannot read the script: {reason}", str(path)) from None
    return parse_script(text, str(path))
