"""`lab replay CAPTURE [--out DIR] [--json FILE|-] [--policy first|last] [--plot FILE]`.

The replay itself is `lab.replay.report.replay_capture`; this module prints its summary, writes
the JSON report and chooses the exit status: 0 when every transfer is complete, 1 when some are
not, 2 when the input cannot be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from lab.cli.errors import ExitCode
from lab.replay.report import ReplayResult, replay_capture
from lab.viz.paths import picture_path


def exit_code_of(result: ReplayResult) -> ExitCode:
    """0 every transfer complete, 1 some incomplete, 2 the capture is unreadable."""
    if result.unreadable:
        return ExitCode.USAGE
    return ExitCode.OK if result.complete else ExitCode.FAILURE


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
        type=picture_path,
        help="write a ladder, a time-sequence graph and a state timeline of the biggest FTP data"
        " flow (else the first flow with data) to FILE-ladder.png, FILE-tsg.png and"
        " FILE-states.png, or to FILE with {kind} replaced by ladder, tsg and states",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no human summary")


def run(args: argparse.Namespace) -> int:
    path = Path(args.capture)
    if not path.is_file():
        print(f"lab replay: {path}: no such file", file=sys.stderr)
        return ExitCode.USAGE
    try:
        result = replay_capture(path, out_dir=args.out, policy=args.policy)
    except OSError as exc:
        print(f"lab replay: {exc}", file=sys.stderr)
        return ExitCode.USAGE
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
    return exit_code_of(result)


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
