"""The timeline in a terminal: each op's attempts as bars on one time axis (rich)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from ..observe.timeline import Axis, Bar, Lane, Timeline

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
    "skipped": "dim",  # a flow's redelivery, skipped by its inbox
}
_WAIT_END = {"signalled": "◆", "timed_out": "○"}
WIDTH = 60
MIN_BARS = 20
LET_GO = "  let go (no task held)"
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


def _said(bar: Bar) -> str:
    if bar.wait:
        return f"{bar.label} {_axis_label(bar.seconds)}"
    return f"{bar.outcome} {_axis_label(bar.seconds)}"


def _outcomes(lane: Lane, room: int | None) -> Text:
    """What the lane's attempts ended in; where that does not fit in ``room``, how many
    there were and the last one's, whole."""
    parts = [(_said(b), COLOURS.get(b.outcome, "")) for b in lane.bars]
    if room is not None and len(parts) > 1 and len(" ".join(p for p, _ in parts)) > room:
        last, style = parts[-1]
        return Text.assemble((f"{len(parts)} tries: ", "dim"), (last, style))
    text = Text()
    for i, (said, style) in enumerate(parts):
        text.append(("" if i == 0 else " ") + said, style=style)
    return text


def _name(lane: Lane) -> Text:
    arrow = "↩ " if lane.backward else "  "
    label = lane.label or f"{lane.branch}.{lane.op}"
    return Text(f"{arrow}{label}", style="magenta" if lane.backward else "")


def layout(t: Timeline, room: int | None) -> tuple[int, int, int | None]:
    """The widths of the names, the bars and the outcomes in ``room`` cells (``None``:
    as wide as they are, the bars ``WIDTH``). The outcomes are kept whole (the last
    attempt's at least), then the names, the bars take what is left (``MIN_BARS`` at
    least: in a very narrow terminal the names are cut)."""
    names = max([len("op"), *(_name(lane).cell_len for lane in t.lanes)], default=2)
    names = max([names, *(len(f"  {m.kind}") for m in t.marks if m.kind in MARKED)])
    names = max(names, len(LET_GO)) if t.let_go else names
    if room is None:
        return names, WIDTH, None
    whole = max([len("attempts"), *(_outcomes(lane, 1 << 30).cell_len for lane in t.lanes)])
    least = max([len("attempts"), *(_outcomes(lane, 0).cell_len for lane in t.lanes)])
    outcomes = whole if whole <= max(least, room // 3) else least
    names = max(16, min(names, room - outcomes - 4 - MIN_BARS))
    bars = min(WIDTH, max(MIN_BARS, room - names - outcomes - 4))
    return names, bars, max(8, room - names - bars - 4)


def draw(t: Timeline, room: int | None = None) -> Table:
    """One row per op: its name, its attempts drawn to scale, and what they ended in.
    Compensations are marked with an arrow back, and come after the forward path.
    A workflow's wait is drawn ░ from its start to its end (◆: a signal came; ○: it
    timed out), the stretches it was let go on a row of their own (─), and its
    signals' arrivals, recorded values and pivot as marks (▲).
    Long idle stretches (a retry minutes later, a stuck wait) are cut short and
    drawn ┆, as on the dashboard; the title says how long each stood for."""
    names, width, outcomes = layout(t, room)
    axis = Axis(t.start, t.end, t.idle(), 0.0, float(width), GAP)
    cut_cells: set[int] = set()
    for a, _ in axis.cuts:
        x = axis.x(a)
        cut_cells.update(range(int(x), min(width, max(int(x) + 1, int(x + axis.gap)))))
    title = f"timeline ({_axis_label(t.seconds)} from first to last"
    if axis.cuts:
        title += "; ┆ cut short: " + ", ".join(_axis_label(b - a) for a, b in axis.cuts)
    table = Table(
        title=title + ")",
        show_lines=False,
        box=None,
        pad_edge=False,
        title_justify="left",
        title_style="bold",
    )
    end = _axis_label(t.seconds)
    table.add_column("op", width=names, no_wrap=True, overflow="ellipsis")
    table.add_column("0" + end.rjust(width - 1), width=width, no_wrap=True)
    table.add_column("attempts", width=outcomes, no_wrap=True, overflow="ellipsis")
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
        table.add_row(_name(lane), line, _outcomes(lane, outcomes))
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
        table.add_row(Text(LET_GO, style="dim"), line, Text(said, style="dim"))
    for mark in t.marks:
        if mark.kind in MARKED:
            line, rest = _mark_line(_cell(axis, mark.at, width), width, mark.label)
            table.add_row(Text(f"  {mark.kind}", style="dim"), line, Text(rest, style="dim"))
    return table


def _mark_line(at: int, width: int, label: str) -> tuple[Text, str]:
    """A mark's row: ▲ where it happened, its label beside it on whichever side has the
    room (what does not fit there goes on in the attempts' column)."""
    right, left = width - at - 2, at - 1
    line = Text(" " * at)
    line.append("▲", style="bold")
    if right >= min(len(label), 8) or (right >= left and right > 0):
        shown = label[:right]
        if len(shown) < len(label) and " " in shown:  # go on in the next column at a word
            shown = shown[: shown.rindex(" ")]
        line.append(" " + shown, style="dim")
        return line, label[len(shown) :].lstrip()
    if len(label) <= left or right < 8:
        shown = label if len(label) <= left else label[: left - 1] + "…"
        return Text(" " * (at - len(shown) - 1) + shown + " ", style="dim") + line[at:], ""
    return line, label
