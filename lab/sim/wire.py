"""The in-memory wire of the simulation: two parties, a seeded fault schedule, virtual time.

The wire carries `AddressedSegment` values between side "a" and side "b". Every packet put on it
goes through the `Impairment` of its direction: it may be lost, duplicated, held back (reordered),
corrupted, delayed by a base latency plus jitter, and serialised at a limited rate. Every fault
applied is appended to `log`, so a failing run can be explained and, with the same seed, replayed.

Determinism: each direction has its own `random.Random`, seeded from `Impairment.seed` and the
direction, and every packet consumes the same number of draws whatever happens to it. The schedule
of faults therefore depends only on the seed and the order of packets in that direction; raising
the loss rate does not shift which packets get duplicated.

Corruption: without checksummed bytes, a corrupted segment is what a receiver's checksum check
would make of it: a drop, logged as "corrupt". The decision to corrupt and what corruption does
are separate: `corrupter` is a function (packet, rng) -> packet | None. `BitFlipCorrupter`, given
a codec, encodes, flips bits and decodes (None when a checksum catches it, which is almost always).
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from lab.link.impairment import Impairment
from lab.wire.segment import AddressedSegment

Side = Literal["a", "b"]
# One of the memory wire's two lanes, each with its own seeded faults (not a capture's Direction).
WireLane = Literal["a>b", "b>a"]
IP_HEADER_LEN = 20  # counted against the rate limit; the memory wire carries no Ethernet header

Corrupter = Callable[[AddressedSegment, random.Random], AddressedSegment | None]


def drop_as_corrupt(packet: AddressedSegment, rng: random.Random) -> AddressedSegment | None:
    """Corruption as the receiver sees it once the checksum fails: the packet is gone."""
    return None


class BitFlipCorrupter:
    """Corruption on the bytes: encode the packet, flip `flips` random bits, decode it again.

    Whether the receiver ever sees the result is up to the decoder's checksums, as on a real
    wire. The codec is passed in (the link layer does not import codecs): `encode` turns a packet
    into frame bytes, `decode` returns the packet, or None when the decoder drops the bytes.
    """

    def __init__(
        self,
        encode: Callable[[AddressedSegment], bytes],
        decode: Callable[[bytes], AddressedSegment | None],
        flips: int = 1,
    ) -> None:
        if flips < 1:
            raise ValueError("a corruption flips at least one bit")
        self.encode = encode
        self.decode = decode
        self.flips = flips

    def __call__(self, packet: AddressedSegment, rng: random.Random) -> AddressedSegment | None:
        raw = bytearray(self.encode(packet))
        for bit in rng.sample(range(len(raw) * 8), min(self.flips, len(raw) * 8)):
            raw[bit // 8] ^= 1 << (bit % 8)
        return self.decode(bytes(raw))


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One fault the wire applied: enough to reproduce and to explain a run."""

    time: int  # when the packet was put on the wire
    direction: WireLane
    kind: str  # "loss", "duplicate", "reorder", "corrupt"
    summary: str  # the segment, as `Segment.summary()` prints it


@dataclass(slots=True)
class WireStats:
    sent: int = 0  # packets put on the wire
    delivered: int = 0  # packets (including duplicates) handed to the far side
    bytes_sent: int = 0  # TCP payload bytes put on the wire
    faults: Counter[str] = field(default_factory=Counter)


@dataclass(order=True, frozen=True, slots=True)
class _InFlight:
    arrival: int
    order: int  # tie-break: packets arriving at the same instant keep their sending order
    destination: Side = field(compare=False)
    packet: AddressedSegment = field(compare=False)


class _Lane:
    """One direction: its schedule, its RNG and its serialisation state."""

    def __init__(self, direction: WireLane, impairment: Impairment) -> None:
        self.direction: WireLane = direction
        self.impairment = impairment
        # A string seed goes through SHA-512, so neighbouring seeds give unrelated streams (small
        # consecutive integer seeds showed correlated early draws across seeds).
        # The string keeps the module's old name: changing it would change every seeded schedule.
        self.rng = random.Random(f"lab.link.memory/{impairment.seed}/{direction}")
        self.busy_until = 0


class MemoryWire:
    """Two sides, a heap of packets in flight, and a log of every fault."""

    def __init__(
        self,
        impairment: Impairment = Impairment(),  # frozen, so a shared default is safe
        *,
        reverse: Impairment | None = None,
        corrupter: Corrupter = drop_as_corrupt,
    ) -> None:
        """`impairment` applies to a>b, and to b>a too unless `reverse` is given."""
        self._lanes: dict[Side, _Lane] = {
            "a": _Lane("a>b", impairment),
            "b": _Lane("b>a", reverse if reverse is not None else impairment),
        }
        self._corrupter = corrupter
        self._heap: list[_InFlight] = []
        self._order = 0
        self.log: list[FaultRecord] = []
        self.stats = WireStats()

    def _fault(self, now: int, lane: _Lane, kind: str, packet: AddressedSegment) -> None:
        self.log.append(FaultRecord(now, lane.direction, kind, packet.segment.summary()))
        self.stats.faults[kind] += 1

    def _schedule(self, arrival: int, destination: Side, packet: AddressedSegment) -> None:
        self._order += 1
        heapq.heappush(self._heap, _InFlight(arrival, self._order, destination, packet))

    def send(self, source: Side, packet: AddressedSegment, now: int) -> tuple[str, ...]:
        """Put a packet on the wire from `source` at time `now`; returns the faults applied."""
        lane = self._lanes[source]
        imp = lane.impairment
        rng = lane.rng
        destination: Side = "b" if source == "a" else "a"
        self.stats.sent += 1
        self.stats.bytes_sent += len(packet.segment.payload)
        # A fixed number of draws per packet, whatever the outcome (see the module docstring).
        u_loss, u_corrupt, u_dup, u_reorder = rng.random(), rng.random(), rng.random(), rng.random()
        jitter = rng.randint(0, imp.jitter) if imp.jitter else 0
        dup_jitter = rng.randint(0, imp.jitter) if imp.jitter else 0
        corrupt_seed = rng.getrandbits(32)

        departure = now
        if imp.rate_bps is not None:
            size = IP_HEADER_LEN + packet.segment.header_len + len(packet.segment.payload)
            departure = max(now, lane.busy_until) + -(-size * 8 * 1_000_000 // imp.rate_bps)
            lane.busy_until = departure
        if u_loss < imp.loss:
            self._fault(now, lane, "loss", packet)
            return ("loss",)
        faults: list[str] = []
        delivered = packet
        if u_corrupt < imp.corrupt:
            self._fault(now, lane, "corrupt", packet)
            faults.append("corrupt")
            mangled = self._corrupter(packet, random.Random(corrupt_seed))
            if mangled is None:
                return tuple(faults)
            delivered = mangled
        arrival = departure + imp.delay + jitter
        if u_reorder < imp.reorder:
            self._fault(now, lane, "reorder", delivered)
            faults.append("reorder")
            arrival += imp.reorder_delay
        self._schedule(arrival, destination, delivered)
        if u_dup < imp.duplicate:
            self._fault(now, lane, "duplicate", delivered)
            faults.append("duplicate")
            self._schedule(departure + imp.delay + dup_jitter, destination, delivered)
        return tuple(faults)

    def next_arrival(self) -> int | None:
        """When the next packet in flight reaches its side, or None if nothing is in flight."""
        return self._heap[0].arrival if self._heap else None

    @property
    def in_flight(self) -> int:
        return len(self._heap)

    def deliver(self, now: int) -> list[tuple[Side, AddressedSegment]]:
        """Every packet that has arrived by `now`, in arrival order, with the side it reached."""
        out: list[tuple[Side, AddressedSegment]] = []
        while self._heap and self._heap[0].arrival <= now:
            item = heapq.heappop(self._heap)
            out.append((item.destination, item.packet))
        self.stats.delivered += len(out)
        return out
