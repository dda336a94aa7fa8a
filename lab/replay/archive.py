"""The flows of a capture, with the finished ones kept off the heap (issue 12: bounded memory).

Why: a capture of 200,000 short connections held 200,000 `Flow` values (two `HalfStream`s, two
`StoredStream`s, their lists) until the end, about 2.7 KB each, although a connection whose two
streams reached their FIN can no longer change but for a late packet. `FlowTable` hands such a
flow to `FlowList.archive` once it has been complete for a while (so the last ACK usually came
first): the flow is pickled, in full, to one anonymous temporary file, and only its file position
stays in memory (8 bytes in an array). Nothing is summarised, so every reader (FTP
reconstruction, the report, the pictures) sees exactly the flow it would have seen in memory.

Reading a flow back gives the same object as long as anyone holds it (a weak cache): FTP
reconstruction swaps the orientation of the flows it keeps, and a notebook's `Step` holds its
flow, so there is never a second, stale copy of a flow somebody uses. A late packet for an
archived flow brings it back into memory for good (`restore`): correctness never depends on
when flows are archived, only memory does.
"""

from __future__ import annotations

import pickle
import tempfile
from array import array
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, overload
from weakref import WeakValueDictionary

from lab.replay.store import StreamStore

if TYPE_CHECKING:
    from lab.replay.flows import Flow

IN_MEMORY = -1


class FlowList(Sequence["Flow"]):
    """Every flow of a capture by index (Wireshark's tcp.stream), in memory or archived."""

    def __init__(self, store: StreamStore) -> None:
        self._store = store
        self._where = array("q")  # per flow: file position of its pickle, or IN_MEMORY
        self._memory: dict[int, Flow] = {}
        self._loaded: WeakValueDictionary[int, Flow] = WeakValueDictionary()
        self._file: BinaryIO | None = None  # created on the first archived flow
        self._end = 0
        self.archived = 0  # flows written out
        self.restored = 0  # archived flows brought back by a late packet

    def append(self, flow: Flow) -> None:
        assert flow.index == len(self._where)
        self._where.append(IN_MEMORY)
        self._memory[flow.index] = flow

    def __len__(self) -> int:
        return len(self._where)

    @overload
    def __getitem__(self, index: int) -> Flow: ...

    @overload
    def __getitem__(self, index: slice) -> list[Flow]: ...

    def __getitem__(self, index: int | slice) -> Flow | list[Flow]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._where)))]
        if index < 0:
            index += len(self._where)
        pos = self._where[index]  # IndexError as a list's
        if pos == IN_MEMORY:
            return self._memory[index]
        flow = self._loaded.get(index)
        if flow is None:
            flow = self._load(pos)
            self._loaded[index] = flow
        return flow

    def __iter__(self) -> Iterator[Flow]:
        for i in range(len(self._where)):
            yield self[i]

    def in_memory(self) -> list[Flow]:
        """The flows not archived, in index order (those `FlowTable.finish` still has to end)."""
        return [self._memory[i] for i in sorted(self._memory)]

    def is_in_memory(self, flow: Flow) -> bool:
        return self._memory.get(flow.index) is flow

    def archive(self, flow: Flow) -> None:
        """Write a flow that nothing will change out of memory (its stream bytes are already in
        the store's file; their extents go with it)."""
        for half in (flow.c2s, flow.s2c):
            half.data.spill()
            self._store.forget(half.data)
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self._store.directory)  # noqa: SIM115
        f = self._file
        f.seek(self._end)
        pickle.dump(flow, f, pickle.HIGHEST_PROTOCOL)
        self._where[flow.index] = self._end
        self._end = f.tell()
        del self._memory[flow.index]
        self._loaded[flow.index] = flow  # still the same object while somebody holds it
        self.archived += 1

    def restore(self, index: int) -> Flow:
        """Bring an archived flow back into memory (a late packet came for it)."""
        flow = self[index]
        if self._where[index] != IN_MEMORY:
            self._where[index] = IN_MEMORY
            self._memory[index] = flow
            self._loaded.pop(index, None)
            self.restored += 1
            for half in (flow.c2s, flow.s2c):
                self._store.adopt(half.data)
        return flow

    def _load(self, pos: int) -> Flow:
        assert self._file is not None
        self._file.seek(pos)
        flow: Flow = pickle.load(self._file)
        for half in (flow.c2s, flow.s2c):
            half.data.attach(self._store)
        return flow
