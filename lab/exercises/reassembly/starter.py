"""Exercise `reassembly`: turn TCP segments, in any order, into the in-order byte stream.

Complete `Reassembler.push`. The checker (`lab exercise check reassembly`) feeds it whole
sessions: lost segments retransmitted later (sometimes cut differently), segments out of order,
duplicates, and sequence numbers that wrap around 2**32. After every segment it compares what you
returned with what a correct receiver could deliver at that moment.
"""

from __future__ import annotations


class Reassembler:
    def __init__(self, initial_seq: int) -> None:
        """`initial_seq` is the sequence number of the first data byte (the peer's ISN + 1)."""
        self.initial_seq = initial_seq
        # TODO: what do you need to remember? The next byte you expect, and the bytes that
        # arrived early (beyond a hole), kept until the hole is filled.

    def push(self, seq: int, data: bytes) -> bytes:
        """Take one segment (its sequence number and payload); return the bytes that are now in
        order and were never returned before (b"" if none)."""
        # TODO: 1. turn `seq` into a position in the stream (careful: sequence numbers are
        #          32-bit and wrap around, so subtract modulo 2**32);
        #       2. drop what was already delivered, keep what is ahead of a hole;
        #       3. return everything that is now contiguous with what you delivered before.
        raise NotImplementedError("push")
