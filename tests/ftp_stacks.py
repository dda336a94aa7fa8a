"""The live FTP test bench shared by the interop and hostile-server tests.

`lab.session`'s running stack (not recording) and, beside it on the same client veth, the client
namespace's kernel with an address of its own, so that every FTP scenario runs over both the
hand-built stack and kernel sockets against the same server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from lab.ftp.client import Client
from lab.ftp.transport import KernelTransport, LabTransport
from lab.session import KernelSide, LabStack, kernel_client
from lab.topology import Topology, TopologyInfo


@dataclass
class LiveStack:
    """`lab.session`'s running stack (not recording) and the kernel beside it on the same veth."""

    lab: LabStack
    kernel: KernelSide

    @property
    def topo(self) -> Topology:
        assert self.lab.topology is not None
        return self.lab.topology

    @property
    def info(self) -> TopologyInfo:
        return self.topo.info

    def lab_client(self, **kwargs: Any) -> Client:
        return Client(LabTransport(self.lab.runtime), **kwargs)

    def kernel_client(self, **kwargs: Any) -> Client:
        """Kernel sockets made in the client namespace, bound to the kernel's address there."""
        transport = KernelTransport(namespace=self.kernel.namespace, source_ip=self.kernel.address)
        return Client(transport, **kwargs)


@contextlib.contextmanager
def live_stack(kernel_address: str) -> Iterator[LiveStack]:
    """A topology with the lab stack and the kernel at `kernel_address`, torn down after."""
    with LabStack.on_topology(record=False) as lab:
        assert lab.topology is not None
        with kernel_client(lab.topology, capture=None, address=kernel_address) as side:
            yield LiveStack(lab, side)
