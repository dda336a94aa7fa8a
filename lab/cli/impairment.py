"""The fault-injection options of the command line (`--loss 5% --delay 10ms --rate 10mbit ...`).

Parsed here, above the links, into an `Impairment` value (`lab.link.impairment`) that
`lab.link.impair.ImpairedLink` and the in-memory simulation apply; the link layer itself never
sees argparse. Units follow tc's words: "bit" rates are bits per second, "bps" rates BYTES.
"""

from __future__ import annotations

import argparse
import os
import re

from lab.link.impairment import Impairment

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_DURATION_UNITS = {"us": 1, "ms": 1_000, "s": 1_000_000, "": 1_000}
# tc's words: "bit" units are bits per second, "bps" units are BYTES per second.
_RATE_UNITS = {
    "bit": 1,
    "kbit": 10**3,
    "mbit": 10**6,
    "gbit": 10**9,
    "bps": 8,
    "kbps": 8 * 10**3,
    "mbps": 8 * 10**6,
    "gbps": 8 * 10**9,
}


def parse_percent(text: str) -> float:
    """ "5%" or "5" -> 0.05: the value is always a percentage, the sign optional."""
    match = re.fullmatch(_NUMBER + r"\s*%?", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r} (e.g. 5% or 0.1%)")
    value = float(match.group(1)) / 100
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is more than 100%")
    return value


def parse_duration(text: str) -> int:
    """ "10ms", "500us", "1.5s" or "10" (milliseconds) -> microseconds."""
    match = re.fullmatch(_NUMBER + r"\s*(us|ms|s|)", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 10ms, 500us, 1s)")
    return round(float(match.group(1)) * _DURATION_UNITS[match.group(2)])


def parse_rate(text: str) -> int:
    """ "10mbit" -> 10_000_000 bits per second; tc's units (kbit, mbit, gbit; bps = bytes/s)."""
    match = re.fullmatch(_NUMBER + r"\s*([kmg]?(?:bit|bps))", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (e.g. 10mbit, 500kbit, 1gbit)")
    value = round(float(match.group(1)) * _RATE_UNITS[match.group(2)])
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate must be positive: {text!r}")
    return value


def add_impairment_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the fault-injection options (an argument group "impairment") to `parser`."""
    group = parser.add_argument_group(
        "impairment",
        "faults injected on the lab link, both directions, in user space (no netem needed); "
        "each direction has its own seeded schedule, written into the capture's comments",
    )
    group.add_argument(
        "--loss",
        type=parse_percent,
        default=0.0,
        metavar="P%",
        help="drop this share of frames (e.g. 5%%)",
    )
    group.add_argument(
        "--reorder",
        type=parse_percent,
        default=0.0,
        metavar="P%",
        help="hold this share of frames back so later ones overtake them",
    )
    group.add_argument(
        "--reorder-delay",
        type=parse_duration,
        default=10_000,
        metavar="TIME",
        help="how long a reordered frame is held (default 10ms)",
    )
    group.add_argument(
        "--dup",
        type=parse_percent,
        default=0.0,
        metavar="P%",
        help="deliver this share of frames twice",
    )
    group.add_argument(
        "--corrupt",
        type=parse_percent,
        default=0.0,
        metavar="P%",
        help="flip one bit in this share of frames (checksums catch it)",
    )
    group.add_argument(
        "--delay",
        type=parse_duration,
        default=0,
        metavar="TIME",
        help="one-way delay added to every frame (e.g. 10ms)",
    )
    group.add_argument(
        "--jitter",
        type=parse_duration,
        default=0,
        metavar="TIME",
        help="extra random delay, uniform in [0, TIME]",
    )
    group.add_argument(
        "--rate",
        type=parse_rate,
        default=None,
        metavar="RATE",
        help="token-bucket rate limit per direction (e.g. 10mbit)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the fault schedule (default: random, and printed "
        "in the capture so the run can be repeated)",
    )


def impairment_from_args(args: argparse.Namespace) -> Impairment | None:
    """The `Impairment` the options ask for, or None when they ask for no fault at all."""
    loss = getattr(args, "loss", 0.0)
    reorder = getattr(args, "reorder", 0.0)
    dup = getattr(args, "dup", 0.0)
    corrupt = getattr(args, "corrupt", 0.0)
    delay = getattr(args, "delay", 0)
    jitter = getattr(args, "jitter", 0)
    rate = getattr(args, "rate", None)
    if not (loss or reorder or dup or corrupt or delay or jitter or rate is not None):
        return None
    seed = getattr(args, "seed", None)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big")
    return Impairment(
        loss=loss,
        duplicate=dup,
        reorder=reorder,
        corrupt=corrupt,
        delay=delay,
        jitter=jitter,
        reorder_delay=getattr(args, "reorder_delay", 10_000),
        rate_bps=rate,
        seed=seed,
    )
