"""`lab demo --live` (what `make demo` runs): a real FTP download through the hand-built stack.

It builds the topology, starts the embedded pyftpdlib in the server namespace, and fetches a sample
file in active mode with our own TCP/IP: the control connection is our active open, EPRT tells the
server where to connect, our listener accepts the server's SYN and the reassembler takes the
stream. The control dialogue and every TCP state change are printed as they happen, then the
summary; the capture (with the state changes as frame comments) is written under captures/runs/.
Everything is torn down at the end.

Without privileges it cannot build namespaces: `run` then returns None after a one-line note, and
`lab demo` falls back to the in-memory demo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from pathlib import Path

from lab.cli.errors import ExitCode
from lab.cli.values import output_file
from lab.ftp.client import Client, DialogueArrow, FtpError, part_path
from lab.ftp.transport import LabTransport

DEFAULT_FILE = "1M.bin"
# Whether `lab demo` with neither --live nor --memory runs the live demo (when privileged). False
# for now: tests/test_demo.py calls `lab demo` without a flag and expects the in-memory demo.
LIVE_BY_DEFAULT = False


def wanted(args: argparse.Namespace) -> bool:
    """Whether `lab demo` was asked for the live demo."""
    if getattr(args, "memory", False):
        return False
    return bool(getattr(args, "live", False)) or LIVE_BY_DEFAULT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The live demo's options, added to `lab demo`'s parser."""
    how = parser.add_mutually_exclusive_group()
    how.add_argument(
        "--live", action="store_true", help="FTP download through the hand-built stack (root)"
    )
    how.add_argument("--memory", action="store_true", help="the in-memory demo (no privileges)")
    parser.add_argument("--file", default=DEFAULT_FILE, help="sample file for --live (1M.bin)")
    parser.add_argument(
        "--codec",
        choices=("mixed", "scapy", "fast"),
        default="mixed",
        help="frame encoder for --live: mixed (Scapy for handshakes and commands, struct for bulk)",
    )
    parser.add_argument(
        "--capture", type=output_file, help="pcapng for --live (default captures/runs/)"
    )


class _Clock:
    """Milliseconds since the demo started, for every printed line."""

    def __init__(self, silent: bool = False) -> None:
        self.start = time.monotonic()
        self.lock = threading.Lock()
        self.silent = silent  # -q and --json: the summary only

    def line(self, who: str, text: str) -> None:
        if self.silent:
            return
        with self.lock:
            print(f"{(time.monotonic() - self.start) * 1000:9.1f} ms  {who:7} {text}", flush=True)


def run(args: argparse.Namespace) -> int | None:
    """The live demo's exit code, or None when it cannot run here (no privileges)."""
    from lab.cli.stack_options import capture_path
    from lab.ftp.server import EmbeddedServer
    from lab.session import LabStack
    from lab.topology import PrivilegeError, require_privileges

    try:
        require_privileges()
    except PrivilegeError:
        print(
            "lab demo: the live demo needs root (namespaces, raw sockets); "
            "running the in-memory demo instead",
            file=sys.stderr,
        )
        return None
    as_json = bool(getattr(args, "json", False))
    clock = _Clock(silent=as_json or bool(getattr(args, "quiet", False)))
    capture = capture_path(args, "demo")

    def on_transition(direction: str, frame: bytes, transitions: list[str]) -> None:
        for text in transitions:
            clock.line("tcp", text)

    with LabStack.on_topology(codec=args.codec, capture=capture, observer=on_transition) as stack:
        assert stack.topology is not None
        info = stack.topology.info
        if not clock.silent:
            print(
                f"lab demo --live: topology {info.names.run_id}: kernel + pyftpdlib at "
                f"{info.server_ip} ({info.names.server_ns}), hand-built stack at "
                f"{stack.address} ({info.names.client_ns}, {args.codec} codec)",
                flush=True,
            )
        with EmbeddedServer(stack.topology, big=args.file == "50M.bin") as server:
            clock.line("server", f"pyftpdlib listening on {server.address}:21")

            def dialogue(direction: DialogueArrow, text: str) -> None:
                who = {">": "client", "<": "server", "*": "note"}[direction]
                clock.line(who, text)

            local = Path(capture).with_suffix("").with_name(Path(capture).stem + "-" + args.file)
            local = local.with_name(local.name.replace("/", "_"))
            client = Client(LabTransport(stack.runtime), timeout=10, dialogue=dialogue)
            try:
                client.connect(server.address)
                client.login()
                client.syst()
                result = client.retrieve(args.file, local)
                client.quit()
            except FtpError as exc:
                client.close()
                print(f"lab demo: {exc}", file=sys.stderr)
                return ExitCode.FAILURE
            finally:
                # The download is only for the digest: no .part left beside the captures.
                part_path(local).unlink(missing_ok=True)
            digest = hashlib.sha256(local.read_bytes()).hexdigest()
            ok = digest == server.digests.get(args.file)
            local.unlink()
        stats = result.stats
        frames = stack.frames_captured()
    if as_json:
        summary = {
            "ok": ok,
            "command": result.command,
            "remote": result.remote,
            "bytes": result.bytes,
            "seconds": round(result.seconds, 6),
            "mb_per_s": round(result.mb_per_s, 3),
            "mode": "active",
            "data_peer": f"{result.data_peer[0]}:{result.data_peer[1]}",
            "segments_in": stats.segments_received if stats is not None else None,
            "segments_out": stats.segments_sent if stats is not None else None,
            "retransmissions": stats.retransmissions if stats is not None else None,
            "sha256": digest,
            "capture": str(capture),
            "frames": frames,
        }
        print(json.dumps(summary, indent=2))
        return ExitCode.OK if ok else ExitCode.FAILURE
    print()
    print(
        f"{result.command} {result.remote}: {result.bytes} bytes in {result.seconds:.3f} s "
        f"({result.mb_per_s:.2f} MB/s), active mode, data connection from "
        f"{result.data_peer[0]}:{result.data_peer[1]}"
    )
    if stats is not None:
        print(
            f"data connection: {stats.segments_received} segments in, "
            f"{stats.segments_sent} out, {stats.retransmissions} retransmissions"
        )
    print(f"sha256 {digest[:16]}... {'matches the server file' if ok else 'DIFFERS'}")
    print(f"capture {capture} ({frames} frames; open it in Wireshark, comments = TCP states)")
    return ExitCode.OK if ok else ExitCode.FAILURE
