"""Segments per second and MB/s through two Connection objects in memory, clean and lossy.

The two connections are joined directly, with no endpoint, wire or codec in between, so the
numbers are the cost of the TCP core alone: segment building, ACK processing, reassembly,
congestion control and timers. Loss is a seeded coin per segment; time is virtual and jumps to
the next deadline when nothing is in flight, so the wall time measured is all CPU.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.tcp.connection import Connection, State, TcpConfig
from lab.wire.segment import Segment

A, B = "198.18.0.1", "198.18.0.2"
ONE_WAY = 1_000  # us of virtual latency per hop, so RTT samples are not zero


@dataclass(frozen=True, slots=True)
class Result:
    label: str
    size: int
    segments: int
    retransmissions: int
    wall: float
    virtual_us: int

    @property
    def segments_per_second(self) -> float:
        return self.segments / self.wall if self.wall else float("inf")

    @property
    def megabytes_per_second(self) -> float:
        return self.size / 1e6 / self.wall if self.wall else float("inf")


def transfer(size: int, loss: float, seed: int = 1) -> Result:
    """Move `size` bytes from a to b; both close; returns the counts and the wall time."""
    config = TcpConfig(msl=1_000_000)
    rng = random.Random(seed)
    data = random.Random(seed + 1).randbytes(size)
    a = Connection(A, 40000, B, 5001, config=config, iss=rng.getrandbits(32), rng_seed=1)
    b: Connection | None = None
    in_flight: list[tuple[int, str, Segment]] = []  # (arrival, destination, segment)
    received = bytearray()
    offset = 0
    closed_a = closed_b = False
    now = 0
    segments = 0
    started = time.perf_counter()
    a.open(now)
    while True:
        if a.state in (State.ESTABLISHED, State.CLOSE_WAIT) and offset < size:
            offset += a.send(data[offset : offset + 65536], now)
        if b is not None:
            received += b.read()
            if b.state is State.CLOSE_WAIT and not closed_b:
                b.close(now)
                closed_b = True
        if (
            offset == size
            and a.send_buffered == 0
            and not closed_a
            and a.state is State.ESTABLISHED
        ):
            a.close(now)
            closed_a = True
        for dest, conn in (("b", a), ("a", b)):
            if conn is None:
                continue
            for seg in conn.segments_to_send(now):
                segments += 1
                if rng.random() >= loss:
                    in_flight.append((now + ONE_WAY, dest, seg))
        if a.state is State.CLOSED and (b is None or b.state is State.CLOSED):
            break
        deadlines = [t for t, _, _ in in_flight]
        deadlines += [d for c in (a, b) if c is not None and (d := c.next_deadline()) is not None]
        if not deadlines:
            break
        now = max(now, min(deadlines))
        arrived = [p for p in in_flight if p[0] <= now]
        in_flight = [p for p in in_flight if p[0] > now]
        for _, dest, seg in arrived:
            if dest == "a":
                a.receive_segment(seg, now)
            elif b is None:
                b = Connection(B, 5001, A, 40000, config=config, iss=rng.getrandbits(32))
                b.listen_accept_syn(seg, now)
            else:
                b.receive_segment(seg, now)
        for conn in (a, b):
            if conn is not None and (d := conn.next_deadline()) is not None and d <= now:
                conn.on_timer(now)
    wall = time.perf_counter() - started
    if bytes(received) != data:
        raise AssertionError("the benchmark's transfer corrupted data")  # a bug, not a timing
    retransmissions = a.stats.retransmissions + (b.stats.retransmissions if b else 0)
    label = f"{loss:.0%} loss"
    return Result(label, size, segments, retransmissions, wall, now)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench connection_throughput")
    parser.add_argument("--size", type=int, default=4_000_000, help="bytes per run")
    args = parser.parse_args(argv)
    size = args.size
    rows = [transfer(size, 0.0), transfer(size, 0.05)]
    header = f"{'case':>10} {'bytes':>10} {'segments':>9} {'rexmits':>8} {'wall s':>8}"
    header += f" {'seg/s':>10} {'MB/s':>8} {'virtual ms':>11}"
    print(header)
    for r in rows:
        print(
            f"{r.label:>10} {r.size:>10} {r.segments:>9} {r.retransmissions:>8} {r.wall:>8.3f}"
            f" {r.segments_per_second:>10.0f} {r.megabytes_per_second:>8.2f}"
            f" {r.virtual_us / 1000:>11.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
