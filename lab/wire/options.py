"""Typed TCP options (RFC 9293 3.1, RFC 7323, RFC 2018) and their wire form.

Each option is a small frozen value. Unknown kinds survive a decode/encode round trip as raw bytes
so that replay can show what a peer sent even when we do not understand it. Decoding never trusts
the peer: a length that runs past the option space or is too small for its kind raises
`MalformedOptionsError`. The codecs decode leniently instead (`decode_options_leniently`), as
Linux does: the segment is kept with the options before the damage, the rest are ignored.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lab.wire.frozen import fast_init

KIND_EOL = 0
KIND_NOP = 1
KIND_MSS = 2
KIND_WSCALE = 3
KIND_SACK_PERMITTED = 4
KIND_SACK = 5
KIND_TIMESTAMPS = 8

MAX_OPTIONS_LEN = 40
MAX_WINDOW_SHIFT = 14  # RFC 7323 2.3: larger shifts are treated as 14


class MalformedOptionsError(ValueError):
    """The option bytes of a segment cannot be parsed."""


@dataclass(frozen=True, slots=True)
class EndOfOptions:
    """Kind 0: ends the option list; the rest of the header is padding."""


@dataclass(frozen=True, slots=True)
class NoOperation:
    """Kind 1: one byte of padding between options."""


@dataclass(frozen=True, slots=True)
class MaxSegmentSize:
    """Kind 2 (SYN only): the largest segment payload the sender can receive."""

    mss: int


@dataclass(frozen=True, slots=True)
class WindowScale:
    """Kind 3 (SYN only, RFC 7323 2): the sender's receive window is shifted left by `shift`."""

    shift: int


@dataclass(frozen=True, slots=True)
class SackPermitted:
    """Kind 4 (SYN only, RFC 2018): the sender understands SACK blocks."""


@dataclass(frozen=True, slots=True)
class SackBlocks:
    """Kind 5 (RFC 2018 3): blocks of data received beyond the cumulative ACK, as (left, right)."""

    blocks: tuple[tuple[int, int], ...]


@fast_init
@dataclass(frozen=True, slots=True)
class Timestamps:
    """Kind 8 (RFC 7323 3): the sender's clock and the echo of the peer's."""

    tsval: int
    tsecr: int


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """Any other kind, kept verbatim (`data` excludes the kind and length bytes)."""

    kind: int
    data: bytes


TcpOption = (
    EndOfOptions
    | NoOperation
    | MaxSegmentSize
    | WindowScale
    | SackPermitted
    | SackBlocks
    | Timestamps
    | UnknownOption
)


def encode_option(option: TcpOption) -> bytes:
    """The wire bytes of one option (kind, length, value), without padding."""
    match option:
        case EndOfOptions():
            return b"\x00"
        case NoOperation():
            return b"\x01"
        case MaxSegmentSize(mss):
            return struct.pack("!BBH", KIND_MSS, 4, mss)
        case WindowScale(shift):
            return struct.pack("!BBB", KIND_WSCALE, 3, shift)
        case SackPermitted():
            return b"\x04\x02"
        case SackBlocks(blocks):
            body = b"".join(struct.pack("!II", left, right) for left, right in blocks)
            return struct.pack("!BB", KIND_SACK, 2 + len(body)) + body
        case Timestamps(tsval, tsecr):
            return struct.pack("!BBII", KIND_TIMESTAMPS, 10, tsval, tsecr)
        case UnknownOption(kind, data):
            return struct.pack("!BB", kind, 2 + len(data)) + data
    raise TypeError(f"not a TCP option: {option!r}")


def encode_options(options: tuple[TcpOption, ...]) -> bytes:
    """All options, padded with zero bytes (EOL) to a multiple of four, as the header needs."""
    raw = b"".join(encode_option(o) for o in options)
    if len(raw) > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options take {len(raw)} bytes, more than {MAX_OPTIONS_LEN}")
    return raw + b"\x00" * (-len(raw) % 4)


def options_length(options: tuple[TcpOption, ...]) -> int:
    """Bytes the options occupy in the header, padding included."""
    return len(encode_options(options))


_FIXED_LENGTHS = {KIND_MSS: 4, KIND_WSCALE: 3, KIND_SACK_PERMITTED: 2, KIND_TIMESTAMPS: 10}


def decode_options(raw: bytes) -> tuple[TcpOption, ...]:
    """Parse the option space of a TCP header; trailing padding after EOL is not kept."""
    out: list[TcpOption] = []
    _decode_into(raw, out)
    return tuple(out)


def decode_options_leniently(raw: bytes) -> tuple[tuple[TcpOption, ...], str | None]:
    """The options before the first malformed one, and what was wrong (None if nothing).

    This is what a receiving stack does (Linux's tcp_parse_options stops at a bad length and
    keeps the segment): a segment is not thrown away for a broken option list, its remaining
    options are ignored. `decode_options` stays strict for tools that must report the damage.
    """
    out: list[TcpOption] = []
    try:
        _decode_into(raw, out)
    except MalformedOptionsError as exc:
        return tuple(out), str(exc)
    return tuple(out), None


def _decode_into(raw: bytes, out: list[TcpOption]) -> None:
    """Append each option of `raw` to `out`, raising at the first malformed one."""
    i = 0
    n = len(raw)
    while i < n:
        kind = raw[i]
        if kind == KIND_EOL:
            out.append(EndOfOptions())
            break
        if kind == KIND_NOP:
            out.append(NoOperation())
            i += 1
            continue
        if i + 1 >= n:
            raise MalformedOptionsError(f"option kind {kind} at offset {i} has no length byte")
        length = raw[i + 1]
        if length < 2 or i + length > n:
            raise MalformedOptionsError(f"option kind {kind} at offset {i} has bad length {length}")
        expected = _FIXED_LENGTHS.get(kind)
        if expected is not None and length != expected:
            raise MalformedOptionsError(
                f"option kind {kind} must be {expected} bytes, not {length}"
            )
        body = raw[i + 2 : i + length]
        if kind == KIND_MSS:
            out.append(MaxSegmentSize(struct.unpack("!H", body)[0]))
        elif kind == KIND_WSCALE:
            out.append(WindowScale(body[0]))
        elif kind == KIND_SACK_PERMITTED:
            out.append(SackPermitted())
        elif kind == KIND_TIMESTAMPS:
            tsval, tsecr = struct.unpack("!II", body)
            out.append(Timestamps(tsval, tsecr))
        elif kind == KIND_SACK:
            if len(body) % 8:
                raise MalformedOptionsError(f"SACK option at offset {i} has length {length}")
            blocks = tuple(struct.unpack_from("!II", body, k) for k in range(0, len(body), 8))
            out.append(SackBlocks(blocks))
        else:
            out.append(UnknownOption(kind, bytes(body)))
        i += length
