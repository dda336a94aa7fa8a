"""Where replay keeps reassembled stream bytes: one temporary file, extents per stream.

Why not a buffer per stream: a capture may hold gigabytes of payload across thousands of flows,
and which flow is an FTP data connection is known only once the control dialogue is read. Bytes
are therefore appended, in arrival order, to a single anonymous temporary file (one descriptor
whatever the number of flows), and each stream remembers its extents. A small per-stream write
buffer coalesces consecutive deliveries so the extent lists stay short (one per 64 KiB written, or
per interleaving), and a global budget bounds the bytes buffered in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO

CHUNK = 1 << 16
MEMORY_BUDGET = 32 << 20


class StoredStream:
    """The bytes of one direction of one flow, at their stream offsets (holes stay holes)."""

    __slots__ = ("_buf", "_buf_start", "_store", "extents", "length", "stored_bytes")

    def __init__(self, store: StreamStore) -> None:
        self._store = store
        self.extents: list[tuple[int, int, int]] = []  # (stream offset, file position, length)
        self._buf: bytes | bytearray = b""  # a bytearray only while bytes are buffered (memory)
        self._buf_start = 0
        self.stored_bytes = 0  # bytes kept (excluding holes)
        self.length = 0  # highest stream offset written + 1

    def __getstate__(self) -> tuple[list[tuple[int, int, int]], int, int]:
        """What an archived flow keeps (`lab.replay.archive`): spilled, so no buffer."""
        assert not self._buf
        return self.extents, self.stored_bytes, self.length

    def __setstate__(self, state: tuple[list[tuple[int, int, int]], int, int]) -> None:
        self.extents, self.stored_bytes, self.length = state
        self._buf = b""
        self._buf_start = 0

    def attach(self, store: StreamStore) -> None:
        """Point a stream read back from an archive at the store holding its bytes."""
        self._store = store

    def write(self, offset: int, data: bytes) -> None:
        n = len(data)
        if not n:
            return
        buf = self._buf
        if buf and offset != self._buf_start + len(buf):
            self.spill()
            buf = b""
        if len(buf) + n >= CHUNK or (not buf and n >= CHUNK >> 1):
            # Enough for the file at once (a chunk, or half of one with nothing buffered: the
            # joined runs of a bulk transfer): what is buffered, then `data` right after it in
            # the file (one extent, as if joined first), without copying `data` into the buffer.
            self.spill()
            self.stored_bytes += n
            self.length = max(self.length, offset + n)
            self._extent(offset, self._store.append(data), n)
            return
        if buf:
            buf += data  # in place: a non-empty buffer is always a bytearray
        else:
            self._buf_start = offset
            self._buf = buf = bytearray(data)
        self.stored_bytes += n
        end = offset + n
        if end > self.length:
            self.length = end
        store = self._store
        store.buffered += n
        if len(buf) >= CHUNK:
            self.spill()
        elif store.buffered > store.memory_budget:
            store.spill_all()

    def spill(self) -> None:
        if not self._buf:
            return
        self._extent(self._buf_start, self._store.append(self._buf), len(self._buf))
        self._store.buffered -= len(self._buf)
        self._buf = b""

    def _extent(self, start: int, pos: int, length: int) -> None:
        """Note `length` bytes of stream offset `start` at file position `pos` (merged with the
        last extent when they follow it in both)."""
        if self.extents:
            s, p, n = self.extents[-1]
            if s + n == start and p + n == pos:
                self.extents[-1] = (s, p, n + length)
                return
        self.extents.append((start, pos, length))

    def runs(self, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
        """(stream offset, bytes) pieces in stream order, at most `chunk` bytes each."""
        self.spill()
        for start, pos, length in sorted(self.extents):
            done = 0
            while done < length:
                n = min(chunk, length - done)
                yield start + done, self._store.read(pos + done, n)
                done += n

    def head(self, n: int) -> bytes:
        """The first `n` contiguous bytes from offset 0 (fewer if a hole or the end comes first)."""
        out = bytearray()
        for start, data in self.runs():
            if start != len(out):
                break
            out += data
            if len(out) >= n:
                break
        return bytes(out[:n])

    def holes(self) -> list[tuple[int, int]]:
        """Missing [start, end) ranges between offset 0 and `length`."""
        out = []
        cursor = 0
        self.spill()
        for start, _pos, length in sorted(self.extents):
            if start > cursor:
                out.append((cursor, start))
            cursor = max(cursor, start + length)
        return out


class StreamStore:
    """One anonymous temporary file holding every stream's bytes."""

    def __init__(self, directory: str | None = None, memory_budget: int = MEMORY_BUDGET) -> None:
        self._file: BinaryIO = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        self._end = 0
        self.directory = directory
        # streams that may still buffer bytes (archived ones are forgotten), by id
        self._streams: dict[int, StoredStream] = {}
        self.buffered = 0
        self.memory_budget = memory_budget

    def new_stream(self) -> StoredStream:
        s = StoredStream(self)
        self._streams[id(s)] = s
        return s

    def forget(self, s: StoredStream) -> None:
        """A stream that will get no more bytes (spilled first): `spill_all` skips it."""
        s.spill()
        self._streams.pop(id(s), None)

    def adopt(self, s: StoredStream) -> None:
        """A stream read back from an archive that may be written again."""
        s.attach(self)
        self._streams[id(s)] = s

    def append(self, data: bytes | bytearray) -> int:
        pos = self._end
        self._file.seek(pos)
        self._file.write(data)
        self._end += len(data)
        return pos

    def read(self, pos: int, n: int) -> bytes:
        self._file.seek(pos)
        return self._file.read(n)

    def spill_all(self) -> None:
        for s in self._streams.values():
            s.spill()

    def close(self) -> None:
        self._file.close()
