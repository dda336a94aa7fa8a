"""Frames per second written to pcapng: lab's struct writer against Scapy's PcapNgWriter.

Both write the same frames (mixed 60..1514-byte Ethernet frames) with a per-frame comment and a
direction flag, to files in a temporary directory. Scapy is driven through `_write_packet`, the
raw-bytes path its `write()` ends in, so Packet building is not counted against it.

    python bench/pcapng_writer.py [FRAMES]
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab.capture.reader import Direction
from lab.capture.writer import PcapngWriter


def make_frames(count: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [60, 66, 1514, 590]
    return [rng.randbytes(rng.choice(sizes)) for _ in range(count)]


def bench_lab(path: Path, frames: list[bytes]) -> float:
    start = time.perf_counter()
    writer = PcapngWriter(path, ifname="lab0")
    now = time.time_ns()
    for i, frame in enumerate(frames):
        direction: Direction = "in" if i % 2 else "out"
        writer.write(frame, now + i, direction=direction, comment=f"{direction}: seg {i}")
    writer.close()
    return time.perf_counter() - start


def bench_scapy(path: Path, frames: list[bytes]) -> float:
    from scapy.utils import PcapNgWriter

    start = time.perf_counter()
    writer = PcapNgWriter(str(path))
    writer.linktype = 1
    now = time.time()
    for i, frame in enumerate(frames):
        word = "in" if i % 2 else "out"
        writer._write_packet(
            frame,
            linktype=1,
            sec=now + i * 1e-9,
            ifname=b"lab0",
            direction=1 if i % 2 else 2,
            comments=[f"{word}: seg {i}".encode()],
        )
    writer.close()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 100_000
    frames = make_frames(count)
    results: dict[str, float] = {}
    runners: dict[str, Callable[[Path, list[bytes]], float]] = {
        "lab struct": bench_lab,
        "scapy PcapNgWriter": bench_scapy,
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, runner in runners.items():
            best = min(runner(Path(tmp) / f"{i}.pcapng", frames) for i in range(3))
            results[name] = best
            print(f"{name:20s} {count / best:12,.0f} frames/s  {best / count * 1e6:6.2f} us/frame")
    ratio = results["scapy PcapNgWriter"] / results["lab struct"]
    print(f"lab struct writer is {ratio:.1f}x faster than Scapy's")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
