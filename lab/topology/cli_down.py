"""`lab down [NAME]`: remove a topology left up by `lab up` (NAME: run id or namespace name)."""

from __future__ import annotations

import argparse
import json
import sys

from lab.cli import EXIT_NO_PRIVILEGES
from lab.topology.privileges import PrivilegeError, require_privileges
from lab.topology.state import STATE_DIR, StateRecord, TopologyNames, list_states, remove_state
from lab.topology.topology import remove_topology


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        nargs="?",
        help="run id (e.g. 3f2a1c) or one of its namespace names; default: the only one up",
    )
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")


def _matches(record: StateRecord, name: str) -> bool:
    return name in (record.names.run_id, *record.all_names())


def run(args: argparse.Namespace) -> int:
    try:
        require_privileges()
    except PrivilegeError as exc:
        print(exc, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    records = [r for r in list_states(STATE_DIR).values() if r is not None]
    if args.name is None:
        detached = [r for r in records if r.owner is None]
        if len(detached) != 1:
            ids = ", ".join(r.names.run_id for r in detached) or "none"
            print(f"lab down: name one topology (up: {ids})", file=sys.stderr)
            return 1
        names = detached[0].names
        extras = detached[0].extra_namespaces
    else:
        found = [r for r in records if _matches(r, args.name)]
        extras = found[0].extra_namespaces if found else ()
        if found:
            names = found[0].names
        elif len(args.name) == 6 and all(c in "0123456789abcdef" for c in args.name):
            names = TopologyNames.for_run(args.name)  # no state file: still try the names
        else:
            print(f"lab down: no topology named {args.name!r}", file=sys.stderr)
            return 1
    removed = remove_topology(names, extras)
    remove_state(names.run_id, STATE_DIR)
    if args.json:
        print(json.dumps({"run_id": names.run_id, "removed": list(removed)}, indent=2))
        return 0
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print(f"topology {names.run_id}: nothing left to remove")
    return 0
