"""Rootless mode, the CLI's side: which commands enter the user namespace, and how a user's
`lab down` and `lab clean` find what `lab up` left (the mechanism is in lab.topology.userns).

`prepare(command, args)` is the one hook the dispatcher calls, after parsing and before running
the command: None to go on (as root, always), or the exit status to end with. As an ordinary user:
- `--iface` is refused in one line with exit 77: it uses one of the host's interfaces, which no
  user namespace grants;
- `down` and `clean` work on the registry of holders (the processes that keep a user's `lab up`
  topologies), without entering anything;
- live commands (and `demo --live`, live exercises, `rootless`) enter the private namespaces; if
  the machine refuses user namespaces, one line says what was found and the fix, then exit 77
  (`demo --live` falls back to the in-memory demo, as it does without privileges).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from lab.cli.errors import ExitCode

# lab.topology.userns is imported by the functions that use it: importing it loads the
# lab.topology package and pyroute2 (~0.08 s), which `lab replay` and other offline commands,
# for which `prepare` returns at once, never need.

# Commands that build a topology (or run something that does) and so need the namespaces.
LIVE_COMMANDS = frozenset({"get", "put", "ls", "ping", "connect", "up", "reenact", "rootless"})
# Commands that act on topologies left up by earlier rootless commands: through the registry.
HOLDER_COMMANDS = frozenset({"down", "clean"})

IFACE_MESSAGE = (
    "--iface uses one of the host's interfaces, which only root may do; run it with sudo, or "
    "leave out --iface/--addr to let the lab build its own topology (that works without root)"
)


def _down(args: argparse.Namespace) -> int:
    from lab.topology.userns import holders, stop_holder

    found = holders()
    name = getattr(args, "name", None)
    if name is None:
        if len(found) != 1:
            ids = ", ".join(h.run_id for h in found) or "none"
            print(f"lab down: name one topology (up: {ids})", file=sys.stderr)
            return ExitCode.FAILURE
        chosen = found[0]
    else:
        matches = [h for h in found if name in (h.run_id, *h.names)]
        if not matches:
            print(f"lab down: no topology named {name!r}", file=sys.stderr)
            return ExitCode.FAILURE
        chosen = matches[0]
    removed = list(chosen.names) if stop_holder(chosen) else []
    if getattr(args, "json", False):
        print(json.dumps({"run_id": chosen.run_id, "removed": removed}, indent=2))
        return ExitCode.OK
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print(f"topology {chosen.run_id}: nothing left to remove")
    return ExitCode.OK


def _clean(args: argparse.Namespace) -> int:
    from lab.topology.userns import holders, stop_holder

    lines, removed = [], []
    for holder in holders():
        if stop_holder(holder):
            removed.append(holder.run_id)
            lines.append(f"removed topology {holder.run_id} (holder pid {holder.pid})")
        else:
            lines.append(f"removed state file {holder.path.name}")
    if getattr(args, "json", False):
        print(json.dumps({"topologies": removed, "lines": lines}, indent=2))
        return ExitCode.OK
    for line in lines or ["nothing to clean"]:
        print(line)
    return ExitCode.OK


def _stop_exercise_holders(folder: Path | None) -> None:
    """`lab exercise reset`: the topologies `lab exercise start` left up are held by holders;
    stop those named in the folders' records (reset itself then removes the records)."""
    from lab.cli.exercise import RECORD
    from lab.topology.userns import holders, stop_holder

    here = Path(".")
    folders = [folder] if folder is not None else [here, *here.glob("lab-*")]
    run_ids = set()
    for path in folders:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            run_ids.add(str(json.loads((path / RECORD).read_text())["run_id"]))
    for holder in holders():
        if holder.run_id in run_ids:
            stop_holder(holder)


# -- the one hook -----------------------------------------------------------------------------


def needs_namespace(command: str, args: argparse.Namespace) -> bool:
    if command in LIVE_COMMANDS:
        return True
    if command == "demo":
        return bool(getattr(args, "live", False))
    if command == "exercise" and getattr(args, "action", None) in ("start", "check", "reset"):
        if args.action == "reset":
            return True
        if getattr(args, "offline", False) or os.environ.get("LAB_MODE", "").lower() == "offline":
            return False  # the offline mode needs no namespace (lab.exercises.offline)
        from lab.exercises import UnknownExercise, load

        try:
            return load(args.name).privileged
        except UnknownExercise:
            return False
    return False


def prepare(command: str, args: argparse.Namespace) -> int | None:
    """Called by the CLI before running `command`: None to go on, or the exit status to end with.

    As root (even without capabilities: then the command says what is missing, as before), or
    for a command that needs no namespace: nothing.
    As an ordinary user: refuse `--iface`; run `down` and `clean` against the registry of
    holders; for live commands, enter the private namespaces (one line and 77 if refused)."""
    if os.geteuid() == 0:  # root (on the host, or already inside): root's own rules apply
        return None
    if command in HOLDER_COMMANDS:
        try:
            return _down(args) if command == "down" else _clean(args)
        except OSError as exc:  # the registry: e.g. a /tmp/lab-UID that another account made
            print(f"lab {command}: {exc}", file=sys.stderr)
            return ExitCode.FAILURE
    if not needs_namespace(command, args):
        return None
    from lab.topology.userns import (
        RootlessRefusedError,
        RootlessUnavailableError,
        enter,
        join_holder,
    )

    if getattr(args, "iface", None):
        print(f"lab {command}: {IFACE_MESSAGE}", file=sys.stderr)
        return ExitCode.NO_PRIVILEGES
    if command == "exercise" and args.action == "reset":
        _stop_exercise_holders(getattr(args, "dir", None))
    if command == "rootless" and getattr(args, "join", None):
        try:
            join_holder(args.join)
        except (LookupError, OSError, RootlessUnavailableError) as exc:
            print(f"lab rootless: {exc}", file=sys.stderr)
            return ExitCode.FAILURE
        args.joined = True  # for `lab rootless` itself: --join was done, not merely asked
        return None
    try:
        return enter()
    except (RootlessRefusedError, RootlessUnavailableError) as exc:
        print(f"lab {command}: {exc}", file=sys.stderr)
        if command in ("demo", "exercise"):
            # the live demo says so and falls back to the in-memory one; an exercise runs offline
            return None
        return ExitCode.NO_PRIVILEGES
