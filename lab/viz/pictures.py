"""Three pictures of one TCP connection: a ladder, a time-sequence graph, a state timeline.

Each function takes a `Conversation` (see `lab.viz.records`) and returns the matplotlib `Figure`
and a small description of what it drew (arrows, labels, marks), so that tests and notebooks can
check the content of a picture rather than only that a file appeared. Artists that carry meaning
have a `gid` ("segment", "data", "retransmission", "sack", "ack", "window", "state") so the
figure itself can be inspected too.

Why `Figure` and not `pyplot`: pyplot keeps global state (current figure, backend, open figures
that leak in loops); a bare `Figure` with an Agg canvas is a value like any other, renders without
a display, and still shows inline in Jupyter.
"""

from __future__ import annotations

import bisect
import io
import itertools
import statistics
from dataclasses import dataclass
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch

from lab.replay.flows import FlowHalf
from lab.viz.paths import KINDS, picture_paths
from lab.viz.records import Conversation, SegmentRecord, StateChange, sack_blocks
from lab.wire.segment import Segment

MAX_LADDER_ARROWS = 80  # beyond this a ladder is unreadable: the first ones are drawn
DPI = 110

STATE_COLOURS = {
    "CLOSED": "#d9d9d9",
    "LISTEN": "#c6dbef",
    "SYN-SENT": "#fdd0a2",
    "SYN-RECEIVED": "#fdae6b",
    "ESTABLISHED": "#a1d99b",
    "FIN-WAIT-1": "#dadaeb",
    "FIN-WAIT-2": "#bcbddc",
    "CLOSE-WAIT": "#fcbba1",
    "CLOSING": "#9e9ac8",
    "LAST-ACK": "#fc9272",
    "TIME-WAIT": "#fff7bc",
}


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: str | Path) -> Path:
    """Write `fig` as PNG (or whatever the suffix says) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=DPI, bbox_inches="tight")
    return out


def png_bytes(fig: Figure) -> bytes:
    """The figure as PNG bytes (for `IPython.display.Image` in a notebook, without pyplot)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _ms(conv: Conversation, t: int) -> float:
    return (t - conv.start_us) / 1000


# -- ladder -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LadderDescription:
    """What `ladder` drew: `arrows` one per segment (at most `MAX_LADDER_ARROWS`)."""

    hosts: tuple[str, str]
    arrows: int
    labels: tuple[str, ...]
    retransmissions: int
    lost: int
    total_segments: int


def segment_label(conv: Conversation, record: SegmentRecord) -> str:
    """`[S.] seq 0 ack 1 len 0`, numbers relative to each side's ISN, then FTP text and marks."""
    seg: Segment = record.segment
    text = f"[{seg.flag_string()}] seq {conv.relative_seq(record.src, seg.seq)}"
    if seg.has_ack:
        text += f" ack {conv.relative_seq(record.dst, seg.ack)}"
    text += f" len {len(seg.payload)}"
    blocks = sack_blocks(seg)
    if blocks:
        shown = ",".join(
            f"{conv.relative_seq(record.dst, a)}-{conv.relative_seq(record.dst, b)}"
            for a, b in blocks
        )
        text += f" sack {shown}"
    marks = list(record.annotations)
    if marks:
        text += f" ({', '.join(marks)})"
    if record.text:
        text += f'\n"{record.text}"'
    return text


def draw_segment_arrow(
    ax: Axes,
    rec: SegmentRecord,
    start: tuple[float, float],
    end: tuple[float, float],
    *,
    scale: float,
    width: float,
) -> str:
    """One segment's arrow from `start` to `end`, shared by both ladders so they read alike.

    Blue for the client's segments, purple for the server's, red for a retransmission; a segment
    lost on the in-memory wire stops a third of the way with a cross. Returns the colour, for the
    label beside it."""
    colour = "tab:blue" if rec.direction == "c2s" else "tab:purple"
    if rec.retransmission:
        colour = "tab:red"
    if rec.lost:
        end = (start[0] + 0.3 * (end[0] - start[0]), start[1] + 0.3 * (end[1] - start[1]))
    arrow = FancyArrowPatch(
        start,
        end,
        arrowstyle="-" if rec.lost else "-|>",
        mutation_scale=scale,
        color=colour,
        linewidth=width,
        linestyle="--" if rec.lost else "-",
    )
    arrow.set_gid("segment")
    ax.add_patch(arrow)
    if rec.lost:
        ax.plot([end[0]], [end[1]], marker="x", color="tab:red", markersize=8)
    return colour


def ladder(
    conv: Conversation, *, max_arrows: int = MAX_LADDER_ARROWS
) -> tuple[Figure, LadderDescription]:
    """Both hosts as columns, one arrow per segment going down the page in wire order.

    The vertical axis is the order of segments, not time (a capture has no arrival times, and
    equal spacing keeps labels apart); the time of each segment is written in the margin. A
    segment lost on the in-memory wire stops half-way with a cross.
    """
    shown = conv.records[:max_arrows]
    n = len(shown)
    fig = _figure(11.0, 1.6 + 0.42 * max(n, 1))
    ax = fig.add_axes((0.08, 0.02, 0.9, 0.9))
    x = {conv.client: 0.0, conv.server: 1.0}
    ax.set_xlim(-0.35, 1.35)
    ax.set_ylim(n + 0.5, -1.0)
    ax.axis("off")
    for ep, pos in x.items():
        role = "client" if ep == conv.client else "server"
        ax.plot([pos, pos], [-0.4, n + 0.3], color="0.35", linewidth=1.2)
        ax.text(pos, -0.6, f"{role}\n{ep}", ha="center", va="bottom", fontsize=9, weight="bold")
    labels: list[str] = []
    retransmissions = lost = 0
    for i, rec in enumerate(shown):
        x0, x1 = x.get(rec.src, 0.0), x.get(rec.dst, 1.0)
        y0, y1 = float(i), i + 0.75
        colour = draw_segment_arrow(ax, rec, (x0, y0), (x1, y1), scale=12, width=1.1)
        retransmissions += rec.retransmission
        lost += rec.lost
        label = segment_label(conv, rec)
        labels.append(label)
        ax.text(
            0.5 + 0.12 * (x1 - x0) if rec.lost else 0.5,  # clear of a lost segment's cross
            i + 0.3,
            label,
            ha="center",
            va="center",
            fontsize=7,
            color=colour,
            bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"},
        )
        ax.text(-0.33, y0, f"{_ms(conv, rec.time_us):.3f} ms", fontsize=7, va="center")
    title = conv.title or "TCP ladder"
    if len(conv.records) > n:
        title += f" (first {n} of {len(conv.records)} segments)"
    ax.set_title(title, fontsize=10)
    return fig, LadderDescription(
        (conv.client, conv.server),
        n,
        tuple(labels),
        retransmissions,
        lost,
        len(conv.records),
    )


# -- time-sequence graph --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeSequenceDescription:
    """What `time_sequence` drew for the bytes `sender` sent to `receiver`."""

    sender: str
    receiver: str
    data_segments: int  # vertical bars, first transmissions and retransmissions
    retransmissions: int  # of those, the ones drawn in the retransmission colour
    lost: int
    sack_blocks: int
    ack_points: int
    window_points: int
    data_phase_ms: tuple[float, float] | None = None  # the time axis, zoomed to the data


def busiest_direction(conv: Conversation) -> FlowHalf:
    """The direction that carried more payload (client to server on a tie)."""
    return "s2c" if conv.payload_bytes("s2c") > conv.payload_bytes("c2s") else "c2s"


def time_sequence(
    conv: Conversation, direction: FlowHalf | None = None
) -> tuple[Figure, TimeSequenceDescription]:
    """Stevens' time-sequence graph of one direction (TCP/IP Illustrated, vol. 1, ch. 21).

    Each data segment is a vertical bar from its first to its last byte (relative to the
    sender's ISN), at the time it was sent; retransmissions are red, with a red ring at the top
    (one segment's bar is a few pixels on the axis of a long transfer), and segments lost on the
    in-memory wire end in a cross. The receiver's cumulative ACK is a green step line, the right
    edge of the window it offered (ACK + window, scaled per RFC 7323) a yellow one above it, and
    each SACK block a short purple bar at the time of the ACK that carried it.
    """
    direction = direction or busiest_direction(conv)
    sender = conv.sender(direction)
    receiver = conv.peer(sender)
    shift = conv.window_shift.get(receiver, 0)
    data: list[list[tuple[float, float]]] = []
    rtx: list[list[tuple[float, float]]] = []
    lost_x: list[float] = []
    lost_y: list[float] = []
    sacks: list[list[tuple[float, float]]] = []
    ack_x: list[float] = []
    ack_y: list[float] = []
    win_y: list[float] = []
    for rec in conv.records:
        seg = rec.segment
        t = _ms(conv, rec.time_us)
        if rec.src == sender and seg.payload:
            start = conv.relative_seq(sender, seg.seq)
            bar = [(t, float(start)), (t, float(start + len(seg.payload)))]
            (rtx if rec.retransmission else data).append(bar)
            if rec.lost:
                lost_x.append(t)
                lost_y.append(float(start + len(seg.payload)))
        elif rec.src == receiver and seg.has_ack:
            ack = conv.relative_seq(sender, seg.ack)
            window = seg.window if seg.syn else seg.window << shift
            ack_x.append(t)
            ack_y.append(float(ack))
            win_y.append(float(ack + window))
            for left, right in sack_blocks(seg):
                sacks.append(
                    [
                        (t, float(conv.relative_seq(sender, left))),
                        (t, float(conv.relative_seq(sender, right))),
                    ]
                )

    fig = _figure(11.0, 6.5)
    ax = fig.add_subplot()
    offset = (conv.end_us - conv.start_us) / 1000 * 0.004  # SACK bars beside the ACK point
    sacks = [[(t + offset, a), (t + offset, b)] for (t, a), (_, b) in sacks]
    for name, bars, colour, width in (
        ("data", data, "black", 1.6),
        ("retransmission", rtx, "tab:red", 2.2),
        ("SACK block", sacks, "tab:purple", 2.0),
    ):
        if bars:
            coll = LineCollection(bars, colors=colour, linewidths=width, label=name, zorder=3)
            coll.set_gid(name.split()[0].lower())
            ax.add_collection(coll)
    if rtx:
        # a retransmitted segment is one MSS tall: on a graph of a long transfer its bar is a few
        # pixels, so a ring at its top makes each one findable (tcptrace marks them with an "R")
        (rings,) = ax.plot(
            [bar[1][0] for bar in rtx],
            [bar[1][1] for bar in rtx],
            "o",
            markerfacecolor="none",
            markeredgecolor="tab:red",
            markersize=8,
            label="_retransmission ring",
            zorder=4,
        )
        rings.set_gid("retransmission-ring")
    if lost_x:
        ax.plot(lost_x, lost_y, "x", color="tab:red", markersize=6, label="lost on the wire")
    if ack_x:
        (ack_line,) = ax.step(ack_x, ack_y, where="post", color="tab:green", label="ACK")
        ack_line.set_gid("ack")
        (win_line,) = ax.step(ack_x, win_y, where="post", color="goldenrod", label="ACK + window")
        win_line.set_gid("window")
    ax.autoscale_view()
    _clip_window(ax, data + rtx + sacks, ack_y, win_y)
    phase = _data_phase(data + rtx, ack_x, ack_y)
    if phase is not None:
        ax.set_xlim(*phase)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel(f"relative sequence number (bytes from {sender})")
    title = conv.title or "TCP time-sequence graph"
    ax.set_title(f"{title}: {sender} -> {receiver}", fontsize=10)
    ax.grid(True, linewidth=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    return fig, TimeSequenceDescription(
        sender,
        receiver,
        len(data) + len(rtx),
        len(rtx),
        len(lost_x),
        len(sacks),
        len(ack_x),
        len(win_y),
        phase,
    )


# An ACK that comes this many times the graph's usual step after whatever came before it (and
# at least PROMPT_FLOOR_MS) is a delayed one: the receiver waited, the transfer did not go on.
PROMPT_STEPS = 10
PROMPT_FLOOR_MS = 5.0


def _data_phase(
    bars: list[list[tuple[float, float]]], ack_x: list[float], ack_y: list[float]
) -> tuple[float, float] | None:
    """The time axis of a time-sequence graph: from the first data segment to the last prompt
    ACK of the data, with a margin. The handshake before, and the close after (a lost FIN's
    timeout) would otherwise squeeze the transfer into a corner of the graph, and so would the
    ACK of the last byte when it is a delayed one: a short last segment waits up to 200 ms for
    its ACK (RFC 1122 4.2.3.2), five times the length of a whole 100 kB transfer in notebook 4.

    The ACKs considered run up to the first that covers the last byte; of those, the last one
    that followed the event before it promptly ends the axis (a later delayed ACK still shows,
    as the ACK line's step at the right edge), and never before the last data segment."""
    if not bars:
        return None
    start = min(b[0][0] for b in bars)
    top = max(b[1][1] for b in bars)
    last_sent = max(b[0][0] for b in bars)  # a retransmission may cross that ACK
    covering = [t for t, a in zip(ack_x, ack_y, strict=True) if a >= top and t >= start]
    limit = min(covering) if covering else max([*ack_x, last_sent])
    acks = sorted(t for t in ack_x if start <= t <= limit)
    events = sorted({*(b[0][0] for b in bars), *acks})
    steps = [b - a for a, b in itertools.pairwise(events)]
    prompt = max(PROMPT_STEPS * statistics.median(steps), PROMPT_FLOOR_MS) if steps else 0.0
    end = last_sent
    for t in acks:
        i = bisect.bisect_left(events, t)  # events[i] == t; the event before it is events[i-1]
        if i and t - events[i - 1] <= prompt:
            end = max(end, t)
    margin = max((end - start) * 0.03, 0.5)
    return start - margin, end + margin


def _clip_window(
    ax: Axes, bars: list[list[tuple[float, float]]], acks: list[float], edges: list[float]
) -> None:
    """Keep the data readable when the window is far larger than what was sent: the window line
    then runs off the top, and a note says how high it goes."""
    tops = [b[1][1] for b in bars] + acks
    if not tops or not edges:
        return
    low, high = min([b[0][1] for b in bars] + acks), max(tops)
    limit = high + max(0.3 * (high - low), 1.0)
    if max(edges) > limit:
        ax.set_ylim(low - 0.05 * (limit - low), limit)
        ax.text(
            0.99,
            0.98,
            f"window edge up to {int(max(edges))}, above the top",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color="goldenrod",
        )


# -- state timeline -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateTimelineDescription:
    """The states each end went through, in order (its first state included)."""

    lanes: tuple[str, ...]
    sequences: tuple[tuple[str, ...], ...]
    inferred: bool

    def states_of(self, ep: str) -> tuple[str, ...]:
        return self.sequences[self.lanes.index(ep)]


def state_timeline(conv: Conversation) -> tuple[Figure, StateTimelineDescription]:
    """One lane per end, one coloured bar per state it held.

    The horizontal axis is ordinal: each state change gets its own column, labelled with its
    real time, because the interesting changes come in bursts (three at the same microsecond on
    a FIN) while TIME-WAIT lasts a minute; to scale, most of them would be invisible.
    """
    lanes = [ep for ep in (conv.client, conv.server) if ep]
    changes: list[StateChange] = sorted(
        (c for ep in lanes for c in conv.states.get(ep, [])), key=lambda c: c.time_us
    )
    slot = {id(c): i + 1 for i, c in enumerate(changes)}
    last_slot = len(changes) + 1
    fig = _figure(max(8.0, 1.1 * last_slot + 2), 1.4 + 0.9 * len(lanes))
    ax = fig.add_subplot()
    sequences: list[tuple[str, ...]] = []
    rotate = 90 if last_slot > 14 else 0
    for lane, ep in enumerate(lanes):
        mine = [c for c in changes if c.endpoint == ep]
        first = mine[0].old if mine else "CLOSED"
        names = [first] + [c.new for c in mine]
        sequences.append(tuple(names))
        starts = [0] + [slot[id(c)] for c in mine]
        ends = [*starts[1:], last_slot]
        for name, a, b in zip(names, starts, ends, strict=True):
            colour = STATE_COLOURS.get(name, "white")
            bars = ax.broken_barh(
                [(a, b - a)], (lane - 0.35, 0.7), facecolors=colour, edgecolor="0.3"
            )
            bars.set_gid("state")
            ax.text((a + b) / 2, lane, name, ha="center", va="center", fontsize=7, rotation=rotate)
    ticks = [0] + [slot[id(c)] for c in changes]
    tick_times = [conv.start_us] + [c.time_us for c in changes]
    digits = 3 if tick_times[-1] - tick_times[0] < 100_000 else 1
    ax.set_xticks(ticks)
    ax.set_xticklabels(
        [f"{_ms(conv, t):.{digits}f}" for t in tick_times], fontsize=7, rotation=45, ha="right"
    )
    ax.set_xlim(0, last_slot)
    ax.set_yticks(range(len(lanes)))
    roles = ["client", "server"]
    ax.set_yticklabels([f"{roles[i]}\n{ep}" for i, ep in enumerate(lanes)], fontsize=8)
    ax.set_ylim(len(lanes) - 0.4, -0.6)
    ax.set_xlabel("time of each state change (ms; one column per change, not to scale)")
    source = "inferred from the segments" if conv.states_inferred else "from the connections"
    ax.set_title(f"{conv.title or 'TCP states'}: states {source}", fontsize=10)
    return fig, StateTimelineDescription(tuple(lanes), tuple(sequences), conv.states_inferred)


# -- all three ----------------------------------------------------------------------------------


def save_pictures(conv: Conversation, path: str | Path) -> dict[str, Path]:
    """Draw the three pictures of `conv` and write them (see `picture_paths`)."""
    paths = picture_paths(path)
    figures = {
        "ladder": ladder(conv)[0],
        "tsg": time_sequence(conv)[0],
        "states": state_timeline(conv)[0],
    }
    return {kind: save(figures[kind], paths[kind]) for kind in KINDS}
