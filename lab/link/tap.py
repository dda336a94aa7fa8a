"""A capture tap: wraps any link and writes every frame, both directions, to pcapng.

Each frame becomes an Enhanced Packet Block with a nanosecond timestamp (the interface block says
if_tsresol = 9), the direction in epb_flags, and a comment (opt_comment) that starts with "in" or
"out" and carries whatever the caller adds: the runtime appends the TCP state transition a frame
caused. Because that transition is only known after the host has processed an inbound frame, the
most recent frame is held back until the next frame, `flush()` or `close()`, and `annotate()` adds
text to it. Timestamps are taken here with time.time_ns(): the tap is a driver, not the core.

The writer is `lab.capture.writer.PcapngWriter` (one pcapng writer for the lab). Why not Scapy's
PcapNgWriter: measured first (`python bench/pcapng_writer.py`: 100 000 frames of
60..1514 bytes, a comment and a direction each, best of three), this writer is about 1.9x faster
(2.4 us against 4.6 us per frame, loop included; 426 000 against 219 000 frames/s). Speed alone
would not have justified it; the format did: Scapy writes microsecond timestamps from a float (no
if_tsresol option, so nanoseconds are lost) and puts a named interface in a second interface block
after an anonymous one. Here the one interface block carries the name and nanosecond resolution.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Generic, TypeVar

from lab.capture.reader import Direction
from lab.capture.writer import PcapngWriter
from lab.link import Link

ETHERNET_HEADER = 14  # a GRO-merged frame is told by its IP bytes, above the MTU
MAX_MERGED_LENGTHS = 256  # lengths of GRO-merged frames whose options are kept ready

L = TypeVar("L", bound=Link)


class CaptureTap(Generic[L]):
    """Wraps `link`; every frame sent or received through the tap is also written to pcapng.

    The wrapped link stays reachable as `tap.link` (for its statistics, or `fileno()`).
    """

    def __init__(
        self,
        link: L,
        file: BinaryIO | str | Path,
        *,
        ifname: str = "lab0",
        clock_ns: Callable[[], int] = time.time_ns,
        comment: str | None = None,
        merged_above: int | None = None,
    ) -> None:
        """`comment` goes in the section header (the stack's mode). `merged_above`: in offload
        mode, the interface MTU; an inbound frame carrying more IP bytes than that cannot have
        crossed the wire as one and was merged by the kernel's GRO, which its comment says."""
        self.link = link
        self._writer = PcapngWriter(file, ifname=ifname, comment=comment)
        self._merged_above = merged_above
        self._clock_ns = clock_ns
        # The held-back frame, in four attributes rather than a tuple: nearly every frame of a
        # transfer is held and written with no note at all, so `_notes` stays None (no list
        # made) and the frame is written with its direction's ready-made options.
        self._frame: bytes | None = None
        self._timestamp = 0
        self._direction: Direction = "in"
        self._notes: list[str] | None = None
        self._plain = {d: self._writer.options(d, d) for d in ("in", "out")}
        self._merged: dict[int, bytes] = {}  # by frame length: see `_merged_options`
        self._closed = False

    @property
    def frames_written(self) -> int:
        return self._writer.frames + (self._frame is not None)

    def send(self, frame: bytes, note: str | None = None) -> None:
        """Send through the link, then record the frame as "out" (with `note`, if any)."""
        self.link.send(frame)
        if self._frame is not None:
            self._write_pending()
        self._frame, self._timestamp, self._direction = frame, self._clock_ns(), "out"
        self._notes = [note] if note else None

    def receive(self, timeout: float) -> bytes | None:
        """Receive from the link; a frame is recorded as "in" (see `annotate`).

        Once per frame of a transfer: the hold-back is written out here, not in a helper."""
        frame = self.link.receive(timeout)
        if frame is not None:
            if self._frame is not None:
                self._write_pending()
            self._frame, self._timestamp, self._direction = frame, self._clock_ns(), "in"
            self._notes = None
        return frame

    def annotate(self, text: str) -> None:
        """Add `text` to the comment of the most recent frame (e.g. "SYN-SENT -> ESTABLISHED")."""
        if self._frame is None:
            raise RuntimeError(
                "no frame to annotate: nothing sent or received since the last flush"
            )
        if self._notes is None:
            self._notes = [text]
        else:
            self._notes.append(text)

    def fileno(self) -> int:
        fileno: Callable[[], int] = getattr(self.link, "fileno")  # noqa: B009
        return fileno()

    @property
    def checksum_verified(self) -> bool:
        """The wrapped link's verdict on the frame received last (offload mode), else False."""
        return bool(getattr(self.link, "checksum_verified", False))

    def flush(self) -> None:
        """Write the held-back frame and push everything to the file."""
        self._write_pending()
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the capture (not the link: whoever opened it closes it)."""
        if self._closed:
            return
        self._closed = True
        self._write_pending()
        self._writer.close()

    def __enter__(self) -> CaptureTap[L]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write_pending(self) -> None:
        frame = self._frame
        if frame is None:
            return
        self._frame = None
        direction, notes = self._direction, self._notes
        merged = (
            self._merged_above is not None
            and direction == "in"
            and len(frame) - ETHERNET_HEADER > self._merged_above
        )
        if notes is None:  # the common case: the comment is the direction (and the merge) alone
            if merged:
                options = self._merged_options(len(frame))
            else:
                options = self._plain[direction]
            self._writer.write_block(frame, self._timestamp, options)
            return
        if merged:
            notes = [self._merged_note(len(frame)), *notes]
        comment = direction + ": " + "; ".join(notes)
        self._writer.write(frame, self._timestamp, direction=direction, comment=comment)

    def _merged_note(self, length: int) -> str:
        return f"GRO-merged by the kernel: {length} bytes, MTU {self._merged_above}"

    def _merged_options(self, length: int) -> bytes:
        """The options of a plain GRO-merged inbound frame of `length` bytes, made once per
        length (the merged frames of a transfer come in a few lengths): formatting and
        encoding the comment per frame cost more than writing the frame's block."""
        options = self._merged.get(length)
        if options is None:
            options = self._writer.options("in", "in: " + self._merged_note(length))
            if len(self._merged) < MAX_MERGED_LENGTHS:
                self._merged[length] = options
        return options
