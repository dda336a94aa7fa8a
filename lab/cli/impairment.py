"""The fault-injection options of live commands (`--loss 5% --delay 10ms ...`) and the
`Impairment` they ask for. One syntax for every command's quantities: `lab.units`."""

from __future__ import annotations

import argparse
import os

from lab.link.impairment import Impairment
from lab.units import parse_duration, parse_percent, parse_rate, parse_seed


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
        help="drop this share of frames (e.g. 5%% or 0.05)",
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
        help="one-way delay added to every frame (e.g. 10ms; a bare number is ms)",
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
        type=parse_seed,
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
