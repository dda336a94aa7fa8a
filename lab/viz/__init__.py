"""Pictures of TCP connections: ladder diagrams, time-sequence graphs, state timelines.

`lab.viz.records` turns a capture, a live session's pcapng or the in-memory simulation into a
`Conversation`; `lab.viz.pictures` draws it. `plot_replay` is what `lab replay --plot` calls.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.replay.report import ReplayResult
    from lab.viz.paths import KINDS, picture_paths
    from lab.viz.pictures import (
        LadderDescription,
        StateTimelineDescription,
        TimeSequenceDescription,
        ladder,
        png_bytes,
        save,
        save_pictures,
        segment_label,
        state_timeline,
        time_sequence,
    )
    from lab.viz.records import (
        Conversation,
        SegmentRecord,
        StateChange,
        WireRecorder,
        conversation_from_capture,
        conversations_from_capture,
        infer_states,
        states_from_connections,
    )
    from lab.viz.timed import (
        TimedLadderDescription,
        draw_timed_ladder,
        ladders_side_by_side,
        timed_ladder,
    )

# The drawing modules import matplotlib (and with it numpy, whose BLAS starts threads): they load
# on first use, so that `import lab.viz` (e.g. for `--plot`'s path check) costs nothing and a
# command can still enter a user namespace, which a process with threads cannot. The records too:
# they import the whole TCP connection (~0.03 s of `lab replay`'s start-up otherwise).
_LAZY = {
    "Conversation": "lab.viz.records",
    "SegmentRecord": "lab.viz.records",
    "StateChange": "lab.viz.records",
    "WireRecorder": "lab.viz.records",
    "conversation_from_capture": "lab.viz.records",
    "conversations_from_capture": "lab.viz.records",
    "infer_states": "lab.viz.records",
    "states_from_connections": "lab.viz.records",
    "KINDS": "lab.viz.paths",
    "LadderDescription": "lab.viz.pictures",
    "StateTimelineDescription": "lab.viz.pictures",
    "TimeSequenceDescription": "lab.viz.pictures",
    "ladder": "lab.viz.pictures",
    "picture_paths": "lab.viz.paths",
    "png_bytes": "lab.viz.pictures",
    "save": "lab.viz.pictures",
    "save_pictures": "lab.viz.pictures",
    "segment_label": "lab.viz.pictures",
    "state_timeline": "lab.viz.pictures",
    "time_sequence": "lab.viz.pictures",
    "TimedLadderDescription": "lab.viz.timed",
    "draw_timed_ladder": "lab.viz.timed",
    "ladders_side_by_side": "lab.viz.timed",
    "timed_ladder": "lab.viz.timed",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lab.viz' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def replay_flow_to_plot(result: ReplayResult) -> int | None:
    """The flow `lab replay --plot` draws: the FTP data flow that moved the most bytes, else the
    first flow that carried data, else the first flow (None when the capture has no TCP)."""
    best: tuple[int, int] | None = None
    for session in result.sessions:
        for transfer in session.transfers:
            flow = transfer.data_flow
            if flow is None:
                continue
            size = flow.c2s.payload_bytes + flow.s2c.payload_bytes
            if best is None or size > best[0]:
                best = (size, flow.index)
    if best is not None:
        return best[1]
    flows = result.table.flows
    for flow in flows:
        if flow.c2s.payload_bytes or flow.s2c.payload_bytes:
            return flow.index
    return flows[0].index if flows else None


def plot_replay(result: ReplayResult, path: str | Path) -> dict[str, Path]:
    """Write the three pictures of the flow `replay_flow_to_plot` picks (see `picture_paths`)."""
    index = replay_flow_to_plot(result)
    if index is None:
        print(f"lab replay: {result.capture}: no TCP flow to plot", file=sys.stderr)
        return {}
    from lab.viz.pictures import save_pictures
    from lab.viz.records import conversation_from_capture

    conv = conversation_from_capture(result.capture, index)
    written = save_pictures(conv, path)
    names = ", ".join(str(p) for p in written.values())
    print(f"lab replay: pictures of flow {index} written to {names}", file=sys.stderr)
    return written


__all__ = [
    "KINDS",
    "Conversation",
    "LadderDescription",
    "SegmentRecord",
    "StateChange",
    "StateTimelineDescription",
    "TimeSequenceDescription",
    "TimedLadderDescription",
    "WireRecorder",
    "conversation_from_capture",
    "conversations_from_capture",
    "draw_timed_ladder",
    "infer_states",
    "ladder",
    "ladders_side_by_side",
    "picture_paths",
    "plot_replay",
    "png_bytes",
    "replay_flow_to_plot",
    "save",
    "save_pictures",
    "segment_label",
    "state_timeline",
    "states_from_connections",
    "time_sequence",
    "timed_ladder",
]
