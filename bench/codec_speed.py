"""Frames per second: the struct codec (`lab.wire.fast`) against the Scapy codec.

Two typical segments of a bulk transfer: a full 1448-byte data segment carrying timestamps, and
the pure ACK with timestamps and two SACK blocks that answers a loss. Each operation is timed for
about `SECONDS` seconds (after a short warm-up), so slow Scapy and fast struct get comparable
measurement time. No assertions: this shows why the bulk path exists.

    python -m bench.codec_speed [SECONDS]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial

from lab.wire import fast, scapy_codec
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.options import NoOperation, SackBlocks, Timestamps
from lab.wire.segment import Flags, Segment

SECONDS = 0.5


def typical_frames() -> dict[str, TcpFrame]:
    ip = Ipv4Header("198.18.0.1", "198.18.0.2", ident=4242)
    ts = (NoOperation(), NoOperation(), Timestamps(123456789, 987654321))
    data = Segment(
        40000,
        21,
        3_000_000_000,
        77,
        Flags.ACK | Flags.PSH,
        502,
        ts,
        bytes(range(256)) * 5 + b"x" * 168,
    )
    sack = (*ts, NoOperation(), NoOperation(), SackBlocks(((1000, 2448), (3896, 5344))))
    ack = Segment(21, 40000, 77, 3_000_001_448, Flags.ACK, 65535, sack)
    mac_a, mac_b = "02:00:00:00:00:01", "02:00:00:00:00:02"
    return {
        "data 1448 B + TS": TcpFrame(mac_a, mac_b, ip, data),
        "ACK + TS + SACK": TcpFrame(mac_b, mac_a, ip, ack),
    }


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Calls per second of `operation`, measured for about `seconds`."""
    for _ in range(3):
        operation()
    calls = 0
    batch = 1
    start = time.perf_counter()
    elapsed = 0.0
    while elapsed < seconds:
        for _ in range(batch):
            operation()
        calls += batch
        batch = min(batch * 2, 4096)
        elapsed = time.perf_counter() - start
    return calls / elapsed


def measure(seconds: float) -> list[tuple[str, str, float, float]]:
    """(frame, operation, fast frames/s, scapy frames/s) for each typical frame."""
    rows = []
    for name, frame in typical_frames().items():
        raw = fast.encode(frame)
        if raw != scapy_codec.encode(frame):
            raise SystemExit(f"{name}: the codecs disagree; run tests/test_codec.py")
        rows.append(
            (
                name,
                "encode",
                rate(partial(fast.encode, frame), seconds),
                rate(partial(scapy_codec.encode, frame), seconds),
            )
        )
        rows.append(
            (
                name,
                "decode",
                rate(partial(fast.decode_ethernet, raw), seconds),
                rate(partial(scapy_codec.decode_ethernet, raw), seconds),
            )
        )
    return rows


def format_table(rows: list[tuple[str, str, float, float]]) -> str:
    header = f"{'frame':<18} {'op':<7} {'fast fps':>12} {'scapy fps':>12} {'fast/scapy':>11}"
    lines = [header, "-" * len(header)]
    for name, op, fast_fps, scapy_fps in rows:
        ratio = fast_fps / scapy_fps
        lines.append(f"{name:<18} {op:<7} {fast_fps:>12,.0f} {scapy_fps:>12,.0f} {ratio:>10.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    seconds = float(args[0]) if args else SECONDS
    print(format_table(measure(seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
