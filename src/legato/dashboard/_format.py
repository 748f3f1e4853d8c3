"""How times, spans and JSON read on the dashboard (text only: the templates escape it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from ..observe import readable


def duration(seconds: float) -> str:
    """``0.4 ms``, ``12 ms``, ``1.5 s``, ``3 min``, ``2.1 h``, ``4.0 d`` (as ``legato tx
    show`` says it)."""
    return readable.span(seconds)


def when(ts: float | None) -> str:
    """A moment in UTC, to the millisecond."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def clock(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


def ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    return f"{duration(max(0.0, now - ts))} ago"


def pretty(value: Any) -> str:
    """JSON for a ``<pre>``; whatever JSON cannot encode is shown as its ``repr``."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)
