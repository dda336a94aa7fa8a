"""`lab demo`: two in-memory TCP endpoints move a megabyte across a lossy, reordering wire.

Everything runs under a virtual clock (`lab.sim.simulation`), so the demo takes a second of wall
time however many retransmission timeouts the seeded fault schedule causes, and the same seed
prints the same story. The handshake and the teardown are printed segment by segment with the
state transitions of both sides; the bulk transfer in between is summed up in totals.

`lab.sim.transfer.Transfer` is the harness behind the demo; this module only narrates it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path
from typing import Any

from lab.cli.errors import ExitCode
from lab.cli.values import plot_path
from lab.link.impairment import Impairment
from lab.sim.transfer import CLIENT_IP, SERVER_IP, SERVER_PORT, Transfer, TransferResult
from lab.sim.wire import Side
from lab.tcp.connection import Connection, State
from lab.tcp.events import (
    ANNOUNCED,
    KIND,
    RESEND_WORDS,
    RecoveryEvent,
    Resent,
    StateChanged,
    describe_counts,
    describe_resends,
)
from lab.tcp.events import describe as describe_event
from lab.units import (
    format_duration,
    format_percent,
    parse_duration,
    parse_percent,
    parse_seed,
    size,
)
from lab.wire.segment import AddressedSegment

# Both copies of the data are held in memory, and 100 MB already takes minutes of wall time:
# more is refused as the command line is read, not with a MemoryError after building it.
MAX_SIZE = 100 * 10**6

# -- the command -------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    # One syntax for quantities in every command (lab.units): 1M, 5%, 10ms.
    parser.add_argument(
        "--size",
        type=size(0, MAX_SIZE),
        default=1_000_000,
        help="bytes to send (1M; e.g. 200k, 64KiB; at most 100M)",
    )
    parser.add_argument(
        "--loss", type=parse_percent, default=0.05, help="loss per packet (5%%; or 0.05)"
    )
    parser.add_argument("--reorder", type=parse_percent, default=0.05, help="reordering (5%%)")
    parser.add_argument("--seed", type=parse_seed, default=1, help="seed of the fault schedule")
    parser.add_argument(
        "--delay", type=parse_duration, default=5_000, help="one-way delay (5ms; bare number: ms)"
    )
    parser.add_argument(
        "--jitter",
        type=parse_duration,
        default=0,
        help="extra random delay up to this (e.g. 2ms; reorders too)",
    )
    parser.add_argument("--plain", action="store_true", help="no colours even on a terminal")
    parser.add_argument(
        "--plot",
        metavar="FILE",
        type=plot_path,
        help="write a ladder, a time-sequence graph and a state timeline of the connection to"
        " FILE-ladder.png, FILE-tsg.png and FILE-states.png (or FILE with {kind} replaced)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print only the totals, as one JSON object"
    )
    from lab.cli import live_demo  # --live, --memory and the live demo's options

    live_demo.add_arguments(parser)


class _Printer:
    """Rich on a terminal, plain lines otherwise (pipes, CI logs, tests, NO_COLOR); nothing at
    all when `silent` (--json prints its own object)."""

    def __init__(self, plain: bool, silent: bool = False) -> None:
        from lab.cli.main import use_colour

        self._console = None
        self.silent = silent
        if not plain and not silent and use_colour(sys.stdout):
            from rich.console import Console

            self._console = Console()

    def line(self, text: str, style: str = "") -> None:
        if self.silent:
            return
        if self._console is not None:
            self._console.print(
                text, style=style or None, markup=False, highlight=False, soft_wrap=True
            )
        else:
            print(text)


def _ms(us: int) -> str:
    return f"{us / 1000:10.3f} ms"


class _Narrator:
    """Prints the handshake and the teardown segment by segment, and every state change; with
    `verbose`, also each recovery event of either side (lab.tcp.events), which it counts always."""

    def __init__(self, printer: _Printer, transfer: Transfer, verbose: bool = False) -> None:
        self.printer = printer
        self.verbose = verbose
        # Every server connection (Transfer.find_servers, also looked for while a step sends:
        # the server's SYN,ACK comes after its state line) is listened to from then on.
        self.transfer = transfer
        self.listened = 0
        self.conns: dict[Side, Connection] = {"a": transfer.client}
        self.printed_trace: dict[Side, int] = {"a": 0, "b": 0}
        self.teardown = False
        self.data_segments = 0
        self.last_printed: AddressedSegment | None = None
        # Resends are counted by reason (their sum is the retransmissions), the rest by kind.
        self.recovery: dict[str, int] = {k: 0 for t, k in KIND.items() if t is not Resent}
        self.resent: dict[str, int] = dict.fromkeys(RESEND_WORDS, 0)
        self._listen("a", transfer.client)

    def _listen(self, side: Side, conn: Connection) -> None:
        def on_event(event: RecoveryEvent) -> None:
            if isinstance(event, Resent):
                self.resent[event.why] += 1
                if event.why in ANNOUNCED:
                    return  # -v has just told it: "fast retransmit: ...", "RTO after ..."
            else:
                self.recovery[KIND[type(event)]] += 1
            if self.verbose:
                self.printer.line(
                    f"{_ms(event.time)}  {self._names(side):6}  {describe_event(event, conn.iss)}",
                    "red",
                )

        conn.event_listener = on_event

    def _names(self, side: Side) -> str:
        return "client" if side == "a" else "server"

    def states(self) -> None:
        servers = self.transfer.find_servers()
        for conn in servers[self.listened :]:
            self._listen("b", conn)
            self.conns.setdefault("b", conn)  # its trace is the one printed
        self.listened = len(servers)
        for side, conn in self.conns.items():
            entries = conn.trace[self.printed_trace[side] :]
            self.printed_trace[side] = len(conn.trace)
            for entry in entries:
                if not isinstance(entry, StateChanged):
                    continue
                if side == "b" and (entry.old, entry.new) == (State.CLOSED, State.LISTEN):
                    # The listener has been in LISTEN since time 0 (printed then); the child
                    # connection passes through LISTEN only to take the SYN.
                    continue
                change = f"{entry.old.value} -> {entry.new.value}"
                self.printer.line(
                    f"{_ms(entry.time)}  {self._names(side):6}  state  {change}", "bold yellow"
                )

    def observe(self, now: int, event: str, side: Side, packet: AddressedSegment) -> None:
        self.states()
        if event in ("loss", "corrupt") and packet is self.last_printed:
            self.printer.line(
                f"{'':13}  ({'lost' if event == 'loss' else 'corrupted'} on the wire)"
            )
        if event != "send":
            return
        seg = packet.segment
        if seg.payload:
            self.data_segments += 1
        if seg.fin or seg.rst:
            self.teardown = True
        opening = ("b" not in self.conns) or any(
            c.state in (State.SYN_SENT, State.SYN_RECEIVED) for c in self.conns.values()
        )
        control = seg.syn or seg.fin or seg.rst or not seg.payload
        if (opening or self.teardown) and control:
            arrow = "client > server" if side == "a" else "server > client"
            style = "cyan" if side == "a" else "magenta"
            self.printer.line(f"{_ms(now)}  {arrow}  {seg.describe()}", style)
            self.last_printed = packet


def run(args: argparse.Namespace) -> int:
    from lab.cli import live_demo  # `make demo` runs `lab demo --live`: the FTP demo on the wire

    if live_demo.wanted(args):
        code = live_demo.run(args)
        if code is not None:
            return code
    as_json = bool(getattr(args, "json", False))
    printer = _Printer(args.plain, silent=as_json)
    # -q: the totals only, without the segment-by-segment story
    story = _Printer(args.plain, silent=as_json or bool(getattr(args, "quiet", False)))
    payload = random.Random(args.seed).randbytes(args.size)
    impairment = Impairment(
        loss=args.loss,
        reorder=args.reorder,
        delay=args.delay,
        jitter=args.jitter,
        seed=args.seed,
    )
    story.line(
        f"lab demo: {args.size} bytes from {CLIENT_IP} to {SERVER_IP}:{SERVER_PORT} over a memory"
        f" wire (loss {format_percent(args.loss)}, reorder {format_percent(args.reorder)},"
        f" delay {format_duration(args.delay)},"
        f" seed {args.seed})",
        "bold",
    )
    transfer = Transfer(payload, b"", impairment, seed=args.seed)
    narrator = _Narrator(story, transfer, verbose=bool(getattr(args, "verbose", False)))
    story.line(
        f"{_ms(0)}  server  state  {State.LISTEN.value} on port {SERVER_PORT} (the listener)",
        "bold yellow",
    )
    transfer.sim.observer = narrator.observe
    recorder = None
    if args.plot is not None:
        from lab.viz.records import WireRecorder

        recorder = WireRecorder()

        def both(now: int, event: str, side: Side, packet: AddressedSegment) -> None:
            narrator.observe(now, event, side, packet)
            recorder(now, event, side, packet)

        transfer.sim.observer = both
    result = transfer.run(after_step=lambda sim: narrator.states())
    narrator.states()

    # Every server connection of the run: one the listener never handed over (a handshake
    # that did not finish) still sent segments and resent its SYN,ACK.
    client_sent = result.client.stats.segments_sent
    server_sent = sum(c.stats.segments_sent for c in result.servers)
    retransmissions = result.retransmissions
    # RSTs the endpoints sent for segments no connection owned (a closed port, or a side whose
    # connection has already gone): on the wire, but no connection's count.
    resets = result.client_endpoint.stats.rst_sent + result.server_endpoint.stats.rst_sent
    faults = ", ".join(f"{k} {v}" for k, v in sorted(result.wire.stats.faults.items())) or "none"
    done = result.data_done_at if result.data_done_at is not None else result.finished_at
    intact = result.received_by_server == payload
    if recorder is not None:
        _plot(recorder, result, args.plot)
    if as_json:
        summary = {
            "ok": intact and result.both_closed,
            "size": args.size,
            "seed": args.seed,
            "loss": args.loss,
            "reorder": args.reorder,
            "delay_us": args.delay,
            "jitter_us": args.jitter,
            "segments": result.wire.stats.sent,
            "segments_client": client_sent,
            "segments_server": server_sent,
            "segments_rst_no_connection": resets,
            "data_segments": narrator.data_segments,
            "retransmissions": retransmissions,
            "retransmissions_by_kind": narrator.resent,
            "recovery": narrator.recovery,
            "faults": dict(sorted(result.wire.stats.faults.items())),
            "delivered": len(result.received_by_server),
            "intact": intact,
            "both_closed": result.both_closed,
            "delivered_at_us": done,
            "closed_at_us": result.finished_at,
            "sha256": hashlib.sha256(payload).hexdigest(),
        }
        print(json.dumps(summary, indent=2))
        return ExitCode.OK if summary["ok"] else ExitCode.FAILURE
    story.line("")
    printer.line("totals", "bold")
    without = f", {resets} RST{'s' if resets != 1 else ''} for no connection" if resets else ""
    printer.line(
        f"  segments        {result.wire.stats.sent} on the wire (client {client_sent},"
        f" server {server_sent}{without}; {narrator.data_segments} carried data)"
    )
    why = describe_resends(narrator.resent)
    printer.line(f"  retransmissions {retransmissions}" + (f" ({why})" if why else ""))
    printer.line(f"  recovery        {_recovery_text(narrator.recovery)}")
    printer.line(f"  faults          {faults}")
    printer.line(f"  bytes           {len(result.received_by_server)} of {len(payload)} delivered")
    printer.line(
        f"  virtual time    {done / 1000:.3f} ms to deliver,"
        f" {result.finished_at / 1000:.3f} ms until both sides CLOSED"
    )
    if not intact:
        received = result.received_by_server
        short = len(received) < len(payload) and payload.startswith(received)
        what = (
            f"only {len(received)} of {len(payload)} bytes arrived (the connection gave up)"
            if short
            else "the bytes received differ from the bytes sent"
        )
        printer.line(f"  verify          FAILED: {what}", "red")
        return ExitCode.FAILURE
    if not result.both_closed:
        printer.line("  verify          FAILED: the connections did not both close", "red")
        return ExitCode.FAILURE
    digest = hashlib.sha256(payload).hexdigest()[:16]
    printer.line(
        f"  verify          OK: {len(payload)} bytes identical (sha256 {digest}...)", "green"
    )
    return ExitCode.OK


# Each kind in words: (one, several), so that the line reads "1 RTO" and "3 RTOs".
_RECOVERY_WORDS = {
    "loss_detected": ("loss detected", "losses detected"),
    "fast_retransmits": ("fast retransmit", "fast retransmits"),
    "rtos": ("RTO", "RTOs"),
    "tail_loss_probes": ("tail-loss probe", "tail-loss probes"),
    "zero_window_probes": ("zero-window probe", "zero-window probes"),
    "cwnd_changes": ("cwnd change", "cwnd changes"),
}


def _recovery_text(counts: dict[str, int]) -> str:
    """ "3 RTOs, 11 fast retransmits, ..." for the kinds that happened; -v tells each one."""
    return describe_counts(counts, _RECOVERY_WORDS) or "none needed"


def _plot(recorder: Any, result: TransferResult, path: Path) -> None:
    """The three pictures; the ladder drawn to time, since the memory wire knows every arrival
    (reordering shows as crossing arrows, each timeout as a break)."""
    from lab.viz.paths import picture_paths
    from lab.viz.pictures import save, state_timeline, time_sequence
    from lab.viz.timed import timed_ladder

    conns = [result.client] + ([result.server] if result.server is not None else [])
    conv = recorder.conversation(conns, title="lab demo: in-memory wire")
    paths = picture_paths(path)
    written = {
        "ladder": save(timed_ladder(conv)[0], paths["ladder"]),
        "tsg": save(time_sequence(conv)[0], paths["tsg"]),
        "states": save(state_timeline(conv)[0], paths["states"]),
    }
    names = ", ".join(str(p) for p in written.values())
    print(f"lab demo: pictures written to {names}", file=sys.stderr)
