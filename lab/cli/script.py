"""`lab script FILE... [--against lab|kernel|both] [--tolerance 25ms] [--tolerance-percent 12.5]
[--strict] [--json]`.

Each script is parsed first (all of them, before anything runs: a typo in the fifth file should not
cost the first four runs), then played against each target. For each run it prints `pass`, or the
first line that differed with expected and actual side by side. Exit 0 when every run passed (or
was skipped with a reason), 1 when any failed, 2 for bad input.

`LAB_SCRIPT_TRACE=1` prints every outbound segment as it is matched (time, then the segment in
script syntax) on stderr: the quickest way to see what a stack really sent.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from lab.cli.errors import ExitCode
from lab.script.engine import DEFAULT_TOLERANCE, DEFAULT_TOLERANCE_PERCENT, ScriptResult
from lab.script.parser import Script, ScriptSyntaxError, load_script
from lab.script.run import run_scripts
from lab.units import parse_duration, parse_percent_points


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run packetdrill-style scripts against the lab's TCP (in memory, virtual time) and/or "
        "the Linux kernel (TUN device in a lab namespace, as root)."
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="script files (.pkt)")
    parser.add_argument("--against", choices=("lab", "kernel", "both"), default="lab")
    parser.add_argument(
        "--tolerance",
        type=parse_duration,
        default=DEFAULT_TOLERANCE,
        help="timing tolerance of outbound segments (default 25ms)",
    )
    parser.add_argument(
        "--tolerance-percent",
        type=parse_percent_points,
        default=DEFAULT_TOLERANCE_PERCENT,
        metavar="P",
        help="or P%% of the time since the previous event, when larger (default 12.5, "
        "packetdrill's)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on any outbound segment the script does not list, wherever it comes (by "
        "default, as packetdrill, segments are looked at only on > lines)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def format_result(result: ScriptResult) -> list[str]:
    head = f"{result.path} [{result.against}]: {result.status}"
    if result.status == "skip":
        return [f"{head} ({result.reason})"]
    if result.status == "pass":
        return [head]
    lines = [
        f"{head} at line {result.line}: {result.reason}",
        f"  line {result.line}: {result.text}",
    ]
    width = max(len(result.expected), 8)
    lines.append(f"  {'expected':<{width}} | actual")
    lines.append(f"  {result.expected:<{width}} | {result.actual}")
    return lines


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    scripts: list[Script] = []
    for path in args.files:
        try:
            scripts.append(load_script(path))
        except ScriptSyntaxError as exc:
            if args.json:
                print(json.dumps({"error": str(exc), "path": exc.path, "line": exc.line}))
            else:
                print(exc, file=sys.stderr)  # FILE:LINE: message, one line
            return ExitCode.USAGE
    previous = None
    if args.against != "lab" and threading.current_thread() is threading.main_thread():
        # SIGTERM takes the same path as Ctrl-C, so the namespace is removed either way.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        results = run_scripts(
            scripts,
            args.against,
            args.tolerance,
            tolerance_percent=args.tolerance_percent,
            strict=args.strict,
        )
    except KeyboardInterrupt:
        print("lab script: interrupted; namespaces removed", file=sys.stderr)
        return ExitCode.INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if args.json:
        print(
            json.dumps(
                {
                    "results": [r.as_dict() for r in results],
                    "passed": all(r.passed for r in results),
                },
                indent=2,
            )
        )
    else:
        for result in results:
            for line in format_result(result):
                print(line)
        failed = sum(1 for r in results if not r.passed)
        skipped = sum(1 for r in results if r.status == "skip")
        print(
            f"{len(results) - failed - skipped} of {len(results)} runs passed"
            + (f", {skipped} skipped (reasons above)" if skipped else "")
            + (f", {failed} failed" if failed else "")
        )
    return ExitCode.OK if all(r.passed for r in results) else ExitCode.FAILURE
