"""`lab up`: build the topology and leave it up for experiments; `lab down` removes it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from lab.cli import EXIT_NO_PRIVILEGES
from lab.topology.privileges import PrivilegeError
from lab.topology.state import DEFAULT_CLIENT_IP, DEFAULT_PREFIXLEN, DEFAULT_SERVER_IP, state_path
from lab.topology.topology import Topology, TopologyError
from lab.units import count


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-ip", default=DEFAULT_SERVER_IP, help="kernel address (server)")
    parser.add_argument("--client-ip", default=DEFAULT_CLIENT_IP, help="lab stack address")
    parser.add_argument(
        "--prefixlen", type=count(8, 30), default=DEFAULT_PREFIXLEN, help="8 to 30 (24)"
    )
    parser.add_argument("--json", action="store_true", help="print the topology as JSON")


def run(args: argparse.Namespace) -> int:
    topology = Topology(
        server_ip=args.server_ip, client_ip=args.client_ip, prefixlen=args.prefixlen
    )
    try:
        topology.up()
    except PrivilegeError as exc:
        print(exc, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    except TopologyError as exc:
        print(f"lab up: {exc}", file=sys.stderr)
        return 1
    info = topology.detach()
    state = state_path(info.run_id, topology.state_dir)
    if args.json:
        print(json.dumps({"run_id": info.run_id, **asdict(info), "state": str(state)}, indent=2))
        return 0
    for line in info.describe():
        print(line)
    print(f"state {state}")
    print(f"remove with: lab down {info.run_id}")
    return 0
