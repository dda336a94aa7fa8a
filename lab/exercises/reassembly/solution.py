"""Reference solution of the `reassembly` exercise (what `show --solution` prints)."""

from __future__ import annotations

MOD = 1 << 32


class Reassembler:
    def __init__(self, initial_seq: int) -> None:
        self.initial_seq = initial_seq
        self.next_offset = 0  # stream offset of the next byte to deliver
        self.early: dict[int, bytes] = {}  # stream offset -> bytes that arrived beyond a hole

    def push(self, seq: int, data: bytes) -> bytes:
        # The distance from the first byte, modulo 2**32, read as a signed 32-bit number, so that
        # an old segment just before the next expected byte is "behind", not 4 GB ahead.
        distance = (seq - self.initial_seq - self.next_offset) % MOD
        if distance >= MOD // 2:
            distance -= MOD
        offset = self.next_offset + distance
        if offset < self.next_offset:  # starts in bytes already delivered: keep only the rest
            data = data[self.next_offset - offset :]
            offset = self.next_offset
        if data and len(data) > len(self.early.get(offset, b"")):
            self.early[offset] = data
        out = bytearray()
        progress = True
        while progress:
            progress = False
            for start in sorted(self.early):
                end = start + len(self.early[start])
                if start > self.next_offset:
                    break
                chunk = self.early.pop(start)
                if end > self.next_offset:
                    out += chunk[self.next_offset - start :]
                    self.next_offset = end
                progress = True
        return bytes(out)
