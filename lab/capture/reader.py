"""Streaming reader for classic pcap and pcapng capture files, with `struct` only.

Why not Scapy's `PcapReader`: it builds a packet object per record, which is two orders of
magnitude slower than unpacking a 16-byte header, and replay wants to beat tcpflow. Why a
generator over a file object: memory must stay flat whatever the capture's size, so each record
or block is read, yielded and forgotten; nothing keeps the whole file.

Damage is data, not an exception. A capture from a production network is often cut short (tcpdump
killed), cut per packet (snaplen) or simply not a capture. Each such fault becomes a
`CaptureProblem` with the file offset and packet number, collected on the reader, and everything
readable before (and, where the framing allows, after) the damage is still yielded. Only a fault
that destroys the framing (a length that cannot be true) ends the stream, because no later byte
can then be trusted to start a record.

Formats: classic pcap in both byte orders with micro- or nanosecond magic (LINKTYPE in the low
16 bits of the header's link-type field, the FCS bits above are ignored), and pcapng
(draft-ietf-opsawg-pcapng): section header blocks in either byte order (each resets the interface
table), interface description blocks with `if_tsresol` and `if_tsoffset`, enhanced, simple and the
obsolete packet blocks, `opt_comment` kept on packets, `epb_flags` direction kept, unknown blocks
skipped.

Interfaces are the one thing a section must remember, so they are capped: a section describes at
most `MAX_INTERFACES_PER_SECTION` (far beyond any real capture). A file made of nothing but
interface description blocks would otherwise grow memory with its size. The IDBs past the cap are
counted but not kept (one `too_many_interfaces` problem per section says where the cap was hit),
and packets on them are reported as `unknown_interface` and skipped.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
BLOCK_IDB = 0x00000001
BLOCK_OPB = 0x00000002
BLOCK_SPB = 0x00000003
BLOCK_EPB = 0x00000006

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
EPB_FLAGS = 2
IF_TSRESOL = 9
IF_TSOFFSET = 14

# Link types replay understands (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_DLT12 = 12  # DLT_RAW as Linux and most BSDs number it in classic pcap
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

DEFAULT_MAX_PACKET = 262_144  # libpcap's MAXIMUM_SNAPLEN: no real record is bigger
MAX_PROBLEMS_KEPT = 1000  # bounded memory on a capture where every packet is snaplen-cut
MAX_INTERFACES_PER_SECTION = 4096  # bounded memory on a file made of interface blocks
MAX_FILE_COMMENTS = 100  # section and interface comments kept (bounded memory)
MAX_COMMENT_CHARS = 4096
IF_NAME = 2
IF_DESCRIPTION = 3

# A frame's direction across the capture interface: the one definition, read from and written to
# pcapng's epb_flags (bits 0-1), used as the comment's first word by the capture tap, and naming the
# two lanes of an impaired link.
Direction = Literal["in", "out"]
EPB_DIRECTION_BITS: dict[Direction, int] = {"in": 1, "out": 2}
_DIRECTION_OF_BITS: dict[int, Direction] = {bits: d for d, bits in EPB_DIRECTION_BITS.items()}

ProblemKind = Literal[
    "bad_magic",  # the file (or a section) is not pcap/pcapng
    "truncated",  # the file ends inside a header, record or block
    "impossible_length",  # a length field no real capture can hold; the stream stops there
    "snaplen_cut",  # caplen < orig_len: the packet's tail was not captured
    "bad_block",  # a pcapng block whose framing is inconsistent but skippable
    "unknown_interface",  # a pcapng packet naming an interface no IDB described (or one dropped)
    "too_many_interfaces",  # a pcapng section with more IDBs than MAX_INTERFACES_PER_SECTION
    "empty",  # the file holds nothing at all
    "bad_compression",  # a compressed capture whose compressed stream is damaged or cut
]

# Compressed captures, recognised by their own magic (not by the file name, so streams work too).
GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True, slots=True)
class CapturedPacket:
    """One packet record as stored in the file.

    `number` counts yielded packets from 1 (Wireshark's frame number). `timestamp_ns` is nanoseconds
    since the epoch (a simple packet block has no timestamp: it repeats the previous one). `data`
    holds `len(data)` captured bytes of an `orig_len`-byte packet. `interface` is the pcapng
    interface id (0 for classic pcap). `direction` comes from `epb_flags` when present.
    """

    number: int
    timestamp_ns: int
    linktype: int
    data: bytes
    orig_len: int
    interface: int = 0
    comment: str | None = None
    file_offset: int = 0
    direction: Direction | None = None


# (number, timestamp ns, link type, data, original length, file offset): a classic pcap record
PcapRecord = tuple[int, int, int, bytes, int, int]
Record = CapturedPacket | PcapRecord


def as_packet(record: Record) -> CapturedPacket:
    """The `CapturedPacket` of a record from `CaptureReader.records()`."""
    if isinstance(record, CapturedPacket):
        return record
    number, ts, linktype, data, orig_len, offset = record
    return CapturedPacket(number, ts, linktype, data, orig_len, 0, None, offset)


@dataclass(frozen=True, slots=True)
class CaptureProblem:
    """A fault in the file, where it is, and which packet it concerns (None when none does)."""

    kind: ProblemKind
    offset: int
    packet_number: int | None
    detail: str

    def describe(self) -> str:
        where = f"offset {self.offset}"
        if self.packet_number is not None:
            where += f", packet {self.packet_number}"
        return f"{self.kind} at {where}: {self.detail}"


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    units_per_second: int = 1_000_000  # pcapng default resolution: microseconds
    ts_shift: int | None = None  # set when if_tsresol is a power of two
    offset_ns: int = 0


@dataclass(slots=True)
class _Section:
    endian: str  # "<" or ">"
    interfaces: list[_Interface] = field(default_factory=list)
    dropped_interfaces: int = 0  # IDBs past MAX_INTERFACES_PER_SECTION: counted, not kept


PCAP_BLOCK = 1 << 20  # classic pcap files are read this much at a time


class CaptureReader:
    """Iterate a capture's packets; read `problems` (and `format`) during or after iteration.

    Accepts a path or a binary file object (which the reader does not close). Iterating twice
    re-reads only when given a path.
    """

    def __init__(
        self, source: str | os.PathLike[str] | BinaryIO, *, max_packet: int = DEFAULT_MAX_PACKET
    ) -> None:
        self._source = source
        self.max_packet = max_packet
        self.problems: list[CaptureProblem] = []
        self.problem_counts: Counter[str] = Counter()
        self.format: Literal["pcap", "pcapng"] | None = None
        self.packets_read = 0
        self.bytes_read = 0
        self._last_ts = 0
        # pcapng section and interface comments (and interface names), as (where, text):
        # ("section 1", ...), ("interface 0 of section 1", ...); bounded, filled while reading
        self.file_comments: list[tuple[str, str]] = []
        self._sections = 0
        self.compression: Literal["gzip", "xz", "zstd"] | None = None

    # -- problems ---------------------------------------------------------------------------------

    def _checked_orig_len(self, offset: int, number: int, caplen: int, orig_len: int) -> int:
        """The packet's original length, or `caplen` (reported) when the record claims less."""
        if orig_len >= caplen:
            return orig_len
        self._problem(
            "impossible_length",
            offset,
            number,
            f"original length {orig_len} is less than captured length {caplen}",
        )
        return caplen

    def _problem(self, kind: ProblemKind, offset: int, number: int | None, detail: str) -> None:
        self.problem_counts[kind] += 1
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(CaptureProblem(kind, offset, number, detail))

    @property
    def unreadable(self) -> bool:
        """True when nothing could be read because the file is not a capture at all."""
        return self.format is None

    # -- iteration --------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[CapturedPacket]:
        for record in self.records():
            yield record if type(record) is CapturedPacket else as_packet(record)

    def records(self) -> Iterator[Record]:
        """The packets as `Record`s: a classic pcap record is the plain tuple (number, timestamp
        ns, link type, data, original length, file offset), which is cheaper to make than a
        frozen `CapturedPacket`; `as_packet` turns one into the other. pcapng packets (with
        their interface, comment and direction) come as `CapturedPacket` already."""
        self.problems.clear()
        self.problem_counts.clear()
        self.packets_read = 0
        self.format = None
        self.file_comments.clear()
        self._sections = 0
        self.compression = None
        if isinstance(self._source, (str, os.PathLike)):
            with Path(self._source).open("rb", buffering=1 << 16) as f:
                yield from self._read_maybe_compressed(f)
        else:
            yield from self._read_maybe_compressed(self._source)

    def _read_maybe_compressed(self, f: BinaryIO) -> Iterator[Record]:
        """Read `f`, decompressing gzip, xz (standard library) or zstd (`zstandard`, if present)
        on the fly: the magic is peeked, so pipes and FIFOs work as well as files."""
        head = _peek(f, 6)
        opened: Any = None
        if head.startswith(GZIP_MAGIC):
            import gzip

            self.compression = "gzip"
            opened = gzip.GzipFile(fileobj=f, mode="rb")
        elif head.startswith(XZ_MAGIC):
            import lzma

            self.compression = "xz"
            opened = lzma.LZMAFile(f)  # noqa: SIM115 - closed below
        elif head.startswith(ZSTD_MAGIC):
            try:
                import zstandard  # type: ignore[import-not-found]
            except ImportError:
                self._problem(
                    "bad_magic",
                    0,
                    None,
                    "zstd-compressed capture: install the zstandard package, or decompress it",
                )
                return
            self.compression = "zstd"
            opened = zstandard.ZstdDecompressor().stream_reader(f)
        if opened is None:
            yield from self._read(f)
            return
        safe = _SafeStream(opened)
        try:
            yield from self._read(safe)  # type: ignore[arg-type]
        finally:
            opened.close()  # the decompressor only: the underlying file is the caller's
        if safe.error is not None:
            self._problem("bad_compression", safe.position, None, safe.error)

    def _read(self, f: BinaryIO) -> Iterator[Record]:
        head = f.read(4)
        if len(head) < 4:
            if not head:
                self._problem("empty", 0, None, "the file is empty")
            else:
                self._problem("truncated", 0, None, f"only {len(head)} bytes, no magic number")
            return
        if head == b"\x0a\x0d\x0d\x0a":
            self.format = "pcapng"
            yield from self._read_pcapng(f, head)
            return
        for endian in ("<", ">"):
            (magic,) = struct.unpack(endian + "I", head)
            if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
                self.format = "pcap"
                yield from self._read_pcap(f, endian, magic == PCAP_MAGIC_NS)
                return
        self._problem("bad_magic", 0, None, f"magic {head.hex()} is neither pcap nor pcapng")

    # -- classic pcap -----------------------------------------------------------------------------

    def _read_pcap(self, f: BinaryIO, endian: str, nanos: bool) -> Iterator[PcapRecord]:
        rest = f.read(20)
        if len(rest) < 20:
            self._problem("truncated", 4, None, f"file header cut at {4 + len(rest)} of 24 bytes")
            self.format = None  # not even a header: unreadable
            return
        _major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack(endian + "HHiIII", rest)
        linktype = network & 0xFFFF
        record = struct.Struct(endian + "IIII")
        scale = 1 if nanos else 1000
        offset = 24
        number = 0
        max_packet = max(self.max_packet, snaplen if snaplen < (1 << 26) else 0)
        read = f.read
        unpack_from = record.unpack_from
        # The file is read in blocks and records are sliced out of them (one copy of each
        # packet, no read call per packet); a packet that runs past its block takes its rest
        # straight from the file, and a new block starts after it.
        block = max(PCAP_BLOCK, 16)  # enough for a record header, whatever is left
        buf = b""
        pos = size = 0
        while True:
            if pos + 16 > size:
                buf = buf[pos:] + read(block) if pos < size else read(block)
                pos, size = 0, len(buf)
                if size < 16:
                    if size:
                        self._problem(
                            "truncated",
                            offset,
                            number + 1,
                            f"record header cut at {size} of 16 bytes",
                        )
                    break
            sec, frac, caplen, orig_len = unpack_from(buf, pos)
            number += 1
            if caplen > max_packet:
                self._problem(
                    "impossible_length",
                    offset,
                    number,
                    f"captured length {caplen} exceeds {max_packet}; the rest is skipped",
                )
                break
            start = pos + 16
            pos = start + caplen
            if pos <= size:
                data = buf[start:pos]
            else:
                data = buf[start:] + read(pos - size)
                buf = b""
                pos = size = 0
            if len(data) < caplen:
                self._problem(
                    "truncated", offset, number, f"packet data cut at {len(data)} of {caplen} bytes"
                )
                if not data:
                    break
            if caplen != orig_len:
                orig_len = self._checked_orig_len(offset, number, caplen, orig_len)
                if caplen < orig_len and len(data) == caplen:
                    self._problem(
                        "snaplen_cut", offset, number, f"{len(data)} of {orig_len} bytes captured"
                    )
            self.packets_read = number
            yield (number, sec * 1_000_000_000 + frac * scale, linktype, data, orig_len, offset)
            offset += 16 + caplen
            self.bytes_read = offset
            if len(data) < caplen:
                break

    # -- pcapng -----------------------------------------------------------------------------------

    def _read_pcapng(self, f: BinaryIO, head: bytes) -> Iterator[CapturedPacket]:
        offset = 0
        number = 0
        section: _Section | None = None
        max_block = self.max_packet + 65_536 + 64  # a packet plus generous options
        read = f.read
        while True:
            head += read(8 - len(head))
            if not head:
                break
            if len(head) < 8:
                self._problem(
                    "truncated", offset, None, f"block header cut at {len(head)} of 8 bytes"
                )
                break
            if head[:4] == b"\x0a\x0d\x0d\x0a":
                bom = read(4)
                if len(bom) < 4:
                    self._problem("truncated", offset, None, "section header cut before byte order")
                    break
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    self._problem(
                        "bad_magic", offset + 8, None, f"section byte-order magic {bom.hex()}"
                    )
                    break
                (total,) = struct.unpack(endian + "I", head[4:8])
                if total < 28 or total % 4 or total > max_block:
                    self._problem(
                        "impossible_length", offset, None, f"section header length {total}"
                    )
                    break
                body = read(total - 12)
                if len(body) < total - 12:
                    self._problem("truncated", offset, None, "section header block cut short")
                    break
                section = _Section(endian)
                self._sections += 1
                for code, value in _options(body[:-4], 12, endian):
                    if code == OPT_COMMENT:
                        self._file_comment(f"section {self._sections}", value)
                offset += total
                head = b""
                continue
            if section is None:
                self._problem("bad_magic", offset, None, "pcapng block before any section header")
                break
            endian = section.endian
            btype, total = struct.unpack(endian + "II", head)
            if total < 12 or total > max_block:
                self._problem(
                    "impossible_length",
                    offset,
                    number + 1 if btype in (BLOCK_EPB, BLOCK_SPB, BLOCK_OPB) else None,
                    f"block type {btype:#x} length {total}; the rest of the file is skipped",
                )
                break
            body = read(total - 8)
            head = b""
            if len(body) < total - 8:
                is_packet = btype in (BLOCK_EPB, BLOCK_SPB, BLOCK_OPB)
                self._problem(
                    "truncated",
                    offset,
                    number + 1 if is_packet else None,
                    f"block type {btype:#x} cut at {8 + len(body)} of {total} bytes",
                )
                break
            if total % 4:
                # Not a multiple of 4: the writer either did not pad the block, or padded it
                # without counting the padding. Only a trailer repeating the length where one
                # of those readings puts it makes the framing trustworthy (tshark reads both).
                (trailer,) = struct.unpack(endian + "I", body[-4:])
                if trailer != total:
                    pad = -total % 4
                    body += read(pad)
                    (trailer,) = struct.unpack(endian + "I", body[-4:])
                    if len(body) < total - 8 + pad or trailer != total:
                        self._problem(
                            "impossible_length",
                            offset,
                            None,
                            f"block type {btype:#x} length {total} is not a multiple of 4 and"
                            " no trailer confirms it; the rest of the file is skipped",
                        )
                        break
                    total += pad
                self._problem(
                    "bad_block",
                    offset,
                    None,
                    f"block type {btype:#x} length {trailer} is not a multiple of 4",
                )
            else:
                (trailer,) = struct.unpack(endian + "I", body[-4:])
                if trailer != total:
                    self._problem(
                        "bad_block", offset, None, f"trailing length {trailer} differs from {total}"
                    )
            body = body[:-4]
            if btype == BLOCK_IDB:
                self._interface(section, body, offset)
            elif btype in (BLOCK_EPB, BLOCK_OPB, BLOCK_SPB):
                pkt = self._packet_block(section, btype, body, offset, number + 1)
                if pkt is not None:
                    number += 1
                    self.packets_read = number
                    yield pkt
            # anything else (name resolution, statistics, custom, ...) is skipped
            offset += total
            self.bytes_read = offset
        if section is None:
            self.format = None  # not even one readable section header: unreadable

    def _interface(self, section: _Section, body: bytes, offset: int) -> None:
        if len(section.interfaces) >= MAX_INTERFACES_PER_SECTION:
            if not section.dropped_interfaces:
                self._problem(
                    "too_many_interfaces",
                    offset,
                    None,
                    f"more than {MAX_INTERFACES_PER_SECTION} interfaces in one section; the"
                    " extra interface blocks are ignored and their packets skipped",
                )
            section.dropped_interfaces += 1
            return
        if len(body) < 8:
            self._problem("bad_block", offset, None, "interface description block too short")
            section.interfaces.append(_Interface(-1, 0))
            return
        linktype, _reserved, snaplen = struct.unpack(section.endian + "HHI", body[:8])
        iface = _Interface(linktype, snaplen)
        where = f"interface {len(section.interfaces)} of section {self._sections}"
        for code, value in _options(body, 8, section.endian):
            if code == OPT_COMMENT:
                self._file_comment(where, value)
            elif code == IF_NAME:
                self._file_comment(where + " name", value)
            elif code == IF_DESCRIPTION:
                self._file_comment(where + " description", value)
            elif code == IF_TSRESOL and value:
                res = value[0]
                if res & 0x80:
                    iface.ts_shift = res & 0x7F
                    iface.units_per_second = 1 << (res & 0x7F)
                else:
                    iface.units_per_second = 10 ** min(res, 30)
            elif code == IF_TSOFFSET and len(value) >= 8:
                (secs,) = struct.unpack(section.endian + "q", value[:8])
                iface.offset_ns = secs * 1_000_000_000
        section.interfaces.append(iface)

    def _file_comment(self, where: str, value: bytes) -> None:
        if len(self.file_comments) < MAX_FILE_COMMENTS:
            text = value.decode("utf-8", "replace").rstrip("\x00")[:MAX_COMMENT_CHARS]
            self.file_comments.append((where, text))

    def _packet_block(
        self, section: _Section, btype: int, body: bytes, offset: int, number: int
    ) -> CapturedPacket | None:
        e = section.endian
        if btype == BLOCK_SPB:
            if len(body) < 4:
                self._problem("bad_block", offset, number, "simple packet block too short")
                return None
            (orig_len,) = struct.unpack(e + "I", body[:4])
            iface_id, ts_high, ts_low, data_start = 0, None, 0, 4
            if not section.interfaces:
                self._problem("unknown_interface", offset, number, "simple packet before any IDB")
                return None
            snap = section.interfaces[0].snaplen or self.max_packet
            caplen = min(orig_len, snap, len(body) - 4)
        elif btype == BLOCK_EPB:
            if len(body) < 20:
                self._problem("bad_block", offset, number, "enhanced packet block too short")
                return None
            iface_id, ts_high, ts_low, caplen, orig_len = struct.unpack(e + "IIIII", body[:20])
            data_start = 20
        else:  # obsolete packet block: 16-bit interface id and drop count
            if len(body) < 20:
                self._problem("bad_block", offset, number, "packet block too short")
                return None
            iface_id, _drops, ts_high, ts_low, caplen, orig_len = struct.unpack(
                e + "HHIIII", body[:20]
            )
            data_start = 20
        if iface_id >= len(section.interfaces):
            kept = len(section.interfaces)
            if iface_id < kept + section.dropped_interfaces:
                why = f"interface {iface_id} was past the cap of {MAX_INTERFACES_PER_SECTION}"
            else:
                why = f"interface {iface_id} was never described"
            self._problem("unknown_interface", offset, number, why)
            return None
        iface = section.interfaces[iface_id]
        if data_start + caplen > len(body) or caplen > self.max_packet:
            self._problem(
                "bad_block",
                offset,
                number,
                f"captured length {caplen} does not fit in a {len(body) + 12}-byte block",
            )
            return None
        data = body[data_start : data_start + caplen]
        comment: str | None = None
        direction: Direction | None = None
        if btype != BLOCK_SPB:
            opt_start = data_start + ((caplen + 3) & ~3)
            for code, value in _options(body, opt_start, e):
                if code == OPT_COMMENT:
                    text = value.decode("utf-8", "replace")
                    comment = text if comment is None else comment + "\n" + text
                elif code == EPB_FLAGS and len(value) >= 4:
                    (flags,) = struct.unpack(e + "I", value[:4])
                    direction = _DIRECTION_OF_BITS.get(flags & 3)
        if ts_high is None:
            timestamp_ns = self._last_ts
        else:
            ticks = (ts_high << 32) | ts_low
            if iface.ts_shift is not None:
                timestamp_ns = (ticks * 1_000_000_000) >> iface.ts_shift
            else:
                timestamp_ns = ticks * 1_000_000_000 // iface.units_per_second
            timestamp_ns += iface.offset_ns
        self._last_ts = timestamp_ns
        orig_len = self._checked_orig_len(offset, number, caplen, orig_len)
        if caplen < orig_len:
            self._problem("snaplen_cut", offset, number, f"{caplen} of {orig_len} bytes captured")
        return CapturedPacket(
            number,
            timestamp_ns,
            iface.linktype,
            data,
            orig_len,
            iface_id,
            comment,
            offset,
            direction,
        )


def _peek(f: BinaryIO, n: int) -> bytes:
    """The first `n` bytes of `f`, left unread (buffered readers peek; seekable ones seek back;
    anything else is not checked for compression)."""
    peek = getattr(f, "peek", None)
    if peek is not None:
        return bytes(peek(n)[:n])
    if f.seekable():
        pos = f.tell()
        head = f.read(n)
        f.seek(pos)
        return head
    return b""


class _SafeStream:
    """A decompressing reader whose damage ends the data instead of raising (then reported)."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.error: str | None = None
        self.position = 0  # decompressed bytes read so far

    def read(self, n: int = -1) -> bytes:
        if self.error is not None:
            return b""
        parts = []
        want = n
        while want:  # a decompressor may return less than asked before the end: ask again
            try:
                data = self._inner.read(want)
            except Exception as exc:  # gzip/lzma raise OSError, EOFError; zstandard ZstdError
                self.error = f"compressed stream damaged: {exc}"
                break
            if not data:
                break
            parts.append(bytes(data))
            if want < 0:
                break
            want -= len(data)
        out = b"".join(parts)
        self.position += len(out)
        return out


def _options(body: bytes, start: int, endian: str) -> Iterator[tuple[int, bytes]]:
    """pcapng options (code, value) from `start`, stopping at opt_endofopt or bad framing."""
    pos = start
    end = len(body)
    fmt = endian + "HH"
    while pos + 4 <= end:
        code, length = struct.unpack_from(fmt, body, pos)
        if code == OPT_ENDOFOPT:
            return
        pos += 4
        if pos + length > end:
            return
        yield code, body[pos : pos + length]
        pos += (length + 3) & ~3


def read_packets(source: str | os.PathLike[str] | BinaryIO) -> Iterator[CapturedPacket]:
    """Convenience: the packets of a capture, problems discarded (use CaptureReader to see them)."""
    return iter(CaptureReader(source))
