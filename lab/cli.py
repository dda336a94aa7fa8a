"""The `lab` command: one subcommand per module, imported only when it runs.

Each entry names a module that provides `configure(parser)` and `run(args) -> int`. Importing lazily
keeps `lab --help` instant and lets commands that need Scapy or pyroute2 load them only then.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("lab.demo", "two in-memory TCP endpoints move 1 MB under loss and reordering"),
    "replay": ("lab.replay.cli", "recover FTP dialogues and files from a pcap/pcapng capture"),
    "up": ("lab.topology.cli_up", "build the lab topology (namespaces, veth) and leave it up"),
    "down": ("lab.topology.cli_down", "tear down a topology made by `lab up`"),
    "clean": ("lab.topology.cli_clean", "remove lab namespaces, links and tables left by a crash"),
    "doctor": ("lab.doctor", "report what this machine allows (root, netns, AF_PACKET, tools)"),
    "exercise": ("lab.exercises.cli", "exercises graded from the wire: list, show, start, check"),
    "get": ("lab.ftp.cli_get", "download a file over FTP with the hand-built stack (active mode)"),
    "put": ("lab.ftp.cli_put", "upload a file over FTP with the hand-built stack"),
    "ls": ("lab.ftp.cli_ls", "list an FTP directory with the hand-built stack"),
    "reenact": ("lab.replay.reenact", "redo a captured FTP session live and compare replies"),
    "ping": ("lab.tools.ping", "ping from the hand-built stack (ARP, IPv4, ICMP echo)"),
    "connect": ("lab.tools.connect", "TCP from the hand-built stack: send stdin, print replies"),
}

EXIT_USAGE = 2
EXIT_NO_PRIVILEGES = 77


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab",
        description="A raw-socket protocol lab: TCP/IP and FTP built by hand in user space.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in COMMANDS:
        parser = build_parser()
        if not args_list or args_list[0] in ("-h", "--help"):
            parser.print_help()
            return 0 if args_list else EXIT_USAGE
        parser.error(f"unknown command {args_list[0]!r}")
    name = args_list[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"lab {name}", description=help_text)
    module.configure(parser)
    args = parser.parse_args(args_list[1:])
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
