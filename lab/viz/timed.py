"""A ladder drawn to time: arrows from send to arrival, long idle gaps cut out with a break mark.

`lab.viz.ladder` spaces arrows by order, one row each, so it hides what time does: a 1 s
retransmission timeout looks like a 5 ms step, and a reordered segment looks on time. Here the
vertical axis is time. Each arrow leaves its sender at its send time and reaches the receiver at
its arrival time when that is known (the in-memory wire knows it), so a segment overtaken by a
later one crosses it; from a capture, which sees each frame at one point and one time, arrows
are short slants at the capture time. Two rules keep it readable, and the picture says where
they applied:

* rows that start at (nearly) the same instant are fanned out to one label height apart, so
  time is stretched there, never reordered;
* an idle gap much longer than the usual step (an RTO, TIME-WAIT) is cut to a fixed height and
  drawn as a break, labelled with the time it stood for.

`ladders_side_by_side` draws several conversations into one figure (one title each, readable
labels), in place of pasting separate images together.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lab.viz.pictures import MAX_LADDER_ARROWS, _figure, draw_segment_arrow, segment_label
from lab.viz.records import Conversation

ROW = 1.0  # one label's height, in axis units
BREAK_HEIGHT = 1.6  # what a cut idle gap is drawn as
BREAK_FACTOR = 12  # a gap this many times the median step (that many rows) is cut
CAPTURE_SLANT = 0.45  # the fall of an arrow whose arrival is unknown
INCH_PER_ROW = 0.42
HEAD = 2.4  # rows above the first arrow: the hosts' names, under the title


@dataclass(frozen=True, slots=True)
class TimedLadderDescription:
    """What `timed_ladder` drew. `crossings`: pairs of arrows in one direction that cross on
    the drawing (the one sent first arrived last: reordering); `breaks`: idle gaps cut out, as
    (from, to) in ms."""

    hosts: tuple[str, str]
    arrows: int
    labels: tuple[str, ...]
    crossings: int
    breaks: tuple[tuple[float, float], ...]
    retransmissions: int
    lost: int
    total_segments: int


@dataclass(slots=True)
class _TimeAxis:
    """Microseconds to rows: piecewise linear, stretched where sends crowd, cut where idle."""

    knots: list[int]
    ys: list[float]
    breaks: list[tuple[int, int, float]]  # (from us, to us, y of the break's middle)

    def y(self, t: int) -> float:
        knots, ys = self.knots, self.ys
        if t <= knots[0]:
            return ys[0]
        for i in range(1, len(knots)):
            if t <= knots[i]:
                span = knots[i] - knots[i - 1]
                frac = (t - knots[i - 1]) / span if span else 1.0
                return ys[i - 1] + frac * (ys[i] - ys[i - 1])
        return ys[-1]


def _time_axis(sends: list[int], arrivals: list[int]) -> tuple[_TimeAxis, dict[int, float]]:
    """The axis, and the row of each send (by index into `sends`, which is in send order)."""
    times = sorted(set(sends) | set(arrivals))
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    median = statistics.median(steps) if steps else 1
    scale = ROW / max(median, 1)  # the usual step is one row
    cut = BREAK_FACTOR * median
    by_time: dict[int, list[int]] = {}
    for i, t in enumerate(sends):
        by_time.setdefault(t, []).append(i)
    knots: list[int] = []
    ys: list[float] = []
    breaks: list[tuple[int, int, float]] = []
    rows: dict[int, float] = {}
    y = 0.0
    last_row = -ROW
    for k, t in enumerate(times):
        if k:
            gap = t - times[k - 1]
            if gap > cut:
                breaks.append((times[k - 1], t, y + BREAK_HEIGHT / 2))
                y += BREAK_HEIGHT
            else:
                y += gap * scale
        if t in by_time:
            y = max(y, last_row + ROW)  # a label's room after the previous one
        knots.append(t)
        ys.append(y)
        for n, i in enumerate(by_time.get(t, [])):
            rows[i] = y + n * ROW  # sends at one instant, fanned out
            last_row = rows[i]
        if t in by_time:
            y = last_row
            knots.append(t)
            ys.append(y)
    return _TimeAxis(knots, ys, breaks), rows


def _crossings(arrows: Sequence[tuple[str, float, float]]) -> int:
    """Pairs of drawn arrows, (direction, start y, end y), that cross on the picture: one
    direction's arrows all span the same two lifelines, so two cross exactly when the one that
    starts higher ends lower. Counted on the drawing, not on the records, so the number is what
    a reader sees: a fan-out or a minimum slant that hid a reordering would show here."""
    count = 0
    for i, (d1, top1, end1) in enumerate(arrows):
        for d2, top2, end2 in arrows[i + 1 :]:
            if d1 == d2 and (top1 - top2) * (end1 - end2) < 0:
                count += 1
    return count


def draw_timed_ladder(
    ax: Axes,
    conv: Conversation,
    *,
    max_arrows: int = MAX_LADDER_ARROWS,
    title: str | None = None,
    rows: float | None = None,
) -> TimedLadderDescription:
    """Draw the time-scaled ladder of `conv` into `ax` (see the module's docstring); `rows`
    makes several ladders in one figure share one scale (the tallest one's)."""
    shown = conv.records[:max_arrows]
    sends = [r.time_us for r in shown]
    arrivals = [r.arrival_us for r in shown if r.arrival_us is not None and not r.lost]
    axis, send_rows = _time_axis(sends or [conv.start_us], arrivals)
    bottom = max([*send_rows.values(), *(axis.y(t) for t in arrivals), 0.0]) + 1.0
    x = {conv.client: 0.0, conv.server: 1.0}
    ax.set_xlim(-0.36, 1.36)
    ax.set_ylim(max(bottom + 0.3, (rows or 0.0) - HEAD), -HEAD)
    ax.axis("off")
    for ep, pos in x.items():
        role = "client" if ep == conv.client else "server"
        ax.plot([pos, pos], [-0.5, bottom], color="0.35", linewidth=1.2)
        ax.text(pos, -0.7, f"{role}\n{ep}", ha="center", va="bottom", fontsize=9, weight="bold")
    for idle_from, idle_to, middle in axis.breaks:
        for pos in x.values():  # a zigzag across each lifeline
            ax.plot(
                [pos - 0.03, pos + 0.03, pos - 0.03, pos + 0.03],
                [middle - 0.45, middle - 0.15, middle + 0.15, middle + 0.45],
                color="0.35",
                linewidth=1.0,
                gid="break",
            )
        ax.text(
            0.5,
            middle,
            f"≈ {(idle_to - idle_from) / 1000:.1f} ms idle (not to scale)",
            ha="center",
            va="center",
            fontsize=8,
            style="italic",
            color="0.4",
        )
    labels: list[str] = []
    drawn: list[tuple[str, float, float]] = []  # arrows that reach the other lifeline
    retransmissions = lost = 0
    for i, rec in enumerate(shown):
        x0, x1 = x.get(rec.src, 0.0), x.get(rec.dst, 1.0)
        y0 = send_rows[i]
        known = rec.arrival_us is not None and not rec.lost
        y1 = axis.y(rec.arrival_us) if known and rec.arrival_us is not None else y0 + CAPTURE_SLANT
        y1 = max(y1, y0 + 0.15)  # never flat: the direction must show
        colour = draw_segment_arrow(ax, rec, (x0, y0), (x1, y1), scale=11, width=1.0)
        if not rec.lost:
            drawn.append((rec.direction, y0, y1))
        retransmissions += rec.retransmission
        lost += rec.lost
        label = segment_label(conv, rec).replace("\n", "  ")
        labels.append(label)
        inward = 0.03 if x1 > x0 else -0.03
        ax.text(
            x0 + inward,
            y0 - 0.12,
            label,
            ha="left" if x1 > x0 else "right",
            va="bottom",
            fontsize=7,
            color=colour,
            bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"},
        )
        ax.text(-0.35, y0, f"{(rec.time_us - conv.start_us) / 1000:.3f} ms", fontsize=7)
    heading = title if title is not None else (conv.title or "TCP ladder") + ", to time"
    if len(conv.records) > len(shown):
        heading += f" (first {len(shown)} of {len(conv.records)} segments)"
    ax.set_title(heading, fontsize=10)
    return TimedLadderDescription(
        (conv.client, conv.server),
        len(shown),
        tuple(labels),
        _crossings(drawn),
        tuple(((a - conv.start_us) / 1000, (b - conv.start_us) / 1000) for a, b, _ in axis.breaks),
        retransmissions,
        lost,
        len(conv.records),
    )


def _rows_needed(conv: Conversation, max_arrows: int) -> float:
    shown = conv.records[:max_arrows]
    sends = [r.time_us for r in shown] or [conv.start_us]
    arrivals = [r.arrival_us for r in shown if r.arrival_us is not None and not r.lost]
    axis, rows = _time_axis(sends, arrivals)
    return max([*rows.values(), *(axis.y(t) for t in arrivals), 0.0]) + 1.3 + HEAD


def timed_ladder(
    conv: Conversation, *, max_arrows: int = MAX_LADDER_ARROWS
) -> tuple[Figure, TimedLadderDescription]:
    """The time-scaled ladder of `conv` as a figure of its own."""
    fig = _figure(11.0, 0.8 + INCH_PER_ROW * _rows_needed(conv, max_arrows))
    ax = fig.add_axes((0.08, 0.02, 0.9, 0.93))
    return fig, draw_timed_ladder(ax, conv, max_arrows=max_arrows)


def ladders_side_by_side(
    convs: Sequence[Conversation],
    titles: Sequence[str],
    *,
    max_arrows: int = MAX_LADDER_ARROWS,
) -> tuple[Figure, list[TimedLadderDescription]]:
    """Time-scaled ladders next to each other in one figure, one title each, at full size."""
    rows = max(_rows_needed(c, max_arrows) for c in convs)
    fig = _figure(8.0 * len(convs), 0.8 + INCH_PER_ROW * rows)
    descriptions = []
    for i, (conv, title) in enumerate(zip(convs, titles, strict=True)):
        ax = fig.add_axes((i / len(convs) + 0.04 / len(convs), 0.02, 0.92 / len(convs), 0.93))
        descriptions.append(
            draw_timed_ladder(ax, conv, max_arrows=max_arrows, title=title, rows=rows)
        )
    return fig, descriptions
