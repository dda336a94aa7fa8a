"""IPv4 fragment reassembly (RFC 791 3.2, RFC 815) with a timeout and a memory bound.

The host keeps a second instance for IPv6 (RFC 8200 4.5), so both families have the same bounds:
there `protocol` is the Fragment header's Next Header and `ident` its 32-bit Identification, and
the length bound is the IPv4 one (65,515 payload bytes), 20 bytes stricter than IPv6's 65,535.

Each datagram in progress is keyed by (source, destination, protocol, identification), as RFC 791
says, and keeps its received fragments as a sorted list of disjoint byte intervals (RFC 815 tracks
holes instead; intervals are the same information and make the overlap check direct).

Overlaps. RFC 791 lets a receiver overwrite overlapping bytes, which is how overlapping-fragment
attacks (Teardrop, and IDS evasion where the target and the monitor keep different bytes) work.
RFC 5722 forbids overlaps for IPv6 and says to discard the whole datagram; we apply the same rule to
IPv4, as Linux does since 2018 for IPv4 too: a fragment that overlaps any held fragment and is not
an exact duplicate of it (same offset, same bytes) poisons the datagram. Its bytes are freed at once
and a tombstone keeps later fragments of the same datagram out until the timeout, so the tail of a
poisoned datagram cannot start a new one. Exact duplicates (a retransmitted fragment) are ignored.

Bounds. A datagram is given up `timeout` (30 s) after its first fragment (RFC 791 suggests 15 s,
Linux uses 30 s). The bytes held over all datagrams are capped at `max_bytes`, and the number of
datagrams at `max_datagrams`; when a new fragment would exceed either, the oldest datagrams are
evicted first (like Linux's ipfrag_high_thresh), so a flood of never-completed datagrams costs a
bounded amount of memory and cannot lock out new traffic forever.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

MAX_DATAGRAM = 65535
DEFAULT_TIMEOUT = 30_000_000
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_DATAGRAMS = 64

FragmentKey = tuple[str, str, int, int]  # (src, dst, protocol, identification)


@dataclass(frozen=True, slots=True)
class Fragment:
    """One received IPv4 fragment: its header fields and payload (offset in bytes)."""

    src: str
    dst: str
    protocol: int
    ident: int
    offset: int
    more_fragments: bool
    payload: bytes
    ttl: int = 64
    tos: int = 0

    @property
    def key(self) -> FragmentKey:
        return (self.src, self.dst, self.protocol, self.ident)


@dataclass(frozen=True, slots=True)
class Reassembled:
    """A complete datagram: header fields of the first fragment, the whole payload."""

    src: str
    dst: str
    protocol: int
    ident: int
    ttl: int
    tos: int
    payload: bytes


@dataclass(slots=True)
class _Datagram:
    started: int
    intervals: list[tuple[int, bytes]] = field(default_factory=list)  # sorted, disjoint
    total: int | None = None  # payload length, known once the last fragment (MF=0) arrives
    held: int = 0
    poisoned: bool = False
    first: Fragment | None = None  # the fragment with offset 0, for the header fields


class FragmentReassembler:
    """Holds fragments until their datagram is whole; drops are counted in `drops` by reason."""

    def __init__(
        self,
        *,
        timeout: int = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_datagrams: int = DEFAULT_MAX_DATAGRAMS,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_datagrams = max_datagrams
        self._datagrams: dict[FragmentKey, _Datagram] = {}  # insertion order = age
        self.held_bytes = 0
        self.drops: Counter[str] = Counter()
        self.completed = 0

    def __len__(self) -> int:
        return sum(1 for d in self._datagrams.values() if not d.poisoned)

    def push(self, fragment: Fragment, now: int) -> Reassembled | None:
        """Add one fragment; the datagram when this fragment completes it, else None."""
        self._expire(now)
        start, size = fragment.offset, len(fragment.payload)
        end = start + size
        if fragment.more_fragments and (size == 0 or size % 8):
            # RFC 791: every fragment but the last carries a multiple of 8 bytes.
            self.drops["fragment_bad_length"] += 1
            return None
        if end > MAX_DATAGRAM - 20:
            self.drops["fragment_too_long"] += 1
            return None
        datagram = self._datagrams.get(fragment.key)
        if datagram is None:
            if not self._make_room(size):
                self.drops["fragment_no_memory"] += 1
                return None
            datagram = _Datagram(started=now)
            self._datagrams[fragment.key] = datagram
        if datagram.poisoned:
            self.drops["fragment_of_poisoned_datagram"] += 1
            return None
        if not fragment.more_fragments:
            if datagram.total is not None and datagram.total != end:
                self._poison(datagram, "fragment_conflicting_end")
                return None
            datagram.total = end
        if datagram.total is not None and end > datagram.total:
            self._poison(datagram, "fragment_beyond_end")
            return None
        placed = self._place(datagram, start, fragment.payload)
        if placed is None:
            self._poison(datagram, "fragment_overlap")
            return None
        if not placed:
            self.drops["fragment_duplicate"] += 1
            return None
        if self.held_bytes + size > self.max_bytes:
            self._make_room(size, keep=fragment.key)
        datagram.held += size
        self.held_bytes += size
        if start == 0:
            datagram.first = fragment
        return self._complete(fragment.key, datagram)

    def _place(self, datagram: _Datagram, start: int, data: bytes) -> bool | None:
        """Insert [start, start+len) into the intervals: True placed, False exact duplicate,
        None overlap (RFC 5722)."""
        end = start + len(data)
        intervals = datagram.intervals
        for index, (s, d) in enumerate(intervals):
            e = s + len(d)
            if e <= start:
                continue
            if s >= end:
                intervals.insert(index, (start, data))
                return True
            if s == start and d == data:
                return False
            return None
        intervals.append((start, data))
        return True

    def _complete(self, key: FragmentKey, datagram: _Datagram) -> Reassembled | None:
        if datagram.total is None or datagram.held != datagram.total or datagram.first is None:
            return None
        # Disjoint intervals inside [0, total) whose sizes add up to total cover it exactly.
        payload = b"".join(d for _, d in datagram.intervals)
        self._forget(key)
        self.completed += 1
        first = datagram.first
        return Reassembled(
            first.src, first.dst, first.protocol, first.ident, first.ttl, first.tos, payload
        )

    def _poison(self, datagram: _Datagram, reason: str) -> None:
        self.drops[reason] += 1
        self.held_bytes -= datagram.held
        datagram.held = 0
        datagram.intervals.clear()
        datagram.poisoned = True

    def _forget(self, key: FragmentKey) -> None:
        datagram = self._datagrams.pop(key)
        self.held_bytes -= datagram.held

    def _make_room(self, size: int, keep: FragmentKey | None = None) -> bool:
        """Evict the oldest datagrams until `size` more bytes and one more datagram fit."""
        if size > self.max_bytes:
            return False
        while self._datagrams and (
            self.held_bytes + size > self.max_bytes
            or (keep is None and len(self._datagrams) >= self.max_datagrams)
        ):
            oldest = next((k for k in self._datagrams if k != keep), None)
            if oldest is None:
                break
            if not self._datagrams[oldest].poisoned:
                self.drops["fragment_evicted"] += 1
            self._forget(oldest)
        return self.held_bytes + size <= self.max_bytes

    def _expire(self, now: int) -> None:
        for key, datagram in list(self._datagrams.items()):
            if now - datagram.started >= self.timeout:
                if not datagram.poisoned:
                    self.drops["fragment_timeout"] += 1
                self._forget(key)

    def on_timer(self, now: int) -> None:
        """Give up on datagrams older than the timeout."""
        self._expire(now)

    def next_deadline(self) -> int | None:
        return min((d.started + self.timeout for d in self._datagrams.values()), default=None)
