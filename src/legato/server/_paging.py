"""A page of transactions for a list endpoint, bounded in rows and in bytes.

A transaction's row carries its options (a DTM saga's, its every payload), so a
page of 1,000 could run to a gigabyte: rows are read from the log a few dozen at
a time, and the page ends before the one that would take it past
``max_bytes`` of JSON (a first row is always given, so the caller moves on).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from .._model import TxRecord
from ..coordinator import Coordinator
from ..log import TxQuery

CHUNK = 50


@dataclasses.dataclass(slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_offset: int | None  # where the next page starts; None: this was the last


async def page(
    c: Coordinator, query: TxQuery, view: Callable[[TxRecord], dict[str, Any]], max_bytes: int
) -> Page:
    rows: list[dict[str, Any]] = []
    size = 0
    offset = query.offset
    while len(rows) < query.limit:
        want = min(CHUNK, query.limit - len(rows))
        batch = await c.list(dataclasses.replace(query, limit=want, offset=offset))
        for tx in batch:
            row = view(tx)
            # JSON's size as the response will encode it (non-ASCII as \\u escapes)
            cost = len(json.dumps(row, separators=(",", ":"))) + 1
            if rows and size + cost > max_bytes:
                return Page(rows, offset)
            rows.append(row)
            size += cost
            offset += 1
        if len(batch) < want:
            return Page(rows, None)
    return Page(rows, offset)
