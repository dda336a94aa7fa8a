"""AF_PACKET link: the BPF filter's verdicts, ARP with the real kernel, statistics and drops."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.link.packet import (
    BPF_JEQ_K,
    BPF_LD_H_ABS,
    BPF_LD_W_ABS,
    BPF_RET_K,
    BpfInstruction,
    PacketLink,
    assemble,
    mac_to_bytes,
    our_frames_filter,
)

OUR_MAC = "02:1a:b0:00:00:02"
OTHER_MAC = "02:1a:b0:00:00:99"
BROADCAST = b"\xff" * 6
ETH_P_EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental EtherType: nobody answers it


def run_bpf(program: list[BpfInstruction], frame: bytes) -> int:
    """A classic-BPF interpreter for the opcodes our filter uses (what the kernel does)."""
    a, pc = 0, 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code in (BPF_LD_W_ABS, BPF_LD_H_ABS):
            size = 4 if code == BPF_LD_W_ABS else 2
            if k + size > len(frame):
                return 0  # the kernel drops the frame on an out-of-bounds load
            a = int.from_bytes(frame[k : k + size], "big")
        elif code == BPF_JEQ_K:
            pc += jt if a == k else jf
        elif code == BPF_RET_K:
            return k
        else:  # pragma: no cover - the program uses nothing else
            raise AssertionError(f"unexpected opcode {code:#x}")


def frame(dst: bytes, ethertype: int, payload: bytes = b"\x00" * 46) -> bytes:
    return dst + mac_to_bytes(OTHER_MAC) + struct.pack("!H", ethertype) + payload


macs = st.one_of(
    st.just(mac_to_bytes(OUR_MAC)),
    st.just(BROADCAST),
    st.binary(min_size=6, max_size=6),
    # one byte away from ours: the filter must compare all six
    st.integers(0, 5).map(
        lambda i: bytes(b ^ (i == j) for j, b in enumerate(mac_to_bytes(OUR_MAC)))
    ),
)


def test_filter_program_is_well_formed() -> None:
    program = our_frames_filter(OUR_MAC)
    assert len(assemble(program)) == 8 * len(program)
    for index, (code, jt, jf, _) in enumerate(program):
        if code == BPF_JEQ_K:
            assert index + 1 + max(jt, jf) < len(program)  # every jump lands inside
    assert program[-1] == (BPF_RET_K, 0, 0, 0)


@settings(max_examples=300, deadline=None)
@given(dst=macs, ethertype=st.sampled_from([0x0800, 0x0806, 0x86DD, ETH_P_EXPERIMENTAL]))
def test_filter_accepts_frames_to_us_and_broadcast_arp_only(dst: bytes, ethertype: int) -> None:
    accepted = run_bpf(our_frames_filter(OUR_MAC), frame(dst, ethertype)) > 0
    expected = dst == mac_to_bytes(OUR_MAC) or (dst == BROADCAST and ethertype == 0x0806)
    assert accepted == expected


def test_filter_drops_runts() -> None:
    assert run_bpf(our_frames_filter(OUR_MAC), mac_to_bytes(OUR_MAC)[:5]) == 0
    assert run_bpf(our_frames_filter(OUR_MAC), BROADCAST + b"\x00" * 6) == 0


# -- privileged ----------------------------------------------------------------------------------


def arp_request(sender_mac: str, sender_ip: str, target_ip: str) -> bytes:
    mac = mac_to_bytes(sender_mac)
    return (
        BROADCAST
        + mac
        + struct.pack("!HHHBBH", 0x0806, 1, 0x0800, 6, 4, 1)
        + mac
        + socket.inet_aton(sender_ip)
        + b"\x00" * 6
        + socket.inet_aton(target_ip)
    )


@pytest.fixture
def topo() -> Iterator[object]:
    from lab.topology import Topology

    with Topology() as topology:
        yield topology


def server_raw_socket(topology: object) -> socket.socket:
    from lab.topology import Topology

    assert isinstance(topology, Topology)
    names = topology.names

    def open_socket() -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind((names.server_if, 0))
        return sock

    return topology.run_in_server(open_socket)


@pytest.mark.privileged
def test_arp_request_gets_the_server_kernels_reply(topo: object) -> None:
    from lab.topology import Topology

    assert isinstance(topo, Topology)
    info = topo.info
    with PacketLink.open_client_end(topo) as link:
        assert link.mac == info.client_mac
        request = arp_request(info.client_mac, info.client_ip, info.server_ip)
        link.send(request)
        reply = link.receive(timeout=2.0)
        assert reply is not None  # and not our own broadcast request read back
        assert reply[:6] == mac_to_bytes(info.client_mac)
        assert reply[12:14] == b"\x08\x06"
        op, sender_mac, sender_ip, target_mac, target_ip = struct.unpack(
            "!6xH6s4s6s4s", reply[14:42]
        )
        assert op == 2
        assert sender_mac == mac_to_bytes(info.server_mac)
        assert socket.inet_ntoa(sender_ip) == info.server_ip
        assert target_mac == mac_to_bytes(info.client_mac)
        assert socket.inet_ntoa(target_ip) == info.client_ip
        assert link.receive(timeout=0.05) is None
        stats = link.stats()
        assert (stats.frames_out, stats.bytes_out) == (1, len(request))
        assert (stats.frames_in, stats.bytes_in) == (1, len(reply))
        assert stats.kernel_packets == 1


@pytest.mark.privileged
def test_filter_drops_other_unicast_and_non_arp_broadcast_in_the_kernel(topo: object) -> None:
    from lab.topology import Topology

    assert isinstance(topo, Topology)
    info = topo.info
    ours = mac_to_bytes(info.client_mac)
    sender = server_raw_socket(topo)
    with PacketLink.open_client_end(topo) as link, sender:
        wanted = [
            frame(ours, ETH_P_EXPERIMENTAL, b"for us".ljust(46, b".")),
            frame(BROADCAST, 0x0806, b"broadcast arp".ljust(46, b".")),
        ]
        unwanted = [
            frame(mac_to_bytes(OTHER_MAC), ETH_P_EXPERIMENTAL, b"for someone else".ljust(46)),
            frame(BROADCAST, ETH_P_EXPERIMENTAL, b"broadcast, not arp".ljust(46)),
            frame(b"\x01\x00\x5e\x00\x00\x01", 0x0800, b"multicast".ljust(46)),
        ]
        for each in (unwanted[0], wanted[0], unwanted[1], unwanted[2], wanted[1]):
            sender.send(each)
        received = []
        while (got := link.receive(timeout=0.3)) is not None:
            received.append(got)
        assert received == wanted
        assert link.stats().kernel_packets == len(wanted)  # the rest never left the kernel


@pytest.mark.privileged
def test_overflowing_the_receive_buffer_is_reported_as_kernel_drops(topo: object) -> None:
    from lab.link.packet import PacketLink
    from lab.topology import Topology

    assert isinstance(topo, Topology)
    info = topo.info
    sender = server_raw_socket(topo)
    with (
        PacketLink.open(
            info.client_if, mac=info.client_mac, namespace=info.client_ns, rcvbuf=4096
        ) as link,
        sender,
    ):
        count = 300
        for i in range(count):
            sender.send(
                frame(mac_to_bytes(info.client_mac), ETH_P_EXPERIMENTAL, bytes([i % 256]) * 1000)
            )
        delivered = 0
        while link.receive(timeout=0.2) is not None:
            delivered += 1
        stats = link.stats()
        assert stats.kernel_packets == count
        assert stats.kernel_drops > 0
        assert delivered + stats.kernel_drops == count
        assert stats.frames_in == delivered
