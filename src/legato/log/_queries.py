"""Named SQL queries, kept as SQL in ``sql/<backend>/queries.sql``.

A query starts at a line ``-- name: some_name`` and runs to the next one.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def queries(backend: str) -> dict[str, str]:
    text = resources.files(__package__).joinpath("sql", backend, "queries.sql").read_text()
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}


def schema(backend: str) -> str:
    return resources.files(__package__).joinpath("sql", backend, "schema.sql").read_text()


@cache
def migrations(backend: str) -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of each numbered migration, in order."""
    folder = resources.files(__package__).joinpath("sql", backend, "migrations")
    out = []
    for entry in folder.iterdir():
        m = re.match(r"^(\d{4})_\w+\.sql$", entry.name)
        if m:
            out.append((int(m.group(1)), entry.name, entry.read_text()))
    return sorted(out)
