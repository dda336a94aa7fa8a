"""The in-memory wire: seeded faults at the configured rates, reproducible logs, a jumping clock."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.link.impairment import Impairment
from lab.sim.simulation import Simulation, SimulationStalledError, VirtualClock
from lab.sim.wire import BitFlipCorrupter, FaultRecord, MemoryWire, Side
from lab.wire import fast
from lab.wire.frame import Ipv4Header, TcpFrame
from lab.wire.segment import AddressedSegment, Flags, Segment

A, B = "198.18.0.1", "198.18.0.2"


def packet(i: int, payload: bytes = b"x" * 100, src: str = A, dst: str = B) -> AddressedSegment:
    return AddressedSegment(src, dst, Segment(1000, 2000, seq=i, flags=Flags.ACK, payload=payload))


def send_many(wire: MemoryWire, n: int, spacing: int = 1000) -> list[tuple[Side, AddressedSegment]]:
    for i in range(n):
        wire.send("a", packet(i), now=i * spacing)
    return wire.deliver(10**15)


def kinds(wire: MemoryWire, kind: str) -> int:
    return sum(1 for r in wire.log if r.kind == kind)


N = 20_000


def test_a_clean_wire_delivers_every_packet_once_in_order_after_the_delay() -> None:
    wire = MemoryWire(Impairment(delay=5_000))
    for i in range(10):
        wire.send("a", packet(i), now=i)
    assert wire.next_arrival() == 5_000
    assert wire.deliver(5_008) == [("b", packet(i)) for i in range(9)]
    assert wire.deliver(5_009) == [("b", packet(9))]
    assert wire.log == []


def test_packets_from_b_reach_a() -> None:
    wire = MemoryWire()
    wire.send("b", packet(1, src=B, dst=A), now=0)
    assert wire.deliver(0) == [("a", packet(1, src=B, dst=A))]


@pytest.mark.parametrize("kind", ["loss", "duplicate", "reorder", "corrupt"])
def test_fault_rate_is_roughly_as_configured(kind: str) -> None:
    schedules = {
        "loss": Impairment(loss=0.1, seed=7),
        "duplicate": Impairment(duplicate=0.1, seed=7),
        "reorder": Impairment(reorder=0.1, seed=7),
        "corrupt": Impairment(corrupt=0.1, seed=7),
    }
    wire = MemoryWire(schedules[kind])
    send_many(wire, N)
    assert 0.09 * N < kinds(wire, kind) < 0.11 * N


def test_lost_and_corrupted_packets_are_not_delivered_and_duplicates_are_extra() -> None:
    wire = MemoryWire(Impairment(loss=0.1, corrupt=0.05, duplicate=0.1, seed=3))
    out = send_many(wire, N)
    assert len(out) == N - kinds(wire, "loss") - kinds(wire, "corrupt") + kinds(wire, "duplicate")
    assert wire.stats.delivered == len(out)
    assert wire.stats.sent == N


def test_reordered_packets_are_overtaken() -> None:
    wire = MemoryWire(Impairment(reorder=0.2, reorder_delay=10_000, seed=1))
    out = send_many(wire, 1000, spacing=100)
    seqs = [p.segment.seq for _, p in out]
    assert seqs != sorted(seqs)
    assert sorted(seqs) == list(range(1000))
    held = {int(r.summary.split("seq=")[1].split()[0]) for r in wire.log if r.kind == "reorder"}
    first_held = min(held)
    assert seqs.index(first_held) > first_held  # something sent later arrived earlier


def test_jitter_stays_within_its_bound() -> None:
    wire = MemoryWire(Impairment(delay=1_000, jitter=500, seed=2))
    for i in range(500):
        wire.send("a", packet(i), now=0)
    times = []
    while (t := wire.next_arrival()) is not None:
        times.append(t)
        wire.deliver(t)
    assert min(times) >= 1_000
    assert max(times) <= 1_500
    assert len(set(times)) > 50


def test_rate_limit_serialises_packets() -> None:
    # 1460 payload + 20 TCP + 20 IP = 1500 bytes = 12000 bits; at 12 Mbit/s, 1 ms each
    wire = MemoryWire(Impairment(rate_bps=12_000_000))
    for i in range(5):
        wire.send("a", packet(i, payload=b"y" * 1460), now=0)
    arrivals = []
    while (t := wire.next_arrival()) is not None:
        arrivals.append(t)
        wire.deliver(t)
    assert arrivals == [1000, 2000, 3000, 4000, 5000]


def test_same_seed_gives_the_same_log_and_delivery() -> None:
    imp = Impairment(loss=0.1, duplicate=0.1, reorder=0.1, corrupt=0.05, jitter=300, seed=11)
    w1, w2 = MemoryWire(imp), MemoryWire(imp)
    assert send_many(w1, 2000) == send_many(w2, 2000)
    assert w1.log == w2.log
    assert len(w1.log) > 100


def test_different_seeds_give_different_logs() -> None:
    w1 = MemoryWire(Impairment(loss=0.1, seed=1))
    w2 = MemoryWire(Impairment(loss=0.1, seed=2))
    send_many(w1, 2000)
    send_many(w2, 2000)
    assert w1.log != w2.log


def test_raising_one_rate_does_not_move_the_other_faults() -> None:
    w1 = MemoryWire(Impairment(duplicate=0.1, seed=5))
    w2 = MemoryWire(Impairment(duplicate=0.1, reorder=0.3, seed=5))
    send_many(w1, 1000)
    send_many(w2, 1000)
    dups1 = [r.summary for r in w1.log if r.kind == "duplicate"]
    dups2 = [r.summary for r in w2.log if r.kind == "duplicate"]
    assert dups1 == dups2


def test_log_records_time_direction_kind_and_segment() -> None:
    wire = MemoryWire(Impairment(loss=1.0))
    wire.send("b", packet(42, src=B, dst=A), now=1234)
    assert wire.log == [FaultRecord(1234, "b>a", "loss", packet(42).segment.summary())]


def test_reverse_impairment_applies_only_to_b_to_a() -> None:
    wire = MemoryWire(Impairment(), reverse=Impairment(loss=1.0))
    wire.send("a", packet(1), now=0)
    wire.send("b", packet(2, src=B, dst=A), now=0)
    assert wire.deliver(0) == [("b", packet(1))]


def test_a_corrupter_can_deliver_a_mangled_packet() -> None:
    def flip_seq(p: AddressedSegment, rng: random.Random) -> AddressedSegment | None:
        seg = dataclasses.replace(p.segment, seq=p.segment.seq ^ (1 << rng.randrange(32)))
        return dataclasses.replace(p, segment=seg)

    wire = MemoryWire(Impairment(corrupt=1.0), corrupter=flip_seq)
    wire.send("a", packet(0), now=0)
    [(side, got)] = wire.deliver(0)
    assert side == "b"
    assert got.segment.seq != 0
    assert got.segment.seq.bit_count() == 1


@pytest.mark.parametrize(
    "kwargs", [{"loss": 1.5}, {"duplicate": -0.1}, {"delay": -1}, {"rate_bps": 0}]
)
def test_impossible_impairments_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several messages
        Impairment(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32), st.floats(0, 0.5), st.floats(0, 0.5))
def test_every_packet_is_accounted_for(seed: int, loss: float, dup: float) -> None:
    wire = MemoryWire(Impairment(loss=loss, duplicate=dup, reorder=0.2, jitter=2_000, seed=seed))
    out = send_many(wire, 300)
    assert len(out) == 300 - kinds(wire, "loss") + kinds(wire, "duplicate")
    assert wire.in_flight == 0


# -- the simulation driver ---------------------------------------------------------------------


class Pinger:
    """Sends one packet every `interval` us until `count` are sent; counts what it receives."""

    def __init__(self, ip: str, peer: str, interval: int, count: int) -> None:
        self.ip, self.peer, self.interval, self.count = ip, peer, interval, count
        self.sent = 0
        self.received: list[tuple[int, int]] = []
        self._due: int | None = 0 if count else None
        self._queue: list[AddressedSegment] = []

    def receive(self, packet: AddressedSegment, now: int) -> None:
        self.received.append((now, packet.segment.seq))

    def packets_to_send(self, now: int) -> list[AddressedSegment]:
        out, self._queue = self._queue, []
        return out

    def on_timer(self, now: int) -> None:
        self._queue.append(packet(self.sent, src=self.ip, dst=self.peer))
        self.sent += 1
        self._due = now + self.interval if self.sent < self.count else None

    def next_deadline(self) -> int | None:
        return self._due


def test_the_clock_jumps_to_the_next_deadline() -> None:
    a = Pinger(A, B, interval=60_000_000, count=3)  # one packet a minute
    b = Pinger(B, A, interval=1, count=0)
    sim = Simulation(a, b, MemoryWire(Impairment(delay=10_000)))
    assert sim.run_until(lambda: len(b.received) == 3, limit=10**9)
    assert b.received == [(10_000, 0), (60_010_000, 1), (120_010_000, 2)]
    assert sim.now == 120_010_000
    assert sim.steps <= 6


def test_run_until_stops_at_the_limit() -> None:
    a = Pinger(A, B, interval=1_000_000, count=100)
    b = Pinger(B, A, interval=1, count=0)
    sim = Simulation(a, b, MemoryWire())
    assert not sim.run_until(lambda: False, limit=5_500_000)
    assert len(b.received) == 6
    assert sim.now <= 5_500_000


def test_run_until_returns_when_nothing_is_left_to_happen() -> None:
    a = Pinger(A, B, interval=1, count=2)
    b = Pinger(B, A, interval=1, count=0)
    sim = Simulation(a, b, MemoryWire())
    assert not sim.run_until(lambda: False, limit=10**12)
    assert len(b.received) == 2


def test_run_for_advances_the_clock_even_when_idle() -> None:
    sim = Simulation(Pinger(A, B, 1, 0), Pinger(B, A, 1, 0), MemoryWire())
    sim.run_for(5_000_000)
    assert sim.now == 5_000_000


def test_observer_sees_sends_and_deliveries() -> None:
    seen: list[tuple[int, str, Side]] = []
    a = Pinger(A, B, interval=100, count=1)
    b = Pinger(B, A, interval=1, count=0)
    sim = Simulation(
        a, b, MemoryWire(Impairment(delay=7)), observer=lambda t, e, s, p: seen.append((t, e, s))
    )
    sim.run_until(lambda: bool(b.received), limit=1000)
    assert seen == [(0, "send", "a"), (7, "deliver", "b")]


class Stuck(Pinger):
    def on_timer(self, now: int) -> None:
        pass  # never moves its deadline


def test_a_party_that_never_moves_its_deadline_is_reported() -> None:
    sim = Simulation(Stuck(A, B, 1, 1), Pinger(B, A, 1, 0), MemoryWire())
    with pytest.raises(SimulationStalledError):
        sim.run_until(lambda: False, limit=10)


def test_virtual_clock_never_goes_back() -> None:
    clock = VirtualClock(10)
    clock.advance_to(20)
    with pytest.raises(ValueError, match="back"):
        clock.advance_to(19)


# -- corruption on encoded bytes ----------------------------------------------------------------

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def encode_fast(p: AddressedSegment) -> bytes:
    return fast.encode(TcpFrame(MAC_A, MAC_B, Ipv4Header(p.src, p.dst), p.segment))


def decode_fast(raw: bytes) -> AddressedSegment | None:
    frame = fast.decode_ethernet(raw)
    if isinstance(frame, TcpFrame) and isinstance(frame.ip, Ipv4Header):
        return AddressedSegment(frame.ip.src, frame.ip.dst, frame.segment)
    return None


def test_bit_flips_in_encoded_bytes_are_caught_by_the_checksums() -> None:
    corrupter = BitFlipCorrupter(encode_fast, decode_fast, flips=1)
    wire = MemoryWire(Impairment(corrupt=1.0, seed=3), corrupter=corrupter)
    out = send_many(wire, 1000)
    assert kinds(wire, "corrupt") == 1000
    # A single flipped bit is always caught by the IPv4 or TCP checksum; only flips in the
    # Ethernet addresses (no FCS on this wire) get through, and those leave the segment intact.
    assert len(out) < 150
    sent = {p.segment.seq: p for p in (packet(i) for i in range(1000))}
    assert all(p == sent[p.segment.seq] for _, p in out)


def test_bit_flip_corrupter_round_trips_without_flips_applied() -> None:
    p = packet(5)
    assert decode_fast(encode_fast(p)) == p


def test_bit_flip_corrupter_needs_at_least_one_flip() -> None:
    with pytest.raises(ValueError, match="at least one"):
        BitFlipCorrupter(encode_fast, decode_fast, flips=0)


def test_send_returns_the_faults_it_applied() -> None:
    assert MemoryWire(Impairment(loss=1.0)).send("a", packet(0), 0) == ("loss",)
    both = MemoryWire(Impairment(reorder=1.0, duplicate=1.0)).send("a", packet(0), 0)
    assert both == ("reorder", "duplicate")
    assert MemoryWire().send("a", packet(0), 0) == ()


def test_observer_hears_of_lost_packets() -> None:
    seen: list[str] = []
    a = Pinger(A, B, interval=100, count=1)
    sim = Simulation(
        a,
        Pinger(B, A, 1, 0),
        MemoryWire(Impairment(loss=1.0)),
        observer=lambda t, e, s, p: seen.append(e),
    )
    sim.run_until(lambda: False, limit=1000)
    assert seen == ["send", "loss"]
