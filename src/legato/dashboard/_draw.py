"""A timeline as SVG geometry: where each lane, bar, tick and mark goes.

Pure: it turns ``observe.timeline.Timeline`` into numbers and CSS classes, and
the ``_timeline.html`` template writes them out as SVG (escaped like any other
text). The SVG is drawn on a fixed 1000-unit-wide canvas and scales with the page.

The axis (``observe.timeline.Axis``) is linear except across long idle stretches
(a stuck transaction waiting for an operator, a retry a minute later), which are
cut short and labelled with the time they stand for: otherwise the attempts on
either side would shrink to slivers. A workflow's wait is a bar of its own kind,
labelled with how it ended; the stretches it was let go are a lane at the bottom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..observe.timeline import Axis, Bar, Mark, Timeline
from ._format import clock, duration

WIDTH = 1000
LABELS = 270  # the left column holding each lane's name and status
RIGHT = 16
TOP = 40  # the axis's labels and the marks' flags
LANE = 24
BAR = 14
MIN_BAR = 3  # an attempt of a millisecond is still visible
BAND = 18  # the "compensation path" caption above its lanes
GAP = 44  # the width of a cut idle stretch
LABEL_CHARS = 30

_MARK_CLASS = {
    "stuck": "stuck",
    "requested": "requested",
    "operator_retry": "requested",
    "abort_requested": "requested",
    "force_end": "requested",
    "timeout": "timeout",
    "status": "status",
    "signal": "signal",
    "recorded": "recorded",
    "pivot": "pivot",
    "undo": "requested",  # a compensate_since: the compensation path's colour
}
LET_GO = "let go (no task held)"


@dataclass(frozen=True, slots=True)
class DrawnLane:
    y: float
    label: str
    title: str
    status: str
    backward: bool
    branch: str
    op: str


@dataclass(frozen=True, slots=True)
class DrawnBar:
    x: float
    y: float
    width: float
    css: str  # "bar ok", "bar backward failed", "bar wait signalled"...
    outcome: str
    op: str
    title: str
    text: str | None = None  # a wait's label, written in its lane


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str
    anchor: str = "middle"  # "end" near the right edge, so that the label is not cut off


@dataclass(frozen=True, slots=True)
class Cut:
    """An idle stretch drawn short."""

    x: float
    width: float
    label: str


@dataclass(frozen=True, slots=True)
class DrawnMark:
    x: float
    css: str
    label: str


@dataclass(frozen=True, slots=True)
class DrawnLetGo:
    """A stretch a workflow was let go, on the lane ``Drawing.let_go_y``."""

    x: float
    width: float
    title: str


@dataclass(slots=True)
class Drawing:
    width: int
    height: float
    plot_left: float
    plot_right: float
    lanes: list[DrawnLane] = field(default_factory=list)
    bars: list[DrawnBar] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)
    marks: list[DrawnMark] = field(default_factory=list)
    backward_from: float | None = None  # where the compensation path's caption begins
    let_go: list[DrawnLetGo] = field(default_factory=list)
    let_go_y: float | None = None  # the lane of the stretches let go, if any

    @property
    def waits(self) -> bool:
        return any(b.text is not None for b in self.bars)

    @property
    def bottom(self) -> float:
        return self.height - 8


def draw(timeline: Timeline) -> Drawing:
    """Lay ``timeline`` out on the canvas."""
    left, right = float(LABELS), float(WIDTH - RIGHT)
    axis = Axis(timeline.start, timeline.end, timeline.idle(), left, right, GAP)
    has_backward = any(lane.backward for lane in timeline.lanes)
    rows = max(1, len(timeline.lanes) + (1 if timeline.let_go else 0))
    height = TOP + LANE * rows + (BAND if has_backward else 0) + 16
    out = Drawing(WIDTH, height, left, right)

    y = float(TOP)
    for lane in timeline.lanes:
        if lane.backward and out.backward_from is None:
            y = _let_go(out, timeline, axis, y)  # with the forward path, above the band
            out.backward_from = y
            y += BAND
        name = lane.label or f"{lane.branch} · {lane.op}"
        # what fits left of the lane's status (monospace 12 px, bold on the way back)
        room = (LABELS - 18 - 6.2 * len(lane.status)) / (7.6 if lane.backward else 7.3)
        chars = max(8, min(LABEL_CHARS, int(room)))
        label = name if len(name) <= chars else name[: chars - 1] + "…"
        out.lanes.append(
            DrawnLane(y, label, name, lane.status, lane.backward, lane.branch, lane.op)
        )
        for bar in lane.bars:
            start = axis.x(bar.start)
            width = max(float(MIN_BAR), axis.x(bar.end) - start)
            start = min(start, right - width)
            out.bars.append(
                DrawnBar(
                    round(start, 2),
                    y + (LANE - BAR) / 2,
                    round(width, 2),
                    _bar_class(bar),
                    bar.outcome,
                    bar.op,
                    _bar_title(bar),
                    bar.label if bar.wait else None,
                )
            )
        y += LANE
    if out.let_go_y is None:
        _let_go(out, timeline, axis, y)
    out.ticks = _ticks(timeline.start, axis)
    out.cuts = [Cut(round(axis.x(a), 2), round(axis.gap, 2), duration(b - a)) for a, b in axis.cuts]
    out.marks = [_mark(m, axis.x(m.at)) for m in timeline.marks]
    return out


def _let_go(out: Drawing, timeline: Timeline, axis: Axis, y: float) -> float:
    """The lane of the stretches let go, at ``y`` (if any); where the next lane goes."""
    if not timeline.let_go:
        return y
    out.let_go_y = y
    for g in timeline.let_go:
        start = axis.x(g.start)
        width = max(float(MIN_BAR), axis.x(g.end) - start)
        back = "then resumed" if g.back else "not resumed yet"
        title = f"let go for {duration(g.seconds)} from {clock(g.start)} UTC, {back}"
        x = round(min(start, axis.right - width), 2)
        out.let_go.append(DrawnLetGo(x, round(width, 2), title))
    return y + LANE


def nice_step(span: float, most: int = 8) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving at most ``most`` ticks."""
    raw = span / most
    magnitude = 10 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def _ticks(start: float, axis: Axis, spacing: float = 56) -> list[Tick]:
    """Round offsets on the stretches drawn to scale, ``spacing`` apart at least: from
    the start on the first stretch; on each stretch after a cut, its clock time (UTC)
    and then offsets from it, since an offset from the start would read "+10 min"
    all along."""
    pieces = axis.scaled_pieces()
    scaled = sum(b - a for a, b in pieces)
    if scaled <= 0:
        return [Tick(round(axis.left, 2), "0")]
    step = nice_step(scaled)
    out: list[Tick] = []
    room = 0.0  # how far the last label reaches past its tick
    for i, (a, b) in enumerate(pieces):
        origin = start
        if i > 0:
            origin = a
            if axis.x(a) > axis.right - 80:
                continue  # a stretch at the very end (now, for a transaction still open)
            out.append(Tick(round(axis.x(a), 2), clock(a), "start"))
            room = 2 * spacing
        k = 0 if i == 0 else 1
        while origin + k * step <= b + 1e-9:
            x = axis.x(origin + k * step)
            if not out or x - out[-1].x >= spacing + room:
                anchor = "end" if x > axis.right - spacing / 2 else "middle"
                out.append(
                    Tick(round(x, 2), "0" if i == k == 0 else "+" + duration(k * step), anchor)
                )
                room = 0.0
            k += 1
    return out


def _bar_class(bar: Bar) -> str:
    if bar.wait:
        return f"bar wait {bar.outcome}"
    return f"bar {'backward ' if bar.backward else ''}{bar.outcome}"


def _bar_title(bar: Bar) -> str:
    if bar.wait:
        return f"{bar.branch}: {bar.label}, after {duration(bar.seconds)}"
    attempt = f" attempt {bar.attempt}" if bar.attempt is not None else ""
    text = f"{bar.branch} {bar.op}{attempt}: {bar.outcome}, {duration(bar.seconds)}"
    return f"{text}: {bar.error}" if bar.error else text


def _mark(m: Mark, x: float) -> DrawnMark:
    return DrawnMark(round(x, 2), f"mark {_MARK_CLASS.get(m.kind, 'other')}", m.label)
