"""`lab rootless [COMMAND...]`: run COMMAND (default: a shell) where live commands run as a user.

Every live command enters the lab's private user namespace by itself; this command is for what
must start inside it instead: Jupyter (its kernels have threads before a notebook could unshare,
so the kernel has to be born inside), a shell to look around with `ip netns`, or a test run. As
root it just runs COMMAND: root needs no namespace of its own.

`--join RUN`: a user's `lab up` keeps its topology in a holder process's namespaces; this runs
COMMAND in those (where `ip netns` shows the topology's namespaces), instead of in fresh ones.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from lab.cli.errors import ExitCode
from lab.topology.userns import is_rootless, wait_forwarding


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--join",
        metavar="RUN",
        help="as a user: run COMMAND where topology RUN (left up by lab up) is, e.g. "
        "lab rootless --join RUN ip netns exec lab-RUN-cli python3 mine.py",
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="the command and its arguments (default: $SHELL)"
    )


def run(args: argparse.Namespace) -> int:
    if args.join is not None and not getattr(args, "joined", False):
        # Root (on the host, or already inside a lab namespace): no holder was joined, and
        # running COMMAND here would pretend it runs where topology RUN is.
        print(
            f"lab rootless: --join is for an ordinary user's topologies (kept in a user "
            f"namespace); as root, topology {args.join}'s namespaces are on the host: "
            f"ip netns exec lab-{args.join}-cli COMMAND",
            file=sys.stderr,
        )
        return ExitCode.FAILURE
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        command = [os.environ.get("SHELL") or "/bin/sh"]
    if is_rootless() and getattr(args, "verbose", False):
        print("lab rootless: inside a private user namespace (uid 0 here)", file=sys.stderr)
    try:
        process = subprocess.Popen(command)
    except OSError as exc:
        print(f"lab rootless: {command[0]}: {exc.strerror}", file=sys.stderr)
        return ExitCode.NOT_FOUND
    # Waited for as the supervisor waits for us: a signal sent to this process alone reaches
    # COMMAND once (here, we are the namespace's PID 1, which a ^C would otherwise end with a
    # KeyboardInterrupt that kills COMMAND a quarter of a second later).
    code = process.returncode = os.waitstatus_to_exitcode(wait_forwarding(process.pid))
    return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it
