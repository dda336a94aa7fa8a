"""The lab's pcap / pcapng writers: `PcapngWriter` streams live frames (the capture tap of
`lab.link.tap`, the exercises' sniffer); `pcap_bytes` / `pcapng_bytes` synthesize test inputs and
rewrite real captures. Both build their blocks with the same helpers.

Why here and not only in tests: replay tests, fuzzing and notebooks all need to turn a real capture
into a cooked, raw-IP or pcapng one (the issue's "synthesized from a real capture" cases), and the
reader's tests need both byte orders and both timestamp resolutions. These writers are the mirror
of `lab.capture.reader` and deliberately minimal (one section, no statistics blocks).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from lab.capture.reader import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_OPB,
    BLOCK_SPB,
    EPB_DIRECTION_BITS,
    EPB_FLAGS,
    IF_TSRESOL,
    LINKTYPE_ETHERNET,
    OPT_COMMENT,
    OPT_ENDOFOPT,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PCAPNG_BYTE_ORDER_MAGIC,
    PCAPNG_SHB,
    Direction,
)

SHB_USERAPPL = 4
TSRESOL_NANOSECONDS = 9  # the if_tsresol value: 10**-9 seconds per timestamp unit
SNAPLEN = 262144


@dataclass(frozen=True, slots=True)
class PacketRecord:
    """What a writer needs for one packet."""

    timestamp_ns: int
    data: bytes
    orig_len: int | None = None  # None: len(data)
    interface: int = 0
    comment: str | None = None
    direction: Direction | None = None  # pcapng epb_flags


def pcap_bytes(
    records: Iterable[PacketRecord],
    linktype: int = 1,
    *,
    endian: str = "<",
    nanos: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file."""
    magic = PCAP_MAGIC_NS if nanos else PCAP_MAGIC_US
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    div = 1 if nanos else 1000
    for r in records:
        sec, frac = divmod(r.timestamp_ns, 1_000_000_000)
        orig = len(r.data) if r.orig_len is None else r.orig_len
        out.append(struct.pack(endian + "IIII", sec, frac // div, len(r.data), orig))
        out.append(r.data)
    return b"".join(out)


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def _option(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + _pad(value)


def _block(endian: str, btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack(endian + "II", btype, total) + body + struct.pack(endian + "I", total)


def pcapng_shb(
    endian: str = "<", comment: str | None = None, *, application: str | None = None
) -> bytes:
    body = struct.pack(endian + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1)
    opts = b""
    if comment is not None:
        opts += _option(endian, OPT_COMMENT, comment.encode())
    if application is not None:
        opts += _option(endian, SHB_USERAPPL, application.encode())
    if opts:
        body += opts + _option(endian, 0, b"")
    return _block(endian, PCAPNG_SHB, body)


def pcapng_idb(
    linktype: int,
    *,
    endian: str = "<",
    tsresol: int | None = 9,
    snaplen: int = 0,
    comment: str | None = None,
    name: str | None = None,
) -> bytes:
    body = struct.pack(endian + "HHI", linktype, 0, snaplen)
    opts = b""
    if name is not None:
        opts += _option(endian, 2, name.encode())  # if_name
    if comment is not None:
        opts += _option(endian, OPT_COMMENT, comment.encode())
    if tsresol is not None:
        opts += _option(endian, IF_TSRESOL, bytes((tsresol,)))
    if opts:
        body += opts + _option(endian, 0, b"")
    return _block(endian, BLOCK_IDB, body)


def _ticks(ts_ns: int, tsresol: int | None) -> int:
    if tsresol is None:
        tsresol = 6
    if tsresol & 0x80:
        return (ts_ns << (tsresol & 0x7F)) // 1_000_000_000
    return ts_ns * int(10**tsresol) // 1_000_000_000


def pcapng_packet(
    r: PacketRecord,
    *,
    endian: str = "<",
    tsresol: int | None = 9,
    block: str = "epb",
) -> bytes:
    """One EPB (default), SPB ("spb") or obsolete packet block ("opb")."""
    orig = len(r.data) if r.orig_len is None else r.orig_len
    if block == "spb":
        return _block(endian, BLOCK_SPB, struct.pack(endian + "I", orig) + _pad(r.data))
    ticks = _ticks(r.timestamp_ns, tsresol)
    hi, lo = ticks >> 32, ticks & 0xFFFFFFFF
    opts = b""
    if r.comment is not None:
        opts += _option(endian, OPT_COMMENT, r.comment.encode())
    if r.direction is not None:
        flags = EPB_DIRECTION_BITS[r.direction]
        opts += _option(endian, EPB_FLAGS, struct.pack(endian + "I", flags))
    if opts:
        opts += _option(endian, 0, b"")
    if block == "opb":
        head = struct.pack(endian + "HHIIII", r.interface, 0, hi, lo, len(r.data), orig)
        return _block(endian, BLOCK_OPB, head + _pad(r.data) + opts)
    head = struct.pack(endian + "IIIII", r.interface, hi, lo, len(r.data), orig)
    return _block(endian, BLOCK_EPB, head + _pad(r.data) + opts)


def pcapng_bytes(
    records: Iterable[PacketRecord],
    linktypes: Iterable[int] = (1,),
    *,
    endian: str = "<",
    tsresol: int | None = 9,
) -> bytes:
    """A one-section pcapng file with one IDB per link type (all with the same resolution)."""
    out = [pcapng_shb(endian)]
    out += [pcapng_idb(lt, endian=endian, tsresol=tsresol) for lt in linktypes]
    out += [pcapng_packet(r, endian=endian, tsresol=tsresol) for r in records]
    return b"".join(out)


# -- the streaming writer of live captures ---------------------------------------------------------

IOV_MAX = 1024  # pieces one writev(2) takes (Linux's UIO_MAXIOV)


def write_all(fd: int, pieces: Sequence[bytes | memoryview]) -> None:
    """Write every byte of `pieces`, in order, to file descriptor `fd` with as few writev(2)
    calls as the kernel allows (IOV_MAX pieces per call; a short write goes on where it
    stopped). One system call, one release of the GIL, for many buffers, and none of them
    copied or joined in Python: how a capture's blocks and a download's received payloads
    reach their files."""
    pending = list(pieces)
    while pending:
        batch = pending[:IOV_MAX]
        written = os.writev(fd, batch)
        if not written and any(batch):
            raise OSError(f"writev wrote nothing of {sum(map(len, batch))} bytes")
        done = 0
        for piece in batch:
            if written < len(piece):
                break
            written -= len(piece)
            done += 1
        if done < len(batch) and written:
            pending[done] = memoryview(pending[done])[written:]
        del pending[:done]


WRITE_BUFFER = 1 << 20  # bytes of blocks batched before they are handed to the file
_END_OF_OPTIONS = struct.pack("<HH", OPT_ENDOFOPT, 0)
_EPB_HEAD = struct.Struct("<IIIIIII")  # type, total length, interface, ts high, ts low, cap, orig
_U32 = struct.Struct("<I")
_OPTION_HEAD = struct.Struct("<HH")
_PADDING = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")
_DIRECTION_OPTION = {d: struct.pack("<HHI", EPB_FLAGS, 4, b) for d, b in EPB_DIRECTION_BITS.items()}


MAX_KEPT_OPTIONS = 256  # distinct (direction, comment) option blocks kept ready
JOIN_UP_TO = 4096  # frames up to this size are joined in batches; larger ones kept as they are
BATCH_BLOCKS = 256  # small blocks joined into one piece


def _epb_options(direction: Direction | None, comment: str | None) -> bytes:
    """An Enhanced Packet Block's options: the direction flags, the comment, the end marker."""
    options = b""
    if direction is not None:
        options = _DIRECTION_OPTION[direction]
    if comment:
        text = comment.encode()
        options += _OPTION_HEAD.pack(OPT_COMMENT, len(text)) + text + _PADDING[-len(text) % 4]
    if options:
        options += _END_OF_OPTIONS
    return options


class PcapngWriter:
    """A minimal pcapng writer: one section, one Ethernet interface, enhanced packet blocks.

    Blocks are batched. The pieces (head, frame, tail) of small blocks are joined every
    BATCH_BLOCKS blocks; a GRO-merged frame of offload mode (~64 KB) is kept as it is, never
    joined or copied in Python. Once WRITE_BUFFER bytes wait, they go to a file the writer
    opened with one writev(2) (`write_all`); a buffered file copied every merged frame into its
    buffer first. A file object the caller gave gets them joined, in one write. Per block,
    micro-benchmark (best of 9, alternated with the buffered writer, on a shared machine):
    60 000 frames of 66 and 1514 bytes 1.06 -> 1.01 us; 800 merged frames of 65 226 bytes
    26.1 -> 23.6 us (writing every block with writev, the small ones too, cost 1.07 -> 1.34).

    Measured and dropped: the same batches written from a thread of their own, to take the
    write(2) off the runtime's loop thread. On this 2-core machine, alternated in one process
    (offload, 50 MiB, 10 runs each), the thread cost CPU (0.132 against 0.117 s per run) and
    speed (466 against 552 MB/s): both cores are busy already (vsftpd and the kernel's
    sending on one, the lab's two threads on the other), and the thread's GIL hand-offs come
    on top. Handing the batches to the application thread instead, which wrote them after each
    read while the loop received, cost as much (offload, 10 alternated runs each, idle machine:
    574 against 631 MB/s, 0.112 against 0.107 s of CPU): each return from write(2) must win
    the GIL back from a loop that runs Python, and the loop then waits for it in turn."""

    def __init__(
        self,
        file: BinaryIO | str | Path,
        *,
        ifname: str,
        linktype: int = LINKTYPE_ETHERNET,
        application: str = "lab",
        comment: str | None = None,
    ) -> None:
        """`comment` goes in the section header (e.g. the stack's mode)."""
        self._fd: int | None = None
        if isinstance(file, str | Path):
            Path(file).parent.mkdir(parents=True, exist_ok=True)  # e.g. captures/runs/ on first use
            # Unbuffered: the batches are the buffer, handed to writev whole.
            self._file: BinaryIO = open(file, "wb", buffering=0)  # noqa: SIM115
            self._owns_file = True
            self._fd = self._file.fileno()
        else:
            self._file = file
            self._owns_file = False
        self.frames = 0
        # Option blocks by (direction, comment): nearly every frame of a transfer is a plain
        # "in" or "out", so its options are made once, not encoded again per frame.
        self._options: dict[tuple[Direction | None, str | None], bytes] = {}
        self._tails: dict[tuple[int, bytes], tuple[bytes, int]] = {}  # by length and options
        self._batch: list[bytes] = []  # pieces of small blocks not yet joined
        self._out: list[bytes] = []  # pieces ready for the file: joined batches, large blocks
        self._out_bytes = 0
        shb = pcapng_shb(comment=comment, application=application)
        idb = pcapng_idb(linktype, tsresol=TSRESOL_NANOSECONDS, snaplen=SNAPLEN, name=ifname)
        self._out.append(shb + idb)
        self._write_out()

    def write(
        self,
        frame: bytes,
        timestamp_ns: int,
        *,
        direction: Direction | None = None,
        comment: str | None = None,
    ) -> None:
        """Append one Enhanced Packet Block for `frame` captured at `timestamp_ns` (Unix time)."""
        self.write_block(frame, timestamp_ns, self.options(direction, comment))

    def options(self, direction: Direction | None, comment: str | None) -> bytes:
        """The encoded options of a block with this direction and comment, for `write_block`."""
        options = self._options.get((direction, comment))
        if options is None:
            options = _epb_options(direction, comment)
            if len(self._options) < MAX_KEPT_OPTIONS:
                self._options[(direction, comment)] = options
        return options

    def write_block(self, frame: bytes, timestamp_ns: int, options: bytes) -> None:
        """`write` with the options already encoded (`options`): a capture tap asks once for
        its plain "in" and "out" options and writes nearly every frame of a transfer this way.

        The tail (padding, options, total length) is made once per frame length and options;
        the frame itself is batched by reference, so a GRO-merged frame of 64 KB is copied
        only by the kernel, into the file."""
        length = len(frame)
        made = self._tails.get((length, options))
        if made is None:
            padding = _PADDING[-length % 4]
            total = 32 + length + len(padding) + len(options)
            made = (padding + options + _U32.pack(total), total)
            if len(self._tails) < MAX_KEPT_OPTIONS:
                self._tails[(length, options)] = made
        tail, total = made
        head = _EPB_HEAD.pack(
            BLOCK_EPB, total, 0, timestamp_ns >> 32, timestamp_ns & 0xFFFFFFFF, length, length
        )
        self.frames += 1
        if length > JOIN_UP_TO:
            self._join_batch()
            self._out += (head, frame, tail)
            self._out_bytes += total
            if self._out_bytes >= WRITE_BUFFER:
                self._write_out()
            return
        batch = self._batch
        batch += (head, frame, tail)
        if len(batch) >= 3 * BATCH_BLOCKS:
            self._join_batch()
            if self._out_bytes >= WRITE_BUFFER:
                self._write_out()

    def _join_batch(self) -> None:
        if self._batch:
            joined = b"".join(self._batch)
            self._batch.clear()
            self._out.append(joined)
            self._out_bytes += len(joined)

    def _write_out(self) -> None:
        out = self._out
        if not out:
            return
        self._out = []
        self._out_bytes = 0
        if self._fd is not None:
            write_all(self._fd, out)
        else:
            self._file.write(b"".join(out))

    def flush(self) -> None:
        """Everything written so far is in the file when this returns."""
        self._join_batch()
        self._write_out()
        self._file.flush()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._owns_file:
                self._file.close()
