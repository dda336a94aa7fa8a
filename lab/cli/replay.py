"""`lab replay CAPTURE... [--out DIR] [--json FILE|-] [--policy first|last] [--plot FILE]
[--jobs N] [--dask ADDRESS]`.

The replay itself is `lab.replay.report.replay_capture` (many captures: `lab.replay.many`); this
module checks the options, prints the summaries, writes the JSON report and chooses the exit
status. A capture may be a file
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
import sys
from pathlib import Path

from lab.cli.errors import ExitCode, UsageError
from lab.cli.values import output_dir, plot_path, report_file
from lab.replay.report import ReplayResult, Status, print_summary, replay_capture
from lab.units import count

# What a replay found, as an exit status (the worst one for many captures).
EXIT_CODES: dict[Status, ExitCode] = {
    "complete": ExitCode.OK,
    "incomplete": ExitCode.FAILURE,
    "unreadable": ExitCode.USAGE,
}


def exit_code_of(result: ReplayResult) -> ExitCode:
    """0 every transfer complete, 1 some incomplete or the capture not read to its end, 2 the
    input is no capture at all."""
    return EXIT_CODES[result.status]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "capture",
        nargs="+",
        help="pcap or pcapng file (also gzip/xz/zstd-compressed, a FIFO or '-' for stdin), or a"
        " directory: its capture files, recursively",
    )
    parser.add_argument(
        "--out", metavar="DIR", type=output_dir, help="save each transfer's bytes here"
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=report_file,
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
        type=plot_path,
        help="write a ladder, a time-sequence graph and a state timeline of the biggest FTP data"
        " flow (else the first flow with data) to FILE-ladder.png, FILE-tsg.png and"
        " FILE-states.png, or to FILE with {kind} replaced by ladder, tsg and states",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no human summary")
    parser.add_argument(
        "--jobs",
        metavar="N",
        type=count(1),
        default=1,
        help="replay several captures in N processes (default 1)",
    )
    parser.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="replay the captures on a Dask cluster (scheduler ADDRESS; 'local' for Dask's local"
        " process scheduler); needs the lab[cluster] extra",
    )


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
    try:  # the output paths were tried as they were read (lab.cli.values)
        _check_inputs(captures)
    except UsageError as exc:
        print(f"lab replay: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    many = len(captures) > 1 or Path(captures[0]).is_dir() or args.jobs > 1 or args.dask is not None
    if many:
        if args.plot is not None:
            print("lab replay: --plot takes one capture", file=sys.stderr)
            return ExitCode.USAGE
        return _run_many(args, captures)
    return _run_one(args, captures[0])


def _run_one(args: argparse.Namespace, capture: str) -> int:
    # each transfer's sha256 appears in the JSON report only (the summary does not show it)
    digests = args.json is not None
    try:
        if capture == "-":
            result = replay_capture(
                sys.stdin.buffer, out_dir=args.out, policy=args.policy, name="-", digests=digests
            )
        else:
            result = replay_capture(
                Path(capture), out_dir=args.out, policy=args.policy, digests=digests
            )
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
    for line in result.damage_lines():
        print(f"lab replay: {capture}: {line}", file=sys.stderr)
    return exit_code_of(result)


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
                return ExitCode.USAGE
            except OSError as exc:
                print(f"lab replay: --dask {args.dask}: {exc}", file=sys.stderr)
                return ExitCode.USAGE
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
    codes = [EXIT_CODES[o["status"]] for o in outcomes]
    worst = max(codes, default=ExitCode.OK)
    document = {
        "captures": [
            {"capture": o["capture"], "exit_code": int(code), "report": o["report"]}
            for o, code in zip(outcomes, codes, strict=True)
        ],
        "exit_code": int(worst),
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
        print(
            f"{len(outcomes)} capture(s): {codes.count(ExitCode.OK)} complete,"
            f" {codes.count(ExitCode.FAILURE)} incomplete,"
            f" {codes.count(ExitCode.USAGE)} unreadable",
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
