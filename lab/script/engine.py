"""Play a parsed script against a `Target`: the part the lab and kernel runners share.

The engine owns the script's view of the world, the way packetdrill does:

* **Addresses.** The socket under test is LOCAL_IP; the script plays REMOTE_IP. A listening socket
  is bound to SCRIPT_PORT (8080, packetdrill's default); `connect` goes to REMOTE_IP:SCRIPT_PORT.
  Inbound segments go to the 4-tuple of the last outbound segment seen, or, before any, from
  REMOTE_PORT to SCRIPT_PORT.
* **Relative sequence numbers.** The remote ISN is fixed by the script (`--remote_isn`, default
  1000000). The local ISN is learned, as packetdrill learns it, from the first outbound SYN the
  stack sends, whichever line meets it (0 until then, so the RSTs of a closed port read as the
  raw numbers they are), and again from a SYN with another seq (a new incarnation). Inbound seq
  counts from the remote ISN, inbound ack and SACK blocks from the local one; outbound the other
  way round. As in packetdrill, the seq written on the first `>` SYN line (the script's ISN,
  normally 0) shifts only segments that carry SYN: `> S 100:100(0)`, `< S. 0:0(0) ack 101`, then
  `> . 1:1(0) ack 1`.
* **Timestamps**, as packetdrill. An outbound TSval is not compared (its clock is the sender's),
  but remembered: the TSecr of an inbound segment with ACK names a TSval written on an earlier
  `>` line and is replaced by the value actually sent there; one that names none fails the run
  (packetdrill cannot infer it either), except 0, sent as it is. An outbound TSecr is not
  compared (packetdrill has not since 2018); `strict` compares it with the TSval the script sent.
* **Time**, as packetdrill has it. An event's time is absolute, or relative to when the previous
  event was done (an outbound segment's: when it was seen), except that an inbound segment after
  an inbound segment counts from that one's scripted time, so that consecutive injections do not
  add up delays. An outbound segment must be seen within its time (or `~` range) widened by the
  tolerance: the larger of `--tolerance` and `--tolerance-percent` of the time since the previous
  event's scripted time (packetdrill's defaults are 4 ms and 12.5 %; ours 25 ms and 12.5 %).
  `*` is any time.
* **Verdicts**, as packetdrill's by default: outbound segments are looked at only on `>` lines,
  each taking the oldest segment not yet matched, so a segment the script did not list fails the
  run only when a later `>` line meets it instead of its own segment. With `strict`, a segment
  sent more than the tolerance before any other line (or before the end) is a failure there.
  Segmentation is loose by default too (packetdrill's since 2018): a `>` line of N bytes may be
  met by several segments that add up to N (a kernel with TSO/GSO off, another MSS); `strict`
  wants one segment per line.

Blocking calls that cannot complete at once (accept with no connection, a blocking connect, a read
with no data) are left pending, the script goes on, and their result is checked when they return;
`START...END` says when that must be. The next call waits for a pending one (up to a second, as
packetdrill's), and one still pending a second after the end is a failure.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from typing import Protocol

from lab.script.parser import CallEvent, PacketEvent, Script, ShellEvent
from lab.wire.options import (
    EndOfOptions,
    MaxSegmentSize,
    NoOperation,
    SackBlocks,
    TcpOption,
    Timestamps,
    WindowScale,
    encode_options,
)
from lab.wire.segment import Flags, Segment

LOCAL_IP = "198.18.11.1"
REMOTE_IP = "198.18.11.2"
SCRIPT_PORT = 8080
REMOTE_PORT = 40000
DEFAULT_REMOTE_ISN = 1_000_000
DEFAULT_TOLERANCE = 25_000  # microseconds
DEFAULT_TOLERANCE_PERCENT = 12.5  # packetdrill's: the worst case of Linux's timer wheel
END_WAIT = 1_000_000  # how long a blocking call may still take after the last line
INBOUND_WINDOW = 65535  # the window of an inbound segment that gives none
MASK = 0xFFFFFFFF
TRACE = bool(os.environ.get("LAB_SCRIPT_TRACE"))  # print each matched outbound segment


class ScriptMismatchError(Exception):
    """The target did something other than the line says."""

    def __init__(self, event_line: int, text: str, reason: str, expected: str, actual: str):
        super().__init__(reason)
        self.event_line = event_line
        self.text = text
        self.reason = reason
        self.expected = expected
        self.actual = actual


class TargetUnavailableError(Exception):
    """The target cannot run here (no root, no TUN): the script is skipped with this reason."""


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """What a call returned; `value` is an output value (ioctl's count); `at` when a call that
    had to wait returned (microseconds since start; None for one that returned at once)."""

    ret: int
    errno: str | None = None
    value: int | None = None
    at: int | None = None


class Target(Protocol):
    """What the engine needs from the thing under test. Times are microseconds since start."""

    def now(self) -> int: ...

    def wait_until(self, t: int) -> None:
        """Let time pass to `t`; segments sent meanwhile are queued with their time."""

    def next_outbound(self, limit: int) -> tuple[int, Segment] | None:
        """The oldest queued outbound segment, waiting until `limit` for one; None if none."""

    def peek_outbound(self) -> tuple[int, Segment] | None:
        """The oldest queued outbound segment without waiting or removing it."""

    def inject(self, seg: Segment) -> None:
        """Deliver an inbound segment (from REMOTE_IP to LOCAL_IP) now."""

    def call(self, ev: CallEvent) -> CallOutcome | None:
        """Make a socket call now; None when a blocking call has to wait."""

    def completed_calls(self) -> list[tuple[CallEvent, CallOutcome]]:
        """Blocking calls that returned since the last look."""

    def shell(self, ev: ShellEvent) -> int:
        """Run a backtick command; its exit status (the lab runner raises ScriptMismatchError)."""

    def close(self) -> None: ...


@dataclass(slots=True)
class ScriptResult:
    """One script against one target: passed, failed at a line, skipped, or bad input."""

    path: str
    against: str
    status: str  # "pass", "fail", "skip", "error"
    line: int | None = None
    text: str = ""
    reason: str = ""
    expected: str = ""
    actual: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "skip")

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


_FLAG_ORDER = (
    (Flags.FIN, "F"),
    (Flags.SYN, "S"),
    (Flags.RST, "R"),
    (Flags.PSH, "P"),
    (Flags.ACK, "."),
    (Flags.URG, "U"),
    (Flags.ECE, "E"),
    (Flags.CWR, "W"),
)


def flags_text(flags: Flags) -> str:
    return "".join(letter for bit, letter in _FLAG_ORDER if flags & bit) or "-"


def options_text(options: tuple[TcpOption, ...] | None) -> str:
    if options is None:
        return " <...>"
    if not options:
        return ""
    parts: list[str] = []
    for o in options:
        match o:
            case NoOperation():
                parts.append("nop")
            case EndOfOptions():
                parts.append("eol")
            case MaxSegmentSize(mss):
                parts.append(f"mss {mss}")
            case WindowScale(shift):
                parts.append(f"wscale {shift}")
            case Timestamps(tsval, tsecr):
                parts.append(f"TS val {tsval} ecr {tsecr}")
            case SackBlocks(blocks):
                parts.append("sack " + " ".join(f"{a}:{b}" for a, b in blocks))
            case _:
                parts.append("sackOK" if type(o).__name__ == "SackPermitted" else repr(o))
    return " <" + ",".join(parts) + ">"


def segment_text(
    direction: str,
    flags: Flags,
    seq: int,
    length: int,
    ack: int | None,
    window: int | None,
    options: tuple[TcpOption, ...] | None,
) -> str:
    text = f"{direction} {flags_text(flags)} {seq}:{(seq + length) & MASK}({length})"
    if ack is not None:
        text += f" ack {ack}"
    if window is not None:
        text += f" win {window}"
    return text + options_text(options)


def expected_text(ev: PacketEvent) -> str:
    return segment_text(
        ">" if not ev.inbound else "<", ev.flags, ev.seq, ev.length, ev.ack, ev.window, ev.options
    )


def _meaningful(options: tuple[TcpOption, ...]) -> list[TcpOption]:
    return [o for o in options if not isinstance(o, NoOperation | EndOfOptions)]


def _without_dsack(options: list[TcpOption], ack: int) -> list[TcpOption]:
    """`options` less a leading D-SACK block (RFC 2883: below the ACK, or inside the next block).

    Linux reports duplicates this way; a `dsack` note lets a script written without D-SACK pass.
    """
    out: list[TcpOption] = []
    for o in options:
        if isinstance(o, SackBlocks) and o.blocks:
            (left, right), rest = o.blocks[0], o.blocks[1:]
            below = (ack - right) & MASK < 1 << 31
            inside = (
                bool(rest)
                and (left - rest[0][0]) & MASK < 1 << 31
                and (rest[0][1] - right) & MASK < 1 << 31
            )
            if below or inside:
                if not rest:
                    while out and isinstance(out[-1], NoOperation):
                        out.pop()
                    continue
                o = SackBlocks(rest)
        out.append(o)
    return out


def _is_inbound(ev: PacketEvent | CallEvent | ShellEvent) -> bool:
    return isinstance(ev, PacketEvent) and ev.inbound


class Engine:
    """Runs one script against one target and returns its `ScriptResult`."""

    def __init__(
        self,
        script: Script,
        target: Target,
        against: str,
        *,
        tolerance: int,
        tolerance_percent: float = DEFAULT_TOLERANCE_PERCENT,
        relax: set[str] | None = None,
        strict: bool = False,
    ) -> None:
        self.script = script
        self.strict = strict
        self.target = target
        self.against = against
        self.tolerance = script.options.get("tolerance_usecs", tolerance)
        self.tolerance_percent = tolerance_percent
        self.relax = relax or set()
        self.remote_isn = script.options.get("remote_isn", DEFAULT_REMOTE_ISN) & MASK
        self.local_isn: int | None = None  # the stack's, from its first SYN
        self.script_isn: int | None = None  # the seq written on the first `>` SYN line
        self.tsvals: dict[int, int] = {}  # TSval written on a `>` line -> TSval actually sent
        self.ports = (REMOTE_PORT, SCRIPT_PORT)  # (remote, local) of inbound segments
        self.last_time = 0  # when the previous event was done
        self.previous: PacketEvent | CallEvent | ShellEvent | None = None
        self.previous_start = 0  # the previous event's scripted time
        self.pending: dict[int, CallEvent] = {}
        self.call_ends: dict[int, tuple[int, int]] = {}  # line -> (return time, tolerance)

    # -- relative <-> absolute ------------------------------------------------------------------

    def _local(self, rel: int, syn: bool = False) -> int:
        shift = (self.script_isn or 0) if syn else 0
        return (rel + (self.local_isn or 0) - shift) & MASK

    def _local_rel(self, seg: Segment) -> int:
        """An outbound segment's seq in the script's numbers."""
        shift = (self.script_isn or 0) if seg.flags & Flags.SYN else 0
        return (seg.seq - (self.local_isn or 0) + shift) & MASK

    def _observe(self, seg: Segment) -> None:
        """Learn the local ISN from an outbound SYN (a retransmission has the same seq)."""
        if seg.flags & Flags.SYN and seg.seq != self.local_isn:
            self.local_isn = seg.seq

    def _remote(self, rel: int) -> int:
        return (rel + self.remote_isn) & MASK

    def actual_text(self, seg: Segment) -> str:
        """An outbound segment in script syntax, with relative numbers."""
        options = tuple(self._relative_sack(o) for o in seg.options)
        ack = (seg.ack - self.remote_isn) & MASK if seg.flags & Flags.ACK or seg.ack else None
        return segment_text(
            ">", seg.flags, self._local_rel(seg), len(seg.payload), ack, seg.window, options
        )

    def inbound_segment(self, ev: PacketEvent) -> Segment:
        options: list[TcpOption] = []
        for o in ev.options or ():
            if isinstance(o, SackBlocks):
                syn = bool(ev.flags & Flags.SYN)
                o = SackBlocks(
                    tuple((self._local(a, syn), self._local(b, syn)) for a, b in o.blocks)
                )
            elif isinstance(o, Timestamps) and ev.flags & Flags.ACK and o.tsecr:
                live = self.tsvals.get(o.tsecr)
                if live is None:  # packetdrill's words
                    raise self._fail(
                        ev,
                        f"unable to infer live TS ecr for script TS ecr {o.tsecr}; no matching "
                        "or preceding outbound TS val",
                    )
                o = Timestamps(o.tsval, live)
            options.append(o)
        remote_port, local_port = self.ports
        return Segment(
            src_port=remote_port,
            dst_port=local_port,
            seq=self._remote(ev.seq),
            ack=self._local(ev.ack, bool(ev.flags & Flags.SYN)) if ev.ack is not None else 0,
            flags=ev.flags,
            window=ev.window if ev.window is not None else INBOUND_WINDOW,
            options=tuple(options),
            payload=bytes(ev.length),
        )

    # -- comparison -----------------------------------------------------------------------------

    def mismatch(self, ev: PacketEvent, seg: Segment) -> str | None:
        """Why `seg` is not the segment `ev` expects, or None when it is."""
        got_flags, want_flags = seg.flags, ev.flags
        if "psh" in self.relax:
            got_flags, want_flags = got_flags & ~Flags.PSH, want_flags & ~Flags.PSH
        if got_flags != want_flags and not (
            "rst-ack" in self.relax and ev.flags == Flags.RST | Flags.ACK and seg.flags == Flags.RST
        ):
            return f"flags {flags_text(seg.flags)}, expected {flags_text(ev.flags)}"
        if ev.flags & Flags.SYN and self.script_isn is None:
            self.script_isn = ev.seq
        rel_seq = self._local_rel(seg)
        # Linux probes a zero window with an empty segment at SND.UNA - 1, or, when the window
        # shrank under outstanding data, by retransmitting that data; the lab sends one byte.
        one_byte_at = (ev.seq + 1) & MASK if ev.length == 0 else ev.seq
        probe = "window-probe" in self.relax and len(seg.payload) == 1 and rel_seq == one_byte_at
        if rel_seq != ev.seq and not probe:
            return f"seq {rel_seq}, expected {ev.seq}"
        if len(seg.payload) != ev.length and not probe:
            return f"payload of {len(seg.payload)} bytes, expected {ev.length}"
        if ev.ack is not None and not (seg.rst and not seg.flags & Flags.ACK):
            rel_ack = (seg.ack - self.remote_isn) & MASK
            if rel_ack != ev.ack:
                return f"ack {rel_ack}, expected {ev.ack}"
        if ev.window is not None and "window" not in self.relax and seg.window != ev.window:
            return f"win {seg.window}, expected {ev.window}"
        if ev.options is not None:
            return self._options_mismatch(ev.options, seg.options, seg.ack)
        return None

    def _options_mismatch(
        self, want: tuple[TcpOption, ...], got: tuple[TcpOption, ...], ack: int
    ) -> str | None:
        want_abs: list[TcpOption] = []
        got_ts = next((o for o in got if isinstance(o, Timestamps)), None)
        for o in want:
            if isinstance(o, SackBlocks):
                o = SackBlocks(tuple((self._remote(a), self._remote(b)) for a, b in o.blocks))
            elif isinstance(o, Timestamps) and got_ts is not None:
                # TSval is the sender's clock; packetdrill compares no TSecr either (since 2018),
                # strict runs compare it with the TSval the script sent (RFC 7323 4.3).
                o = Timestamps(got_ts.tsval, o.tsecr if self.strict else got_ts.tsecr)
            elif isinstance(o, WindowScale) and "wscale" in self.relax:
                o = next((g for g in got if isinstance(g, WindowScale)), o)
            elif isinstance(o, MaxSegmentSize) and "mss" in self.relax:
                o = next((g for g in got if isinstance(g, MaxSegmentSize)), o)
            want_abs.append(o)
        got_list = list(got)
        if "dsack" in self.relax:
            got_list = _without_dsack(got_list, ack)
        if "option-order" in self.relax:
            same = sorted(map(repr, _meaningful(tuple(want_abs)))) == sorted(
                map(repr, _meaningful(tuple(got_list)))
            )
        else:
            # Word by word, as packetdrill compares them: the header's option bytes, padded to
            # a 32-bit word with zeros (EOL), so `<mss 1000,sackOK,eol,eol>` is what a stack
            # sends as mss and sackOK with padding.
            same = encode_options(tuple(want_abs)) == encode_options(tuple(got_list))
        if same:
            return None
        shown = tuple(self._relative_sack(o) for o in got_list)  # in the script's numbers
        return f"options{options_text(shown) or ' none'}, expected" + (
            options_text(want) or " none"
        )

    def _relative_sack(self, option: TcpOption) -> TcpOption:
        if not isinstance(option, SackBlocks):
            return option
        base = self.remote_isn
        return SackBlocks(tuple(((a - base) & MASK, (b - base) & MASK) for a, b in option.blocks))

    def _remember_tsval(self, ev: PacketEvent, seg: Segment) -> None:
        got = next((o for o in seg.options if isinstance(o, Timestamps)), None)
        if got is None:
            return
        want = next((o for o in ev.options or () if isinstance(o, Timestamps)), None)
        if want is not None:
            self.tsvals[want.tsval] = got.tsval

    # -- the run --------------------------------------------------------------------------------

    def _window(self, ev: PacketEvent | CallEvent | ShellEvent) -> tuple[int, int | None]:
        t = ev.time
        if t.anytime:
            return self.last_time, None
        base = 0
        if t.relative:
            anchored = _is_inbound(ev) and self.previous is not None and _is_inbound(self.previous)
            base = self.previous_start if anchored else self.last_time
        return base + t.start, base + t.end

    def tolerance_at(self, lo: int) -> int:
        """The tolerance of an event scripted at `lo`: `--tolerance`, or a percentage of the
        time since the previous event's scripted time when that is larger (packetdrill's
        timers may be late by 12.5 % of what they wait, Linux's timer wheel granularity)."""
        if self.previous is None:
            return self.tolerance
        return self._tolerance_over(lo - self.previous_start)

    def _tolerance_over(self, span: int) -> int:
        """`--tolerance`, or `--tolerance-percent` of `span` when that is larger."""
        return max(self.tolerance, int(self.tolerance_percent / 100 * span))

    def _await_pending(self) -> None:
        """Give blocking calls still under way up to END_WAIT to return, as packetdrill."""
        deadline = self.target.now() + END_WAIT
        while self.pending and self.target.now() < deadline:
            self.target.wait_until(min(deadline, self.target.now() + 1000))
            self._check_calls()

    def _fail(
        self,
        ev: PacketEvent | CallEvent | ShellEvent,
        reason: str,
        expected: str = "",
        actual: str = "",
    ) -> ScriptMismatchError:
        return ScriptMismatchError(ev.line, ev.text, reason, expected or ev.text, actual)

    def _check_unexpected(
        self, ev: PacketEvent | CallEvent | ShellEvent, at: int, where: str = "before this line"
    ) -> None:
        # Sent more than the tolerance before this line: the script should have listed it. (A
        # segment sent at the same moment may still be matched by the next `>` line, as in
        # packetdrill, which only looks at what was sent when it reaches a `>` line.)
        queued = self.target.peek_outbound()
        if queued is not None and queued[0] < at - self.tolerance:
            t, seg = queued
            self._observe(seg)
            raise self._fail(
                ev,
                f"unexpected outbound segment at {t / 1e6:.6f}s, {where}",
                expected=ev.text,
                actual=self.actual_text(seg),
            )

    def _check_calls(self) -> None:
        for ev, outcome in self.target.completed_calls():
            self.pending.pop(ev.line, None)
            self._check_outcome(ev, outcome)
            self._check_return_time(ev, self.target.now() if outcome.at is None else outcome.at)

    def _check_return_time(self, ev: CallEvent, at: int) -> None:
        """`START...END`: the call must return at END, within the tolerance (packetdrill's,
        with the percentage taken of END - START)."""
        expected = self.call_ends.pop(ev.line, None)
        if expected is None:
            return
        end, tolerance = expected
        if abs(at - end) > tolerance:
            raise self._fail(
                ev,
                f"{ev.name} returned at {at / 1e6:.6f}s, expected at {end / 1e6:.6f}s "
                f"(tolerance {tolerance / 1000:g} ms)",
                expected=f"returns at {end / 1e6:.6f}s",
                actual=f"returned at {at / 1e6:.6f}s",
            )

    def _check_outcome(self, ev: CallEvent, outcome: CallOutcome) -> None:
        got = f"{outcome.ret}" + (f" {outcome.errno}" if outcome.errno else "")
        want = f"{ev.ret}" + (f" {ev.errno}" if ev.errno else "")
        if got != want:
            raise self._fail(
                ev,
                f"{ev.name} returned {got}, expected {want}",
                expected=f"= {want}",
                actual=f"= {got}",
            )
        if outcome.value is not None and ev.name == "ioctl":
            want_value = ev.args[2]
            assert isinstance(want_value, tuple)
            if outcome.value != want_value[0]:
                raise self._fail(
                    ev,
                    f"ioctl reported {outcome.value} bytes, expected {want_value[0]}",
                    expected=f"[{want_value[0]}]",
                    actual=f"[{outcome.value}]",
                )

    def _step(self, ev: PacketEvent | CallEvent | ShellEvent) -> None:
        lo, hi = self._window(ev)
        try:
            self._step_at(ev, lo, hi)
        finally:
            self.previous, self.previous_start = ev, lo

    def _step_at(self, ev: PacketEvent | CallEvent | ShellEvent, lo: int, hi: int | None) -> None:
        if isinstance(ev, PacketEvent) and not ev.inbound:
            self._expect(ev, lo, hi)
            return
        self.target.wait_until(lo)
        self._check_calls()
        if self.strict:
            self._check_unexpected(ev, lo)
        if isinstance(ev, PacketEvent):
            self.target.inject(self.inbound_segment(ev))
        elif isinstance(ev, CallEvent):
            # As packetdrill, a call waits (up to a second) for a blocking call still under
            # way: `+0...0.1 accept(...)` then `read(4, ...)` reads from the accepted socket.
            self._await_pending()
            if ev.end is not None:
                end = lo - ev.time.start + ev.end
                self.call_ends[ev.line] = (end, self._tolerance_over(end - lo))
            outcome = self.target.call(ev)
            if outcome is None:
                self.pending[ev.line] = ev
            else:
                self._check_outcome(ev, outcome)
                self._check_return_time(ev, self.target.now())
        else:
            status = self.target.shell(ev)
            if status != 0:
                raise self._fail(ev, f"shell command exited with status {status}")
        # The next relative time counts from when this happened (later than `lo` on a loaded
        # machine against the kernel; exactly `lo` on virtual time).
        self.last_time = max(lo, self.target.now())
        self._check_calls()

    def _expect(self, ev: PacketEvent, lo: int, hi: int | None) -> None:
        tolerance = self.tolerance_at(lo)
        limit = None if hi is None else hi + tolerance
        until = lo + 600_000_000 if limit is None else limit
        got = self.target.next_outbound(until)
        self._check_calls()
        if got is None:
            raise self._fail(ev, "expected outbound segment was not sent", actual="(nothing)")
        t, seg = got
        self._observe(seg)
        why = self.mismatch(ev, seg)
        if why is not None and not self.strict and len(seg.payload) < ev.length:
            t, seg = self._gather(ev, t, seg, until)
            why = self.mismatch(ev, seg)
        if why is not None:
            raise self._fail(ev, why, actual=self.actual_text(seg))
        if limit is not None and (t < lo - tolerance or t > limit):
            window = f"{lo / 1e6:.6f}s" if hi == lo else f"{lo / 1e6:.6f}s..{(hi or 0) / 1e6:.6f}s"
            raise self._fail(
                ev,
                f"sent at {t / 1e6:.6f}s, expected at {window} (tolerance {tolerance / 1000:g} ms)",
                actual=self.actual_text(seg) + f" at {t / 1e6:.6f}s",
            )
        if TRACE:
            print(f"  {t / 1e6:10.6f} {self.actual_text(seg)}", file=sys.stderr)
        self._remember_tsval(ev, seg)
        self.ports = (seg.dst_port, seg.src_port)
        # The next relative time counts from now, when this line is done (as packetdrill's).
        self.last_time = max(t, self.target.now())

    def _gather(self, ev: PacketEvent, t: int, first: Segment, limit: int) -> tuple[int, Segment]:
        """Loose segmentation, packetdrill's default since 2018: a `>` line of N bytes may be
        met by the stack's segmentation of them (TSO/GSO off, or another MSS), the segments
        that follow `first` in sequence until N bytes. Each must carry the same header fields
        but FIN, PSH and CWR, and every one but the last as many bytes as the one before it.
        They are judged as one segment: the first one's seq, the last one's header and time.
        """
        parts = [first]
        total = len(first.payload)
        loose = Flags.FIN | Flags.PSH | Flags.CWR
        while total < ev.length:
            got = self.target.next_outbound(limit)
            if got is None:
                break
            t, seg = got
            self._observe(seg)
            prev = parts[-1]
            why = None
            if seg.seq != (prev.seq + len(prev.payload)) & MASK:
                why = "does not follow the one before it"
            elif (seg.flags & ~loose, seg.ack, seg.window) != (
                prev.flags & ~loose,
                prev.ack,
                prev.window,
            ):
                why = "has other flags, ack or window than the one before it"
            elif total + len(seg.payload) < ev.length and len(seg.payload) != len(prev.payload):
                why = f"carries {len(seg.payload)} bytes, the one before it {len(prev.payload)}"
            if why is not None:
                raise self._fail(
                    ev,
                    f"segment {len(parts) + 1} of the {ev.length} bytes {why}",
                    actual=" + ".join(self.actual_text(p) for p in [*parts, seg]),
                )
            parts.append(seg)
            total += len(seg.payload)
        payload = b"".join(p.payload for p in parts)
        return t, dataclasses.replace(parts[-1], seq=first.seq, payload=payload)

    def run(self) -> ScriptResult:
        ev: PacketEvent | CallEvent | ShellEvent | None = None
        try:
            for ev in self.script.events:
                self._step(ev)
            last = self.script.events[-1] if self.script.events else None
            if last is not None:
                if self.strict:
                    # Anything sent up to the tolerance after the last line is unlisted.
                    self.target.wait_until(self.last_time + self.tolerance)
                    self._check_unexpected(
                        last, self.target.now() + self.tolerance, "after the last line"
                    )
                self._check_calls()
                # A blocking call may return just after its last segment was seen (against the
                # kernel the thread still has to wake up): give it a second, as packetdrill.
                self._await_pending()
                if self.pending:
                    ev = next(iter(self.pending.values()))
                    raise self._fail(ev, f"{ev.name} never returned", actual="(still blocked)")
        except ScriptMismatchError as failure:
            return ScriptResult(
                self.script.path,
                self.against,
                "fail",
                failure.event_line,
                failure.text,
                failure.reason,
                failure.expected,
                failure.actual,
            )
        except Exception as exc:  # the target itself broke: report it at the line, no traceback
            line, text = (ev.line, ev.text) if ev is not None else (0, "")
            return ScriptResult(
                self.script.path,
                self.against,
                "fail",
                line,
                text,
                f"the {self.against} target raised {type(exc).__name__}: {exc}",
                text,
                f"{type(exc).__name__}: {exc}",
            )
        return ScriptResult(self.script.path, self.against, "pass")
