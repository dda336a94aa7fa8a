"""Microseconds per frame of the host's bulk receive path, offline: decode, TCP, and the ACKs.

No namespace, no socket and no capture: the cost of the Python that the live bench's "decode"
and "TCP" stages time, plus building the ACKs (which the live stages leave out), on one core.

Two lab hosts make a real handshake in memory (window scaling, SACK and timestamps agreed as
with Linux), then the receiving host is fed a bulk download as the wire would carry it: full
1448-byte segments with NOP, NOP, Timestamps (TSval ticking every few segments), in bursts of
`--burst` frames; after each burst its frames to send are pulled (the runtime's loop turn: one
ACK per two segments, RFC 5681) and the receive buffer is read (the application). The sender
host never runs after the handshake: its frames are made up front, so only the receiver is timed.

    python -m bench host_receive [--frames 20000] [--burst 64] [--repeat 5]

Prints the best of `--repeat` runs (the shared machine's noise only ever adds time): per frame
in all, and split into `receive_frame`, `outgoing_frames` and the application's reads.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass

from lab.host import Host
from lab.tcp.connection import Connection, State
from lab.wire import fast
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.options import NoOperation, Timestamps
from lab.wire.segment import Flags, Segment

OUR_MAC, OUR_IP = "02:00:00:00:00:02", "198.18.0.2"
PEER_MAC, PEER_IP = "02:00:00:00:00:01", "198.18.0.1"
PEER_PORT = 20  # an active-mode data connection comes from the server's port 20
PAYLOAD = 1448  # MSS 1460 minus the timestamp option
TS_TICK = 8  # segments per TSval tick of the sender's clock


@dataclass(frozen=True, slots=True)
class Timing:
    frames: int
    acks: int
    total: float
    receive: float
    output: float
    application: float

    def per_frame_us(self, seconds: float) -> float:
        return seconds / self.frames * 1e6


def _exchange(a: Host, b: Host, now: int) -> None:
    """Move frames both ways until neither host has any left."""
    while True:
        moved = False
        for src, dst in ((a, b), (b, a)):
            for frame in src.outgoing_frames(now):
                dst.receive_frame(frame.data, now)
                moved = True
        if not moved:
            return


def established_pair(now: int = 0) -> tuple[Host, Host, Connection, Connection]:
    """Our host and the peer's, with one ESTABLISHED connection from the peer's port 20."""
    ours = Host(OUR_MAC, OUR_IP, 24, None, now=now)
    peer = Host(PEER_MAC, PEER_IP, 24, None, now=now)
    ours.tcp.listen(40000)
    sender = peer.tcp.connect(OUR_IP, 40000, now, local_port=PEER_PORT)
    _exchange(ours, peer, now)
    receiver = ours.tcp.connections[(OUR_IP, 40000, PEER_IP, PEER_PORT)]
    if receiver.state is not State.ESTABLISHED or sender.state is not State.ESTABLISHED:
        raise RuntimeError("the handshake in memory did not complete")
    return ours, peer, receiver, sender


def bulk_frames(receiver: Connection, sender: Connection, count: int) -> list[bytes]:
    """`count` in-order full-sized data frames from the peer, as Linux would send them."""
    window = receiver.snd_wnd >> receiver.window_scaling[1] if receiver.window_scaling else 0
    tsval = 1_000_000
    frames = []
    seq = sender.snd_nxt
    payload = bytes(range(256)) * (PAYLOAD // 256) + bytes(PAYLOAD % 256)
    for i in range(count):
        if i % TS_TICK == 0:
            tsval += 1
        options = (NoOperation(), NoOperation(), Timestamps(tsval, 0))
        segment = Segment(
            PEER_PORT, 40000, seq, receiver.snd_nxt, Flags.ACK, window, options, payload
        )
        ip = Ipv4Header(PEER_IP, OUR_IP, ident=i & 0xFFFF)
        frames.append(fast.encode(TcpFrame(PEER_MAC, OUR_MAC, ip, segment)))
        seq = (seq + PAYLOAD) & 0xFFFFFFFF
    return frames


def run(frames_count: int, burst: int) -> Timing:
    ours, _peer, receiver, sender = established_pair()
    frames = bulk_frames(receiver, sender, frames_count)
    clock = time.perf_counter
    receive = ours.receive_frame
    outgoing = ours.outgoing_frames
    read = receiver.read_some
    t_receive = t_output = t_app = 0.0
    acks = 0
    now = 1_000
    started = clock()
    for start in range(0, frames_count, burst):
        t0 = clock()
        for frame in frames[start : start + burst]:
            receive(frame, now)
        t1 = clock()
        acks += len(outgoing(now))
        t2 = clock()
        while read(1 << 16):
            pass
        t3 = clock()
        t_receive += t1 - t0
        t_output += t2 - t1
        t_app += t3 - t2
        now += 50
    total = clock() - started
    if receiver.stats.bytes_received != frames_count * PAYLOAD:
        taken = receiver.stats.bytes_received
        raise RuntimeError(f"took {taken} bytes of {frames_count * PAYLOAD}")
    return Timing(frames_count, acks, total, t_receive, t_output, t_app)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench host_receive", description=__doc__)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--burst", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    timings = [run(args.frames, args.burst) for _ in range(args.repeat)]
    best = min(timings, key=lambda t: t.total)
    print(
        f"{best.frames} frames, {best.acks} ACKs, burst {args.burst}, best of {args.repeat}:"
        f" {best.per_frame_us(best.total):.2f} us per frame"
        f" (receive_frame {best.per_frame_us(best.receive):.2f},"
        f" outgoing_frames {best.per_frame_us(best.output):.2f},"
        f" reads {best.per_frame_us(best.application):.2f})"
    )
    print("all runs, us per frame: " + ", ".join(f"{t.per_frame_us(t.total):.2f}" for t in timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
