"""The live set-up FTP tests share: the topology, the hand-built stack on its client end, and a
kernel address beside it so the same client can run over kernel sockets on the same wire.

The kernel address (198.18.0.4 in the client namespace, on the same veth as the lab stack) is
why kernel and lab transfers are comparable: both cross the same veth to the same server. The
lab stack drops frames for an address that is not its own ("ip_not_our_address"), and the
kernel does not forward, so the two never answer each other's traffic.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from lab.ftp.client import Client
from lab.ftp.transport import KernelTransport, LabTransport
from lab.host import Host
from lab.runtime import Runtime
from lab.topology import Topology, TopologyInfo

T = TypeVar("T")

KERNEL_CLIENT_IP = "198.18.0.4"


def add_address(topo: Topology, namespace: str, ifname: str, address: str) -> None:
    """One more IPv4 address (/24) on `ifname` in `namespace` (a topology of ours)."""
    from pyroute2 import NetNS

    with NetNS(namespace, flags=0) as ns:
        index = ns.link_lookup(ifname=ifname)[0]
        ns.addr("add", index=index, address=address, prefixlen=topo.info.prefixlen)


@dataclass
class LiveStack:
    """The topology with the lab stack on its client end (and a kernel address beside it)."""

    topo: Topology
    runtime: Runtime

    @property
    def info(self) -> TopologyInfo:
        return self.topo.info

    def lab_client(self, **kwargs: object) -> Client:
        return Client(LabTransport(self.runtime), **kwargs)  # type: ignore[arg-type]

    def in_client_kernel(self, fn: Callable[[], T]) -> T:
        """Run `fn` in a thread inside the client namespace: its kernel sockets use 198.18.0.4."""
        return self.topo.run_in_client(fn)

    def kernel_client(self, **kwargs: object) -> Client:
        return Client(KernelTransport(), **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def live_stack(*, codec: str = "fast", kernel_address: bool = True) -> Iterator[LiveStack]:
    """Build the topology, run the lab stack on it; tear everything down afterwards."""
    with Topology() as topo:
        info = topo.info
        if kernel_address:
            add_address(topo, info.names.client_ns, info.names.client_if, KERNEL_CLIENT_IP)
        link = topo.open_client_link()
        host = Host(
            info.client_mac,
            info.client_ip,
            info.prefixlen,
            None,
            now=time.monotonic_ns() // 1000,
            codec=codec,
        )
        try:
            with Runtime(host, link) as runtime:
                yield LiveStack(topo, runtime)
        finally:
            link.close()
