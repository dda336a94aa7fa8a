"""Replay: captures through the same reassembly engine, FTP sessions and files recovered.

`steps(path)` is the notebook entry point: one `Step` per captured packet, with the decoded frame,
its flow, and the reassembler's state before and after the packet.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from os import PathLike
from typing import Any

from lab.replay.flows import Step
from lab.tcp.reassembly import OverlapPolicy


def steps(path: str | PathLike[str], *, policy: str = "first") -> Iterator[Step]:
    """Yield one `Step` per packet of the capture at `path` (reassembler state before/after).

    An unknown `policy` raises `ValueError` at the call, not silently replays under `first`.
    """
    if policy not in ("first", "last"):
        raise ValueError(f"unknown overlap policy {policy!r} (first or last)")
    return _steps(path, "last" if policy == "last" else "first")


def _steps(path: str | PathLike[str], policy: OverlapPolicy) -> Iterator[Step]:
    from lab.capture.reader import CaptureReader
    from lab.replay.decode import decode_packet
    from lab.replay.flows import FlowTable

    table = FlowTable(policy)
    try:
        for pkt in CaptureReader(path):
            yield table.process(pkt, decode_packet(pkt), detail=True)
        table.finish()
    finally:
        table.store.close()


def replay_many(paths: Iterable[str | PathLike[str]], **options: Any) -> list[dict[str, Any]]:
    """Replay many captures (directories: their captures, recursively) with any `map=`; see
    `lab.replay.many.replay_many`. Imported lazily: `lab replay` on one capture never pays for it.
    """
    from lab.replay.many import replay_many as run

    return run(paths, **options)


__all__ = ["Step", "replay_many", "steps"]
