"""The receive buffer of a connection: delivered bytes waiting for the application's read.

It holds the delivered payloads themselves, in order, not one growing bytearray: appending a
segment's payload is then one reference, not a copy, and a read that takes whole payloads joins
them once (or, for exactly one payload, hands it out with no copy at all). With GRO on (offload
mode) a merged frame carries ~64 KB, and the bytearray cost two copies of it per frame: one to
append, one to read out. This is what Linux does too: `tcp_recvmsg` copies to the caller straight
from the queued sk_buffs, never through a contiguous buffer.

`read(n)` returns exactly min(n, buffered) bytes, as `Connection.read` always did;
`read_some(n)` may return fewer, stopping at a payload boundary, as a kernel socket's recv may,
so that a 64 KB merged payload reaches the application whole. `read_chunks(n)` reads the same
bytes as a list of the payloads themselves: the runtime's `Socket.recv_chunks` hands them to
the FTP client, which writes them to its file with one writev(2), so the payloads are not
joined again on their way from the frames they came in to the file (`Socket.recv` joins them).
"""

from __future__ import annotations

from collections import deque

Chunk = bytes | memoryview
"""A delivered payload as kept and handed out: bytes, or a view of the bytes of the frame it
came in (a GRO-merged frame's payload is not copied out of its frame: `by_reference`)."""


def by_reference(data: bytes | bytearray | memoryview) -> Chunk:
    """`data` itself when it can never change (bytes, or a read-only view of bytes), else a
    bytes copy of it (a mutable buffer could change under us)."""
    if type(data) is bytes or (type(data) is memoryview and type(data.obj) is bytes):
        return data
    return bytes(data)


class ReceiveBuffer:
    """Delivered bytes as a queue of immutable chunks, with an offset into the first one."""

    __slots__ = ("_chunks", "_head", "_size")

    def __init__(self) -> None:
        self._chunks: deque[Chunk] = deque()
        self._head = 0  # bytes of the first chunk already read
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue `data` after what is buffered (by reference when it cannot change)."""
        if not data:
            return
        if type(data) is not bytes:  # (the test inline: a call per segment costs in bulk)
            data = by_reference(data)
        self._chunks.append(data)
        self._size += len(data)

    def read(self, max_bytes: int = -1) -> bytes:
        """Exactly min(`max_bytes`, buffered) bytes (all of them when `max_bytes` < 0)."""
        n = self._size if max_bytes < 0 else min(max_bytes, self._size)
        return self._take(n) if n > 0 else b""

    def read_some(self, max_bytes: int) -> bytes:
        """Up to `max_bytes`: whole chunks while they fit, or the start of the first chunk when
        even that one does not fit. Never empty while bytes are buffered and `max_bytes` > 0."""
        taken = self.read_chunks(max_bytes)
        if len(taken) == 1 and type(taken[0]) is bytes:
            return taken[0]
        return b"".join(taken)

    def read_chunks(self, max_bytes: int) -> list[Chunk]:
        """What `read_some` reads, as the chunks themselves, in order: no join, for an
        application that writes them with one writev(2). [] when nothing is buffered or
        `max_bytes` <= 0."""
        if max_bytes <= 0 or not self._size:
            return []
        chunks = self._chunks
        first = chunks[0]
        head = self._head
        n = len(first) - head
        if n > max_bytes:  # even the first chunk does not fit: its start
            self._head = head + max_bytes
            self._size -= max_bytes
            return [first[head : head + max_bytes]]
        chunks.popleft()
        taken = [first[head:] if head else first]
        self._head = 0
        # The bulk case, a read of many whole segments: taken in the one pass that finds where
        # to stop.
        while chunks and n + len(chunks[0]) <= max_bytes:
            chunk = chunks.popleft()
            taken.append(chunk)
            n += len(chunk)
        self._size -= n
        return taken

    def _take(self, n: int) -> bytes:
        """Remove and return the next `n` bytes (0 < n <= buffered)."""
        chunks = self._chunks
        self._size -= n
        first = chunks[0]
        head = self._head
        if head == 0 and len(first) == n:
            chunks.popleft()  # one whole payload: no copy (unless a view: bytes out)
            return first if type(first) is bytes else bytes(first)
        if len(first) - head > n:
            self._head = head + n
            return bytes(first[head : head + n])
        parts: list[bytes | memoryview] = []
        while n:
            first = chunks[0]
            available = len(first) - head
            if available <= n:
                parts.append(memoryview(first)[head:] if head else first)
                chunks.popleft()
                n -= available
                head = 0
            else:
                parts.append(memoryview(first)[head : head + n])
                head += n
                n = 0
        self._head = head
        return b"".join(parts)
