"""The ARP cache of one host (RFC 826, RFC 1122 2.3.2): entries with expiry, and a bounded queue of
packets per next hop that is still being resolved.

Sans-IO like the rest of the core: the cache never sends anything itself. `enqueue` and `on_timer`
say which addresses need a request now; the host turns that into frames. A next hop that does not
answer after `max_attempts` requests, one every `retry_interval`, is reported as unreachable and
its queued packets are dropped (RFC 1122 2.3.2.2 asks for a small queue and a retry limit; the
numbers are the kernel's defaults: 3 probes one second apart).

An entry is trusted for `lifetime` (60 s) after it was learned. Then, as Linux's neighbour
state machine (NUD) does, it is not thrown away while it is in use: it becomes STALE and is
still used; the first use of a STALE entry starts a DELAY of `delay_first_probe` (5 s), after
which the neighbour is asked again by *unicast* requests to the MAC we hold (PROBE), one every
`retry_interval`, `max_attempts` times; any reply makes it REACHABLE again, and silence removes
it (FAILED), so that the next packet resolves afresh by broadcast. Traffic never stalls behind a
broadcast request every minute, and a peer that changed its MAC is still found again. A STALE
entry unused for another `lifetime` is forgotten on lookup (Linux's gc_stale_time): expiry stays
lazy, so an idle host has no timer to fire for it. The table holds at most `max_entries`
neighbours (1024, the kernel's gc_thresh3): every ARP request for our address teaches us its
sender, so without a bound a flood of requests from forged senders would grow it for ever. When
it is full, expired entries go first, then the least recently learned.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

DEFAULT_LIFETIME = 60_000_000
DEFAULT_RETRY_INTERVAL = 1_000_000
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_MAX_QUEUED = 64
DEFAULT_MAX_ENTRIES = 1024
DEFAULT_DELAY_FIRST_PROBE = 5_000_000  # Linux's delay_first_probe_time


@dataclass(frozen=True, slots=True)
class ArpEntry:
    """A resolved neighbour: its MAC and the instant (us) after which it must be resolved again."""

    mac: str
    expires: int


@dataclass(slots=True)
class _Resolution(Generic[T]):
    """A next hop being resolved: packets waiting for it, requests sent, when to ask again."""

    queued: deque[T] = field(default_factory=deque)
    attempts: int = 0
    next_retry: int = 0


@dataclass(slots=True)
class _Probe:
    """A STALE entry in use being confirmed: DELAY until the first probe, then PROBE."""

    next_probe: int
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Unreachable(Generic[T]):
    """A next hop that never answered: the packets that waited for it are dropped with it."""

    ip: str
    dropped: tuple[T, ...]


class ArpCache(Generic[T]):
    """Neighbour table plus the packets (of any type `T`) waiting for a MAC address."""

    def __init__(
        self,
        *,
        lifetime: int = DEFAULT_LIFETIME,
        retry_interval: int = DEFAULT_RETRY_INTERVAL,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        delay_first_probe: int = DEFAULT_DELAY_FIRST_PROBE,
    ) -> None:
        self.lifetime = lifetime
        self.delay_first_probe = delay_first_probe
        self.retry_interval = retry_interval
        self.max_attempts = max_attempts
        self.max_queued = max_queued
        self.max_entries = max_entries
        self.entries: dict[str, ArpEntry] = {}  # insertion order: least recently learned first
        self._pending: dict[str, _Resolution[T]] = {}
        self._probing: dict[str, _Probe] = {}  # STALE entries in use: DELAY or PROBE
        self.overflow_drops = 0
        self.evictions = 0

    def lookup(self, ip: str, now: int) -> str | None:
        """The MAC for `ip`, or None when unknown.

        A STALE entry (past `expires`) is still answered, and its use starts the DELAY before
        unicast probes; one unused for another `lifetime` is forgotten instead.
        """
        entry = self.entries.get(ip)
        if entry is None:
            return None
        if now >= entry.expires and ip not in self._probing:
            if now >= entry.expires + self.lifetime:
                del self.entries[ip]
                return None
            self._probing[ip] = _Probe(next_probe=now + self.delay_first_probe)
        return entry.mac

    def state(self, ip: str, now: int) -> str:
        """The entry's NUD state, as `ip neigh` names it: for notebooks and tests."""
        entry = self.entries.get(ip)
        if entry is None:
            return "INCOMPLETE" if ip in self._pending else "NONE"
        probe = self._probing.get(ip)
        if probe is not None:
            return "PROBE" if probe.attempts else "DELAY"
        return "REACHABLE" if now < entry.expires else "STALE"

    def reprobe(self, now: int) -> list[tuple[str, str]]:
        """(address, MAC) of each neighbour to ask again now by unicast; forgets the neighbours
        whose probes all went unanswered (FAILED)."""
        due: list[tuple[str, str]] = []
        for ip, probe in list(self._probing.items()):
            entry = self.entries.get(ip)
            if entry is None:
                del self._probing[ip]
                continue
            if now < probe.next_probe:
                continue
            if probe.attempts >= self.max_attempts:
                del self._probing[ip]
                del self.entries[ip]
                continue
            probe.attempts += 1
            probe.next_probe = now + self.retry_interval
            due.append((ip, entry.mac))
        return due

    def knows(self, ip: str) -> bool:
        """Whether `ip` has an entry (expired or not): RFC 826 updates only known senders."""
        return ip in self.entries or ip in self._pending

    def learn(self, ip: str, mac: str, now: int) -> list[T]:
        """Record `ip` at `mac`; returns the packets that were waiting for it, oldest first."""
        if self.entries.pop(ip, None) is None and len(self.entries) >= self.max_entries:
            self._make_room(now)
        self.entries[ip] = ArpEntry(mac, now + self.lifetime)
        self._probing.pop(ip, None)  # confirmed: REACHABLE again
        resolution = self._pending.pop(ip, None)
        return list(resolution.queued) if resolution is not None else []

    def _make_room(self, now: int) -> None:
        """Forget expired entries; if none had expired, the least recently learned one."""
        expired = [ip for ip, entry in self.entries.items() if now >= entry.expires]
        for ip in expired:
            del self.entries[ip]
            self._probing.pop(ip, None)
        if not expired:
            oldest = next(iter(self.entries))
            del self.entries[oldest]
            self._probing.pop(oldest, None)
            self.evictions += 1

    def enqueue(self, ip: str, packet: T, now: int) -> bool:
        """Hold `packet` until `ip` resolves; True when a request must be sent now (first packet).

        The queue is bounded: when full, the oldest packet is dropped (as the kernel's
        unres_qlen does), since TCP will retransmit whatever mattered.
        """
        resolution = self._pending.get(ip)
        first = resolution is None
        if resolution is None:
            resolution = _Resolution(attempts=1, next_retry=now + self.retry_interval)
            self._pending[ip] = resolution
        if len(resolution.queued) >= self.max_queued:
            resolution.queued.popleft()
            self.overflow_drops += 1
        resolution.queued.append(packet)
        return first

    def pending(self) -> dict[str, int]:
        """Next hops being resolved and how many packets wait for each."""
        return {ip: len(r.queued) for ip, r in self._pending.items()}

    def on_timer(self, now: int) -> tuple[list[str], list[Unreachable[T]]]:
        """(addresses to ask again now, next hops given up on with their dropped packets)."""
        again: list[str] = []
        gone: list[Unreachable[T]] = []
        for ip, resolution in list(self._pending.items()):
            if now < resolution.next_retry:
                continue
            if resolution.attempts >= self.max_attempts:
                del self._pending[ip]
                gone.append(Unreachable(ip, tuple(resolution.queued)))
                continue
            resolution.attempts += 1
            resolution.next_retry = now + self.retry_interval
            again.append(ip)
        return again, gone

    def next_deadline(self) -> int | None:
        """When `on_timer` or `reprobe` has something to do (a retry, a probe, a give-up)."""
        retries = (r.next_retry for r in self._pending.values())
        probes = (p.next_probe for p in self._probing.values())
        return min((*retries, *probes), default=None)
