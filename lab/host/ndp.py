"""IPv6 Neighbor Discovery for one host, sans-IO: the neighbor cache with RFC 4861's NUD states,
and Duplicate Address Detection of our own addresses (RFC 4862 5.4).

This is ARP's successor (`lab.host.arp` is the IPv4 side), and the differences are what the module
is for:
- Resolution asks the *solicited-node multicast group* of the target (ff02::1:ffXX:XXXX, the last
  24 bits of the address; Ethernet 33:33:ff:XX:XX:XX, RFC 4861 7.2.2, RFC 2464 7), not everyone.
- Every entry has a Neighbor Unreachability Detection state (RFC 4861 7.3.2), named as the RFC
  names them: INCOMPLETE (resolving by multicast), REACHABLE (confirmed within REACHABLE_TIME),
  STALE (not confirmed lately, still used), DELAY (a STALE entry was used: give upper layers
  DELAY_FIRST_PROBE_TIME to confirm it), PROBE (asking by unicast, RETRANS_TIMER apart).
  The transitions are those of RFC 4861 appendix C; `NeighborCache` methods are named after the
  events of that table (a packet to send, a solicitation received, an advertisement received,
  a timer).
- An advertisement only *updates* an entry (RFC 4861 7.2.5): one for an address we never asked
  about and have no entry for creates nothing. So a flood of unsolicited NAs cannot fill the
  cache or redirect traffic to a new address; it is dropped and counted by the host.
- Sans-IO as the ARP cache: the cache never sends; `enqueue` and `on_timer` say which
  solicitations are due (multicast while INCOMPLETE, unicast in PROBE) and the host builds them.

Deviations, chosen for a teaching stack under a virtual clock: ReachableTime is the fixed
REACHABLE_TIME (30 s) rather than a random value between 0.5 and 1.5 times it (RFC 4861 6.3.2),
and DAD's first solicitation is not delayed by a random 0..1 s (RFC 4862 5.4.2), so that runs are
reproducible. The router flag of advertisements is ignored: a lab host takes no Router
Advertisements and has a static gateway. No MLD reports are sent for the solicited-node groups
(RFC 4861 7.2.1 asks for them, RFC 3810): on a lab link (veth, no MLD-snooping switch), joining a
group is only a matter of accepting its Ethernet address, which the host does.

Duplicate Address Detection (`AddressDetection`): an address is TENTATIVE until
`dad_transmits` solicitations from :: (no source link-layer address option, RFC 4862 5.4.2) went
unanswered for RETRANS_TIMER each; then it is PREFERRED. A NA for a tentative address, or a NS from
:: for it (another node running DAD for the same address), makes it DUPLICATE (RFC 4862 5.4.3,
5.4.4): it is never used, and the host reports a `DuplicateAddress`. `dad_transmits=0` skips DAD
(RFC 4862 5.1's DupAddrDetectTransmits of zero), for exercises and tests that want speed.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

# RFC 4861 10, "Node constants" (microseconds).
RETRANS_TIMER = 1_000_000
MAX_MULTICAST_SOLICIT = 3
MAX_UNICAST_SOLICIT = 3
REACHABLE_TIME = 30_000_000
DELAY_FIRST_PROBE_TIME = 5_000_000
DUP_ADDR_DETECT_TRANSMITS = 1  # RFC 4862 5.1's default
DEFAULT_MAX_QUEUED = 64  # packets held per unresolved neighbor (Linux's unres_qlen is 101)
DEFAULT_MAX_ENTRIES = 1024  # Linux's gc_thresh3

ALL_NODES = "ff02::1"
ALL_NODES_MAC = "33:33:00:00:00:01"
UNSPECIFIED = "::"


class NudState(enum.Enum):
    """Neighbor Unreachability Detection states (RFC 4861 7.3.2)."""

    INCOMPLETE = "INCOMPLETE"
    REACHABLE = "REACHABLE"
    STALE = "STALE"
    DELAY = "DELAY"
    PROBE = "PROBE"


class AddressState(enum.Enum):
    """Where one of our addresses stands in Duplicate Address Detection (RFC 4862 5.4)."""

    TENTATIVE = "tentative"
    PREFERRED = "preferred"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class DuplicateAddress:
    """DAD found `address` in use by another node (the `mac` that said so): it is not used."""

    address: str
    mac: str


class DuplicateAddressError(OSError):
    """Raised by drivers (not by the sans-IO host) when DAD found one of our addresses in use."""


@dataclass(frozen=True, slots=True)
class Unresolved(Generic[T]):
    """A neighbor that never answered our solicitations: its queued packets go with it."""

    ip: str
    dropped: tuple[T, ...]


@dataclass(slots=True)
class Neighbor(Generic[T]):
    """One neighbor cache entry (RFC 4861 5.1): link-layer address, NUD state, and the timer of
    that state (when INCOMPLETE retransmits, REACHABLE turns STALE, DELAY probes, PROBE retries)."""

    state: NudState
    lladdr: str | None
    timer: int | None
    probes: int = 0
    queued: deque[T] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class NudActions(Generic[T]):
    """What a timer tick asks of the host: solicitations to send and neighbors given up on."""

    multicast: tuple[str, ...] = ()  # INCOMPLETE: NS to the target's solicited-node group
    unicast: tuple[tuple[str, str], ...] = ()  # PROBE: (target, its cached MAC)
    unresolved: tuple[Unresolved[T], ...] = ()


@dataclass(frozen=True, slots=True)
class AdvertisementVerdict(Generic[T]):
    """What an advertisement did: `dropped` names why it changed nothing (None when it was used);
    `released` are the packets that waited for the neighbor, now addressable."""

    dropped: str | None
    released: tuple[T, ...] = ()


def link_local_from_mac(mac: str) -> str:
    """fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 appendix A):
    ff:fe inserted in the middle and the universal/local bit inverted."""
    raw = bytearray(bytes.fromhex(mac.replace(":", "")))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    raw[0] ^= 0x02
    iid = bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


class NeighborCache(Generic[T]):
    """The neighbor cache of RFC 4861 5.1 plus the packets (any type `T`) waiting for resolution."""

    def __init__(
        self,
        *,
        retrans_timer: int = RETRANS_TIMER,
        max_multicast_solicit: int = MAX_MULTICAST_SOLICIT,
        max_unicast_solicit: int = MAX_UNICAST_SOLICIT,
        reachable_time: int = REACHABLE_TIME,
        delay_first_probe_time: int = DELAY_FIRST_PROBE_TIME,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.retrans_timer = retrans_timer
        self.max_multicast_solicit = max_multicast_solicit
        self.max_unicast_solicit = max_unicast_solicit
        self.reachable_time = reachable_time
        self.delay_first_probe_time = delay_first_probe_time
        self.max_queued = max_queued
        self.max_entries = max_entries
        self.entries: dict[str, Neighbor[T]] = {}  # insertion order: oldest first
        self.overflow_drops = 0  # packets pushed out of a full per-neighbor queue
        self.evictions = 0  # entries forgotten to make room

    # -- looking up --------------------------------------------------------------------------

    def _age(self, entry: Neighbor[T], now: int) -> None:
        """REACHABLE -> STALE once ReachableTime passed without confirmation (lazily: an idle
        host has no timer to fire for it)."""
        if entry.state is NudState.REACHABLE and entry.timer is not None and now >= entry.timer:
            entry.state = NudState.STALE
            entry.timer = None

    def state(self, ip: str, now: int) -> NudState | None:
        """The entry's NUD state (None: no entry), for tests, notebooks and `ip -6 neigh`."""
        entry = self.entries.get(ip)
        if entry is None:
            return None
        self._age(entry, now)
        return entry.state

    def lookup(self, ip: str, now: int) -> str | None:
        """The MAC to send a packet to `ip` now, or None (no entry, or INCOMPLETE: `enqueue`).

        Sending to a STALE neighbor starts DELAY (RFC 4861 7.3.3): unicast probes follow unless
        it is confirmed meanwhile."""
        entry = self.entries.get(ip)
        if entry is None or entry.lladdr is None:
            return None
        self._age(entry, now)
        if entry.state is NudState.STALE:
            entry.state = NudState.DELAY
            entry.timer = now + self.delay_first_probe_time
        return entry.lladdr

    def enqueue(self, ip: str, packet: T, now: int) -> bool:
        """Hold `packet` until `ip` resolves; True when a multicast solicitation must go now (a
        new INCOMPLETE entry). The queue is bounded; when full, the oldest packet is dropped."""
        entry = self.entries.get(ip)
        first = entry is None
        if entry is None:
            self._make_room()
            entry = Neighbor(NudState.INCOMPLETE, None, now + self.retrans_timer, probes=1)
            self.entries[ip] = entry
        if len(entry.queued) >= self.max_queued:
            entry.queued.popleft()
            self.overflow_drops += 1
        entry.queued.append(packet)
        return first

    def pending(self) -> dict[str, int]:
        """Neighbors being resolved and how many packets wait for each."""
        return {
            ip: len(e.queued) for ip, e in self.entries.items() if e.state is NudState.INCOMPLETE
        }

    # -- events ------------------------------------------------------------------------------

    def solicitation_from(self, ip: str, lladdr: str, now: int) -> list[T]:
        """A NS from `ip` carried its Source Link-Layer Address option (RFC 4861 7.2.3): create
        or update the entry as STALE (unchanged when the address is the one we hold). Returns
        the packets that waited for `ip`."""
        entry = self.entries.get(ip)
        if entry is None:
            self._make_room()
            self.entries[ip] = Neighbor(NudState.STALE, lladdr, None)
            return []
        if entry.lladdr == lladdr:
            return []
        entry.lladdr = lladdr
        entry.state = NudState.STALE
        entry.timer = None
        entry.probes = 0
        return self._release(entry)

    def advertisement(
        self, ip: str, lladdr: str | None, *, solicited: bool, override: bool, now: int
    ) -> AdvertisementVerdict[T]:
        """A valid NA for `ip` (RFC 4861 7.2.5)."""
        entry = self.entries.get(ip)
        if entry is None:
            # "There is no need to create an entry if none exists, since the recipient has
            # apparently not initiated any communication with the target."
            return AdvertisementVerdict("ndp_na_unsolicited_no_entry")
        if entry.state is NudState.INCOMPLETE:
            if lladdr is None:
                return AdvertisementVerdict("ndp_na_without_lladdr")
            entry.lladdr = lladdr
            self._set(entry, NudState.REACHABLE if solicited else NudState.STALE, now)
            return AdvertisementVerdict(None, tuple(self._release(entry)))
        self._age(entry, now)
        changed = lladdr is not None and lladdr != entry.lladdr
        if not override and changed:
            # An unsolicited or non-override NA may not move a cached address; a REACHABLE
            # entry is merely demoted to STALE so that NUD checks it.
            if entry.state is NudState.REACHABLE:
                self._set(entry, NudState.STALE, now)
            return AdvertisementVerdict("ndp_na_no_override")
        if changed:
            entry.lladdr = lladdr
        if solicited:
            self._set(entry, NudState.REACHABLE, now)
        elif changed:
            self._set(entry, NudState.STALE, now)
        return AdvertisementVerdict(None)

    def confirm(self, ip: str, now: int) -> None:
        """Upper-layer reachability confirmation (RFC 4861 7.3.1): forward progress proves the
        neighbor is there, so its entry becomes REACHABLE without any probe."""
        entry = self.entries.get(ip)
        if entry is not None and entry.state is not NudState.INCOMPLETE:
            self._set(entry, NudState.REACHABLE, now)

    def on_timer(self, now: int) -> NudActions[T]:
        """Retransmit multicast solicitations while INCOMPLETE (giving up after
        MAX_MULTICAST_SOLICIT), turn DELAY into PROBE, probe by unicast (giving up after
        MAX_UNICAST_SOLICIT: the entry is deleted, RFC 4861 7.3.3)."""
        multicast: list[str] = []
        unicast: list[tuple[str, str]] = []
        gone: list[Unresolved[T]] = []
        for ip, entry in list(self.entries.items()):
            self._age(entry, now)
            if entry.timer is None or now < entry.timer or entry.state is NudState.REACHABLE:
                continue
            if entry.state is NudState.INCOMPLETE:
                if entry.probes >= self.max_multicast_solicit:
                    del self.entries[ip]
                    gone.append(Unresolved(ip, tuple(entry.queued)))
                    continue
                entry.probes += 1
                entry.timer = now + self.retrans_timer
                multicast.append(ip)
            elif entry.state is NudState.DELAY:
                entry.state = NudState.PROBE
                entry.probes = 1
                entry.timer = now + self.retrans_timer
                unicast.append((ip, entry.lladdr or ""))
            elif entry.state is NudState.PROBE:
                if entry.probes >= self.max_unicast_solicit:
                    del self.entries[ip]
                    continue
                entry.probes += 1
                entry.timer = now + self.retrans_timer
                unicast.append((ip, entry.lladdr or ""))
        return NudActions(tuple(multicast), tuple(unicast), tuple(gone))

    def next_deadline(self) -> int | None:
        """When `on_timer` has work: a retransmission, DELAY's end, a probe, a give-up."""
        return min(
            (
                e.timer
                for e in self.entries.values()
                if e.timer is not None and e.state is not NudState.REACHABLE
            ),
            default=None,
        )

    # -- internals ---------------------------------------------------------------------------

    def _set(self, entry: Neighbor[T], state: NudState, now: int) -> None:
        entry.state = state
        entry.probes = 0
        entry.timer = now + self.reachable_time if state is NudState.REACHABLE else None

    @staticmethod
    def _release(entry: Neighbor[T]) -> list[T]:
        out = list(entry.queued)
        entry.queued.clear()
        return out

    def _make_room(self) -> None:
        """Keep at most `max_entries`: forget a STALE entry first (nothing waits on it), else the
        oldest one. Without a bound, NSs from forged sources would grow the cache for ever."""
        if len(self.entries) < self.max_entries:
            return
        victim = next(
            (ip for ip, e in self.entries.items() if e.state is NudState.STALE),
            next(iter(self.entries)),
        )
        del self.entries[victim]
        self.evictions += 1


@dataclass(slots=True)
class _Detection:
    state: AddressState
    remaining: int  # solicitations still to send
    timer: int | None  # next solicitation, or the end of the last wait


class AddressDetection:
    """Duplicate Address Detection (RFC 4862 5.4) of our own addresses, sans-IO."""

    def __init__(
        self, *, transmits: int = DUP_ADDR_DETECT_TRANSMITS, retrans_timer: int = RETRANS_TIMER
    ) -> None:
        if transmits < 0:
            raise ValueError(f"DupAddrDetectTransmits must be >= 0, not {transmits}")
        self.transmits = transmits
        self.retrans_timer = retrans_timer
        self._addresses: dict[str, _Detection] = {}

    def start(self, address: str, now: int) -> bool:
        """Begin DAD for `address`; True when a solicitation must be sent now (False: DAD is off
        and the address is PREFERRED at once)."""
        if self.transmits == 0:
            self._addresses[address] = _Detection(AddressState.PREFERRED, 0, None)
            return False
        self._addresses[address] = _Detection(
            AddressState.TENTATIVE, self.transmits - 1, now + self.retrans_timer
        )
        return True

    def state(self, address: str) -> AddressState | None:
        """TENTATIVE, PREFERRED, DUPLICATE, or None for an address that is not ours."""
        found = self._addresses.get(address)
        return found.state if found is not None else None

    def is_tentative(self, address: str) -> bool:
        found = self._addresses.get(address)
        return found is not None and found.state is AddressState.TENTATIVE

    def is_preferred(self, address: str) -> bool:
        found = self._addresses.get(address)
        return found is not None and found.state is AddressState.PREFERRED

    def conflict(self, address: str) -> bool:
        """Evidence that a tentative `address` is in use elsewhere: it becomes DUPLICATE. True when
        it was tentative (the evidence counts), False otherwise."""
        found = self._addresses.get(address)
        if found is None or found.state is not AddressState.TENTATIVE:
            return False
        found.state = AddressState.DUPLICATE
        found.timer = None
        return True

    def on_timer(self, now: int) -> tuple[list[str], list[str]]:
        """(addresses to solicit for again now, addresses that became PREFERRED now)."""
        again: list[str] = []
        done: list[str] = []
        for address, found in self._addresses.items():
            if found.state is not AddressState.TENTATIVE or found.timer is None:
                continue
            if now < found.timer:
                continue
            if found.remaining > 0:
                found.remaining -= 1
                found.timer = now + self.retrans_timer
                again.append(address)
            else:
                found.state = AddressState.PREFERRED
                found.timer = None
                done.append(address)
        return again, done

    def next_deadline(self) -> int | None:
        return min((f.timer for f in self._addresses.values() if f.timer is not None), default=None)
