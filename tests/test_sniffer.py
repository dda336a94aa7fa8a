"""`FrameSniffer`: the receive ring (rootless mode's path) records what the socket path records."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from lab.capture.reader import CapturedPacket, read_packets
from lab.link.sniffer import FrameSniffer
from lab.session import kernel_client
from lab.topology import Topology
from lab.topology.netns import run_in_namespace
from lab.topology.peers import start_echo_server

pytestmark = pytest.mark.privileged


def echoed(path: Path) -> list[CapturedPacket]:
    """The TCP frames to or from port 7 (the exchange; not the IPv6 chatter of a new link)."""
    return [
        p
        for p in read_packets(path)
        if p.data[12:14] == b"\x08\x00"
        and p.data[23] == 6
        and 7 in struct.unpack_from("!HH", p.data, 14 + (p.data[14] & 15) * 4)
    ]


def test_the_ring_and_the_socket_record_the_same_frames_with_directions_and_times(
    tmp_path: Path,
) -> None:
    with Topology() as topo, kernel_client(topo, capture=None) as side:
        names = topo.names
        echo = start_echo_server(topo, topo.info.server_ip, 7)
        try:
            paths = {ring: tmp_path / f"ring-{ring}.pcapng" for ring in (True, False)}
            sniffers = [
                FrameSniffer(names.client_if, path, namespace=names.client_ns, ring=ring)
                for ring, path in paths.items()
            ]
            assert sniffers[0]._ring is not None
            assert sniffers[1]._ring is None

            def exchange() -> bytes:
                with socket.create_connection((topo.info.server_ip, 7), timeout=5) as sock:
                    sock.sendall(b"x" * 300_000)
                    sock.shutdown(socket.SHUT_WR)
                    return b"".join(iter(lambda: sock.recv(65536), b""))

            assert run_in_namespace(side.namespace, exchange) == b"x" * 300_000
            time.sleep(0.3)  # the last ACK of the close, before the first sniffer stops
            for sniffer in sniffers:
                sniffer.close()
        finally:
            echo.kill()
            echo.wait()
    assert all(s.drops == 0 for s in sniffers)
    ring, sock = ([(p.data, p.direction) for p in echoed(paths[r])] for r in (True, False))
    assert len(ring) > 100
    assert len(ring) == len(sock)
    assert sorted(ring) == sorted(sock)  # two sockets: the same frames, maybe not interleaved alike
    assert {d for _, d in ring} == {"in", "out"}
    stamps = [[p.timestamp_ns for p in echoed(paths[r])] for r in (True, False)]
    # the kernel's receive times, not when a thread got to the frame: within a few ms of each other
    pairs = zip(sorted(stamps[0]), sorted(stamps[1]), strict=True)
    assert all(abs(a - b) < 20_000_000 for a, b in pairs)
