"""The mixed codec: Scapy for the frames people study, `struct` for the bulk.

The lab's promise is that Scapy builds the handshakes and the FTP command segments field by field,
while the bulk data goes through the fast `struct` codec (`tests/test_codec.py` proves the two
byte-identical, so the choice never changes a byte on the wire). This module makes that choice
per frame:

* Scapy: ARP, ICMP, and every TCP segment that opens, closes or resets a connection (SYN, FIN,
  RST) or carries a short payload (commands and replies on a control connection);
* fast: pure ACKs and full-sized data segments, which are most of a transfer. Building those with
  Scapy costs about 350 us a frame, enough to slow a 1 MB transfer to a few MB/s and to make the
  peer's kernel retransmit while our ACKs wait in line.
"""

from __future__ import annotations

from lab.wire import fast
from lab.wire.frame import Frame, TcpFrame
from lab.wire.segment import Flags

SHORT_PAYLOAD = 512  # bytes; FTP commands and replies are shorter, bulk segments longer
CONTROL_FLAGS = Flags.SYN | Flags.FIN | Flags.RST  # always Scapy's


def built_by_scapy(frame: Frame) -> bool:
    """Whether the mixed codec hands this frame to Scapy."""
    if not isinstance(frame, TcpFrame):
        return True
    segment = frame.segment
    if segment.flags & CONTROL_FLAGS:
        return True
    return 0 < len(segment.payload) < SHORT_PAYLOAD


def encode(frame: Frame) -> bytes:
    """The wire bytes of `frame`, from Scapy or from `struct` as `built_by_scapy` says."""
    if built_by_scapy(frame):
        from lab.wire import scapy_codec  # imported on first use: Scapy is slow to import

        return scapy_codec.encode(frame)
    return fast.encode(frame)
