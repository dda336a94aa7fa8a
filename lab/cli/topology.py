"""`lab up`, `lab down` and `lab clean`: a topology left up for experiments, and its removal.

`lab up` builds the topology and leaves it up; `lab down [NAME]` removes one (NAME: run id or
namespace name); `lab clean` removes every lab namespace, veth and nftables table left by crashed
runs. A missing privilege raises `PrivilegeError`, which `lab.cli.main` turns into exit 77.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from lab.cli.errors import ExitCode
from lab.cli.values import ipv4_address
from lab.topology.clean import clean
from lab.topology.privileges import require_privileges
from lab.topology.state import (
    DEFAULT_CLIENT_IP,
    DEFAULT_PREFIXLEN,
    DEFAULT_SERVER_IP,
    STATE_DIR,
    StateRecord,
    TopologyNames,
    list_states,
    remove_state,
    state_path,
)
from lab.topology.topology import Topology, TopologyError, remove_topology
from lab.units import count


def configure_up(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server-ip", type=ipv4_address, default=DEFAULT_SERVER_IP, help="kernel address (server)"
    )
    parser.add_argument(
        "--client-ip", type=ipv4_address, default=DEFAULT_CLIENT_IP, help="lab stack address"
    )
    parser.add_argument(
        "--prefixlen", type=count(8, 30), default=DEFAULT_PREFIXLEN, help="8 to 30 (24)"
    )
    parser.add_argument("--json", action="store_true", help="print the topology as JSON")


def run_up(args: argparse.Namespace) -> int:
    topology = Topology(
        server_ip=args.server_ip, client_ip=args.client_ip, prefixlen=args.prefixlen
    )
    try:
        topology.up()  # PrivilegeError: exit 77 in lab.cli.main
    except TopologyError as exc:
        print(f"lab up: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    info = topology.detach()
    state = _state_file(info.run_id, topology)
    if args.json:
        print(json.dumps({"run_id": info.run_id, **asdict(info), "state": str(state)}, indent=2))
        return ExitCode.OK
    for line in info.describe():
        print(line)
    print(f"state {state}")
    print(f"remove with: lab down {info.run_id}")
    return ExitCode.OK


def _state_file(run_id: str, topology: Topology) -> Path:
    """The file that keeps a topology `lab up` left: root's state file, or as a user the record
    of the process that holds it (the state file in /run/lab vanishes with the command's
    private /run), in $XDG_RUNTIME_DIR/lab or /tmp/lab-UID."""
    from lab.topology.userns import holder_record, is_rootless

    return holder_record(run_id) if is_rootless() else state_path(run_id, topology.state_dir)


def configure_down(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name",
        nargs="?",
        help="run id (e.g. 3f2a1c) or one of its namespace names; default: the only one up",
    )
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")


def _matches(record: StateRecord, name: str) -> bool:
    return name in (record.names.run_id, *record.all_names())


def run_down(args: argparse.Namespace) -> int:
    require_privileges()  # PrivilegeError: exit 77 in lab.cli.main
    records = [r for r in list_states(STATE_DIR).values() if r is not None]
    if args.name is None:
        detached = [r for r in records if r.owner is None]
        if len(detached) != 1:
            ids = ", ".join(r.names.run_id for r in detached) or "none"
            print(f"lab down: name one topology (up: {ids})", file=sys.stderr)
            return ExitCode.FAILURE
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
            return ExitCode.FAILURE
    removed = remove_topology(names, extras)
    remove_state(names.run_id, STATE_DIR)
    if args.json:
        print(json.dumps({"run_id": names.run_id, "removed": list(removed)}, indent=2))
        return ExitCode.OK
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print(f"topology {names.run_id}: nothing left to remove")
    return ExitCode.OK


def configure_clean(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all",
        action="store_true",
        help="also remove topologies whose owning process is still running",
    )
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")


def run_clean(args: argparse.Namespace) -> int:
    require_privileges()  # PrivilegeError: exit 77 in lab.cli.main
    report = clean(everything=args.all)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return ExitCode.OK
    for line in report.lines():
        print(line)
    return ExitCode.OK
