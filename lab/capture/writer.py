"""Tiny pcap / pcapng writers: enough to synthesize test inputs and to rewrite real captures.

Why here and not only in tests: replay tests, fuzzing and notebooks all need to turn a real capture
into a cooked, raw-IP or pcapng one (the issue's "synthesized from a real capture" cases), and the
reader's tests need both byte orders and both timestamp resolutions. These writers are the mirror
of `lab.capture.reader` and deliberately minimal (one section, no statistics blocks).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from lab.capture.reader import (
    BLOCK_EPB,
    BLOCK_IDB,
    BLOCK_OPB,
    BLOCK_SPB,
    EPB_FLAGS,
    IF_TSRESOL,
    OPT_COMMENT,
    PCAP_MAGIC_NS,
    PCAP_MAGIC_US,
    PCAPNG_BYTE_ORDER_MAGIC,
    PCAPNG_SHB,
)


@dataclass(frozen=True, slots=True)
class PacketRecord:
    """What a writer needs for one packet."""

    timestamp_ns: int
    data: bytes
    orig_len: int | None = None  # None: len(data)
    interface: int = 0
    comment: str | None = None
    direction: str | None = None  # "in" | "out" (pcapng epb_flags)


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


def pcapng_shb(endian: str = "<", comment: str | None = None) -> bytes:
    body = struct.pack(endian + "IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1)
    if comment is not None:
        body += _option(endian, OPT_COMMENT, comment.encode()) + _option(endian, 0, b"")
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
        flags = 1 if r.direction == "in" else 2
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
