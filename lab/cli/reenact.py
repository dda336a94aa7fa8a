"""`lab reenact CAPTURE`: perform a captured FTP client's session again, live, and compare replies.

The reenactment is `lab.replay.reenact`; this module finds the environment and prints the table.
Where it runs (needs root unless `--iface`): by default a lab topology with the embedded
pyftpdlib server (sample files hello.txt, 1M.bin, pub/10M.bin), exactly as `lab get` does; with
`--iface IF --addr CIDR --server HOST[:PORT]`, the lab stack on an interface you made, against
any server. Exit status: 0 when every reply code matches, 1 when some differ (or the session
broke off), 2 when the capture holds no FTP session, 77 without privileges.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from lab.cli.errors import ExitCode, UsageError
from lab.cli.stack_options import add_interface_arguments
from lab.cli.values import host_and_port, output_file, report_file
from lab.replay.reenact import Reenactment, Script, reenact, scripts_from_capture
from lab.units import count, parse_seconds


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("capture", type=Path, help="pcap or pcapng file with an FTP session")
    parser.add_argument("--session", type=count(0), default=0, help="which FTP session (default 0)")
    parser.add_argument(
        "--json",
        metavar="FILE",
        type=report_file,
        help="write the comparison to FILE; '-' prints it on stdout instead of the table",
    )
    parser.add_argument(
        "--timeout", type=parse_seconds, default=15.0, help="seconds for each wait (15)"
    )
    parser.add_argument(
        "--codec",
        choices=("mixed", "fast", "scapy"),
        default="mixed",
        help="frame encoder of the lab stack (mixed: Scapy for handshakes and commands)",
    )
    parser.add_argument("--kernel", action="store_true", help="kernel sockets, not the lab stack")
    parser.add_argument("--live-capture", type=output_file, help="pcapng of the live run")
    add_interface_arguments(parser, ipv6=False)
    parser.add_argument(
        "--server", type=host_and_port, help="with --iface: the server, HOST[:PORT]"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show the live dialogue")


def print_table(result: Reenactment, out: Any) -> None:
    s = result.script
    print(
        f"recorded: {s.client} -> {s.server}; live: {result.stack}, {result.control}"
        f" (capture {result.live_capture})",
        file=out,
    )
    print(f"  {'command':40} {'recorded':>12} {'live':>12}  data", file=out)
    for step in result.steps:
        rec = ",".join(map(str, step.recorded)) or "-"
        live = ",".join(map(str, step.live)) if step.sent else "not sent"
        mark = "  " if step.exact else ("~ " if step.codes_match else "!=")
        data = ""
        if step.recorded_bytes is not None:
            data = f"{step.recorded_bytes} / {step.live_bytes} bytes"
            if step.data_match is None:
                data += " (listing)"
            elif not step.data_match:
                data += " DIFFERENT"
        note = f"  ({step.note})" if step.note and not step.codes_match else ""
        print(f"{mark}{step.command[:40]:40} {rec:>12} {live:>12}  {data}{note}", file=out)
    matched = sum(st.codes_match for st in result.steps)
    exact = sum(st.exact for st in result.steps)
    print(
        f"{matched} of {len(result.steps)} replies match the recording ({exact} exactly;"
        " ~ marks 125 for 150 or the reverse)",
        file=out,
    )


def run(args: argparse.Namespace) -> int:
    if not args.capture.is_file():
        what = "no such file" if not args.capture.exists() else "not a file, so not a capture"
        print(f"lab reenact: {args.capture}: {what}", file=sys.stderr)
        return ExitCode.USAGE
    problem = _not_a_capture(args.capture)
    if problem is not None:
        print(f"lab reenact: {args.capture}: not a capture ({problem})", file=sys.stderr)
        return ExitCode.USAGE
    with tempfile.TemporaryDirectory(prefix="lab-reenact-") as tmp:
        scripts = scripts_from_capture(args.capture, Path(tmp))
        if not 0 <= args.session < len(scripts):
            print(
                f"lab reenact: {args.capture}: no FTP session {args.session}"
                f" ({len(scripts)} found)",
                file=sys.stderr,
            )
            return ExitCode.USAGE
        script = scripts[args.session]
        return _run_live(args, script)


def _not_a_capture(path: Path) -> str | None:
    """Why `path` is no pcap or pcapng file at all, or None when it is one: "no FTP session 0"
    would send the student looking for a session in a file that holds no packets."""
    from lab.capture.reader import CaptureReader

    reader = CaptureReader(path)
    next(iter(reader), None)
    if not reader.unreadable:
        return None
    return reader.problems[0].describe() if reader.problems else "no pcap or pcapng header"


def _run_live(args: argparse.Namespace, script: Script) -> int:
    from lab.cli.ftp import environment

    if args.iface is not None and args.server is None:
        print("lab reenact: --iface needs --server HOST[:PORT]", file=sys.stderr)
        return ExitCode.USAGE
    env_args = argparse.Namespace(
        capture=args.live_capture,
        iface=args.iface,
        addr=args.addr,
        gateway=args.gateway,
        kernel=args.kernel,
        codec=args.codec,
    )
    big = any((c.argument or "").endswith("50M.bin") for c in script.commands)
    log = (lambda text: print(text, file=sys.stderr, flush=True)) if args.verbose else None
    try:
        with environment(env_args, "reenact", big=big) as env:
            host, port = (
                args.server  # (host, port): lab.cli.values.host_and_port read it
                if args.server is not None
                else (str(env.details["server"]), 21)
            )
            result = reenact(
                script, env.transport, host, port, stack=env.stack, timeout=args.timeout, log=log
            )
            result.live_capture = str(env.capture)
    except UsageError as exc:
        print(f"lab reenact: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    to_stdout = args.json is not None and str(args.json) == "-"
    if to_stdout:
        sys.stdout.write(json.dumps(result.as_json(), indent=2) + "\n")
    else:
        print_table(result, sys.stdout)
    if args.json is not None and not to_stdout:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result.as_json(), indent=2) + "\n")
    return ExitCode.OK if result.all_match else ExitCode.FAILURE
