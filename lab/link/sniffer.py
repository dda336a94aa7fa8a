"""`FrameSniffer`: every frame of an interface, both directions, written to pcapng from a thread.

The one AF_PACKET capture loop beside the link itself (`lab.link.packet`, which filters for the
stack's MAC and hands frames to the runtime). The sniffer sees the whole wire: `lab get --kernel`
records the kernel's run with it so the two can be compared in Wireshark, the notebooks record
the wire under the lab stack, and the exercises grade students from what it wrote.

Timestamps are the kernel's receive times (SO_TIMESTAMPNS, or the ring's tp_sec/tp_nsec), not
the moment this thread got to a frame: two sniffers, and the exercises that compare their
timings, would otherwise disagree by however long the GIL kept each thread waiting.

Room for bursts: a kernel transfer on a veth runs at 200+ MB/s, faster than this thread writes
pcapng, so frames wait in the kernel. As root the socket's buffer is raised to RCVBUF with
SO_RCVBUFFORCE. In the lab's user namespace (rootless mode) that is refused and SO_RCVBUF stops
at net.core.rmem_max (often 208 KB to 4 MB): a 50 MB transfer lost a third of its frames from the
capture. There the frames go to a TPACKET_V2 receive ring of RCVBUF bytes instead
(`lab.link.ring`), which no sysctl caps. Whatever overflows all the same is counted by the
kernel (PACKET_STATISTICS) and is `drops`, for the command to report; on close, the frames
already queued are written before the file is closed.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from lab.capture.writer import PcapngWriter
from lab.link.packet import (
    ETH_P_ALL,
    PACKET_OUTGOING,
    PACKET_STATISTICS,
    SOL_PACKET,
    set_receive_buffer,
)
from lab.link.ring import RxRing, open_rx_ring

SO_TIMESTAMPNS = 35  # asm-generic/socket.h; also its control message type (SCM_TIMESTAMPNS)
POLL_MS = 50
RCVBUF = 32 << 20  # bytes: a burst of a fast transfer while the GIL keeps this thread away

# outgoing (from the interface's side) -> the frame's comment, or None
Labeller = Callable[[bool], str | None]


class FrameSniffer:
    """Capture every frame on `ifname` (in `namespace`, if given) into the pcapng file `path`."""

    def __init__(
        self,
        ifname: str,
        path: Path,
        *,
        namespace: str | None = None,
        application: str = "lab",
        label: Labeller | None = None,
        grace: float = 0.0,
        offload: bool = False,
        ring: bool | None = None,
    ) -> None:
        """`label` comments each frame by its direction; `close` waits `grace` seconds first, so
        frames already on their way are written. `offload`: the interface has GRO on, so frames
        reach 64 KB (a ring's slots must hold them). `ring`: True or False forces the receive
        ring on or off (tests); None uses it only where the buffer cannot reach RCVBUF."""

        def open_socket() -> tuple[socket.socket, RxRing | None]:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            try:
                granted = set_receive_buffer(sock, RCVBUF)
                rx_ring = None
                if ring if ring is not None else granted < RCVBUF:
                    rx_ring = open_rx_ring(sock, RCVBUF, offload=offload)  # None: the buffer
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                sock.bind((ifname, ETH_P_ALL))
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            return sock, rx_ring

        if namespace is None:
            self._sock, self._ring = open_socket()
        else:
            from lab.topology.netns import run_in_namespace

            self._sock, self._ring = run_in_namespace(namespace, open_socket)
        self._drops = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._label = label
        self._grace = grace
        self._writer = PcapngWriter(path, ifname=ifname, application=application)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lab-sniffer", daemon=True)
        self._thread.start()

    @property
    def frames(self) -> int:
        return self._writer.frames

    @property
    def drops(self) -> int:
        """Frames the kernel could not queue for this capture so far (the buffer or ring was
        full): they are missing from the file."""
        if self._sock.fileno() >= 0:
            with contextlib.suppress(OSError):
                raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                self._drops += struct.unpack("=II", raw)[1]  # reading resets the kernel's
        return self._drops

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        while True:
            stopping = self._stop.is_set()  # then one last drain of what is queued
            if not stopping and not poller.poll(POLL_MS):
                continue
            if not self._drain():
                return
            if stopping:
                return

    def _drain(self) -> bool:
        """Write every frame queued now; False if the socket went away."""
        if self._ring is not None:
            while (taken := self._ring.take_stamped()) is not None:
                frame, stamp, pkttype = taken
                self._write_frame(frame, stamp, pkttype == PACKET_OUTGOING)
            return True
        while True:
            try:
                frame, ancillary, _flags, address = self._sock.recvmsg(65536, 64)
            except BlockingIOError:
                return True
            except OSError:
                return False
            self._write(frame, ancillary, address[2] == PACKET_OUTGOING)

    def _write(self, frame: bytes, ancillary: list[tuple[int, int, bytes]], out: bool) -> None:
        stamp = time.time_ns()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack_from("@qq", data)
                stamp = seconds * 1_000_000_000 + nanoseconds
        self._write_frame(frame, stamp, out)

    def _write_frame(self, frame: bytes, stamp: int, out: bool) -> None:
        self._writer.write(
            frame,
            stamp,
            direction="out" if out else "in",
            comment=self._label(out) if self._label is not None else None,
        )

    def close(self) -> None:
        """Stop (after the grace period) and close the file."""
        if self._grace:
            time.sleep(self._grace)
        self._stop.set()
        self._thread.join(5)
        _ = self.drops  # the last count, while the socket is open
        if self._ring is not None:
            self._ring.close()
        self._sock.close()
        self._writer.close()

    def __enter__(self) -> FrameSniffer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
