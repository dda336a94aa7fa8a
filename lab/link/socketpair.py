"""An in-process Ethernet: two links joined by a Unix socketpair.

Unlike the virtual-time wire of `lab.sim.wire`, this one has real file descriptors, so the
runtime's selector loop can drive two hand-built stacks against each other in one process, with
real time and no privileges: what the runtime, impairment and capture-comment tests need, and
what a notebook can use when it cannot open raw sockets. Each datagram is one frame.
"""

from __future__ import annotations

import socket

MAX_FRAME = 65536


class SocketPairLink:
    """One end of the pair: `send(frame)`, `receive(timeout)` (never blocks), `fileno()`."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def receive(self, timeout: float) -> bytes | None:
        """A waiting frame, or None; the runtime waits on `fileno()` before calling this."""
        try:
            return self.sock.recv(MAX_FRAME)
        except BlockingIOError:
            return None

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


def socketpair_links(kind: int = socket.SOCK_SEQPACKET) -> tuple[SocketPairLink, SocketPairLink]:
    """Two joined links; SOCK_SEQPACKET keeps frame boundaries and order, like a cable."""
    left, right = socket.socketpair(socket.AF_UNIX, kind)
    return SocketPairLink(left), SocketPairLink(right)
