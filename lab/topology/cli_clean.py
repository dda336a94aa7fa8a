"""`lab clean`: remove every lab namespace, veth and nftables table left by crashed runs."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from lab.cli import EXIT_NO_PRIVILEGES
from lab.topology.clean import clean
from lab.topology.privileges import PrivilegeError, require_privileges


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all",
        action="store_true",
        help="also remove topologies whose owning process is still running",
    )
    parser.add_argument("--json", action="store_true", help="print what was removed as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        require_privileges()
    except PrivilegeError as exc:
        print(exc, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    report = clean(everything=args.all)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
        return 0
    for line in report.lines():
        print(line)
    return 0
