"""Reference solution of the `forensics` exercise (what `show --solution` prints)."""

from __future__ import annotations

import re

from lab.capture.reader import CaptureReader
from lab.wire.fast import decode_ethernet
from lab.wire.frame import TcpFrame

MOD = 1 << 32


def recover(capture: str) -> tuple[str, bytes, list[tuple[int, int]]]:
    frames = [decode_ethernet(p.data) for p in CaptureReader(capture)]
    tcp = [f for f in frames if isinstance(f, TcpFrame)]  # bad checksums come back as Dropped
    control = b"".join(f.segment.payload for f in tcp if 21 in (f.segment.dst_port,))
    replies = b"".join(f.segment.payload for f in tcp if f.segment.src_port == 21)
    retr = re.search(rb"RETR ([^\r\n]+)\r\n", control)
    pasv = re.search(rb"227 [^(]*\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)", replies)
    if retr is None or pasv is None:
        raise ValueError("no RETR or no PASV reply in the capture")
    name = retr.group(1).decode()
    port = int(pasv.group(5)) * 256 + int(pasv.group(6))
    data = [f.segment for f in tcp if f.segment.src_port == port]
    syn = next(s for s in data if s.syn)
    first = (syn.seq + 1) % MOD
    pieces: dict[int, bytes] = {}
    end = 0
    for s in data:
        offset = (s.seq - first) % MOD
        if s.payload and len(s.payload) > len(pieces.get(offset, b"")):
            pieces[offset] = s.payload
        if s.payload or s.fin:  # a bare ACK after our FIN sits one byte past the end
            end = max(end, offset + len(s.payload))
    content = bytearray(end)
    covered = bytearray(end)
    for offset, payload in pieces.items():
        content[offset : offset + len(payload)] = payload
        covered[offset : offset + len(payload)] = b"\x01" * len(payload)
    missing: list[tuple[int, int]] = []
    i = 0
    while i < end:
        if covered[i]:
            i += 1
            continue
        j = i
        while j < end and not covered[j]:
            j += 1
        missing.append((i, j))
        i = j
    return name, bytes(content), missing
