"""The neighbor cache (RFC 4861 NUD states) and Duplicate Address Detection (RFC 4862), alone."""

from __future__ import annotations

import pytest

from lab.host.ndp import (
    AddressDetection,
    AddressState,
    NeighborCache,
    NudState,
    link_local_from_mac,
)
from lab.wire.fast_ipv6 import ipv6_multicast_mac, solicited_node_multicast

PEER = "2001:2::1"
MAC = "02:00:00:00:00:01"
OTHER_MAC = "02:00:00:00:00:99"
SECOND = 1_000_000


def test_solicited_node_group_keeps_the_last_24_bits() -> None:
    assert solicited_node_multicast("2001:2::1") == "ff02::1:ff00:1"
    assert solicited_node_multicast("fe80::200:ff:fe12:3456") == "ff02::1:ff12:3456"


def test_multicast_mac_is_33_33_and_the_last_32_bits_of_the_group() -> None:
    assert ipv6_multicast_mac("ff02::1:ff12:3456") == "33:33:ff:12:34:56"
    assert ipv6_multicast_mac("ff02::1") == "33:33:00:00:00:01"


def test_link_local_address_is_modified_eui_64_of_the_mac() -> None:
    # RFC 4291 appendix A: ff:fe in the middle, universal/local bit inverted.
    assert link_local_from_mac("00:11:22:33:44:55") == "fe80::211:22ff:fe33:4455"
    assert link_local_from_mac("02:00:00:00:00:02") == "fe80::ff:fe00:2"
    with pytest.raises(ValueError, match="not a MAC"):
        link_local_from_mac("00:11")


def resolved(solicited: bool = True) -> NeighborCache[str]:
    cache: NeighborCache[str] = NeighborCache()
    assert cache.enqueue(PEER, "p1", 0)
    verdict = cache.advertisement(PEER, MAC, solicited=solicited, override=True, now=10)
    assert verdict.dropped is None
    assert verdict.released == ("p1",)
    return cache


def test_first_packet_makes_an_incomplete_entry_and_asks_once() -> None:
    cache: NeighborCache[str] = NeighborCache()
    assert cache.enqueue(PEER, "p1", 0) is True
    assert cache.enqueue(PEER, "p2", 5) is False
    assert cache.state(PEER, 5) is NudState.INCOMPLETE
    assert cache.lookup(PEER, 5) is None
    assert cache.pending() == {PEER: 2}


def test_incomplete_entry_retransmits_every_second_three_times_then_gives_up() -> None:
    cache: NeighborCache[str] = NeighborCache()
    cache.enqueue(PEER, "p1", 0)
    assert cache.on_timer(SECOND - 1).multicast == ()
    assert cache.on_timer(SECOND).multicast == (PEER,)
    assert cache.on_timer(2 * SECOND).multicast == (PEER,)
    gone = cache.on_timer(3 * SECOND)
    assert gone.multicast == ()
    assert [(u.ip, u.dropped) for u in gone.unresolved] == [(PEER, ("p1",))]
    assert cache.state(PEER, 3 * SECOND) is None
    assert cache.next_deadline() is None


def test_solicited_advertisement_makes_the_entry_reachable_and_releases_the_queue() -> None:
    cache = resolved()
    assert cache.state(PEER, 10) is NudState.REACHABLE
    assert cache.lookup(PEER, 10) == MAC


def test_unsolicited_advertisement_resolves_an_incomplete_entry_as_stale() -> None:
    cache = resolved(solicited=False)
    assert cache.state(PEER, 10) is NudState.STALE


def test_advertisement_without_lladdr_does_not_resolve_an_incomplete_entry() -> None:
    cache: NeighborCache[str] = NeighborCache()
    cache.enqueue(PEER, "p1", 0)
    verdict = cache.advertisement(PEER, None, solicited=True, override=True, now=1)
    assert verdict.dropped == "ndp_na_without_lladdr"
    assert cache.state(PEER, 1) is NudState.INCOMPLETE


def test_advertisement_for_an_address_never_asked_about_creates_no_entry() -> None:
    cache: NeighborCache[str] = NeighborCache()
    verdict = cache.advertisement(PEER, MAC, solicited=False, override=True, now=0)
    assert verdict.dropped == "ndp_na_unsolicited_no_entry"
    assert cache.entries == {}


def test_reachable_turns_stale_after_reachable_time_then_delay_then_probe() -> None:
    cache = resolved()
    assert cache.state(PEER, 10 + 30 * SECOND - 1) is NudState.REACHABLE
    assert cache.state(PEER, 10 + 30 * SECOND) is NudState.STALE
    now = 40 * SECOND
    assert cache.lookup(PEER, now) == MAC  # a STALE entry is still used ...
    assert cache.state(PEER, now) is NudState.DELAY  # ... and its use starts DELAY
    assert cache.next_deadline() == now + 5 * SECOND
    actions = cache.on_timer(now + 5 * SECOND)
    assert actions.unicast == ((PEER, MAC),)
    assert cache.state(PEER, now + 5 * SECOND) is NudState.PROBE


def test_probe_gives_up_after_three_unicast_solicitations_and_deletes_the_entry() -> None:
    cache = resolved()
    now = 40 * SECOND
    cache.lookup(PEER, now)
    probes = 0
    t = now + 5 * SECOND
    while cache.state(PEER, t) is not None:
        probes += len(cache.on_timer(t).unicast)
        t += SECOND
    assert probes == 3


def test_a_solicited_advertisement_in_probe_makes_the_entry_reachable_again() -> None:
    cache = resolved()
    now = 40 * SECOND
    cache.lookup(PEER, now)
    cache.on_timer(now + 5 * SECOND)
    cache.advertisement(PEER, MAC, solicited=True, override=False, now=now + 5 * SECOND + 1)
    assert cache.state(PEER, now + 6 * SECOND) is NudState.REACHABLE


def test_non_override_advertisement_with_a_new_address_only_demotes_reachable_to_stale() -> None:
    cache = resolved()
    verdict = cache.advertisement(PEER, OTHER_MAC, solicited=True, override=False, now=20)
    assert verdict.dropped == "ndp_na_no_override"
    assert cache.lookup(PEER, 20) == MAC
    assert cache.state(PEER, 20) is NudState.DELAY  # was demoted to STALE, then used


def test_override_advertisement_moves_the_address() -> None:
    cache = resolved()
    cache.advertisement(PEER, OTHER_MAC, solicited=False, override=True, now=20)
    assert cache.state(PEER, 20) is NudState.STALE
    assert cache.lookup(PEER, 20) == OTHER_MAC


def test_solicitation_with_source_lladdr_creates_a_stale_entry_or_updates_it() -> None:
    cache: NeighborCache[str] = NeighborCache()
    assert cache.solicitation_from(PEER, MAC, 0) == []
    assert cache.state(PEER, 0) is NudState.STALE
    cache.advertisement(PEER, MAC, solicited=True, override=True, now=1)
    assert cache.state(PEER, 1) is NudState.REACHABLE
    cache.solicitation_from(PEER, MAC, 2)  # same address: unchanged
    assert cache.state(PEER, 2) is NudState.REACHABLE
    cache.solicitation_from(PEER, OTHER_MAC, 3)
    assert cache.state(PEER, 3) is NudState.STALE
    assert cache.lookup(PEER, 3) == OTHER_MAC


def test_solicitation_from_an_incomplete_neighbor_releases_its_queue() -> None:
    cache: NeighborCache[str] = NeighborCache()
    cache.enqueue(PEER, "p1", 0)
    assert cache.solicitation_from(PEER, MAC, 1) == ["p1"]
    assert cache.state(PEER, 1) is NudState.STALE


def test_upper_layer_confirmation_makes_an_entry_reachable_without_probing() -> None:
    cache = resolved()
    now = 40 * SECOND
    cache.lookup(PEER, now)
    cache.confirm(PEER, now + 1)
    assert cache.state(PEER, now + 1) is NudState.REACHABLE


def test_queue_per_neighbor_is_bounded_and_drops_the_oldest() -> None:
    cache: NeighborCache[int] = NeighborCache(max_queued=3)
    for packet in range(5):
        cache.enqueue(PEER, packet, 0)
    verdict = cache.advertisement(PEER, MAC, solicited=True, override=True, now=1)
    assert verdict.released == (2, 3, 4)
    assert cache.overflow_drops == 2


def test_cache_is_bounded_and_forgets_stale_entries_first() -> None:
    cache: NeighborCache[str] = NeighborCache(max_entries=3)
    cache.enqueue("2001:2::a", "p", 0)  # INCOMPLETE: something waits on it
    cache.solicitation_from("2001:2::b", MAC, 0)  # STALE
    cache.solicitation_from("2001:2::c", MAC, 0)
    cache.solicitation_from("2001:2::d", MAC, 0)
    assert set(cache.entries) == {"2001:2::a", "2001:2::c", "2001:2::d"}
    assert cache.evictions == 1


def test_dad_makes_the_address_preferred_after_one_silent_retrans_timer() -> None:
    dad = AddressDetection()
    assert dad.start("2001:2::2", 0) is True
    assert dad.state("2001:2::2") is AddressState.TENTATIVE
    assert dad.on_timer(SECOND - 1) == ([], [])
    assert dad.on_timer(SECOND) == ([], ["2001:2::2"])
    assert dad.is_preferred("2001:2::2")
    assert dad.next_deadline() is None


def test_dad_sends_the_configured_number_of_solicitations() -> None:
    dad = AddressDetection(transmits=3)
    assert dad.start("2001:2::2", 0)
    assert dad.on_timer(SECOND) == (["2001:2::2"], [])
    assert dad.on_timer(2 * SECOND) == (["2001:2::2"], [])
    assert dad.on_timer(3 * SECOND) == ([], ["2001:2::2"])


def test_dad_with_zero_transmits_is_preferred_at_once() -> None:
    dad = AddressDetection(transmits=0)
    assert dad.start("2001:2::2", 0) is False
    assert dad.is_preferred("2001:2::2")
    with pytest.raises(ValueError, match="DupAddrDetectTransmits"):
        AddressDetection(transmits=-1)


def test_a_conflict_on_a_tentative_address_makes_it_duplicate_for_good() -> None:
    dad = AddressDetection()
    dad.start("2001:2::2", 0)
    assert dad.conflict("2001:2::2") is True
    assert dad.state("2001:2::2") is AddressState.DUPLICATE
    assert dad.on_timer(5 * SECOND) == ([], [])
    assert dad.conflict("2001:2::2") is False  # evidence counts only while tentative
    assert dad.state("2001:2::9") is None
