"""The TCP segment as the core sees it: an immutable value, not bytes.

Codecs (`lab.wire`) turn frames into `Segment` values and back; the connection, the listener and
the reassembler only ever see these. `AddressedSegment` adds the IPv4 addresses, which the TCP
core needs for demultiplexing, ISNs and (in the codecs) the pseudo-header checksum.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from lab.wire.frozen import fast_init
from lab.wire.options import (
    MaxSegmentSize,
    SackBlocks,
    SackPermitted,
    TcpOption,
    Timestamps,
    WindowScale,
    options_length,
)


class Flags(enum.IntFlag):
    """The TCP control bits (RFC 9293 3.1, RFC 3168 for ECE/CWR)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


_FLAG_LETTERS = (
    (Flags.SYN, "S"),
    (Flags.FIN, "F"),
    (Flags.RST, "R"),
    (Flags.PSH, "P"),
    (Flags.ACK, "."),
    (Flags.URG, "U"),
    (Flags.ECE, "E"),
    (Flags.CWR, "W"),
)

TCP_HEADER_LEN = 20
NO_FLAGS = Flags(0)


@fast_init
@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment. `window` is the raw 16-bit field as on the wire (unscaled)."""

    src_port: int
    dst_port: int
    seq: int
    ack: int = 0
    flags: Flags = NO_FLAGS
    window: int = 0
    options: tuple[TcpOption, ...] = ()
    payload: bytes = b""
    urgent: int = 0

    @property
    def syn(self) -> bool:
        return bool(int(self.flags) & 0x02)  # Flags.SYN, as a plain int: enum `&` is slow

    @property
    def fin(self) -> bool:
        return bool(int(self.flags) & 0x01)  # Flags.FIN, as a plain int: enum `&` is slow

    @property
    def rst(self) -> bool:
        return bool(int(self.flags) & 0x04)  # Flags.RST, as a plain int: enum `&` is slow

    @property
    def has_ack(self) -> bool:
        return bool(int(self.flags) & 0x10)  # Flags.ACK, as a plain int: enum `&` is slow

    @property
    def seg_len(self) -> int:
        """SEG.LEN of RFC 9293: payload octets plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.syn else 0) + (1 if self.fin else 0)

    @property
    def header_len(self) -> int:
        return TCP_HEADER_LEN + options_length(self.options)

    def option(self, kind: type[TcpOption]) -> TcpOption | None:
        """The first option of the given class, or None."""
        for o in self.options:
            if isinstance(o, kind):
                return o
        return None

    def flag_string(self) -> str:
        """tcpdump's letters: S, F, R, P, '.' for ACK."""
        return "".join(letter for flag, letter in _FLAG_LETTERS if self.flags & flag) or "none"

    def summary(self) -> str:
        text = (
            f"{self.src_port} > {self.dst_port} [{self.flag_string()}] seq={self.seq}"
            f" ack={self.ack} win={self.window} len={len(self.payload)}"
        )
        if self.options:
            text += " " + ",".join(type(o).__name__ for o in self.options)
        return text

    def describe(self) -> str:
        """One line in tcpdump's manner without the ports: flags, numbers, then the options that
        matter with their values (what `lab demo` prints per segment and notebook 04 shows)."""
        text = (
            f"[{self.flag_string()}] seq={self.seq} ack={self.ack} win={self.window}"
            f" len={len(self.payload)}"
        )
        parts: list[str] = []
        for option in self.options:
            match option:
                case MaxSegmentSize(mss):
                    parts.append(f"mss {mss}")
                case WindowScale(shift):
                    parts.append(f"wscale {shift}")
                case SackPermitted():
                    parts.append("sackOK")
                case Timestamps(tsval, tsecr):
                    parts.append(f"TS {tsval}/{tsecr}")
                case SackBlocks(blocks):
                    parts.append(f"sack {len(blocks)}")
                case _:
                    pass
        return text + (f" <{', '.join(parts)}>" if parts else "")


@fast_init
@dataclass(frozen=True, slots=True)
class AddressedSegment:
    """A segment with the IPv4 addresses it travels between (dotted-quad strings)."""

    src: str
    dst: str
    segment: Segment = field(repr=True)

    def reply_addresses(self) -> tuple[str, str]:
        """(src, dst) for a segment sent back to where this one came from."""
        return self.dst, self.src
