"""The timeline in a terminal: each op's attempts as bars on one time axis (rich)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..observe.timeline import Axis, Timeline

COLOURS = {
    "ok": "green",
    "failed": "red",
    "unknown": "yellow",
    "ongoing": "cyan",
    "running": "blue",
    # a workflow's waits (drawn ░, ending in ◆ where a signal came, ○ where it timed out)
    "signalled": "cyan",
    "timed_out": "yellow",
    "asleep": "blue",
    "waiting": "blue",
}
_WAIT_END = {"signalled": "◆", "timed_out": "○"}
WIDTH = 60
GAP = 3  # cells standing for a long idle stretch (drawn ┆), as the dashboard cuts them
MARKED = ("status", "stuck", "requested", "timeout", "force_end", "signal", "recorded", "pivot",
          "undo")  # fmt: skip
"""The marks drawn, each on a row of its own."""


def _axis_label(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _cell(axis: Axis, at: float, width: int) -> int:
    return min(width - 1, max(0, int(axis.x(at))))


def draw(t: Timeline, width: int = WIDTH) -> Table:
    """One row per op: its name, its attempts drawn to scale, and what they ended in.
    Compensations are marked with an arrow back, and come after the forward path.
    A workflow's wait is drawn ░ from its start to its end (◆: a signal came; ○: it
    timed out), the stretches it was let go on a row of their own (─), and its
    signals' arrivals, recorded values and pivot as marks (▲).
    Long idle stretches (a retry minutes later, a stuck wait) are cut short and
    drawn ┆, as on the dashboard; the title says how long each stood for."""
    axis = Axis(t.start, t.end, t.idle(), 0.0, float(width), GAP)
    cut_cells: set[int] = set()
    for a, _ in axis.cuts:
        x = axis.x(a)
        cut_cells.update(range(int(x), min(width, max(int(x) + 1, int(x + axis.gap)))))
    title = f"timeline ({_axis_label(t.seconds)} from first to last"
    if axis.cuts:
        title += "; ┆ cut short: " + ", ".join(_axis_label(b - a) for a, b in axis.cuts)
    table = Table(title=title + ")", show_lines=False, box=None, pad_edge=False)
    end = _axis_label(t.seconds)
    table.add_column("op", no_wrap=True)
    table.add_column("0" + end.rjust(width - 1), width=width, no_wrap=True)
    table.add_column("attempts", overflow="fold")
    blank = [("┆", "dim") if i in cut_cells else (" ", "") for i in range(width)]
    for lane in t.lanes:
        cells = list(blank)
        for bar in lane.bars:
            first, last = _cell(axis, bar.start, width), _cell(axis, bar.end, width)
            style = COLOURS.get(bar.outcome, "white")
            for i in range(first, last + 1):
                if not bar.wait:
                    cells[i] = ("█", style)
                elif i not in cut_cells:
                    cells[i] = ("░", style)
            if bar.outcome in ("failed", "unknown"):
                cells[last] = ("✗", f"bold {style}")
            elif bar.outcome in _WAIT_END:
                cells[last] = (_WAIT_END[bar.outcome], f"bold {style}")
        line = Text()
        for char, style in cells:
            line.append(char, style=style)
        arrow = "↩ " if lane.backward else "  "
        label = lane.label or f"{lane.branch}.{lane.op}"
        name = Text(f"{arrow}{label}", style="magenta" if lane.backward else "")
        outcomes = Text()
        for bar in lane.bars:
            said = f"{bar.label} {_axis_label(bar.seconds)}" if bar.wait else (
                f"{bar.outcome} {bar.seconds * 1000:.1f}ms"
            )  # fmt: skip
            outcomes.append(f"{said} ", style=COLOURS.get(bar.outcome, ""))
        table.add_row(name, line, outcomes)
    if t.let_go:
        cells = list(blank)
        for g in t.let_go:
            for i in range(_cell(axis, g.start, width), _cell(axis, g.end, width) + 1):
                if i not in cut_cells:
                    cells[i] = ("─", "bold")
        line = Text()
        for char, style in cells:
            line.append(char, style=style)
        said = ", ".join(
            f"{_axis_label(g.seconds)}{'' if g.back else ' (not back yet)'}" for g in t.let_go
        )
        table.add_row(Text("  let go (no task held)", style="dim"), line, Text(said, style="dim"))
    for mark in t.marks:
        if mark.kind in MARKED:
            line = Text(" " * _cell(axis, mark.at, width) + "▲", style="bold")
            label = mark.label if len(mark.label) <= 40 else mark.label[:39] + "…"
            table.add_row(Text(f"  {mark.kind}", style="dim"), line, Text(label, style="dim"))
    return table
