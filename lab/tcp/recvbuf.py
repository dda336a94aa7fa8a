"""The receive buffer of a connection: delivered bytes waiting for the application's read.

It holds the delivered payloads themselves, in order, not one growing bytearray: appending a
segment's payload is then one reference, not a copy, and a read that takes whole payloads joins
them once (or, for exactly one payload, hands it out with no copy at all). With GRO on (offload
mode) a merged frame carries ~64 KB, and the bytearray cost two copies of it per frame: one to
append, one to read out. This is what Linux does too: `tcp_recvmsg` copies to the caller straight
from the queued sk_buffs, never through a contiguous buffer.

`read(n)` returns exactly min(n, buffered) bytes, as `Connection.read` always did;
`read_some(n)` may return fewer, stopping at a payload boundary, as a kernel socket's recv may:
the runtime's `Socket.recv` uses it so that a 64 KB merged payload reaches the application whole.
"""

from __future__ import annotations

from collections import deque
from itertools import islice


class ReceiveBuffer:
    """Delivered bytes as a queue of immutable chunks, with an offset into the first one."""

    __slots__ = ("_chunks", "_head", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._head = 0  # bytes of the first chunk already read
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Queue `data` after what is buffered (kept by reference when it is `bytes`)."""
        if not data:
            return
        if type(data) is not bytes:
            data = bytes(data)  # a mutable buffer could change under us: keep a copy
        self._chunks.append(data)
        self._size += len(data)

    def read(self, max_bytes: int = -1) -> bytes:
        """Exactly min(`max_bytes`, buffered) bytes (all of them when `max_bytes` < 0)."""
        n = self._size if max_bytes < 0 else min(max_bytes, self._size)
        return self._take(n) if n > 0 else b""

    def read_some(self, max_bytes: int) -> bytes:
        """Up to `max_bytes`: whole chunks while they fit, or the start of the first chunk when
        even that one does not fit. Never empty while bytes are buffered and `max_bytes` > 0."""
        if max_bytes <= 0 or not self._size:
            return b""
        chunks = self._chunks
        n = len(chunks[0]) - self._head
        if n < max_bytes and not self._head:
            # The bulk case, a read of many whole segments: taken in the one pass that finds
            # where to stop (one loop per chunk instead of two), joined once.
            taken = [chunks.popleft()]
            while chunks and n + len(chunks[0]) <= max_bytes:
                chunk = chunks.popleft()
                taken.append(chunk)
                n += len(chunk)
            self._size -= n
            return taken[0] if len(taken) == 1 else b"".join(taken)
        if n < max_bytes:
            for chunk in islice(chunks, 1, None):
                if n + len(chunk) > max_bytes:
                    break
                n += len(chunk)
        return self._take(min(n, max_bytes))

    def _take(self, n: int) -> bytes:
        """Remove and return the next `n` bytes (0 < n <= buffered)."""
        chunks = self._chunks
        self._size -= n
        first = chunks[0]
        head = self._head
        if head == 0 and len(first) == n:
            chunks.popleft()  # one whole payload: no copy
            return first
        if len(first) - head > n:
            self._head = head + n
            return first[head : head + n]
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
