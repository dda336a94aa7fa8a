"""Benchmarks: `python -m bench` lists and runs them. They measure; they never assert timings."""

from __future__ import annotations

import os


def live_skip_reason(name: str) -> str | None:
    """None when this process may build namespaces and open AF_PACKET sockets (root, or root of
    the lab's user namespace); else the one line a live benchmark prints before returning 0:
    why, and how an ordinary user runs it (in the lab's user namespace, where the machine
    allows one, or what refuses it)."""
    if os.geteuid() == 0:
        return None
    from lab.topology.userns import probe

    available, why = probe()
    if not available:
        return f"skipped: needs root (network namespaces and AF_PACKET), and {why}"
    return (
        "skipped: needs root (network namespaces and AF_PACKET); as an ordinary user, run it in "
        f"the lab's user namespace: lab rootless python -m bench {name}"
    )
