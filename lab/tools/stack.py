"""What `lab ping` and `lab connect` share: where the stack runs, and how failures become exits.

Where: with no `--iface`, a fresh lab topology (the kernel at 198.18.0.1 in the server namespace,
the hand-built stack at 198.18.0.2 on the client veth end), torn down afterwards. With
`--iface IF --addr CIDR [--gateway IP]`, the stack takes CIDR on the existing interface IF with
IF's MAC (`LabStack.on_interface`), as `lab get` does; the kernel must not own that address there,
or it would answer our peers with RST, so that is refused up front.

Exits, the same for every tool: 0 done, 1 network error, 2 usage, 4 timeout, 77 no privileges
(one line on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cli import EXIT_NO_PRIVILEGES, EXIT_USAGE

if TYPE_CHECKING:
    from lab.runtime import FrameCallback
    from lab.session import LabStack

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_TIMEOUT = 4
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """Bad command-line input (exit 2)."""


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("stack and network")
    group.add_argument(
        "--codec", choices=("fast", "scapy"), default="fast", help="frame encoder (fast)"
    )
    group.add_argument("--capture", type=Path, help="pcapng file (default under captures/runs/)")
    group.add_argument("--iface", help="run on this existing interface instead of a new topology")
    group.add_argument("--addr", help="with --iface: the lab stack's address, e.g. 198.18.5.2/24")
    group.add_argument("--gateway", help="with --iface: next hop for other networks")


def check_interface_arguments(args: argparse.Namespace) -> None:
    """Usage errors of `--iface`/`--addr`/`--gateway`, found before anything is built."""
    if args.iface is None:
        if args.addr is not None or args.gateway is not None:
            raise UsageError("--addr and --gateway go with --iface")
        return
    if not args.addr:
        raise UsageError("--iface needs --addr (the lab stack's address, e.g. 10.0.0.2/24)")
    import ipaddress

    try:
        ipaddress.IPv4Interface(args.addr)
        if args.gateway is not None:
            ipaddress.IPv4Address(args.gateway)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc


@contextlib.contextmanager
def open_stack(
    args: argparse.Namespace, kind: str, observer: FrameCallback | None = None
) -> Iterator[LabStack]:
    """The running stack the arguments ask for (see the module docstring)."""
    from lab.session import LabStack, default_capture_path

    check_interface_arguments(args)
    capture: Path = args.capture if args.capture is not None else default_capture_path(kind)
    if args.iface is not None:
        from lab.ftp.cli import kernel_owns

        address = args.addr.partition("/")[0]
        if kernel_owns(address):
            raise UsageError(
                f"the kernel already owns {address} here: it would reset the lab stack's "
                "connections; give the lab an address of its own"
            )
        with LabStack.on_interface(
            args.iface,
            args.addr,
            gateway=args.gateway,
            codec=args.codec,
            capture=capture,
            observer=observer,
        ) as stack:
            yield stack
        return
    from lab.topology import require_privileges

    require_privileges()
    with LabStack.on_topology(codec=args.codec, capture=capture, observer=observer) as stack:
        yield stack


def run_tool(kind: str, body: Callable[[], int]) -> int:
    """Run `body`, turning the failures every tool shares into a message and an exit code."""
    from lab.runtime import Timeout
    from lab.topology import PrivilegeError, TopologyError
    from lab.topology.privileges import PRIVILEGE_MESSAGE

    try:
        return body()
    except PrivilegeError as exc:
        print(exc, file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    except PermissionError as exc:  # AF_PACKET on --iface without CAP_NET_RAW
        print(f"lab {kind}: {PRIVILEGE_MESSAGE} ({exc.strerror or exc})", file=sys.stderr)
        return EXIT_NO_PRIVILEGES
    except UsageError as exc:
        print(f"lab {kind}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Timeout as exc:
        print(f"lab {kind}: timeout: {exc}", file=sys.stderr)
        return EXIT_TIMEOUT
    except (OSError, TopologyError) as exc:
        print(f"lab {kind}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
