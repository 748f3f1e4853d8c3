"""The barrier's SQL, and the commands its pure plans yield to a driver.

Each dialect's queries live in ``sql/<dialect>.sql``: a query starts at a line
``-- name: some_name`` and runs to the next one; a query may hold several
statements, each ending with ``;`` at the end of a line. Parameters are written
``:named`` and rendered on load into the placeholder style of each driver.

A *plan* is a generator that yields commands (:class:`Execute`, :class:`Fetch`,
:class:`Commit`) and receives each one's reply; it does no I/O itself, so one
plan serves every sync and asyncio driver.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal, TypeAlias, TypeVar

Dialect = Literal["postgresql", "mysql", "sqlite"]
"""The SQL dialects the barrier speaks."""

ParamStyle = Literal["named", "pyformat", "numeric"]
"""``:name`` (sqlite3, SQLAlchemy), ``%(name)s`` (psycopg, PyMySQL, aiomysql), ``$1`` (asyncpg)."""

Args: TypeAlias = Mapping[str, object] | Sequence[object]

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_COMMENT = re.compile(r"^\s*--.*$\n?", re.MULTILINE)
_STATEMENT_END = re.compile(r";\s*$", re.MULTILINE)
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


@dataclass(frozen=True, slots=True)
class Execute:
    """Run a named query; the reply is the number of rows it changed."""

    query: str
    params: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Fetch:
    """Run a named query; the reply is its first row, or None."""

    query: str
    params: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit what was done so far and begin the next transaction; the reply is None."""


Command: TypeAlias = Execute | Fetch | Commit
Reply: TypeAlias = int | tuple[object, ...] | None
R = TypeVar("R")
Plan: TypeAlias = Generator[Command, Reply, R]


def rowcount(reply: Reply) -> int:
    """The reply to an :class:`Execute`."""
    if not isinstance(reply, int):
        raise TypeError(f"expected a row count, got {reply!r}")
    return reply


def first_row(reply: Reply) -> tuple[object, ...] | None:
    """The reply to a :class:`Fetch`."""
    if reply is not None and not isinstance(reply, tuple):
        raise TypeError(f"expected a row, got {reply!r}")
    return reply


@cache
def _queries(dialect: Dialect) -> dict[str, str]:
    text = resources.files(__package__).joinpath("sql", f"{dialect}.sql").read_text()
    parts = _NAME.split(text)
    return {parts[i]: _COMMENT.sub("", parts[i + 1]).strip() for i in range(1, len(parts), 2)}


@cache
def _rendered(dialect: Dialect, style: ParamStyle, query: str) -> tuple[tuple[str, ...], ...]:
    """Each statement of a query as (sql, parameter name, parameter name, ...)."""
    statements = [s.strip() for s in _STATEMENT_END.split(_queries(dialect)[query])]
    return tuple(_render(s, style) for s in statements if s)


def _render(sql: str, style: ParamStyle) -> tuple[str, ...]:
    names: list[str] = []

    def placeholder(m: re.Match[str]) -> str:
        name = m.group(1)
        if style == "named":
            return m.group(0)
        if style == "pyformat":
            return f"%({name})s"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    if style == "pyformat":
        sql = sql.replace("%", "%%")
    return (_PARAM.sub(placeholder, sql), *names)


def statements(
    dialect: Dialect, style: ParamStyle, query: str, params: Mapping[str, object]
) -> list[tuple[str, Args]]:
    """The named query's statements, ready for a driver: (sql, arguments) each."""
    out: list[tuple[str, Args]] = []
    for sql, *names in _rendered(dialect, style, query):
        out.append((sql, [params[n] for n in names] if style == "numeric" else params))
    return out
