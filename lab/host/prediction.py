"""Frame-level header prediction: the bulk receiver's next frame, taken in one pass over its bytes.

A teaching point, in two halves that are both older than Linux:

- 4.3BSD kept a one-entry cache of the connection that took the last segment (`tcp_last_inpcb`):
  during a transfer nearly every segment belongs to the same connection, so demultiplexing is
  one comparison instead of a table lookup.
- Van Jacobson's header prediction (1990; Linux's `tcp_rcv_established` fast path, which
  compares the TCP header's flags-and-window word against a precomputed `pred_flags`): nearly
  every segment of that connection is the next one expected, so its header can be checked
  against what is expected rather than interpreted field by field.

`FramePrediction` joins the two at the frame: for the connection whose frame the host took last,
it knows what the bytes of the next frame will say (our MAC, IPv4 without options, TCP, the
peer's address and ports, which 12 consecutive bytes of the IP and TCP headers hold, and the
TCP header length with the option layout the connection agreed on). One `struct` unpack reads
the Ethernet, IPv4 and TCP headers and the timestamp option together; a few comparisons test
them; the checksums are verified; and the header fields go straight to
`Connection.receive_predicted`, with no `Segment`, no decoded options, no `TcpFrame` and no
demultiplexing lookup.

It never decides anything on its own. Whatever it does not expect (another connection, flags,
options, a fragment, a bad checksum, a segment the connection does not predict) answers False,
having changed nothing, and the host's general path decodes the same frame, checks it, counts
what it drops and why, and gives the segment to the full TCP receive path. So the result is
always the general path's; only the cost differs (tests/test_prediction.py feeds the same frames
to both and compares the state, the ACKs and the bytes).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final, Protocol

from lab.wire.checksum import checksum_verifies

if TYPE_CHECKING:
    from lab.tcp.connection import Connection

# Ethernet (destination; source skipped; type), IPv4 without options (version and IHL, TOS
# skipped, total length, identification skipped, flags and fragment offset, TTL, protocol,
# checksum skipped; then source, destination and the TCP ports as 12 raw bytes), TCP (sequence,
# acknowledgment, data offset, flags, window; checksum and urgent pointer skipped) and the first
# 12 option bytes (the kinds and lengths of NOP, NOP, Timestamps; TSval; TSecr skipped).
_HEADERS: Final = struct.Struct("!6s6xHBxHxxHBB2x12sIIBBH4x4sI4x")
_ETHERTYPE_IPV4: Final = 0x0800
_VERSION_4_IHL_5: Final = 0x45
_IPPROTO_TCP: Final = 6
_FRAGMENT_BITS: Final = 0x3FFF  # MF and the fragment offset (DF may be set)
_NOP_NOP_TIMESTAMPS: Final = b"\x01\x01\x08\x0a"
_ETH_IP: Final = 14 + 20  # where the TCP header starts
VIEW_ABOVE: Final = 4096  # payloads larger than this are handed on as views of their frame


class TraceCursor(Protocol):
    """How much of a connection's trace the host has reported (`Host._TraceCursor`)."""

    scanned: int


class FramePrediction:
    """What the next frame of one ESTABLISHED IPv4 connection looks like, and the test of a
    frame against it (`take`). The host keeps one, for the connection it served last."""

    __slots__ = ("_addresses", "_data_offset", "_mac", "_payload_at", "_ts", "conn", "cursor")

    def __init__(
        self,
        mac: bytes,
        peer_ip: bytes,
        our_ip: bytes,
        peer_port: int,
        our_port: int,
        conn: Connection,
        cursor: TraceCursor,
    ) -> None:
        """`mac`, `peer_ip` and `our_ip` raw (6 and 4 bytes); `cursor` is the host's trace
        cursor of `conn` (with a `scanned` count): a frame is only predicted while every entry
        of the connection's trace has been reported, so no transition waits for a frame."""
        self.conn = conn
        self.cursor = cursor
        self._mac = mac
        self._addresses = peer_ip + our_ip + struct.pack("!HH", peer_port, our_port)
        # With timestamps agreed every segment carries NOP, NOP, Timestamps (RFC 7323
        # appendix A): data offset 8 words. Without, no options: 5 words.
        self._ts = conn.timestamps_enabled
        self._data_offset = 0x80 if self._ts else 0x50
        self._payload_at = _ETH_IP + (32 if self._ts else 20)

    def take(self, frame: bytes, now: int, checksum_verified: bool) -> bool:
        """Give `frame` to the connection if it is the predicted one: True when taken (with
        every effect the general path would have had on the connection; the host counts the
        frame), False when the general path must take it (nothing was changed)."""
        size = len(frame)
        if size < _HEADERS.size:
            return False
        (
            dst,
            ethertype,
            version_ihl,
            total,
            fragment,
            ttl,
            protocol,
            addresses,
            seq,
            ack,
            data_offset,
            flags,
            window,
            option_kinds,
            tsval,
        ) = _HEADERS.unpack_from(frame)
        if (
            addresses != self._addresses
            or dst != self._mac
            or ethertype != _ETHERTYPE_IPV4
            or version_ihl != _VERSION_4_IHL_5
            or protocol != _IPPROTO_TCP
            or fragment & _FRAGMENT_BITS
            or not ttl
            or data_offset != self._data_offset
            or total > size - 14
            # RFC 1071: the header's words sum to 0 modulo 0xFFFF when its checksum is right
            or int.from_bytes(frame[14:_ETH_IP], "big") % 0xFFFF
        ):
            return False
        if not self._ts:
            tsval = None
        elif option_kinds != _NOP_NOP_TIMESTAMPS:
            return False
        end = 14 + total
        start = self._payload_at
        conn = self.conn
        if (
            end <= start  # no payload: the general path (a pure ACK is never predicted)
            or self.cursor.scanned != len(conn.trace)
            # The pseudo-header's addresses are the 8 bytes before the TCP header: one sum
            # over frame[26:end] plus protocol and TCP length covers pseudo-header and segment.
            or not (
                checksum_verified or checksum_verifies(frame, 26, end, _IPPROTO_TCP + total - 20)
            )
        ):
            return False
        # A GRO-merged payload (offload mode) stays in its frame, seen through a memoryview:
        # the connection keeps it by reference until the application writes it out, so it is
        # never copied in Python (a copy of 64 KB was a tenth of the loop thread's time).
        payload = memoryview(frame)[start:end] if end - start > VIEW_ABOVE else frame[start:end]
        return conn.receive_predicted(seq, ack, flags, window, tsval, payload, now)
