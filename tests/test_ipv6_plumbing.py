"""IPv6 plumbing around the host, without privileges: the link's BPF filter, the state file,
the runtime's address handling and the session's multicast groups.

The filter is run through the classic-BPF interpreter of `test_packet_link` (what the kernel
does), so its verdict on every destination MAC is checked, not its instructions.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_packet_link import BROADCAST, OUR_MAC, frame, run_bpf

from lab.host import DuplicateAddressError, Host
from lab.link.packet import BPF_JEQ_K, BPF_RET_K, mac_to_bytes, our_frames_filter
from lab.runtime import Runtime, canonical_address, endpoint
from lab.session import ipv6_multicast_macs
from lab.topology.state import (
    Owner,
    StateRecord,
    TopologyInfo,
    TopologyNames,
    read_state,
    write_state,
)

ALL_NODES = "33:33:00:00:00:01"
SOLICITED = "33:33:ff:00:00:02"  # ff02::1:ff00:2, the group of 2001:2::2
SOLICITED_LL = "33:33:ff:bb:cc:dd"
GROUPS = (ALL_NODES, SOLICITED, SOLICITED_LL)

dsts = st.one_of(
    st.sampled_from([mac_to_bytes(m) for m in (OUR_MAC, *GROUPS)] + [BROADCAST]),
    st.binary(min_size=6, max_size=6),
    # one bit away from an accepted MAC: all six bytes must be compared
    st.tuples(st.sampled_from([OUR_MAC, *GROUPS]), st.integers(0, 47)).map(
        lambda t: (int.from_bytes(mac_to_bytes(t[0]), "big") ^ (1 << t[1])).to_bytes(6, "big")
    ),
)


@settings(max_examples=400, deadline=None)
@given(dst=dsts, ethertype=st.sampled_from([0x0800, 0x0806, 0x86DD, 0x88B5]))
def test_filter_with_groups_accepts_us_our_groups_and_broadcast_arp_only(
    dst: bytes, ethertype: int
) -> None:
    accepted = run_bpf(our_frames_filter(OUR_MAC, GROUPS), frame(dst, ethertype)) > 0
    wanted = {mac_to_bytes(m) for m in (OUR_MAC, *GROUPS)}
    assert accepted == (dst in wanted or (dst == BROADCAST and ethertype == 0x0806))


@settings(max_examples=200, deadline=None)
@given(dst=dsts, ethertype=st.sampled_from([0x0800, 0x0806, 0x86DD]))
def test_filter_without_groups_takes_no_ipv6_multicast(dst: bytes, ethertype: int) -> None:
    """A v4-only stack (no groups) keeps the old verdicts: 33:33 frames are not for it."""
    accepted = run_bpf(our_frames_filter(OUR_MAC), frame(dst, ethertype)) > 0
    assert accepted == (dst == mac_to_bytes(OUR_MAC) or (dst == BROADCAST and ethertype == 0x0806))


def test_filter_program_with_groups_is_well_formed() -> None:
    program = our_frames_filter(OUR_MAC, GROUPS)
    for index, (code, jt, jf, _) in enumerate(program):
        if code == BPF_JEQ_K:
            assert index + 1 + max(jt, jf) < len(program)
    assert program[-1] == (BPF_RET_K, 0, 0, 0)
    # a MAC named twice (or in another case) is one block
    assert our_frames_filter(OUR_MAC, (*GROUPS, ALL_NODES.upper())) == program


def test_filter_drops_runts_with_groups() -> None:
    program = our_frames_filter(OUR_MAC, GROUPS)
    assert run_bpf(program, mac_to_bytes(SOLICITED)[:5]) == 0
    assert run_bpf(program, mac_to_bytes(ALL_NODES)[:3]) == 0


def test_the_session_listens_to_all_nodes_and_both_solicited_node_groups() -> None:
    host = Host(
        "02:aa:bb:cc:dd:ee", "198.18.0.2", 24, None, now=0, ip6="2001:2::2", dad_transmits=0
    )
    # fe80::aa:bbff:fecc:ddee (modified EUI-64) -> ff02::1:ffcc:ddee -> 33:33:ff:cc:dd:ee
    assert set(ipv6_multicast_macs(host)) == {ALL_NODES, SOLICITED, "33:33:ff:cc:dd:ee"}
    v4_only = Host("02:aa:bb:cc:dd:ee", "198.18.0.2", 24, None, now=0)
    assert ipv6_multicast_macs(v4_only) == []


# -- the state file --------------------------------------------------------------------------------


def _record() -> StateRecord:
    names = TopologyNames.for_run("a1b2c3")
    info = TopologyInfo(names, "02:00:00:00:00:01", "02:00:00:00:00:02", server_ip6="2001:2:0:9::1")
    return StateRecord(names, Owner(1, 2), info)


def test_the_state_file_keeps_v6_addresses_where_an_older_lab_can_still_read_it(
    tmp_path: Path,
) -> None:
    path = write_state(_record(), tmp_path)
    data = json.loads(path.read_text())
    # An older lab builds TopologyInfo(**info): an unknown key there would make the record
    # unreadable, and the topology a leftover to remove while its owner runs.
    assert set(data["info"]) == {"server_mac", "client_mac", "server_ip", "client_ip", "prefixlen"}
    record = read_state(path)
    assert record is not None
    assert record.info is not None
    assert (record.info.server_ip6, record.info.client_ip6) == ("2001:2:0:9::1", "2001:2::2")


def test_a_state_file_from_before_ipv6_reads_with_the_default_v6_addresses(
    tmp_path: Path,
) -> None:
    path = write_state(_record(), tmp_path)
    data = json.loads(path.read_text())
    del data["info6"]
    path.write_text(json.dumps(data))
    record = read_state(path)
    assert record is not None
    assert record.info is not None
    assert (record.info.server_ip6, record.info.prefixlen6) == ("2001:2::1", 64)


# -- the runtime's addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_text", "canonical"),
    [
        ("2001:0002:0000:0000:0000:0000:0000:0001", "2001:2::1"),
        ("2001:2:0::1", "2001:2::1"),
        ("2001:2::1", "2001:2::1"),
        ("198.18.0.1", "198.18.0.1"),
    ],
)
def test_destinations_are_put_in_the_decoder_s_form(given_text: str, canonical: str) -> None:
    assert canonical_address(given_text) == canonical


def test_a_colon_that_is_no_ipv6_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not an IPv6 address"):
        canonical_address("2001:2::zz")


def test_endpoints_put_v6_hosts_in_brackets() -> None:
    assert endpoint("2001:2::1", 21) == "[2001:2::1]:21"
    assert endpoint("198.18.0.1", 21) == "198.18.0.1:21"


def test_doctor_says_whether_the_kernel_has_ipv6(tmp_path: Path) -> None:
    from lab.cli.doctor import _ipv6_check

    present = _ipv6_check(tmp_path)
    assert (present.status, present.required) == ("ok", False)
    missing = _ipv6_check(tmp_path / "ipv6")
    assert (missing.status, missing.required) == ("warning", False)
    assert "ipv6.disable=1" in missing.detail


# -- the runtime over an in-process wire: two dual-stack hosts -------------------------------------


def _pair(
    ip6_a: str, ip6_b: str, dad: int = 1, peer_dad: int | None = None
) -> tuple[Runtime, Runtime]:
    """Two runtimes on a socketpair wire; `dad` DAD probes for the first, `peer_dad` (default:
    the same) for the second."""
    from lab.link.socketpair import socketpair_links
    from lab.tcp.endpoint import TcpEndpoint

    left, right = socketpair_links()
    now = time.monotonic_ns() // 1000
    hosts = [
        Host(
            mac,
            ip,
            24,
            None,
            tcp=TcpEndpoint(ip, isn_key=b"k", rng_seed=n),
            now=now,
            ip6=ip6,
            dad_transmits=dad if n == 0 or peer_dad is None else peer_dad,
        )
        for n, (mac, ip, ip6) in enumerate(
            [
                ("02:00:00:00:00:0a", "198.18.0.10", ip6_a),
                ("02:00:00:00:00:0b", "198.18.0.11", ip6_b),
            ]
        )
    ]
    return Runtime(hosts[0], left), Runtime(hosts[1], right)


def test_connect_and_ping_over_v6_take_any_spelling_of_the_address() -> None:
    a, b = _pair("2001:2::a", "2001:2::b")
    with a, b:
        listener = b.listen(7)
        reply = a.ping("2001:0002:0000::000b", ident=7, seq=1, payload=b"hi", timeout=5)
        assert (reply.src, reply.payload) == ("2001:2::b", b"hi")
        sock = a.connect("2001:2:0:0:0:0:0:b", 7, timeout=5)
        assert sock.remote_address == ("2001:2::b", 7)
        assert sock.local_address[0] == "2001:2::a"
        peer = listener.accept(5)
        assert peer.remote_address == sock.local_address
        sock.sendall(b"over v6", 5)
        assert peer.recv(100, 5) == b"over v6"
        sock.close()
        peer.close()


def test_a_v6_connect_made_during_dad_measures_no_dad_in_its_rtt() -> None:
    """connect() right after start: our address is tentative for ~1 s. The SYN must be built
    when it can leave, or its RTT sample says ~1 s on a link of microseconds.

    The peer's address is usable from the start (no DAD): if both finished DAD at about the
    same time, the peer, still tentative a few ms after us on a loaded machine, would not answer
    our Neighbor Solicitation (RFC 4862 5.4), the SYN would be retransmitted after 1 s, and
    Karn's rule would leave no RTT sample at all (seen once in a full run as a user)."""
    a, b = _pair("2001:2::a", "2001:2::b", peer_dad=0)
    with a, b:
        b.listen(7)
        sock = a.connect("2001:2::b", 7, timeout=5)
        srtt = sock.connection.srtt
        assert srtt is not None
        assert srtt < 200_000  # microseconds; DAD alone is 1_000_000
        sock.close()


def test_a_duplicate_v6_address_makes_v6_calls_fail_clearly() -> None:
    a, b = _pair("2001:2::a", "2001:2::a", dad=1)  # both claim 2001:2::a
    with a, b:
        with pytest.raises(DuplicateAddressError, match="2001:2::a"):
            a.ping("2001:2::b", ident=1, seq=1, timeout=5)
        with pytest.raises(DuplicateAddressError):
            a.connect("2001:2::b", 7, timeout=5)
        # IPv4 is untouched by a v6 duplicate
        assert a.ping("198.18.0.11", ident=1, seq=2, timeout=5).src == "198.18.0.11"


def test_a_v6_destination_without_a_v6_address_is_a_value_error() -> None:
    from lab.link.socketpair import socketpair_links

    left, _right = socketpair_links()
    host = Host("02:00:00:00:00:0a", "198.18.0.10", 24, None, now=0)
    with Runtime(host, left) as runtime, pytest.raises(ValueError, match="no IPv6 address"):
        runtime.ping("2001:2::1", ident=1, seq=1, timeout=1)
