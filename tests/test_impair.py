"""Fault injection on a live link: seeded schedules, one-bit corruption, token-bucket pacing, and
10 MB transfers through the hand-built stack that survive every fault byte-exact.

Unprivileged tests drive the sans-IO lane with explicit times and the threaded wrapper over a
socketpair "link". Privileged tests put the wrapper between the lab stack and the veth of the lab
topology, with a kernel echo server in the server namespace, exactly as tests/test_runtime.py
does without faults.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from privileges import skip_unless_root

from lab.capture.reader import read_packets
from lab.cli.impairment import (
    add_impairment_arguments,
    impairment_from_args,
    parse_duration,
    parse_percent,
    parse_rate,
)
from lab.link.impair import (
    ImpairedLink,
    ImpairmentLane,
    TokenBucket,
    annotate_frames,
    flip_one_bit,
    frame_summary,
)
from lab.link.impairment import Impairment
from lab.link.packet import PacketLink
from lab.link.socketpair import SocketPairLink, socketpair_links
from lab.link.tap import CaptureTap
from lab.runtime import Socket
from lab.sim.wire import MemoryWire
from lab.wire.segment import AddressedSegment, Flags, Segment


def tcp_frame(seq: int, payload: bytes = b"x" * 100) -> bytes:
    """A well-formed Ethernet/IPv4/TCP frame (checksums unset: the lane never looks at them)."""
    tcp = (
        (40000).to_bytes(2, "big")
        + (7).to_bytes(2, "big")
        + seq.to_bytes(4, "big")
        + (0).to_bytes(4, "big")
        + bytes([0x50, 0x10])
        + b"\xff\xff\x00\x00\x00\x00"
    )
    total = 20 + len(tcp) + len(payload)
    ip = (
        bytes([0x45, 0])
        + total.to_bytes(2, "big")
        + b"\x00\x00\x40\x00\x40\x06\x00\x00"
        + bytes([198, 18, 0, 2, 198, 18, 0, 1])
    )
    eth = bytes.fromhex("020000000001") + bytes.fromhex("020000000002") + b"\x08\x00"
    return eth + ip + tcp + payload


def decide_many(
    imp: Impairment, n: int, direction: str = "out", spacing: int = 1000
) -> list[tuple[int, tuple[str, ...], int]]:
    """(index, fault kinds, copies) for n frames offered `spacing` us apart."""
    lane = ImpairmentLane("out" if direction == "out" else "in", imp)
    out = []
    for i in range(n):
        v = lane.decide(tcp_frame(i), i * spacing)
        out.append((v.index, tuple(f.kind for f in v.faults), len(v.copies)))
    return out


# -- the sans-IO lane --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "kind"),
    [("loss", "drop"), ("duplicate", "dup"), ("reorder", "reorder"), ("corrupt", "corrupt")],
)
def test_each_fault_is_applied_at_its_configured_rate(field: str, kind: str) -> None:
    imp = dataclasses.replace(Impairment(seed=3), **{field: 0.05})
    n = 20_000
    hits = sum(kind in kinds for _, kinds, _ in decide_many(imp, n))
    assert abs(hits - n * 0.05) < 5 * (n * 0.05 * 0.95) ** 0.5  # within five sigma


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    imp = Impairment(loss=0.05, duplicate=0.02, reorder=0.05, corrupt=0.01, jitter=500, seed=9)
    assert decide_many(imp, 3000) == decide_many(imp, 3000)
    assert decide_many(imp, 3000) != decide_many(dataclasses.replace(imp, seed=10), 3000)


def test_the_corruption_note_names_the_byte_and_bit_that_changed() -> None:
    lane = ImpairmentLane("out", Impairment(corrupt=1.0, seed=4))
    for i in range(20):
        frame = tcp_frame(i)
        verdict = lane.decide(frame, i)
        (sent,) = (data for _, data in verdict.copies)
        (offset,) = (k for k in range(len(frame)) if frame[k] != sent[k])
        mask = frame[offset] ^ sent[offset]
        assert verdict.faults[0].detail == f"byte {offset} bit mask 0x{mask:02x}"


def test_the_two_directions_have_independent_schedules() -> None:
    imp = Impairment(loss=0.1, seed=4)
    assert decide_many(imp, 2000, "out") != decide_many(imp, 2000, "in")


def test_raising_the_loss_rate_does_not_move_the_duplicates() -> None:
    low = decide_many(Impairment(loss=0.01, duplicate=0.05, seed=2), 3000)
    high = decide_many(Impairment(loss=0.2, duplicate=0.05, seed=2), 3000)
    dup_low = {i for i, kinds, _ in low if "dup" in kinds}
    dup_high = {i for i, kinds, _ in high if "dup" in kinds}
    dropped_high = {i for i, kinds, _ in high if "drop" in kinds}
    assert dup_high == dup_low - dropped_high


def test_the_live_lane_drops_the_same_frames_as_the_memory_wire_for_a_seed() -> None:
    """One schedule type, one meaning: frame N is lost on both wires or on neither."""
    imp = Impairment(loss=0.1, seed=12)
    wire = MemoryWire(imp)
    for i in range(2000):
        seg = Segment(40000, 7, seq=i, flags=Flags.ACK, payload=b"x")
        wire.send("a", AddressedSegment("198.18.0.2", "198.18.0.1", seg), now=i * 1000)
    memory_lost = {int(r.summary.split("seq=")[1].split()[0]) for r in wire.log if r.kind == "loss"}
    live_lost = {i for i, kinds, _ in decide_many(imp, 2000) if "drop" in kinds}
    assert live_lost
    assert live_lost == memory_lost


def test_a_duplicated_frame_leaves_twice_and_a_dropped_one_not_at_all() -> None:
    results = decide_many(Impairment(loss=0.1, duplicate=0.1, seed=1), 2000)
    for _, kinds, copies in results:
        if "drop" in kinds:
            assert copies == 0
        elif "dup" in kinds:
            assert copies == 2
        else:
            assert copies == 1


def test_delay_jitter_and_reorder_set_the_release_time() -> None:
    lane = ImpairmentLane(
        "out", Impairment(delay=10_000, jitter=2_000, reorder=0.2, reorder_delay=30_000, seed=5)
    )
    reordered = plain = 0
    for i in range(1000):
        v = lane.decide(tcp_frame(i), 1_000_000)
        (due, _), *_ = v.copies
        extra = due - 1_000_000
        if any(f.kind == "reorder" for f in v.faults):
            assert 40_000 <= extra <= 42_000
            reordered += 1
        else:
            assert 10_000 <= extra <= 12_000
            plain += 1
    assert reordered > 100
    assert plain > 700


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(min_size=0, max_size=1500), seed=st.integers(0, 2**32 - 1))
def test_corruption_flips_exactly_one_bit_after_the_ethernet_header(
    payload: bytes, seed: int
) -> None:
    import random

    frame = tcp_frame(1, payload)
    mangled, bit = flip_one_bit(frame, random.Random(seed))
    assert len(mangled) == len(frame)
    diff = int.from_bytes(frame, "big") ^ int.from_bytes(mangled, "big")
    assert diff.bit_count() == 1
    assert mangled[:14] == frame[:14]
    assert bit >= 14 * 8
    assert mangled[bit // 8] != frame[bit // 8]


def test_a_corrupted_frame_fails_its_real_checksum() -> None:
    """Through the fast codec: the flipped bit is caught by the IPv4 or TCP checksum."""
    import random

    from lab.wire.fast import decode_ethernet, encode_tcp
    from lab.wire.frame import Dropped, Ipv4Header, TcpFrame

    seg = Segment(40000, 7, seq=1000, ack=1, flags=Flags.ACK | Flags.PSH, payload=b"hello" * 50)
    frame = TcpFrame(
        "02:00:00:00:00:01", "02:00:00:00:00:02", Ipv4Header("198.18.0.2", "198.18.0.1"), seg
    )
    raw = encode_tcp(frame)
    assert not isinstance(decode_ethernet(raw), Dropped)
    rng = random.Random(0)
    for _ in range(300):
        mangled, _bit = flip_one_bit(raw, rng)
        decoded = decode_ethernet(mangled)
        assert isinstance(decoded, Dropped), "a one-bit error slipped past the checksums"


def test_token_bucket_sends_a_burst_then_paces_at_the_rate() -> None:
    bucket = TokenBucket(8_000_000, burst_bytes=3000)  # 8 Mbit/s: one byte per microsecond
    departures = [bucket.departure(1000, 0) for _ in range(10)]
    assert departures[:3] == [0, 0, 0]
    assert departures[3:] == [1000 * k for k in range(1, 8)]
    # Idle time refills the bucket up to the burst, not beyond.
    later = [bucket.departure(1000, 1_000_000) for _ in range(4)]
    assert later == [1_000_000, 1_000_000, 1_000_000, 1_001_000]


def test_rate_limited_lane_paces_frames_and_drops_when_the_queue_is_too_long() -> None:
    imp = Impairment(rate_bps=1_000_000, seed=1)  # 1 Mbit/s: a 1250-byte frame takes 10 ms
    lane = ImpairmentLane("out", imp, burst_bytes=1250, queue_limit_us=50_000)
    frame = b"\x00" * 1250
    dues = []
    for _ in range(10):
        v = lane.decide(frame, 0)
        dues.append(v.copies[0][0] if v.copies else None)
    assert dues[:6] == [0, 10_000, 20_000, 30_000, 40_000, 50_000]
    assert dues[6:] == [None] * 4  # would wait more than 50 ms
    assert lane.faults["queue-drop"] == 4


def test_frame_summary_names_ports_sequence_and_length() -> None:
    assert frame_summary(tcp_frame(123456, b"abc")) == (
        "198.18.0.2:40000>198.18.0.1:7 seq=123456 ack=0 len=3"
    )
    assert frame_summary(b"\x00" * 10) == "10 bytes"


def test_frame_summary_of_ipv6_frames() -> None:
    from lab.wire import fast
    from lab.wire.frame import IPPROTO_ICMPV6, Ipv6Header, NeighborSolicitation, TcpFrame
    from lab.wire.segment import Flags, Segment

    ip = Ipv6Header("2001:2::1", "2001:2::2")
    seg = Segment(40000, 21, 7, 0, Flags.SYN, 64240)
    syn = fast.encode(TcpFrame("02:00:00:00:00:01", "02:00:00:00:00:02", ip, seg))
    assert frame_summary(syn) == "[2001:2::1]:40000>[2001:2::2]:21 S seq=7 ack=0 len=0"
    nd_ip = Ipv6Header("2001:2::1", "ff02::1:ff00:2", 255, IPPROTO_ICMPV6)
    ns = NeighborSolicitation("02:00:00:00:00:01", "33:33:ff:00:00:02", nd_ip, "2001:2::2")
    assert frame_summary(fast.encode(ns)) == "2001:2::1>ff02::1:ff00:2 icmp6 type 135"
    assert frame_summary(syn[:50]) == "IPv6, 50 bytes"


# -- the command line --------------------------------------------------------------------------


def test_parsers_read_the_command_line_units() -> None:
    assert parse_percent("5%") == pytest.approx(0.05)
    assert parse_percent("0.1%") == pytest.approx(0.001)
    assert parse_percent("0.02") == pytest.approx(0.02)  # a bare number is a share (lab.units)
    assert parse_duration("10ms") == 10_000
    assert parse_duration("500us") == 500
    assert parse_duration("1.5s") == 1_500_000
    assert parse_rate("10mbit") == 10_000_000
    assert parse_rate("500kbit") == 500_000
    assert parse_rate("1mbps") == 8_000_000
    bad_inputs = [
        ("-5%", parse_percent),
        ("150%", parse_percent),
        ("10 parsecs", parse_duration),
        ("fast", parse_rate),
        ("0mbit", parse_rate),
    ]
    for bad, parse in bad_inputs:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)  # type: ignore[operator]


def test_impairment_from_args_builds_the_schedule_or_none() -> None:
    parser = argparse.ArgumentParser()
    add_impairment_arguments(parser)
    line = "--loss 5% --reorder 2% --dup 1% --corrupt 0.1% --delay 10ms --rate 10mbit --seed 7"
    args = parser.parse_args(line.split(" "))
    imp = impairment_from_args(args)
    assert imp == Impairment(
        loss=0.05,
        duplicate=0.01,
        reorder=0.02,
        corrupt=0.001,
        delay=10_000,
        rate_bps=10_000_000,
        seed=7,
    )
    assert impairment_from_args(parser.parse_args([])) is None
    unseeded = impairment_from_args(parser.parse_args(["--loss", "1%"]))
    assert unseeded is not None
    assert unseeded == Impairment(loss=0.01, seed=unseeded.seed)
    # no --seed: a fresh random one each time (the capture comment records it), not always 0
    seeds = set()
    for _ in range(4):
        again = impairment_from_args(parser.parse_args(["--loss", "1%"]))
        assert again is not None
        seeds.add(again.seed)
    assert len(seeds) > 1


def test_bad_options_are_usage_errors_not_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_impairment_arguments(parser)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--loss", "lots"])
    assert exc.value.code == 2
    assert "not a percentage" in capsys.readouterr().err


# -- the threaded wrapper over a socketpair ----------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[SocketPairLink, SocketPairLink]]:
    a, b = socketpair_links()
    yield a, b
    a.close()
    b.close()


def drain(link: SocketPairLink | ImpairedLink, quiet: float = 0.2) -> list[bytes]:
    got = []
    while (frame := link.receive(quiet)) is not None:
        got.append(frame)
    return got


def test_impaired_link_drops_and_duplicates_in_both_directions(
    pair: tuple[SocketPairLink, SocketPairLink],
) -> None:
    inner, peer = pair
    imp = Impairment(loss=0.1, duplicate=0.1, seed=8)
    with ImpairedLink(inner, imp) as link:
        arrived_out: list[bytes] = []
        arrived_in: list[bytes] = []
        for batch in range(6):  # small batches: a socketpair queue holds only so many frames
            for i in range(50 * batch, 50 * batch + 50):
                link.send(tcp_frame(i))
                peer.send(tcp_frame(10_000 + i))
            arrived_out += drain(peer, 0.05)
            arrived_in += drain(link, 0.05)
        arrived_out += drain(peer, 0.3)  # stragglers, should the machine be busy
        arrived_in += drain(link, 0.3)
    for direction, arrived in (("out", arrived_out), ("in", arrived_in)):
        lane = link.lanes[direction]  # type: ignore[index]
        assert len(arrived) == 300 - lane.faults["drop"] + lane.faults["dup"]
        assert lane.faults["drop"] > 10
        assert lane.faults["dup"] > 10
    assert {f.direction for f in link.log} == {"out", "in"}


def test_rerunning_with_the_same_seed_repeats_the_fault_log_frame_for_frame() -> None:
    imp = Impairment(loss=0.05, reorder=0.05, duplicate=0.02, corrupt=0.01, seed=11)

    def run(impairment: Impairment) -> list[tuple[str, int, str, str]]:
        inner, peer = socketpair_links()
        try:
            with ImpairedLink(inner, impairment) as link:
                for batch in range(4):
                    for i in range(50 * batch, 50 * batch + 50):
                        link.send(tcp_frame(i))
                        peer.send(tcp_frame(10_000 + i))
                    drain(peer, 0.02)
                    drain(link, 0.02)
                drain(peer, 0.05)
                drain(link, 0.05)
        finally:
            inner.close()
            peer.close()
        # What a capture comment says, less the time: kind, direction, frame number, frame.
        return sorted((f.direction, f.index, f.kind, f.summary) for f in link.log)

    first = run(imp)
    assert len(first) > 20
    assert run(imp) == first
    assert run(dataclasses.replace(imp, seed=12)) != first


def test_impaired_link_holds_a_delayed_frame_and_wakes_the_reader(
    pair: tuple[SocketPairLink, SocketPairLink],
) -> None:
    inner, peer = pair
    with ImpairedLink(inner, Impairment(delay=50_000)) as link:
        started = time.monotonic()
        peer.send(tcp_frame(1))
        import select

        readable, _, _ = select.select([link.fileno()], [], [], 2)
        waited = time.monotonic() - started
        assert readable
        assert 0.045 <= waited < 1
        assert link.receive(0) == tcp_frame(1)
        link.send(tcp_frame(2))
        assert peer.receive(0) is None  # not yet: it is held for 50 ms
        time.sleep(0.1)
        assert peer.receive(0) == tcp_frame(2)


def test_faults_are_written_into_the_capture_comments(
    pair: tuple[SocketPairLink, SocketPairLink],
) -> None:
    inner, peer = pair
    buffer = io.BytesIO()
    link = ImpairedLink(inner, Impairment(loss=0.2, seed=3))
    tap = CaptureTap(link, buffer)
    callback = annotate_frames(tap, link)
    for i in range(50):
        tap.send(tcp_frame(i))
        callback("out", b"", [])
        peer.send(tcp_frame(1000 + i))
    time.sleep(0.1)
    while tap.receive(0.1) is not None:
        callback("in", b"", [])
    link.close()
    tap.close()
    comments = [p.comment or "" for p in read_packets(io.BytesIO(buffer.getvalue()))]
    assert comments[0].startswith("out: impair: schedule out loss=20% seed=3; in loss=20% seed=3")
    dropped_out = [c for c in comments if "impair: drop out" in c]
    assert len(dropped_out) == link.lanes["out"].faults["drop"] > 0
    assert "seq=" in dropped_out[0]
    # Inbound frames dropped before the stack are named on the next inbound frame.
    assert sum(c.count("impair: drop in") for c in comments) == link.lanes["in"].faults["drop"]


# -- privileged: 10 MB through the hand-built stack --------------------------------------------

TEN_MB = 10 * 1024 * 1024

IMPAIRMENTS = {
    "loss": Impairment(loss=0.05, seed=1),
    "reorder": Impairment(reorder=0.05, reorder_delay=5_000, seed=2),
    "duplicate": Impairment(duplicate=0.02, seed=3),
    "corrupt": Impairment(corrupt=0.005, seed=4),
    "all": Impairment(
        loss=0.05, reorder=0.05, reorder_delay=5_000, duplicate=0.02, corrupt=0.005, seed=5
    ),
}
# Measured (2 cores), since SACK/RACK loss marking and tail loss probes: loss 17 s, reorder 4 s,
# duplicate 2 s, corrupt 6 s, all 7 s; about 40 s in all, so every case runs in the suite.
SUITE = list(IMPAIRMENTS)
# A transfer fails when no byte moves either way for this long, not after a fixed budget: on a
# loaded machine the same transfer takes ten times as long (measured: 80 s instead of 8 s, with
# three busy processes against the test) while still moving every few seconds, whereas a real
# stall (a window deadlock, a lost FIN) moves nothing at all. 60 s outlasts the longest honest
# pause, RTO back-off included (1 + 2 + 4 + 8 + 16 s of lost retransmissions).
STALL_SECONDS = 60.0
KIND_OF = {"loss": "drop", "reorder": "reorder", "duplicate": "dup", "corrupt": "corrupt"}


@dataclass
class LiveLab:
    topo: object
    server_ip: str
    client_ip: str
    client_mac: str
    prefixlen: int
    link: object


@pytest.fixture(scope="module")
def lab_topology() -> Iterator[LiveLab]:
    skip_unless_root()
    from lab.topology import Topology
    from lab.topology.peers import start_echo_server

    with Topology() as topo:
        info = topo.info
        start_echo_server(topo, info.server_ip, 7)  # stopped by the topology's teardown
        link = PacketLink.open_client_end(topo)
        try:
            yield LiveLab(
                topo, info.server_ip, info.client_ip, info.client_mac, info.prefixlen, link
            )
        finally:
            link.close()


def stall_report(sock: Socket, impaired: ImpairedLink, lab: LiveLab, capture: Path) -> str:
    """Who waits on whom when nothing moves: our connection's numbers and last trace lines,
    the impairer's held frames, and the kernel's view of the same connection (`ss -tino` in
    the server namespace), with the capture to read next (`lab replay`, tshark)."""
    import subprocess

    c = sock.connection
    with sock.runtime._lock:
        ours = (
            f"{c.state.value} snd_una={c.snd_una} snd_nxt={c.snd_nxt} snd_wnd={c.snd_wnd} "
            f"rcv_nxt={c.rcv_nxt} rcv_wnd={c.rcv_wnd} cwnd={c.cwnd} rto={c.rto} "
            f"send_buffered={c.send_buffered} recv_buffered={c.recv_buffered} "
            f"next_deadline={c.next_deadline()} now={sock.runtime.now()}\n{c.stats}"
        )
        trace = "\n".join(f"  {entry}" for entry in c.trace[-20:])
    namespace = lab.topo.names.server_ns  # type: ignore[attr-defined]
    kernel = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-tino"], capture_output=True, text=True
    )
    return (
        f"lab stack: {ours}\nlast trace entries:\n{trace}\n"
        f"impairer: {impaired.held} frames held, {impaired.stats}\n"
        f"kernel (ss -tino):\n{kernel.stdout}{kernel.stderr}capture: {capture}"
    )


def echo_through(
    sock: Socket,
    payload: bytes,
    stall: float,
    report: Callable[[], str],
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """Send `payload` from a writer thread (then half-close) while reading the echo here;
    returns what came back once the peer closed.

    Fails at once with the writer's own error (before, a writer that gave up left the reader
    waiting for data that could not come, and the writer's error was never seen), and after
    `stall` seconds in which no byte moved either way, with `report()` in the message."""
    import threading

    errors: list[BaseException] = []

    def writer() -> None:
        try:
            sock.sendall(payload)
            sock.shutdown()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    received = bytearray()
    progress = (-1, -1)
    last_progress = clock()
    while True:
        try:
            chunk = sock.recv(1 << 16, timeout=0.5)
        except TimeoutError:
            chunk = None
        if errors:
            raise AssertionError(f"the writer failed: {errors[0]!r}") from errors[0]
        if chunk == b"":
            break
        if chunk:
            received += chunk
        moved = (len(received), sock.connection.snd_una)
        if moved != progress:
            progress, last_progress = moved, clock()
        elif clock() - last_progress > stall:
            pytest.fail(f"no byte moved either way for {stall:g} s\n{report()}")
    thread.join(stall)
    assert not thread.is_alive(), "the writer did not finish after the peer closed"
    assert not errors, errors
    return bytes(received)


def numbered_lines(size: int) -> bytes:
    line = len(b"%09d impaired lab\n" % 0)
    return b"".join(b"%09d impaired lab\n" % i for i in range(size // line + 1))[:size]


class ScriptedEchoSocket:
    """What `echo_through` needs of a `Socket`, on a virtual clock: `recv` hands out `chunks`
    (None: a timeout) and moves the clock half a second per call; `sendall` raises `error`."""

    def __init__(self, chunks: list[bytes | None], error: BaseException | None = None) -> None:
        import threading
        from types import SimpleNamespace

        self.chunks = chunks
        self.error = error
        self.now = 0.0
        self.connection = SimpleNamespace(snd_una=0)
        self.written = threading.Event()

    def sendall(self, data: bytes) -> None:
        self.written.set()
        if self.error is not None:
            raise self.error

    def shutdown(self) -> None:
        pass

    def recv(self, max_bytes: int, timeout: float) -> bytes:
        self.written.wait(10)  # the writer has run: its outcome is known to the reader
        self.now += timeout
        chunk = self.chunks.pop(0) if self.chunks else None
        if chunk is None:
            raise TimeoutError
        return chunk


def test_a_writer_that_fails_ends_the_echo_with_its_own_error() -> None:
    """Before: the reader waited 60 s for echoes that could not come and failed with "timed
    out waiting for data", hiding the writer's error."""
    sock = ScriptedEchoSocket([], BrokenPipeError("socket is shut down for writing"))
    with pytest.raises(AssertionError, match="the writer failed: BrokenPipeError"):
        echo_through(sock, b"x", 30.0, lambda: "state", clock=lambda: sock.now)  # type: ignore[arg-type]


def test_a_slow_echo_is_not_a_stall_but_silence_is() -> None:
    slow: list[bytes | None] = [b"a", None, None, None, b"b", None, None, None, b"c", b""]
    sock = ScriptedEchoSocket(slow)
    got = echo_through(sock, b"abc", 1.6, lambda: "state", clock=lambda: sock.now)  # type: ignore[arg-type]
    assert got == b"abc"  # 1.5 s between bytes, 4.5 s in all: slow, never stalled
    silent = ScriptedEchoSocket([b"a"])
    with pytest.raises(pytest.fail.Exception, match=r"no byte moved either way for 1\.6 s\nstate"):
        echo_through(silent, b"a", 1.6, lambda: "state", clock=lambda: silent.now)  # type: ignore[arg-type]


@pytest.mark.privileged
@pytest.mark.parametrize("name", SUITE)
def test_10_mb_echo_survives_the_impairment_byte_exact_both_ways(
    lab_topology: LiveLab, name: str, tmp_path: Path
) -> None:
    from lab.host import Host
    from lab.runtime import Runtime

    imp = IMPAIRMENTS[name]
    capture = tmp_path / f"{name}.pcapng"
    impaired = ImpairedLink(lab_topology.link, imp)  # type: ignore[arg-type]
    tap = CaptureTap(impaired, capture)
    host = Host(
        lab_topology.client_mac,
        lab_topology.client_ip,
        lab_topology.prefixlen,
        None,
        now=time.monotonic_ns() // 1000,
    )
    payload = numbered_lines(TEN_MB)
    started = time.monotonic()
    try:
        with Runtime(host, tap, on_frame=annotate_frames(tap, impaired)) as rt:
            sock = rt.connect(lab_topology.server_ip, 7, timeout=10)
            received = echo_through(
                sock,
                payload,
                STALL_SECONDS,
                lambda: stall_report(sock, impaired, lab_topology, capture),
            )
            with rt._lock:
                tap.flush()
    finally:
        impaired.close()
        tap.close()
    elapsed = time.monotonic() - started
    assert len(received) == len(payload)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    kinds = [KIND_OF[name]] if name in KIND_OF else list(KIND_OF.values())
    for kind in kinds:
        for direction in ("out", "in"):
            assert impaired.lanes[direction].faults[kind] > 0, (kind, direction)  # type: ignore[index]
    comments = "\n".join(p.comment or "" for p in read_packets(capture))
    assert "impair: schedule out " in comments
    for kind in kinds:
        assert f"impair: {kind} out" in comments
        assert f"impair: {kind} in" in comments
    print(f"{name}: 10 MB each way in {elapsed:.1f} s, faults {dict(impaired.stats.faults)}")
