"""The one TCP reassembler, shared by the live receive path and offline capture replay.

RFC 9293 3.10.7.4 ("Other states", the text step) lets a receiver keep segments that arrive beyond
RCV.NXT and process them once the hole before them is filled; RFC 9293 3.4 asks for the acceptable
part of a segment to be trimmed to the receive window. This module does exactly that, and no more:
it knows nothing of ACKs or connection states, so that replaying a capture explains a stream with
the same code that received it live.

Why it looks the way it does:

* **Offsets, not sequence numbers, inside.** Each segment's sequence number is turned into a
  64-bit stream offset with `seq_diff` against RCV.NXT (the only sequence comparison needed), so
  the held data lives in plain-int structures, a stream may be longer than 4 GiB, and it may start
  anywhere, just below 2**32 included. Offset 0 is the first data byte (`initial_seq`).
* **Held data is a sorted list of non-overlapping, non-adjacent runs** (`bisect` on their starts),
  never one buffer per segment and never a zero-filled buffer: a single byte far ahead costs one
  small run, and many small segments extend a run in place. Each run is a byte buffer with
  headroom at the front, so growing a run to the left is as cheap as growing it to the right, and
  when several runs merge the largest one is kept and the others are copied into it (each byte is
  copied O(log n) times at worst; the number of runs is capped by `max_holes`).
* **Overlaps follow a named policy and are recorded.** `first` (the default, the behaviour of
  most stacks) keeps bytes already received; `last` lets the newest copy win. Every overlap whose
  bytes differ becomes an `OverlapConflict`, including a retransmission that disagrees with bytes
  already delivered: a bounded history of the last `capacity` delivered bytes is kept only to
  compare against. Delivered bytes cannot be taken back, so there the winner is always `first`,
  whatever the policy.
* **Bounded memory.** Bytes beyond the window (at most `capacity`) are trimmed and counted; a
  segment that would open a new hole when `max_holes` holes already exist is refused and counted
  (the "far-ahead byte" attacks that made other user-space stacks slow or huge).
* **FIN.** Its position is recorded when first seen; it is "reached" only when every byte before
  it has been delivered (RFC 9293 3.10.7.4, eighth step: the FIN is processed in sequence). Data
  beyond a known FIN is refused; a FIN at another position, or one contradicted by data already
  received beyond it, is counted in `stats.fin_conflicts` and ignored (the first word wins).
* **SACK.** `sack_blocks` lists held runs for RFC 2018, the one holding the most recently received
  segment first.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Literal

from lab.tcp.recvbuf import Chunk, by_reference
from lab.wire.seq import MASK, seq_add, seq_diff

OverlapPolicy = Literal["first", "last"]

MAX_CAPACITY = 1 << 30  # RFC 7323 2.3: the largest window TCP can announce
_RECENT_SEGMENTS = 16  # how many recent out-of-order arrivals `sack_blocks` remembers

Bytes = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class OverlapConflict:
    """Two copies of the same stream bytes disagreed.

    `offset` and `length` span the differing bytes of one overlap (from the first byte that
    differs to the last one), so bytes that agree at its ends are not reported.
    """

    offset: int
    length: int
    winner: OverlapPolicy
    kept: bytes
    discarded: bytes


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one `Reassembler.push` did; the receiver builds its ACK decision from it."""

    delivered: bytes
    duplicate: bool
    out_of_order: bool
    filled_gap: bool
    refused_bytes: int
    conflicts: tuple[OverlapConflict, ...]
    fin_reached: bool


@dataclass(slots=True)
class ReassemblyStats:
    """Counters for traces, replay reports and tests.

    A segment is `duplicate` when every byte (and its FIN, if any) was already received,
    `overlapping` when some of its bytes were already received and some were not, `refused` when
    none of its bytes could be taken and `trimmed` when only some could.
    """

    segments: int = 0
    duplicate_segments: int = 0
    duplicate_bytes: int = 0
    overlapping_segments: int = 0
    out_of_order_segments: int = 0
    refused_segments: int = 0
    refused_bytes: int = 0
    delivered_bytes: int = 0
    conflicts: int = 0
    trimmed_segments: int = 0
    hole_limit_refusals: int = 0  # segments refused because they would open one hole too many
    fin_conflicts: int = 0  # FINs ignored: another position known, or data received beyond them
    uncompared_bytes: int = 0  # retransmitted bytes older than the history: not checked
    flushed_bytes: int = 0  # bytes handed out by `flush` rather than delivered in order
    gap_bytes: int = 0  # bytes given up for lost by `flush`


class _Run:
    """Contiguous held bytes at stream offset `start`, in `buf[head:]`.

    The free space `buf[:head]` lets data be prepended without moving the run: when it runs out
    it is re-grown to the run's own size, so prepending is amortised O(1) per byte like appending.
    """

    __slots__ = ("buf", "head", "start")

    def __init__(self, start: int, data: Bytes) -> None:
        self.start = start
        self.buf = bytearray(data)
        self.head = 0

    def __len__(self) -> int:
        return len(self.buf) - self.head

    @property
    def end(self) -> int:
        return self.start + len(self.buf) - self.head

    def read(self, lo: int, hi: int) -> bytes:
        """The bytes at stream offsets [lo, hi), which must lie inside the run."""
        i = self.head + lo - self.start
        return bytes(self.buf[i : i + hi - lo])

    def view(self) -> memoryview:
        return memoryview(self.buf)[self.head :]

    def append(self, data: Bytes) -> None:
        self.buf += data

    def prepend(self, data: Bytes) -> None:
        n = len(data)
        if n > self.head:
            room = len(self) + n
            grown = bytearray(room)
            grown += self.view()
            self.buf = grown
            self.head = room
        self.buf[self.head - n : self.head] = data
        self.head -= n
        self.start -= n

    def overwrite(self, lo: int, data: Bytes) -> None:
        i = self.head + lo - self.start
        self.buf[i : i + len(data)] = data

    def truncate(self, end: int) -> None:
        """Keep only the bytes before stream offset `end` (which is > start)."""
        del self.buf[self.head + end - self.start :]

    def drop_front(self, lo: int) -> None:
        """Forget the bytes before stream offset `lo` (which is < end)."""
        self.head += lo - self.start
        self.start = lo
        if self.head > 4096 and self.head > 2 * len(self):
            del self.buf[: self.head]
            self.head = 0

    def to_bytes(self) -> bytes:
        return bytes(self.view())


def _differing_span(a: Bytes, b: Bytes) -> tuple[int, int] | None:
    """[first, last + 1) of the bytes where equal-length `a` and `b` differ, or None if equal.

    XOR of the two buffers as big integers finds both ends in C-speed passes, instead of a Python
    loop over every byte of a large retransmission.
    """
    if a == b:
        return None
    n = len(a)
    x = int.from_bytes(a, "big") ^ int.from_bytes(b, "big")
    first = n - (x.bit_length() + 7) // 8
    last = n - ((x & -x).bit_length() - 1) // 8
    return first, last


class Reassembler:
    """Turns segments, in any order, into the in-order byte stream, each byte delivered once.

    `initial_seq` is the sequence number of the first data byte (IRS + 1 in TCP). `capacity`
    bounds both the window (bytes held beyond RCV.NXT) and the history of delivered bytes kept to
    detect conflicting retransmissions. `max_holes` bounds the number of held runs.
    """

    def __init__(
        self,
        initial_seq: int,
        capacity: int = 1 << 20,
        policy: OverlapPolicy = "first",
        max_holes: int = 64,
    ) -> None:
        if not 0 <= initial_seq <= MASK:
            raise ValueError(f"initial_seq {initial_seq} is not a 32-bit sequence number")
        if not 0 < capacity <= MAX_CAPACITY:
            raise ValueError(f"capacity must be in 1..{MAX_CAPACITY}, not {capacity}")
        if policy not in ("first", "last"):
            raise ValueError(f"unknown overlap policy {policy!r}")
        if max_holes < 1:
            raise ValueError("max_holes must be at least 1")
        self.initial_seq = initial_seq
        self.capacity = capacity
        self.policy: OverlapPolicy = policy
        self.max_holes = max_holes
        self.conflicts: list[OverlapConflict] = []
        self.stats = ReassemblyStats()
        self.abandoned_gaps: list[tuple[int, int]] = []  # holes `flush` gave up on
        self._next_offset = 0
        self._starts: list[int] = []
        self._runs: list[_Run] = []
        self._held = 0
        self._fin_offset: int | None = None
        # Delivered bytes [_history_start, _next_offset), kept as the delivered chunks themselves
        # (references, not copies: with GRO a chunk is ~64 KB), joined only to compare.
        self._history: deque[Chunk] = deque()
        self._history_len = 0
        self._history_start = 0
        self._recent: deque[int] = deque(maxlen=_RECENT_SEGMENTS)

    # -- read-only state -------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """RCV.NXT as a 32-bit sequence number (the FIN is not counted)."""
        return (self.initial_seq + self._next_offset) & MASK  # seq_add, inline: read per segment

    @property
    def next_offset(self) -> int:
        """Stream offset of the next expected byte: bytes delivered (plus any `flush`ed)."""
        return self._next_offset

    @property
    def held_bytes(self) -> int:
        """Out-of-order bytes held beyond a hole."""
        return self._held

    @property
    def fin_offset(self) -> int | None:
        """Stream offset of the FIN (= stream length), once one has been accepted."""
        return self._fin_offset

    @property
    def finished(self) -> bool:
        """A FIN was seen and every byte before it has been delivered."""
        return self._fin_offset is not None and self._next_offset == self._fin_offset

    def held_ranges(self) -> list[tuple[int, int]]:
        """Held out-of-order data as [start, end) stream offsets, in stream order."""
        return [(r.start, r.end) for r in self._runs]

    def gaps(self) -> list[tuple[int, int]]:
        """Missing [start, end) stream ranges between `next_offset` and the highest byte held."""
        out = []
        cursor = self._next_offset
        for run in self._runs:
            out.append((cursor, run.start))
            cursor = run.end
        return out

    def sack_blocks(self, limit: int = 4) -> list[tuple[int, int]]:
        """Held runs as (left edge, right edge) sequence numbers for a SACK option (RFC 2018).

        RFC 2018 4: the first block must hold the segment that triggered the ACK, the others
        should repeat the most recently reported blocks. So runs come in order of their latest
        arrival, then any others in stream order.
        """
        if limit <= 0 or not self._runs:
            return []
        chosen: dict[int, _Run] = {}  # by start offset, in insertion (= report) order
        for offset in reversed(self._recent):
            i = bisect_right(self._starts, offset) - 1
            if i >= 0 and self._runs[i].end > offset:
                chosen.setdefault(self._runs[i].start, self._runs[i])
        for run in self._runs:
            if len(chosen) >= limit:
                break
            chosen.setdefault(run.start, run)
        return [
            (seq_add(self.initial_seq, r.start), seq_add(self.initial_seq, r.end))
            for r in list(chosen.values())[:limit]
        ]

    # -- input -----------------------------------------------------------------------------------

    def push(
        self, seq: int, data: Bytes = b"", fin: bool = False, window: int | None = None
    ) -> PushResult:
        """Take one segment's data (and FIN) at `seq` (RFC 9293 3.10.7.4, the text and FIN steps).

        `window` is how many bytes beyond RCV.NXT the receiver accepts now (RFC 9293 3.4; it
        defaults to, and never exceeds, `capacity`). Bytes beyond it are trimmed and counted.
        Bytes before RCV.NXT are compared with the delivered history to find conflicting
        retransmissions, then dropped.
        """
        stats = self.stats
        stats.segments += 1
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else memoryview(data)
        n = len(view)
        next_before = self._next_offset
        start = next_before + seq_diff(seq & MASK, self.next_seq)
        end = start + n
        allowed = self.capacity if window is None else max(0, min(window, self.capacity))
        limit = next_before + allowed
        conflicts: list[OverlapConflict] = []
        old = 0
        refused = 0

        # Bytes already delivered: only compared, never delivered again.
        if start < next_before:
            hi = min(end, next_before)
            old += hi - start
            self._compare_delivered(start, view[: hi - start], conflicts)

        # Bytes we may take: from RCV.NXT up to the window and to a known FIN.
        s = max(start, next_before)
        cut = limit if self._fin_offset is None else min(limit, self._fin_offset)
        e = end
        if e > max(s, cut):
            refused += e - max(s, cut)
            e = max(s, cut)

        filled_gap = False
        new = 0
        hole_refused = False
        delivered = b""
        if e > s and s == next_before and (not self._runs or self._starts[0] > e):
            # The common case, in-order data touching nothing held: straight through.
            new = e - s
            delivered = bytes(view[s - start : e - start])
            self._advance(delivered)
        elif e > s:
            placed = self._place(s, view[s - start : e - start], conflicts)
            if placed is None:
                hole_refused = True
                refused += e - s
                stats.hole_limit_refusals += 1
            else:
                old_here, filled_gap = placed
                old += old_here
                new = (e - s) - old_here
                if s > next_before:
                    self._recent.append(s)

        fin_known = False
        if fin:
            fin_known = self._accept_fin(end, limit, refused > 0 or hole_refused)

        if not delivered:
            delivered = self._deliver_front()

        duplicate = (n > 0 or fin) and old == n and (not fin or fin_known)
        taken = old + new
        if n > 0 and refused == n:
            stats.refused_segments += 1
        elif refused:
            stats.trimmed_segments += 1
        if duplicate:
            stats.duplicate_segments += 1
        elif old and new:
            stats.overlapping_segments += 1
        out_of_order = new > 0 and s > next_before
        if out_of_order:
            stats.out_of_order_segments += 1
        stats.duplicate_bytes += old
        stats.refused_bytes += refused
        assert taken + refused == n
        return PushResult(
            delivered=delivered,
            duplicate=duplicate,
            out_of_order=out_of_order,
            filled_gap=filled_gap,
            refused_bytes=refused,
            conflicts=tuple(conflicts),
            fin_reached=self.finished,
        )

    def take_in_order(self, data: Chunk) -> bool:
        """The connection's header-prediction path: `data` starts at RCV.NXT and nothing is held.

        Takes all of `data` and returns True when no run is held, no FIN is known and it fits
        the capacity (what `push` would then do, without building a `PushResult`); otherwise
        takes nothing and returns False, and the caller uses `push`."""
        if self._runs or self._fin_offset is not None or len(data) > self.capacity:
            return False
        self.stats.segments += 1
        self._advance(data)
        return True

    def flush(self) -> list[tuple[int, bytes]]:
        """Give up on the holes (end of a capture): hand out the held runs, never zero-filled.

        Returns the held runs as (stream offset, bytes) in stream order; the holes before them
        (and before a known FIN) are appended to `abandoned_gaps` and counted in
        `stats.gap_bytes`. Afterwards `next_offset` is past the last run (or at the FIN), so a
        replay can go on pushing what follows.
        """
        out: list[tuple[int, bytes]] = []
        cursor = self._next_offset
        for run in self._runs:
            self._abandon(cursor, run.start)
            out.append((run.start, run.to_bytes()))
            cursor = run.end
        if out:
            keep = out[-1][1][-self.capacity :]
            self._reset_history(keep, cursor - len(keep))
        if self._fin_offset is not None and self._fin_offset > cursor:
            self._abandon(cursor, self._fin_offset)
            cursor = self._fin_offset
            self._reset_history(b"", cursor)
        self.stats.flushed_bytes += self._held
        self._next_offset = cursor
        self._starts.clear()
        self._runs.clear()
        self._held = 0
        self._recent.clear()
        return out

    # -- internals -------------------------------------------------------------------------------

    def _abandon(self, lo: int, hi: int) -> None:
        if hi > lo:
            self.abandoned_gaps.append((lo, hi))
            self.stats.gap_bytes += hi - lo

    def _record(
        self,
        offset: int,
        kept_copy: Bytes,
        lost_copy: Bytes,
        winner: OverlapPolicy,
        out: list[OverlapConflict],
    ) -> None:
        """Record the overlap of two equal-length copies at `offset` if their bytes differ."""
        span = _differing_span(kept_copy, lost_copy)
        if span is None:
            return
        lo, hi = span
        conflict = OverlapConflict(
            offset=offset + lo,
            length=hi - lo,
            winner=winner,
            kept=bytes(kept_copy[lo:hi]),
            discarded=bytes(lost_copy[lo:hi]),
        )
        out.append(conflict)
        self.conflicts.append(conflict)
        self.stats.conflicts += 1

    def _compare_delivered(self, start: int, data: memoryview, out: list[OverlapConflict]) -> None:
        """Check a retransmission of delivered bytes against the bounded history.

        Delivered bytes cannot change, so the winner is `first` under either policy.
        """
        floor = max(self._history_start, self._next_offset - self.capacity)
        lo = max(start, floor)
        hi = start + len(data)
        if lo > start:
            self.stats.uncompared_bytes += min(lo, hi) - start
        if hi <= lo:
            return
        h = lo - self._history_start
        self._record(lo, self._history_slice(h, hi - lo), data[lo - start :], "first", out)

    def _place(
        self, s: int, data: memoryview, out: list[OverlapConflict]
    ) -> tuple[int, bool] | None:
        """Put the bytes [s, s + len(data)) among the runs.

        Returns (bytes already held, whether held data became deliverable), or None when the
        segment is refused because it would open a hole beyond `max_holes`.
        """
        e = s + len(data)
        starts, runs = self._starts, self._runs
        i = bisect_right(starts, s) - 1
        if i < 0 or runs[i].end < s:
            i += 1
        j = bisect_right(starts, e, lo=i)
        if i == j:
            if s != self._next_offset and len(runs) >= self.max_holes:
                return None
            starts.insert(i, s)
            runs.insert(i, _Run(s, data))
            self._held += len(data)
            return 0, False

        touched = runs[i:j]
        old = 0
        for run in touched:
            lo, hi = max(s, run.start), min(e, run.end)
            if hi > lo:
                old += hi - lo
                mine, theirs = data[lo - s : hi - s], run.read(lo, hi)
                if self.policy == "first":
                    self._record(lo, theirs, mine, "first", out)
                else:
                    self._record(lo, mine, theirs, "last", out)
        if self.policy == "first":
            merged = self._merge_keeping_old(s, data, touched)
        else:
            merged = self._merge_keeping_new(s, data, touched)
        starts[i:j] = [merged.start]
        runs[i:j] = [merged]
        self._held += len(data) - old
        return old, s == self._next_offset

    @staticmethod
    def _merge_keeping_old(s: int, data: memoryview, touched: list[_Run]) -> _Run:
        """Policy `first`: new bytes only fill the space between the held runs."""
        pieces: list[_Run | memoryview] = []
        cursor = s
        for run in touched:
            if run.start > cursor:
                pieces.append(data[cursor - s : run.start - s])
            pieces.append(run)
            cursor = max(cursor, run.end)
        e = s + len(data)
        if e > cursor:
            pieces.append(data[cursor - s :])
        base = max(touched, key=len)
        at = next(k for k, p in enumerate(pieces) if p is base)
        for p in reversed(pieces[:at]):
            base.prepend(p.view() if isinstance(p, _Run) else p)
        for p in pieces[at + 1 :]:
            base.append(p.view() if isinstance(p, _Run) else p)
        return base

    @staticmethod
    def _merge_keeping_new(s: int, data: memoryview, touched: list[_Run]) -> _Run:
        """Policy `last`: new bytes replace held ones; held bytes survive only at either end."""
        e = s + len(data)
        first, last = touched[0], touched[-1]
        if len(touched) == 1:
            rs, re_ = first.start, first.end
            lo, hi = max(s, rs), min(e, re_)
            if hi > lo:
                first.overwrite(lo, data[lo - s : hi - s])
            if s < rs:
                first.prepend(data[: rs - s])
            if e > re_:
                first.append(data[re_ - s :])
            return first
        prefix = max(0, s - first.start)
        suffix = max(0, last.end - e)
        if prefix == 0 and suffix == 0:
            return _Run(s, data)
        if prefix >= suffix:
            first.truncate(s)
            first.append(data)
            if suffix:
                first.append(last.view()[e - last.start :])
            return first
        last.drop_front(e)
        last.prepend(data)
        if prefix:
            last.prepend(first.view()[:prefix])
        return last

    def _accept_fin(self, fin_at: int, limit: int, data_refused: bool) -> bool:
        """Note a FIN after the byte at `fin_at - 1`; True if this FIN was already known there."""
        if self._fin_offset is not None:
            if fin_at == self._fin_offset:
                return True
            self.stats.fin_conflicts += 1
            return False
        if data_refused or fin_at > limit:
            return False  # outside the window, like the data before it: the peer will resend
        highest = self._runs[-1].end if self._runs else self._next_offset
        if fin_at < highest:
            self.stats.fin_conflicts += 1  # bytes beyond it were already received: keep them
            return False
        self._fin_offset = fin_at
        return False

    def _deliver_front(self) -> bytes:
        """Deliver the first run if it now starts at RCV.NXT (runs never touch, so only one)."""
        if not self._runs or self._starts[0] != self._next_offset:
            return b""
        run = self._runs.pop(0)
        self._starts.pop(0)
        out = run.to_bytes()
        self._held -= len(out)
        self._advance(out)
        return out

    def _advance(self, delivered: Chunk) -> None:
        """Move RCV.NXT past `delivered` and keep the last `capacity` delivered bytes (trimmed
        lazily, at twice that) to compare retransmissions with."""
        n = len(delivered)
        self._next_offset += n
        self.stats.delivered_bytes += n
        if not n:
            return
        if type(delivered) is not bytes:
            delivered = by_reference(delivered)  # a mutable buffer could change under us: a copy
        history = self._history
        history.append(delivered)
        kept = self._history_len + n
        # Forget whole chunks from the front while the rest still covers `capacity` bytes
        # (locals, not attributes, in this loop: it runs for every in-order segment).
        capacity = self.capacity
        while kept - (first := len(history[0])) >= capacity:
            history.popleft()
            kept -= first
            self._history_start += first
        self._history_len = kept

    def _history_slice(self, at: int, n: int) -> bytes:
        """`n` history bytes from `at` (relative to `_history_start`), copied out of the chunks
        they lie in: only a retransmission of delivered bytes asks."""
        parts: list[memoryview] = []
        for chunk in self._history:
            if n <= 0:
                break
            if at >= len(chunk):
                at -= len(chunk)
                continue
            part = memoryview(chunk)[at : at + n]
            parts.append(part)
            n -= len(part)
            at = 0
        return b"".join(parts)

    def _reset_history(self, keep: bytes, start: int) -> None:
        self._history = deque([bytes(keep)] if keep else [])
        self._history_len = len(keep)
        self._history_start = start
