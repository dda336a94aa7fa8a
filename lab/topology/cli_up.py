"""`lab up`: build the topology and leave it up for experiments; `lab down` removes it."""

from __future__ import annotations

import argparse
import sys

from lab.cli import EXIT_NO_PRIVILEGES
from lab.topology.privileges import PrivilegeError
from lab.topology.state import DEFAULT_CLIENT_IP, DEFAULT_PREFIXLEN, DEFAULT_SERVER_IP, state_path
from lab.topology.topology import Topology, TopologyError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-ip", default=DEFAULT_SERVER_IP, help="kernel address (server)")
    parser.add_argument("--client-ip", default=DEFAULT_CLIENT_IP, help="lab stack address")
    parser.add_argument("--prefixlen", type=int, default=DEFAULT_PREFIXLEN)


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
    for line in info.describe():
        print(line)
    print(f"state {state_path(info.run_id, topology.state_dir)}")
    print(f"remove with: lab down {info.run_id}")
    return 0
