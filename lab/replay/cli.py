"""`lab replay CAPTURE... [--out DIR] [--json FILE|-] [--policy first|last] [--plot FILE]
[--jobs N] [--dask ADDRESS]`.

Reads each capture once, streaming (the reader, the decoder and the flow table hold no more than a
bounded window per flow), then reconstructs FTP from the finished flows. A capture may be a file
(pcap or pcapng, also gzip, xz or zstd compressed), a FIFO, `-` (stdin), or a directory (its
capture files, recursively); several captures run one at a time, in `--jobs N` processes or on
Dask (`lab.replay.many`), with one report per capture and the worst exit code.

Output paths are checked before any work (one-line usage errors, exit 2). Damage that stopped
the reading (a cut file, an impossible length, a broken compressed stream) or packets of a link
type replay does not decode are said on stderr, one line per kind with counts.

Exit status: 0 when every transfer is complete, 1 when some are not or the capture could not be
read to its end, 2 on a usage error or when the input cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from lab.capture.reader import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_DLT12,
    CapturedPacket,
    CaptureProblem,
    CaptureReader,
    as_packet,
)
from lab.replay.fastpath import fast_ethernet_segment
from lab.replay.flows import Flow, FlowTable
from lab.replay.ftp import FtpSession, half_anomalies, reconstruct, session_json
from lab.tcp.reassembly import OverlapPolicy

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_UNREADABLE = 2
EXIT_USAGE = 2

# Faults after which the rest of the capture was not read (or not decoded).
STOPPING_PROBLEMS = ("truncated", "impossible_length", "bad_compression", "bad_magic")
SUPPORTED_LINKTYPES = frozenset(
    (
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW_DLT12,
        LINKTYPE_RAW,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    )
)
PLOT_SUFFIXES = frozenset((".png", ".svg", ".pdf", ".jpg", ".jpeg"))


@dataclass(slots=True)
class ReplayResult:
    """Everything one replay found; `report` is the JSON document of issue 5."""

    capture: str
    reader: CaptureReader
    table: FlowTable
    sessions: list[FtpSession]
    packets: int
    start_ns: int
    unsupported_linktypes: dict[int, int] = field(default_factory=dict)  # link type: packets
    truncated_file: bool = False
    _cached_report: dict[str, Any] | None = None

    @property
    def report(self) -> dict[str, Any]:
        """The JSON document, made on first use: `lab replay -q` without `--json` never needs
        it, and on a capture of many flows it would be a quarter of the memory."""
        if self._cached_report is None:
            self._cached_report = _report(self, self.truncated_file)
        return self._cached_report

    @property
    def read_to_end(self) -> bool:
        """False when damage stopped the reading, or packets were of a link type not decoded."""
        stopped = any(self.reader.problem_counts.get(k) for k in STOPPING_PROBLEMS)
        return not stopped and not self.unsupported_linktypes

    @property
    def exit_code(self) -> int:
        if self.reader.unreadable:
            return EXIT_UNREADABLE
        if not self.read_to_end:
            return EXIT_INCOMPLETE
        transfers = [t for s in self.sessions for t in s.transfers]
        return EXIT_OK if all(t.complete for t in transfers) else EXIT_INCOMPLETE

    def damage_lines(self) -> list[str]:
        """One line per kind of capture damage, with counts (for stderr)."""
        lines = []
        firsts: dict[str, CaptureProblem] = {}
        for p in self.reader.problems:
            firsts.setdefault(p.kind, p)
        for kind, count in self.reader.problem_counts.items():
            first = firsts.get(kind)
            where = "" if first is None else f"; first {first.describe()}"
            lines.append(f"{kind} x{count}{where}")
        for linktype, count in sorted(self.unsupported_linktypes.items()):
            lines.append(f"unsupported_linktype x{count}: link type {linktype} is not decoded")
        return lines


def _flow_json(
    flow: Flow, roles: dict[int, str], policy: OverlapPolicy, cut: bool
) -> dict[str, Any]:
    state = "rst" if flow.reset else ("fin" if flow.closed else "open")
    return {
        "index": flow.index,
        "client": flow.key.client,
        "server": flow.key.server,
        "role": roles.get(flow.index, "other"),
        "packets": flow.packets,
        "bytes_client_to_server": flow.c2s.delivered,
        "bytes_server_to_client": flow.s2c.delivered,
        "handshake": flow.handshake_complete,
        "midstream": flow.midstream,
        "closed": state,
        "anomalies": {
            "client_to_server": half_anomalies(flow.c2s, flow, policy, cut),
            "server_to_client": half_anomalies(flow.s2c, flow, policy, cut),
        },
    }


def replay_capture(
    path: str | Path | BinaryIO,
    *,
    out_dir: str | Path | None = None,
    policy: OverlapPolicy = "first",
    name: str | None = None,
) -> ReplayResult:
    """Run the whole replay of one capture (a path, or a binary stream named `name`)."""
    if out_dir is not None:
        out_dir = Path(out_dir)  # notebooks and scripts pass plain strings
    reader = CaptureReader(path)
    table = FlowTable(policy)
    packets = 0
    start = 0
    unsupported: dict[int, int] = {}
    segment = table.segment
    try:
        for record in reader.records():
            if isinstance(record, CapturedPacket):
                ts, linktype, data = record.timestamp_ns, record.linktype, record.data
                orig_len = record.orig_len
            else:  # a classic pcap record: no packet object is made unless it is needed
                _number, ts, linktype, data, orig_len, _offset = record
            if packets == 0:
                start = ts
            packets += 1
            if linktype == LINKTYPE_ETHERNET:
                fast = fast_ethernet_segment(data, orig_len)
                if fast is not None:  # plain TCP (or nothing replay uses): taken as is
                    if fast:
                        segment(ts, *fast)
                    continue
            # everything else through the full decoder (imported on first use: start-up time)
            from lab.replay.decode import decode_packet

            pkt = as_packet(record)
            decoded = decode_packet(pkt)
            if (
                decoded.frame is None
                and decoded.dropped is None
                and pkt.linktype not in SUPPORTED_LINKTYPES
            ):
                unsupported[pkt.linktype] = unsupported.get(pkt.linktype, 0) + 1
            table.process(pkt, decoded)
        table.finish()
        cut = any(p.kind == "truncated" for p in reader.problems)
        sessions = reconstruct(table, out_dir=out_dir, truncated_file=cut)
        capture = name if name is not None else str(path)
        result = ReplayResult(capture, reader, table, sessions, packets, start, unsupported, cut)
    finally:
        table.store.close()
    return result


def _report(result: ReplayResult, cut: bool) -> dict[str, Any]:
    table = result.table
    roles: dict[int, str] = {}
    for s in result.sessions:
        roles[s.control.index] = "ftp-control"
        for t in s.transfers:
            if t.data_flow is not None:
                roles[t.data_flow.index] = "ftp-data"
    anomalies: list[dict[str, Any]] = []
    seen: set[tuple[str, int, int | None]] = set()
    for p in result.reader.problems:
        kind = "truncated_capture" if p.kind in ("truncated", "snaplen_cut") else p.kind
        if (kind, p.offset, p.packet_number) in seen:
            continue  # one place cut short is one truncated_capture, however it was noticed
        seen.add((kind, p.offset, p.packet_number))
        anomalies.append(
            {
                "kind": kind,
                "problem": p.kind,
                "offset": p.offset,
                "packet": p.packet_number,
                "detail": p.detail,
            }
        )
    if table.bad_checksum_packets:
        anomalies.append({"kind": "bad_checksum", "count": table.bad_checksum_packets})
    for linktype, count in sorted(result.unsupported_linktypes.items()):
        anomalies.append({"kind": "unsupported_linktype", "linktype": linktype, "packets": count})
    return {
        "capture": result.capture,
        "format": result.reader.format,
        "packets": result.packets,
        "tcp_packets": table.tcp_packets,
        "policy": table.policy,
        "start": result.start_ns / 1e9,
        "flows": [_flow_json(f, roles, table.policy, cut) for f in table.flows],
        "ftp_sessions": [session_json(s, result.start_ns) for s in result.sessions],
        "anomalies": anomalies,
        "capture_comments": [
            {"where": where, "text": text} for where, text in result.reader.file_comments
        ],
    }


def _summarise_anomalies(anomalies: list[dict[str, Any]]) -> str:
    parts = []
    for a in anomalies:
        kind = a["kind"]
        if kind == "gap":
            parts.append(f"gap {a['missing_bytes']} B in {len(a['ranges'])} range(s)")
        elif kind == "bad_checksum" and a.get("untrusted_ranges"):
            untrusted = sum(hi - lo for lo, hi in a["untrusted_ranges"])
            parts.append(f"bad_checksum x{a['count']} ({untrusted} B only from them: untrusted)")
        elif kind in ("retransmission", "bad_checksum") and "count" in a:
            parts.append(f"{kind} x{a['count']}")
        elif kind == "size_mismatch":
            parts.append(f"size_mismatch (expected {a['expected']} from {a['source']})")
        elif kind == "overlap_conflict" and "offset" in a:
            parts.append(f"overlap_conflict @{a['offset']}+{a['length']} ({a['winner']} kept)")
        else:
            parts.append(kind)
    return ", ".join(parts)


def print_summary(result: ReplayResult, out: TextIO) -> None:
    r = result.report
    print(
        f"{r['capture']}: {r['format'] or 'unreadable'}, {r['packets']} packets, "
        f"{len(r['flows'])} TCP flows, {len(r['ftp_sessions'])} FTP session(s)",
        file=out,
    )
    for p in result.reader.problems[:20]:
        print(f"  capture: {p.describe()}", file=out)
    for s in r["ftp_sessions"]:
        print(f"FTP {s['client']} -> {s['server']} (flow {s['control_flow']})", file=out)
        for d in s["dialogue"][:200]:
            arrow = ">" if d["from"] == "client" else "<"
            print(f"  {d['t']:10.6f} {arrow} {d['line'][:120]}", file=out)
        if len(s["dialogue"]) > 200:
            print(f"  ... {len(s['dialogue']) - 200} more lines", file=out)
        for t in s["transfers"]:
            status = "complete" if t["complete"] else "INCOMPLETE"
            arg = f" {t['argument']}" if t["argument"] else ""
            print(
                f"  {t['command']}{arg} [{t['mode'] or '?'}] {t['bytes']} bytes {status}"
                f"{' -> ' + t['saved_as'] if t['saved_as'] else ''}",
                file=out,
            )
            if t["anomalies"]:
                print(f"      anomalies: {_summarise_anomalies(t['anomalies'])}", file=out)
        if s["anomalies"]:
            print(f"  session anomalies: {_summarise_anomalies(s['anomalies'])}", file=out)
    others = [f for f in r["flows"] if f["role"] == "other"]
    if others:
        print(f"{len(others)} other TCP flow(s)", file=out)
    for f in others[:MAX_FLOW_LINES]:
        print(f"  {flow_line(f)}", file=out)
    if len(others) > MAX_FLOW_LINES:
        print(f"  ... {len(others) - MAX_FLOW_LINES} more flows (all in --json)", file=out)


MAX_FLOW_LINES = 1000


def flow_line(f: dict[str, Any]) -> str:
    """One TCP flow for people: endpoints, bytes each way, state reached, anomaly counts."""
    if f["closed"] == "open":
        state = "established" if f["handshake"] else ("midstream" if f["midstream"] else "open")
    else:
        state = {"fin": "closed (FIN)", "rst": "reset"}[f["closed"]]
    counts: dict[str, int] = {}
    for side in ("client_to_server", "server_to_client"):
        for a in f["anomalies"][side]:
            if a["kind"] in ("rst", "midstream"):
                continue  # already in the state
            counts[a["kind"]] = counts.get(a["kind"], 0) + int(a.get("count", 1))
    anomalies = ", ".join(f"{k} x{n}" for k, n in counts.items()) or "none"
    return (
        f"flow {f['index']} {f['client']} > {f['server']}: {f['bytes_client_to_server']} B >,"
        f" {f['bytes_server_to_client']} B <, {state}, anomalies: {anomalies}"
    )


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "capture",
        nargs="+",
        help="pcap or pcapng file (also gzip/xz/zstd-compressed, a FIFO or '-' for stdin), or a"
        " directory: its capture files, recursively",
    )
    parser.add_argument("--out", metavar="DIR", type=Path, help="save each transfer's bytes here")
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=Path,
        help="write the JSON report to FILE; '-' prints it on stdout instead of the summary",
    )
    parser.add_argument(
        "--policy",
        choices=("first", "last"),
        default="first",
        help="which copy wins when overlapping retransmissions differ (default: first)",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        help="write a ladder, a time-sequence graph and a state timeline of the biggest FTP data"
        " flow (else the first flow with data) to FILE-ladder.png, FILE-tsg.png and"
        " FILE-states.png, or to FILE with {kind} replaced by ladder, tsg and states",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no human summary")
    parser.add_argument(
        "--jobs",
        metavar="N",
        type=int,
        default=1,
        help="replay several captures in N processes (default 1)",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="replay the captures on a Dask cluster (scheduler ADDRESS; 'local' for Dask's local"
        " process scheduler); needs the lab[cluster] extra",
    )


class UsageError(Exception):
    """A bad option value, found before any work is done."""


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_output_file(option: str, path: Path) -> None:
    """FILE must be a file we can create or overwrite: not a folder, not under a file."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a directory, give a file name")
    base = _first_existing(path.parent)
    if not base.is_dir():
        raise UsageError(f"{option} {path}: {base} is not a directory")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: not writable")
    if not path.exists() and not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: {base} is not writable")


def _check_options(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give 1 or more")
    if args.json is not None and str(args.json) != "-":
        _check_output_file("--json", args.json)
    if args.out is not None:
        base = _first_existing(args.out)
        if not base.is_dir():
            what = "is a file" if base == args.out else f"{base} is not a directory"
            raise UsageError(f"--out {args.out}: {what}, give a directory")
        if not os.access(base, os.W_OK | os.X_OK):
            raise UsageError(f"--out {args.out}: {base} is not writable")
    if args.plot is not None:
        text = str(args.plot).replace("{kind}", "ladder")
        plot = Path(text)
        if plot.suffix and plot.suffix.lower() not in PLOT_SUFFIXES:
            known = ", ".join(sorted(PLOT_SUFFIXES))
            raise UsageError(f"--plot {args.plot}: unknown picture type {plot.suffix!r} ({known})")
        if not plot.parent.is_dir():
            raise UsageError(f"--plot {args.plot}: folder {plot.parent} does not exist")
        _check_output_file("--plot", plot)


def _check_inputs(captures: list[str]) -> None:
    if "-" in captures and len(captures) > 1:
        raise UsageError("'-' (stdin) can only be replayed alone")
    for c in captures:
        if c == "-":
            continue
        path = Path(c)
        if not path.exists():
            raise UsageError(f"{c}: no such file or directory")
        if path.is_dir():
            from lab.replay.many import capture_files

            if not capture_files(path):
                raise UsageError(f"{c}: a directory with no capture files in it")


def run(args: argparse.Namespace) -> int:
    captures: list[str] = [str(c) for c in args.capture]
    try:
        _check_options(args)
        _check_inputs(captures)
    except UsageError as exc:
        print(f"lab replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    many = len(captures) > 1 or Path(captures[0]).is_dir() or args.jobs > 1 or args.dask is not None
    if many:
        if args.plot is not None:
            print("lab replay: --plot takes one capture", file=sys.stderr)
            return EXIT_USAGE
        return _run_many(args, captures)
    return _run_one(args, captures[0])


def _run_one(args: argparse.Namespace, capture: str) -> int:
    try:
        if capture == "-":
            result = replay_capture(
                sys.stdin.buffer, out_dir=args.out, policy=args.policy, name="-"
            )
        else:
            result = replay_capture(Path(capture), out_dir=args.out, policy=args.policy)
    except OSError as exc:
        print(f"lab replay: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    to_stdout = args.json is not None and str(args.json) == "-"
    if to_stdout:
        sys.stdout.write(json.dumps(result.report, indent=2) + "\n")
    elif args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.report, indent=2) + "\n")
    if not args.quiet and not to_stdout:
        print_summary(result, sys.stdout)
    if args.plot is not None:
        _plot(result, args.plot)
    for line in result.damage_lines():
        print(f"lab replay: {capture}: {line}", file=sys.stderr)
    return result.exit_code


def _run_many(args: argparse.Namespace, captures: list[str]) -> int:
    from lab.replay.many import dask_map, process_pool_map, replay_many

    to_stdout = args.json is not None and str(args.json) == "-"
    close = None
    mapper = None
    try:
        if args.dask is not None:
            try:
                mapper, close = dask_map(None if args.dask == "local" else args.dask)
            except ImportError:
                print("lab replay: --dask needs Dask: pip install 'lab[cluster]'", file=sys.stderr)
                return EXIT_USAGE
            except OSError as exc:
                print(f"lab replay: --dask {args.dask}: {exc}", file=sys.stderr)
                return EXIT_USAGE
        elif args.jobs > 1:
            mapper, close = process_pool_map(args.jobs)
        outcomes = replay_many(
            captures,
            map=mapper,
            out_dir=args.out,
            policy=args.policy,
            summary=not args.quiet and not to_stdout,
        )
    finally:
        if close is not None:
            close()
    worst = max((o["exit_code"] for o in outcomes), default=EXIT_OK)
    document = {
        "captures": [
            {"capture": o["capture"], "exit_code": o["exit_code"], "report": o["report"]}
            for o in outcomes
        ],
        "exit_code": worst,
    }
    if to_stdout:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    for o in outcomes:
        if o["summary"]:
            sys.stdout.write(o["summary"])
        for line in o["errors"]:
            print(f"lab replay: {o['capture']}: {line}", file=sys.stderr)
    if not args.quiet and not to_stdout:
        codes = [o["exit_code"] for o in outcomes]
        print(
            f"{len(outcomes)} capture(s): {codes.count(0)} complete, {codes.count(1)} incomplete,"
            f" {codes.count(2)} unreadable",
        )
    return worst


def _plot(result: ReplayResult, path: Path) -> None:
    try:
        import importlib

        viz = importlib.import_module("lab.viz")
    except ImportError:
        print("lab replay: plots are not available yet (lab.viz is missing)", file=sys.stderr)
        return
    plot = getattr(viz, "plot_replay", None)
    if plot is None:
        print("lab replay: plots are not available yet (no lab.viz.plot_replay)", file=sys.stderr)
        return
    plot(result, path)
