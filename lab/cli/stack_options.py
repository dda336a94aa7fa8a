"""The command-line options of every live use of the hand-built stack, in one place.

`lab get`, `lab put`, `lab ls` (lab.cli.ftp), `lab ping` and `lab connect` (lab.cli.ping,
lab.cli.connect) all run the
same `LabStack` and so take the same options, parsed and checked the same way:

Where: with no `--iface`, a fresh lab topology (the kernel at 198.18.0.1 in the server namespace,
the hand-built stack at 198.18.0.2 on the client veth end), torn down afterwards. With
`--iface IF --addr CIDR [--gateway IP]`, the stack takes CIDR on the existing interface IF with
IF's MAC (`LabStack.on_interface`); the kernel must not own that address there, or it would answer
our peers with RST, so that is refused up front (exit 2).

How: `--codec mixed|fast|scapy` (the frame encoder), `--capture FILE` (pcapng; default under
captures/runs/), `--offload` (offload mode: GRO and rx checksumming on the client veth; with
`--iface` the link only reads the kernel's checksum verdicts, the interface is left as it is),
and the fault injection of `lab.link.impair` (`--loss 5% --reorder 2% --dup 1% --corrupt 0.1%
--delay 10ms --rate 10mbit --seed N`...; faithful mode only), applied in user space on the stack's
link in both directions and logged, with its seed, in the capture's comments.

Exits, the same for every tool (`lab.cli.errors.exit_code_for`): 0 done, 1 network error, 2 usage,
4 timeout, 77 no privileges (one line on stderr, no traceback), 130 interrupted. (The FTP commands
add 3, incomplete.)
"""

from __future__ import annotations

import argparse
import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from lab.cli.errors import UsageError, exit_code_for
from lab.cli.impairment import add_impairment_arguments, impairment_from_args
from lab.cli.values import (
    check_output_file,
    ipv4_address,
    ipv4_interface,
    ipv6_address,
    ipv6_interface,
    output_file,
)
from lab.link.impair import describe_impairment

if TYPE_CHECKING:
    from lab.link.impairment import Impairment
    from lab.runtime import FrameCallback
    from lab.session import LabStack

__all__ = [
    "add_interface_arguments",
    "add_stack_arguments",
    "capture_path",
    "check_interface_arguments",
    "check_own_address",
    "impairment_of",
    "impairment_requested",
    "impairment_text",
    "kernel_owns",
    "open_stack",
    "run_tool",
]

_IMPAIRMENT_ATTRIBUTE = "_lab_impairment"  # where `impairment_of` keeps its answer on `args`


def add_stack_arguments(
    parser: argparse.ArgumentParser, group: argparse._ArgumentGroup | None = None
) -> None:
    """Add --codec, --capture, --iface, --addr, --gateway (to `group`, by default a new "stack and
    network" group) and the impairment options (their own group) to `parser`."""
    if group is None:
        group = parser.add_argument_group("stack and network")
    group.add_argument(
        "--codec",
        choices=("mixed", "fast", "scapy"),
        default="mixed",
        help="frame encoder: mixed (Scapy for handshakes and commands, struct for bulk; default),"
        " fast (struct only) or scapy (Scapy only)",
    )
    group.add_argument(
        "--capture", type=output_file, help="pcapng file (default under captures/runs/)"
    )
    group.add_argument(
        "--offload",
        action="store_true",
        help="offload mode: GRO and rx checksumming on the client veth, as a NIC gives them to"
        " a kernel; the stack takes merged frames of up to 64 KB and trusts the kernel's"
        " checksum verdict (default: faithful mode, offloads off, every frame as on the wire)",
    )
    add_interface_arguments(group)
    add_impairment_arguments(parser)


def add_interface_arguments(
    group: argparse.ArgumentParser | argparse._ArgumentGroup, *, ipv6: bool = True
) -> None:
    """`--iface IF --addr CIDR [--gateway IP]` (and, with `ipv6`, `--addr6`, `--gateway6`): the
    lab stack on one of the host's interfaces instead of a topology of its own."""
    group.add_argument("--iface", help="run on this existing interface instead of a new topology")
    group.add_argument(
        "--addr",
        type=ipv4_interface,
        help="with --iface: the lab stack's address, e.g. 198.18.5.2/24",
    )
    group.add_argument(
        "--gateway", type=ipv4_address, help="with --iface: next hop for other networks"
    )
    if not ipv6:
        return
    group.add_argument(
        "--addr6",
        type=ipv6_interface,
        help="with --iface: the lab stack's IPv6 address too, e.g. 2001:2:0:5::2/64",
    )
    group.add_argument(
        "--gateway6", type=ipv6_address, help="with --iface and --addr6: the IPv6 next hop"
    )


def check_interface_arguments(args: argparse.Namespace, target: str | None = None) -> None:
    """Usage errors of `--iface`/`--addr`/`--gateway`, found before anything is built; with
    `target`, also an IPv6 target for a lab stack given no IPv6 address (`--iface` without
    `--addr6`; a topology of the lab's own has both families)."""
    addr6, gateway6 = getattr(args, "addr6", None), getattr(args, "gateway6", None)
    if target is not None and args.iface is not None and addr6 is None and ":" in target:
        raise UsageError(
            f"{target} is IPv6 and the lab stack has no IPv6 address here: add --addr6"
        )
    if args.iface is None:
        if any(a is not None for a in (args.addr, args.gateway, addr6, gateway6)):
            raise UsageError("--addr and --gateway go with --iface (so do --addr6, --gateway6)")
        return
    if gateway6 is not None and addr6 is None:
        raise UsageError("--gateway6 goes with --addr6")
    if not args.addr:
        raise UsageError("--iface needs --addr (the lab stack's address, e.g. 10.0.0.2/24)")
    # The addresses themselves were checked as they were read (lab.cli.values' argparse types).


def capture_path(args: argparse.Namespace, kind: str) -> Path:
    """`--capture FILE` (tried as it was read), or the default under captures/runs/, tried here:
    before any work, without making the folder (lab.cli.values)."""
    if args.capture is not None:
        return Path(args.capture)
    from lab.session import default_capture_path

    capture = default_capture_path(kind)
    try:
        check_output_file(capture)
    except ValueError as exc:
        raise UsageError(f"{exc} (the default capture; choose another with --capture)") from None
    return capture


def kernel_owns(address: str) -> bool:
    """Whether the kernel of this namespace has `address` (binding to it succeeds)."""
    probe = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    try:
        probe.bind((address, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def check_own_address(args: argparse.Namespace) -> None:
    """With `--iface`: refuse an `--addr` the kernel already owns here (it would send RSTs)."""
    addr6 = getattr(args, "addr6", None)
    for given in (args.addr, *((addr6,) if addr6 else ())):
        address = given.partition("/")[0]
        if kernel_owns(address):
            raise UsageError(
                f"the kernel already owns {address} here: it would reset the lab stack's "
                "connections; give the lab an address of its own"
            )


def impairment_requested(args: argparse.Namespace) -> bool:
    """Whether the options ask for any fault (`--seed` alone asks for none)."""
    return any(
        getattr(args, name, default) != default
        for name, default in (
            ("loss", 0.0),
            ("reorder", 0.0),
            ("dup", 0.0),
            ("corrupt", 0.0),
            ("delay", 0),
            ("jitter", 0),
            ("rate", None),
        )
    )


def impairment_of(args: argparse.Namespace) -> Impairment | None:
    """The fault schedule the options ask for, or None.

    Decided once per parsed command line: without `--seed` the seed is drawn at random, and the
    stack, the summary and the capture must all name the same one."""
    if not hasattr(args, _IMPAIRMENT_ATTRIBUTE):
        setattr(args, _IMPAIRMENT_ATTRIBUTE, impairment_from_args(args))
    impairment: Impairment | None = getattr(args, _IMPAIRMENT_ATTRIBUTE)
    return impairment


def impairment_text(args: argparse.Namespace) -> str | None:
    """The schedule in the options' words, e.g. "loss=5% reorder=2% ... seed=3", or None."""
    impairment = impairment_of(args)
    return describe_impairment(impairment) if impairment is not None else None


@contextlib.contextmanager
def open_stack(
    args: argparse.Namespace, kind: str, observer: FrameCallback | None = None
) -> Iterator[LabStack]:
    """The running stack the arguments ask for (see the module docstring). The command has
    already called `check_interface_arguments` with its target, before building anything."""
    from lab.session import LabStack

    if args.iface is not None:
        check_own_address(args)
    impairment = impairment_of(args)
    offload = bool(getattr(args, "offload", False))
    if offload and impairment is not None:
        raise UsageError("the fault options work in faithful mode only, not with --offload")
    capture = capture_path(args, kind)
    if args.iface is not None:
        with LabStack.on_interface(
            args.iface,
            args.addr,
            gateway=args.gateway,
            codec=args.codec,
            capture=capture,
            observer=observer,
            impairment=impairment,
            offload=offload,
            addr6=getattr(args, "addr6", None),
            gateway6=getattr(args, "gateway6", None),
        ) as stack:
            yield stack
        return
    from lab.topology import require_privileges

    require_privileges()
    with LabStack.on_topology(
        codec=args.codec,
        capture=capture,
        observer=observer,
        impairment=impairment,
        offload=offload,
    ) as stack:
        yield stack


def run_tool(kind: str, body: Callable[[], int]) -> int:
    """Run `body`, turning the failures every tool shares into a message and an exit code."""
    try:
        return body()
    except Exception as exc:
        return exit_code_for(kind, exc)
