"""The timeline in a terminal: each op's attempts as bars on one time axis (rich)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from .observe.timeline import Timeline

COLOURS = {
    "ok": "green",
    "failed": "red",
    "unknown": "yellow",
    "ongoing": "cyan",
    "running": "blue",
}
WIDTH = 60


def _axis_label(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _cell(t: Timeline, at: float, width: int) -> int:
    return min(width - 1, int(t.position(at) * width))


def draw(t: Timeline, width: int = WIDTH) -> Table:
    """One row per op: its name, its attempts drawn to scale, and what they ended in.
    Compensations are marked with an arrow back, and come after the forward path."""
    table = Table(
        title=f"timeline ({_axis_label(t.seconds)} from first to last)",
        show_lines=False,
        box=None,
        pad_edge=False,
    )
    end = _axis_label(t.seconds)
    table.add_column("op", no_wrap=True)
    table.add_column("0" + end.rjust(width - 1), width=width, no_wrap=True)
    table.add_column("attempts", overflow="fold")
    for lane in t.lanes:
        cells: list[tuple[str, str]] = [(" ", "")] * width
        for bar in lane.bars:
            first, last = _cell(t, bar.start, width), _cell(t, bar.end, width)
            style = COLOURS.get(bar.outcome, "white")
            for i in range(first, last + 1):
                cells[i] = ("█", style)
            if bar.outcome in ("failed", "unknown"):
                cells[last] = ("✗", f"bold {style}")
        line = Text()
        for char, style in cells:
            line.append(char, style=style)
        arrow = "↩ " if lane.backward else "  "
        name = Text(f"{arrow}{lane.branch}.{lane.op}", style="magenta" if lane.backward else "")
        outcomes = Text()
        for bar in lane.bars:
            outcomes.append(
                f"{bar.outcome} {bar.seconds * 1000:.1f}ms ", style=COLOURS.get(bar.outcome, "")
            )
        table.add_row(name, line, outcomes)
    for mark in t.marks:
        if mark.kind in ("status", "stuck", "requested", "timeout", "force_end"):
            line = Text(" " * _cell(t, mark.at, width) + "▲", style="bold")
            label = mark.label if len(mark.label) <= 40 else mark.label[:39] + "…"
            table.add_row(Text(f"  {mark.kind}", style="dim"), line, Text(label, style="dim"))
    return table
