"""Fault injection on a live link, without netem: a wrapper that impairs frames in user space.

Many kernels (this one, most CI kernels) lack `sch_netem`, so the lab impairs its own link. The
wrapper sits between the runtime (or a capture tap) and any link with `send`, `receive` and
`fileno` (AF_PACKET, a test wire), and applies the same `Impairment` schedule type as the
in-memory wire (`lab.sim.wire`) to each direction: seeded loss, duplication, reordering (a frame
held back by `reorder_delay`, so later frames overtake it), corruption, delay plus jitter, and a
rate limit.

Two parts, as everywhere in `lab`:

* `ImpairmentLane` is sans-IO: given a frame and the time, it says which copies of the frame leave
  and when, and which faults it applied. It draws the same number of random numbers for every frame
  whatever happens to it, with the same per-direction seeding as the memory wire, so the fault of
  the N-th frame of a direction depends only on the seed and N. Raising the loss rate does not
  move the duplicates. On a live link the *timing* of frames varies between runs; the decisions
  per frame do not.
* `ImpairedLink` is the driver: one background thread watches the inner link and a heap of held
  frames, releases each copy at its time, and hands inbound frames to the caller through a pipe
  whose read end is `fileno()` (the runtime selects on it; a held frame must wake the runtime when
  it becomes due, which the inner link's descriptor could not do).

Corruption flips exactly one bit of the frame, chosen among the bytes after the Ethernet header, so
the IPv4 header checksum or the TCP checksum catches it (a one-bit error always changes an Internet
checksum), as a real receiver would. Flipping a bit of the Ethernet header would only misdeliver
the frame, which teaches nothing.

Rate limit: a token bucket (`TokenBucket`) of `Impairment.rate_bps`, with a burst of
`burst_bytes`; frames wait in FIFO order for their tokens, and a frame that would wait longer
than `queue_limit_us` is dropped, as a router queue would (this one depends on timing, so it is
logged as "queue-drop" apart from the seeded faults).

Every applied fault is appended to `log`, sent to the `lab.link.impair` logger, and kept as a note
for the frame it concerns: `take_notes()` returns them, and `annotate_frames(tap, link)` is a
runtime frame callback that writes them (with the TCP state transitions) into the comments of a
`CaptureTap` wrapped around this link, e.g. "impair: drop out #118 198.18.0.2:40000>198.18.0.1:7
seq=171489 len=1448". Inbound frames that never reach the stack (dropped, or corrupted and then
refused) are named in the comment of the next inbound frame that does. The first comment also
carries the whole schedule (rates and seed), so a run can be reproduced from its capture.

Command line: `add_impairment_arguments(parser)` adds `--loss 5% --reorder 2% --dup 1% --corrupt
0.1% --delay 10ms --jitter 2ms --rate 10mbit --seed N`; `impairment_from_args(args)` turns them
into an `Impairment` (None when no fault was asked for).
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import math
import os
import random
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from lab.capture.reader import Direction  # "in" / "out", as a capture records them
from lab.link import Annotatable, SelectableLink
from lab.link.impairment import Impairment

__all__ = [
    "DEFAULT_BURST_BYTES",
    "DEFAULT_QUEUE_LIMIT_US",
    "ImpairedLink",
    "Impairment",
    "ImpairmentLane",
    "LinkFault",
    "TokenBucket",
    "Verdict",
    "annotate_frames",
    "describe_impairment",
    "flip_one_bit",
    "frame_summary",
]

MEMORY_SIDE: dict[Direction, str] = {"out": "a>b", "in": "b>a"}
ETHERNET_HEADER = 14
DEFAULT_BURST_BYTES = 16 * 1514  # a few frames may leave back to back, as from a real NIC queue
DEFAULT_QUEUE_LIMIT_US = 200_000  # a frame that would queue longer than this is dropped
RECEIVE_BATCH = 256  # frames taken from the inner link per wake-up of the worker

log = logging.getLogger(__name__)


# -- describing frames and faults ------------------------------------------------------------


def frame_summary(frame: bytes) -> str:
    """A short description of an Ethernet frame: TCP ports, seq and length, or its EtherType.

    Parsed by hand with `struct` rather than through a codec: a corrupted frame must still be
    described, and this runs for every fault on the bulk path."""
    if len(frame) < ETHERNET_HEADER + 20:
        return f"{len(frame)} bytes"
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0806:
        return "ARP"
    if ethertype == 0x86DD:
        return _ipv6_summary(frame)
    if ethertype != 0x0800:
        return f"ethertype 0x{ethertype:04x}"
    ihl = (frame[ETHERNET_HEADER] & 0x0F) * 4
    total = int.from_bytes(frame[16:18], "big")
    proto = frame[23]
    src = ".".join(str(b) for b in frame[26:30])
    dst = ".".join(str(b) for b in frame[30:34])
    start = ETHERNET_HEADER + ihl
    if proto != 6 or len(frame) < start + 20:
        return f"{src}>{dst} proto {proto}"
    sport, dport, seq, ack, offset_flags = struct.unpack_from("!HHIIH", frame, start)
    header = (offset_flags >> 12) * 4
    payload = max(0, total - ihl - header)
    flags = "".join(
        name for bit, name in ((0x02, "S"), (0x01, "F"), (0x04, "R")) if offset_flags & bit
    )
    flag_text = f" {flags}" if flags else ""
    return f"{src}:{sport}>{dst}:{dport}{flag_text} seq={seq} ack={ack} len={payload}"


def _ipv6_summary(frame: bytes) -> str:
    """`frame_summary` of an IPv6 frame: addresses, then TCP's numbers when TCP follows the
    fixed header directly (the stack sends no extension headers), else the next header."""
    if len(frame) < ETHERNET_HEADER + 40:
        return f"IPv6, {len(frame)} bytes"
    plen = int.from_bytes(frame[18:20], "big")
    next_header = frame[20]
    src = socket.inet_ntop(socket.AF_INET6, frame[22:38])
    dst = socket.inet_ntop(socket.AF_INET6, frame[38:54])
    start = ETHERNET_HEADER + 40
    if next_header == 58 and len(frame) > start:
        return f"{src}>{dst} icmp6 type {frame[start]}"
    if next_header != 6 or len(frame) < start + 20:
        return f"{src}>{dst} next header {next_header}"
    sport, dport, seq, ack, offset_flags = struct.unpack_from("!HHIIH", frame, start)
    payload = max(0, plen - (offset_flags >> 12) * 4)
    flags = "".join(
        name for bit, name in ((0x02, "S"), (0x01, "F"), (0x04, "R")) if offset_flags & bit
    )
    flag_text = f" {flags}" if flags else ""
    return f"[{src}]:{sport}>[{dst}]:{dport}{flag_text} seq={seq} ack={ack} len={payload}"


@dataclass(frozen=True, slots=True)
class LinkFault:
    """One fault applied on the live link: enough to explain a run and to find it in a capture."""

    time: int  # microseconds, the link's clock, when the frame was handed to the lane
    direction: Direction
    index: int  # the frame's number in its direction, from 0: what the seeded schedule keys on
    kind: str  # "drop", "corrupt", "reorder", "dup", "queue-drop"
    summary: str
    detail: str = ""

    def note(self) -> str:
        """The text written into a capture comment."""
        extra = f" ({self.detail})" if self.detail else ""
        return f"impair: {self.kind} {self.direction} #{self.index} {self.summary}{extra}"


def _percent(p: float) -> str:
    return f"{p * 100:g}%"


def describe_impairment(imp: Impairment) -> str:
    """The schedule in the command-line words, e.g. "loss=5% dup=1% delay=10ms seed=7"."""
    parts = []
    for name, value in (
        ("loss", imp.loss),
        ("reorder", imp.reorder),
        ("dup", imp.duplicate),
        ("corrupt", imp.corrupt),
    ):
        if value:
            parts.append(f"{name}={_percent(value)}")
    if imp.reorder:
        parts.append(f"reorder-delay={imp.reorder_delay / 1000:g}ms")
    if imp.delay:
        parts.append(f"delay={imp.delay / 1000:g}ms")
    if imp.jitter:
        parts.append(f"jitter={imp.jitter / 1000:g}ms")
    if imp.rate_bps is not None:
        parts.append(f"rate={imp.rate_bps}bit")
    parts.append(f"seed={imp.seed}")
    return " ".join(parts)


# -- the sans-IO parts -----------------------------------------------------------------------


def flip_one_bit(frame: bytes, rng: random.Random) -> tuple[bytes, int]:
    """`frame` with exactly one bit flipped after the Ethernet header; returns (frame, bit index).

    Frames no longer than an Ethernet header get a bit flipped anywhere."""
    start = ETHERNET_HEADER if len(frame) > ETHERNET_HEADER else 0
    if not frame:
        return frame, -1
    bit = rng.randrange(start * 8, len(frame) * 8)
    mangled = bytearray(frame)
    mangled[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(mangled), bit


class TokenBucket:
    """A token bucket in integer arithmetic: `rate_bps` bits per second, `burst_bytes` deep.

    Tokens are counted in bit-microseconds (bits x 10**6), so refilling for `dt` microseconds
    adds exactly `dt * rate_bps` and nothing is rounded until a departure time is computed.
    Frames leave in FIFO order: a frame never departs before the one queued ahead of it.
    """

    def __init__(self, rate_bps: int, burst_bytes: int = DEFAULT_BURST_BYTES) -> None:
        if rate_bps <= 0 or burst_bytes <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate_bps = rate_bps
        self.capacity = burst_bytes * 8 * 1_000_000
        self._tokens = self.capacity  # as of `_last`
        self._last = 0  # the departure time of the last frame
        self._started = False

    def _plan(self, size: int, now: int) -> tuple[int, int]:
        """(departure, tokens left after it) for a frame of `size` bytes offered at `now`."""
        need = size * 8 * 1_000_000
        start = max(now, self._last) if self._started else now
        tokens = self._tokens
        if self._started and start > self._last:
            tokens += (start - self._last) * self.rate_bps
        tokens = min(tokens, self.capacity)
        wait = 0 if tokens >= need else -(-(need - tokens) // self.rate_bps)
        return start + wait, tokens + wait * self.rate_bps - need  # < 0 only for jumbo frames

    def would_depart(self, size: int, now: int) -> int:
        """When a frame of `size` bytes offered at `now` would leave (nothing is taken)."""
        return self._plan(size, now)[0]

    def departure(self, size: int, now: int) -> int:
        """When a frame of `size` bytes offered at `now` leaves; its tokens are taken."""
        depart, self._tokens = self._plan(size, now)
        self._started, self._last = True, depart
        return depart


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the lane did with one frame: the copies that leave, and when (microseconds)."""

    index: int
    copies: tuple[tuple[int, bytes], ...]
    faults: tuple[LinkFault, ...]


class ImpairmentLane:
    """One direction of an impaired link: its schedule, its RNG, its token bucket. Sans-IO."""

    def __init__(
        self,
        direction: Direction,
        impairment: Impairment,
        *,
        burst_bytes: int = DEFAULT_BURST_BYTES,
        queue_limit_us: int | None = DEFAULT_QUEUE_LIMIT_US,
    ) -> None:
        self.direction: Direction = direction
        self.impairment = impairment
        # The memory wire's seeding, with our "out" as its side a (the lab stack) and "in" as
        # side b, so a schedule means the same on both kinds of wire (a test pins this).
        self.rng = random.Random(f"lab.link.memory/{impairment.seed}/{MEMORY_SIDE[direction]}")
        self.bucket = (
            TokenBucket(impairment.rate_bps, burst_bytes)
            if impairment.rate_bps is not None
            else None
        )
        self.queue_limit_us = queue_limit_us
        self.frames = 0
        self.faults: Counter[str] = Counter()

    def decide(self, frame: bytes, now: int) -> Verdict:
        """Apply the schedule to `frame` offered at `now` (microseconds)."""
        imp = self.impairment
        rng = self.rng
        index = self.frames
        self.frames += 1
        # A fixed number of draws per frame, in the memory wire's order (see the module doc).
        u_loss, u_corrupt, u_dup, u_reorder = rng.random(), rng.random(), rng.random(), rng.random()
        jitter = rng.randint(0, imp.jitter) if imp.jitter else 0
        dup_jitter = rng.randint(0, imp.jitter) if imp.jitter else 0
        corrupt_seed = rng.getrandbits(32)

        faults: list[LinkFault] = []

        def fault(kind: str, data: bytes, detail: str = "") -> None:
            faults.append(LinkFault(now, self.direction, index, kind, frame_summary(data), detail))
            self.faults[kind] += 1

        departure = now
        if self.bucket is not None:
            queued = self.bucket.would_depart(len(frame), now) - now
            if self.queue_limit_us is not None and queued > self.queue_limit_us:
                fault("queue-drop", frame, f"queue {queued / 1000:.0f}ms")
                return Verdict(index, (), tuple(faults))
            departure = self.bucket.departure(len(frame), now)
        if u_loss < imp.loss:
            fault("drop", frame)
            return Verdict(index, (), tuple(faults))
        delivered = frame
        if u_corrupt < imp.corrupt:
            delivered, bit = flip_one_bit(frame, random.Random(corrupt_seed))
            # Where Wireshark shows it: the byte's offset in the frame and the bit's mask.
            fault("corrupt", frame, f"byte {bit // 8} bit mask 0x{0x80 >> (bit % 8):02x}")
        arrival = departure + imp.delay + jitter
        if u_reorder < imp.reorder:
            fault("reorder", delivered, f"held {imp.reorder_delay / 1000:g}ms")
            arrival += imp.reorder_delay
        copies = [(arrival, delivered)]
        if u_dup < imp.duplicate:
            fault("dup", delivered)
            copies.append((departure + imp.delay + dup_jitter, delivered))
        return Verdict(index, tuple(copies), tuple(faults))


# -- the driver ------------------------------------------------------------------------------


@dataclass(order=True, frozen=True, slots=True)
class _Held:
    due: int  # microseconds
    order: int
    direction: Direction = field(compare=False)
    frame: bytes = field(compare=False)
    notes: tuple[str, ...] = field(compare=False, default=())


@dataclass(slots=True)
class ImpairedStats:
    frames_out: int = 0  # frames the caller sent
    frames_in: int = 0  # frames the inner link delivered
    released_out: int = 0  # copies handed to the inner link
    released_in: int = 0  # copies handed to the caller
    faults: Counter[str] = field(default_factory=Counter)


class ImpairedLink:
    """Wraps `link`; frames sent go through `outbound`, frames received through `inbound`.

    `inbound` defaults to `outbound` (each direction still has its own seeded RNG). The wrapper
    owns a worker thread (started at once, stopped by `close()`); the inner link stays the
    caller's: `close()` does not close it. Thread safety: one thread sends and receives (the
    runtime's loop), as with any link; the worker touches only the inner link and the queues.
    """

    def __init__(
        self,
        link: SelectableLink,
        outbound: Impairment,
        inbound: Impairment | None = None,
        *,
        clock: Callable[[], int] = time.monotonic_ns,
        burst_bytes: int = DEFAULT_BURST_BYTES,
        queue_limit_us: int | None = DEFAULT_QUEUE_LIMIT_US,
        on_fault: Callable[[LinkFault], None] | None = None,
    ) -> None:
        self.link = link
        inbound = inbound if inbound is not None else outbound
        self.lanes: dict[Direction, ImpairmentLane] = {
            "out": ImpairmentLane(
                "out", outbound, burst_bytes=burst_bytes, queue_limit_us=queue_limit_us
            ),
            "in": ImpairmentLane(
                "in", inbound, burst_bytes=burst_bytes, queue_limit_us=queue_limit_us
            ),
        }
        self._clock = clock
        self._on_fault = on_fault
        self.log: list[LinkFault] = []
        self.stats = ImpairedStats()
        self._lock = threading.Lock()  # heap, ready queue, log, notify pipe
        self._send_lock = threading.Lock()  # the inner link's send, from two threads
        self._heap: list[_Held] = []
        self._held: Counter[str] = Counter()  # copies in the heap, per direction
        self._order = 0
        self._ready: collections.deque[tuple[bytes, tuple[str, ...]]] = collections.deque()
        self._orphan_in_notes: list[str] = []  # inbound faults whose frame never arrives
        self._notes: list[str] = [self.schedule_note()]
        self._ready_r, self._ready_w = os.pipe()  # readable iff `_ready` is not empty
        self._wake_r, self._wake_w = os.pipe()  # wakes the worker: a new earliest frame
        for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._poll_ready = select.poll()
        self._poll_ready.register(self._ready_r, select.POLLIN)
        self._stopping = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="lab-impair", daemon=True)
        self._thread.start()

    def schedule_note(self) -> str:
        out, inb = self.lanes["out"].impairment, self.lanes["in"].impairment
        return f"impair: schedule out {describe_impairment(out)}; in {describe_impairment(inb)}"

    def now(self) -> int:
        return self._clock() // 1000

    # -- the caller's side (the runtime's loop thread) -----------------------------------------

    def fileno(self) -> int:
        """Readable when a frame is ready for `receive`."""
        return self._ready_r

    def send(self, frame: bytes) -> None:
        """Impair `frame` and send its copies now or when they are due."""
        self._check()
        now = self.now()
        verdict = self.lanes["out"].decide(frame, now)
        self.stats.frames_out += 1
        self._record(verdict.faults)
        self._notes.extend(f.note() for f in verdict.faults)
        later: list[tuple[int, bytes, tuple[str, ...]]] = []
        for due, data in verdict.copies:
            if due <= now and not self._has_held_out():
                self._send_inner(data)
            else:
                later.append((due, data, ()))
        if later:
            self._hold("out", later)

    def receive(self, timeout: float) -> bytes | None:
        """The next inbound frame that survived the schedule, or None after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._check()
            with self._lock:
                if self._ready:
                    frame, notes = self._ready.popleft()
                    if not self._ready:
                        self._drain(self._ready_r)
                    self._notes.extend(notes)
                    self.stats.released_in += 1
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._poll_ready.poll(math.ceil(remaining * 1000))

    def take_notes(self) -> list[str]:
        """Fault notes for the frame just sent or received (then forgotten)."""
        notes, self._notes = self._notes, []
        return notes

    def close(self) -> None:
        """Stop the worker (held frames are discarded). The inner link is not closed."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        self._poke()
        self._thread.join(5)
        for fd in (self._ready_r, self._ready_w, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> ImpairedLink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def held(self) -> int:
        """Copies waiting for their time (both directions)."""
        with self._lock:
            return len(self._heap)

    # -- internals -------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError("the impairment worker failed") from self._error

    def _has_held_out(self) -> bool:
        # Sending now past a frame the token bucket is holding would break the bucket's FIFO;
        # delayed or reordered frames, on the other hand, are meant to be overtaken.
        return self.lanes["out"].bucket is not None and self._held["out"] > 0

    def _record(self, faults: tuple[LinkFault, ...]) -> None:
        if not faults:
            return
        with self._lock:
            self.log.extend(faults)
            for f in faults:
                self.stats.faults[f.kind] += 1
        for f in faults:
            log.debug("%s", f.note())
            if self._on_fault is not None:
                self._on_fault(f)

    def _hold(self, direction: Direction, copies: list[tuple[int, bytes, tuple[str, ...]]]) -> None:
        with self._lock:
            earliest = self._heap[0].due if self._heap else None
            for due, data, notes in copies:
                self._order += 1
                heapq.heappush(self._heap, _Held(due, self._order, direction, data, notes))
                self._held[direction] += 1
            poke = earliest is None or self._heap[0].due < earliest
        if poke:
            self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\x00")

    @staticmethod
    def _drain(fd: int) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(fd, 4096):
                pass

    def _send_inner(self, frame: bytes) -> None:
        with self._send_lock:
            try:
                self.link.send(frame)
            except OSError:
                return  # a full queue loses the frame, as the runtime's own send would
        self.stats.released_out += 1

    def _deliver(self, frame: bytes, notes: tuple[str, ...]) -> None:
        """Hand an inbound copy to the caller (lock held)."""
        if self._orphan_in_notes:
            notes = (*self._orphan_in_notes, *notes)
            self._orphan_in_notes = []
        if not self._ready:
            with contextlib.suppress(OSError):
                os.write(self._ready_w, b"\x00")
        self._ready.append((frame, notes))

    def _work(self) -> None:
        poller = select.poll()
        poller.register(self.link.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        inner = self.link.fileno()
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    due = self._heap[0].due if self._heap else None
                timeout = None if due is None else max(0, math.ceil((due - self.now()) / 1000))
                for fd, _ in poller.poll(timeout):
                    if fd == inner:
                        self._take_inbound()
                    else:
                        self._drain(self._wake_r)
                self._release_due()
        except BaseException as exc:  # surfaced to the caller by _check()
            self._error = exc
            with contextlib.suppress(OSError):
                os.write(self._ready_w, b"\x00")

    def _take_inbound(self) -> None:
        lane = self.lanes["in"]
        for _ in range(RECEIVE_BATCH):
            frame = self.link.receive(0)
            if frame is None:
                return
            now = self.now()
            verdict = lane.decide(frame, now)
            self.stats.frames_in += 1
            self._record(verdict.faults)
            notes = tuple(f.note() for f in verdict.faults)
            if not verdict.copies:
                with self._lock:
                    self._orphan_in_notes.extend(notes)
                continue
            later: list[tuple[int, bytes, tuple[str, ...]]] = []
            with self._lock:
                for due, data in verdict.copies:
                    if due <= now and not (lane.bucket is not None and self._held["in"]):
                        self._deliver(data, notes)
                    else:
                        later.append((due, data, notes))
                    notes = ()  # the notes go with the first copy only
            if later:
                self._hold("in", later)

    def _release_due(self) -> None:
        now = self.now()
        out: list[bytes] = []
        with self._lock:
            while self._heap and self._heap[0].due <= now:
                held = heapq.heappop(self._heap)
                self._held[held.direction] -= 1
                if held.direction == "in":
                    self._deliver(held.frame, held.notes)
                else:
                    out.append(held.frame)
        for frame in out:
            self._send_inner(frame)


# -- capture comments --------------------------------------------------------------------------


def annotate_frames(
    tap: Annotatable, link: ImpairedLink
) -> Callable[[str, bytes, list[str]], None]:
    """A runtime `on_frame` callback for `CaptureTap(ImpairedLink(...))`: writes the faults
    applied to each frame, and its TCP state transitions, into that frame's capture comment."""

    def callback(direction: str, frame: bytes, transitions: list[str]) -> None:
        notes = link.take_notes() + transitions
        if notes:
            tap.annotate("; ".join(notes))

    return callback
