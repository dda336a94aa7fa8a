"""`lab ping [HOST]`: ICMP echo from the hand-built stack, printed the way ping(8) prints it.

With no `--iface` the lab builds its topology and pings the kernel of the server namespace
(198.18.0.1 by default) from the lab stack at 198.18.0.2: the request is built by `Host.ping`, the
neighbour found by our ARP, and the reply matched by identifier and sequence, so a working ping
shows that ARP, IPv4 output and ICMP of the hand-built stack are right. The RTT counts from the
moment the request is queued, so the first one includes ARP resolution, as with ping(8).

IPv6: `lab ping 2001:2::1` (or `lab ping -6`, whose default target is 2001:2::1) sends ICMPv6
echo requests from 2001:2::2; the neighbour is found by our Neighbor Discovery instead of ARP,
and the first request waits for our Duplicate Address Detection (about a second) as a kernel's
would. `-4` and `-6` pin the family, as in ping(8): a target of the other family is a usage error.

Unlike ping(8), `-c` defaults to 4 (`-c 0` pings until Ctrl-C), and requests go one at a time: the
next leaves `-i` seconds after the previous one, or once its reply is in, whichever is later.
Exit: 0 when at least one reply came (as ping(8)), 1 when none did, 2 usage, 77 no privileges.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import os
import statistics
import sys
import time
from typing import Any

from lab.cli.errors import ExitCode, UsageError
from lab.cli.stack_options import (
    add_stack_arguments,
    check_interface_arguments,
    open_stack,
    run_tool,
)
from lab.cli.values import ip_address
from lab.units import count, parse_seconds, size

DEFAULT_TARGET = "198.18.0.1"
DEFAULT_TARGET6 = "2001:2::1"
ICMP_OVERHEAD = {4: 28, 6: 48}  # IP header + ICMP echo header: 20 + 8, 40 + 8


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "host",
        nargs="?",
        type=ip_address,
        help=f"address to ping (default without --iface: {DEFAULT_TARGET}, or {DEFAULT_TARGET6}"
        " with -6)",
    )
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    family.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")
    parser.add_argument("-c", "--count", type=count(0), default=4, help="requests (4; 0: until ^C)")
    parser.add_argument(
        "-i", "--interval", type=parse_seconds, default=1.0, help="seconds between (1)"
    )
    parser.add_argument(
        "-s", "--size", type=size(0, 65507), default=56, help="data bytes per request (56; e.g. 1k)"
    )
    parser.add_argument("-W", "--wait", type=parse_seconds, default=2.0, help="seconds to wait (2)")
    parser.add_argument(
        "--json", action="store_true", help="print only the statistics, as one JSON object"
    )
    add_stack_arguments(parser)


def target_family(target: str) -> int:
    """4 or 6: the family of the address to ping (an IP literal: `ip_address` read it)."""
    return ipaddress.ip_address(target).version


def _silent(*_args: object, **_kwargs: object) -> None:
    pass


def payload_of(size: int) -> bytes:
    """ping(8)'s fill pattern: consecutive byte values."""
    return bytes(i & 0xFF for i in range(size))


def summary(target: str, sent: int, rtts: list[float], elapsed: float) -> list[str]:
    """The closing lines of ping(8)."""
    received = len(rtts)
    loss = 0 if sent == 0 else round(100 * (sent - received) / sent)
    lines = [
        f"--- {target} ping statistics ---",
        f"{sent} packets transmitted, {received} received, {loss}% packet loss, "
        f"time {elapsed * 1000:.0f}ms",
    ]
    if rtts:
        mdev = statistics.pstdev(rtts)
        lines.append(
            f"rtt min/avg/max/mdev = {min(rtts):.3f}/{statistics.fmean(rtts):.3f}/"
            f"{max(rtts):.3f}/{mdev:.3f} ms"
        )
    return lines


def summary_json(target: str, sent: int, rtts: list[float], elapsed: float) -> dict[str, Any]:
    """The statistics of `summary` as values (RTTs in milliseconds, None without replies)."""
    received = len(rtts)
    return {
        "target": target,
        "transmitted": sent,
        "received": received,
        "loss_percent": 0 if sent == 0 else round(100 * (sent - received) / sent),
        "time_ms": round(elapsed * 1000),
        "rtt_ms": [round(r, 3) for r in rtts],
        "rtt_min": round(min(rtts), 3) if rtts else None,
        "rtt_avg": round(statistics.fmean(rtts), 3) if rtts else None,
        "rtt_max": round(max(rtts), 3) if rtts else None,
        "rtt_mdev": round(statistics.pstdev(rtts), 3) if rtts else None,
    }


def run(args: argparse.Namespace) -> int:
    return run_tool("ping", lambda: _ping(args))


def _ping(args: argparse.Namespace) -> int:
    from lab.runtime import HostUnreachable, Timeout

    if args.count < 0 or args.interval < 0 or args.wait <= 0:
        raise UsageError("-c, -i must not be negative and -W must be positive")
    target = args.host
    if target is None:
        if args.iface is not None:
            raise UsageError("with --iface, name the HOST to ping")
        target = DEFAULT_TARGET6 if args.family == 6 else DEFAULT_TARGET
    version = target_family(target)
    check_interface_arguments(args, target)
    if args.family is not None and args.family != version:
        raise UsageError(f"-{args.family} given, but {target} is an IPv{version} address")
    overhead = ICMP_OVERHEAD[version]
    if not 0 <= args.size <= 1500 - overhead:
        raise UsageError(
            f"-s must be between 0 and {1500 - overhead} (a 1500-byte MTU; we never fragment)"
        )
    payload = payload_of(args.size)
    ident = os.getpid() & 0xFFFF
    sent = 0
    rtts: list[float] = []
    # --json and -q: the replies are not printed one by one, only the summary
    say = print if not (args.json or getattr(args, "quiet", False)) else _silent
    with open_stack(args, "ping") as stack:
        source = stack.source_for(target)
        say(
            f"PING {target} from {source} (lab stack, {stack.codec} codec): "
            f"{args.size}({args.size + overhead}) bytes of data.",
            flush=True,
        )
        started = time.monotonic()
        seqs = itertools.count(1) if args.count == 0 else range(1, args.count + 1)
        try:
            for seq in seqs:
                begun = time.monotonic()
                sent += 1
                try:
                    reply = stack.runtime.ping(
                        target, ident=ident, seq=seq & 0xFFFF, payload=payload, timeout=args.wait
                    )
                except Timeout:
                    pass  # ping(8) says nothing about a lost request until the summary
                except HostUnreachable:
                    say(f"From {source} icmp_seq={seq} Destination Host Unreachable")
                else:
                    rtt = reply.rtt / 1000
                    rtts.append(rtt)
                    bad = "" if reply.payload == payload else " (BAD DATA)"
                    say(
                        f"{len(reply.payload) + 8} bytes from {reply.src}: icmp_seq={seq} "
                        f"ttl={reply.ttl} time={rtt:.3f} ms{bad}",
                        flush=True,
                    )
                if args.count and seq == args.count:
                    break
                time.sleep(max(0.0, begun + args.interval - time.monotonic()))
        except KeyboardInterrupt:
            say()  # ping(8) prints its summary on ^C as well
        elapsed = time.monotonic() - started
        if args.json:
            data = summary_json(target, sent, rtts, elapsed)
            print(json.dumps({**data, "capture": str(stack.capture)}, indent=2))
        else:
            lead = [""] if say is print else []  # a blank line after the replies, as ping(8)
            print("\n".join([*lead, *summary(target, sent, rtts, elapsed)]))
            print(f"capture {stack.capture}", file=sys.stderr)
    return ExitCode.OK if rtts else ExitCode.FAILURE
