"""The kernel's own TCP sockets, as /proc/net/tcp lists them, inside a network namespace.

What `ss -tan` shows, without running `ss`: the notebooks put the kernel's state beside the lab
stack's, and the exercises check that the server kernel reached ESTABLISHED. States carry their
RFC 9293 names (`state`) and the kernel's own (`linux_name`).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from lab.topology.netns import run_in_namespace

# include/net/tcp_states.h; NEW_SYN_RECV is a request socket (a SYN answered, no full socket yet)
LINUX_TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN-SENT",
    3: "SYN-RECEIVED",
    4: "FIN-WAIT-1",
    5: "FIN-WAIT-2",
    6: "TIME-WAIT",
    7: "CLOSED",
    8: "CLOSE-WAIT",
    9: "LAST-ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "SYN-RECEIVED",
}


LINUX_NAMES = {3: "SYN-RECV", 7: "CLOSE", 12: "NEW-SYN-RECV"}


@dataclass(frozen=True, slots=True)
class KernelSocket:
    """One line of /proc/net/tcp: addresses, and the state under its RFC 9293 name."""

    local: tuple[str, int]
    remote: tuple[str, int]
    state: str
    linux_code: int

    @property
    def linux_name(self) -> str:
        """The kernel's own name (`ss` prints these), e.g. SYN-RECV for SYN-RECEIVED."""
        return LINUX_NAMES.get(self.linux_code, self.state)


def _proc_address(text: str) -> tuple[str, int]:
    ip_hex, port_hex = text.split(":")
    # the address is the kernel's 32-bit word printed in hex: host (little-endian) byte order
    return socket.inet_ntoa(struct.pack("<I", int(ip_hex, 16))), int(port_hex, 16)


def parse_proc_net_tcp(text: str) -> list[KernelSocket]:
    """The sockets of a /proc/net/tcp listing (header line skipped)."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        code = int(fields[3], 16)
        state = LINUX_TCP_STATES.get(code, f"UNKNOWN({code})")
        out.append(KernelSocket(_proc_address(fields[1]), _proc_address(fields[2]), state, code))
    return out


def kernel_sockets(namespace: str) -> list[KernelSocket]:
    """The kernel's IPv4 TCP sockets inside network namespace `namespace` (a name, or a path
    such as /proc/PID/ns/net).

    /proc/net is the *process's* namespace view; a thread that entered another namespace sees
    that one through /proc/thread-self/net, which is why the file read happens in such a thread.
    """

    def read() -> str:
        with open("/proc/thread-self/net/tcp") as f:
            return f.read()

    return parse_proc_net_tcp(run_in_namespace(namespace, read))


def kernel_state(sockets: Sequence[KernelSocket], local_port: int, remote_port: int) -> str:
    """The state of the kernel's connection (local_port, remote_port), or CLOSED when it has no
    such socket: RFC 9293's CLOSED is "no TCB" (3.3.2)."""
    for s in sockets:
        if s.local[1] == local_port and s.remote[1] == remote_port:
            return s.state
    return "CLOSED"


def kernel_listening(sockets: Sequence[KernelSocket], port: int) -> bool:
    return any(s.local[1] == port and s.state == "LISTEN" for s in sockets)
