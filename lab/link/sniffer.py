"""`FrameSniffer`: every frame of an interface, both directions, written to pcapng from a thread.

The one AF_PACKET capture loop beside the link itself (`lab.link.packet`, which filters for the
stack's MAC and hands frames to the runtime). The sniffer sees the whole wire: `lab get --kernel`
records the kernel's run with it so the two can be compared in Wireshark, the notebooks record
the wire under the lab stack, and the exercises grade students from what it wrote.

Timestamps are the kernel's receive times (SO_TIMESTAMPNS), not the moment this thread got to a
frame: two sniffers, and the exercises that compare their timings, would otherwise disagree by
however long the GIL kept each thread waiting.
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
from lab.link.packet import ETH_P_ALL, PACKET_OUTGOING, SO_RCVBUFFORCE

SO_TIMESTAMPNS = 35  # asm-generic/socket.h; also its control message type (SCM_TIMESTAMPNS)
POLL_MS = 50

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
    ) -> None:
        """`label` comments each frame by its direction; `close` waits `grace` seconds first, so
        frames already on their way are written."""

        def open_socket() -> socket.socket:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((ifname, ETH_P_ALL))
            sock.setblocking(False)
            return sock

        if namespace is None:
            self._sock = open_socket()
        else:
            from lab.topology.netns import run_in_namespace

            self._sock = run_in_namespace(namespace, open_socket)
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

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(POLL_MS):
                continue
            while True:
                try:
                    frame, ancillary, _flags, address = self._sock.recvmsg(65536, 64)
                except BlockingIOError:
                    break
                except OSError:
                    return
                self._write(frame, ancillary, address[2] == PACKET_OUTGOING)

    def _write(self, frame: bytes, ancillary: list[tuple[int, int, bytes]], out: bool) -> None:
        stamp = time.time_ns()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack_from("@qq", data)
                stamp = seconds * 1_000_000_000 + nanoseconds
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
