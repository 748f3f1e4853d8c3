"""Tables that fit the terminal: one line a row, the least important columns cut short.

Each column says whether it may be cut (``keep=False``) and how far (``least``); the
columns that make a row findable (a gid, a status) are never cut. When the rows are
wider than the terminal, the columns that may be cut give up their width, the least
important first (``give``: lower gives first), each down to its ``least``, and what is
cut ends in ``…``. Where that is not enough, the columns that may be left out
(``drop``: a time, say, which cut short means nothing) are, in the same order. With
``wide``, nothing is cut: the table is as wide as its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

GAP = 3  # between columns: a rule, with a cell of padding each side
EDGES = 4  # the rules at the edges, with their padding


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    keep: bool = False  # never cut: the gid, the status
    least: int = 6  # cut no narrower than this
    give: int = 0  # which gives up its width first: lower first
    drop: bool = False  # left out where cutting the others is not enough
    style: str = ""
    justify: JustifyMethod = "left"


Cell = str | Text


def _width(cell: Cell) -> int:
    text = cell if isinstance(cell, Text) else Text(cell)
    return max((Text(line).cell_len for line in text.plain.split("\n")), default=0)


def widths(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], room: int) -> list[int]:
    """Each column's width so that the rows fit in ``room`` cells (as far as the columns
    that may be cut can give); 0: the column is left out."""
    full = [max([len(c.name), *(_width(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    out = list(full)
    over = sum(out) + GAP * (len(columns) - 1) + EDGES - room
    givers = sorted((i for i, c in enumerate(columns) if not c.keep), key=lambda i: columns[i].give)
    for i in givers:
        if over <= 0:
            break
        least = min(out[i], max(columns[i].least, 1))
        given = min(over, out[i] - least)
        out[i] -= given
        over -= given
    for i in givers:
        if over <= 0:
            break
        if columns[i].drop:
            over -= out[i] + GAP
            out[i] = 0
    for i in reversed(givers):  # what a column left out made room for, the cut get back
        if over >= 0:
            break
        if out[i]:
            back = min(-over, full[i] - out[i])
            out[i] += back
            over += back
    return out


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    room: int | None,
    title: str | None = None,
) -> Table:
    """The table, fitted to ``room`` cells (``None``: as wide as its rows)."""
    sizes = widths(columns, rows, 1 << 30 if room is None else room)
    t = Table(title=title)
    shown = [i for i, size in enumerate(sizes) if size > 0]
    for i in shown:
        c, size = columns[i], sizes[i]
        t.add_column(
            c.name,
            width=size,
            no_wrap=True,
            overflow="ellipsis",
            style=c.style,
            justify=c.justify,
        )
    for r in rows:
        t.add_row(*(r[i] for i in shown))
    return t


def console(wide: bool) -> Console:
    """The terminal's console; with ``wide``, one that never folds a line (the tables
    are as wide as their rows, and so is every line)."""
    return Console(width=100_000, soft_wrap=True) if wide else Console()


def room(out: Console, wide: bool) -> int | None:
    return None if wide else out.width
