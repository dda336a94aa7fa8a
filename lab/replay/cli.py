"""`lab replay CAPTURE [--out DIR] [--json FILE|-] [--policy first|last] [--plot FILE]`.

Reads the capture once, streaming (the reader, the decoder and the flow table hold no more than a
bounded window per flow), then reconstructs FTP from the finished flows. Exit status: 0 when every
transfer is complete, 1 when some are not, 2 when the input cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lab.capture.reader import CaptureReader
from lab.replay.decode import decode_packet
from lab.replay.flows import Flow, FlowTable
from lab.replay.ftp import FtpSession, half_anomalies, reconstruct, session_json
from lab.tcp.reassembly import OverlapPolicy

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_UNREADABLE = 2


@dataclass(slots=True)
class ReplayResult:
    """Everything one replay found; `report` is the JSON document of issue 5."""

    capture: str
    reader: CaptureReader
    table: FlowTable
    sessions: list[FtpSession]
    packets: int
    start_ns: int
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        if self.reader.unreadable:
            return EXIT_UNREADABLE
        transfers = [t for s in self.sessions for t in s.transfers]
        return EXIT_OK if all(t.complete for t in transfers) else EXIT_INCOMPLETE


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
    path: str | Path, *, out_dir: str | Path | None = None, policy: OverlapPolicy = "first"
) -> ReplayResult:
    """Run the whole replay of one capture file."""
    if out_dir is not None:
        out_dir = Path(out_dir)  # notebooks and scripts pass plain strings
    reader = CaptureReader(path)
    table = FlowTable(policy)
    packets = 0
    start = 0
    try:
        for pkt in reader:
            if packets == 0:
                start = pkt.timestamp_ns
            packets += 1
            table.process(pkt, decode_packet(pkt))
        table.finish()
        cut = any(p.kind == "truncated" for p in reader.problems)
        sessions = reconstruct(table, out_dir=out_dir, truncated_file=cut)
        result = ReplayResult(str(path), reader, table, sessions, packets, start)
        result.report = _report(result, cut)
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
    for p in result.reader.problems:
        kind = "truncated_capture" if p.kind in ("truncated", "snaplen_cut") else p.kind
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
    parser.add_argument("capture", help="pcap or pcapng file")
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


def run(args: argparse.Namespace) -> int:
    path = Path(args.capture)
    if not path.is_file():
        print(f"lab replay: {path}: no such file", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        result = replay_capture(path, out_dir=args.out, policy=args.policy)
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
    if result.reader.unreadable:
        for p in result.reader.problems:
            print(f"lab replay: {path}: {p.describe()}", file=sys.stderr)
    return result.exit_code


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
