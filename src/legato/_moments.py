"""Moments and spans as an operator types them: ``15m``, ``2h``, ``7d``, or an ISO time.

Shared by the command line (``--since``, ``--older-than``...) and the dashboard's
filters, which word their own errors.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SPAN = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_SPACED_SPAN = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


def age(text: str) -> float:
    """Seconds from ``3600`` or a span such as ``90s``, ``15m``, ``12h``, ``7d``.
    Raises ``ValueError`` naming the text when it is neither, or not positive."""
    raw = text.strip()
    unit = UNITS.get(raw[-1:])
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"{text!r} is not an age such as 3600, 90m or 7d") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"an age must be positive and finite, not {text!r}")
    return value


def moment(text: str, now: float, *, spaced: bool = False) -> float:
    """``text`` as a unix time: a span back from ``now`` (``90s``, ``15m``, ``2h``,
    ``7d``; with ``spaced``, ``15 m`` too) or an ISO 8601 time, UTC unless it names
    a zone. Raises ``ValueError`` when it is neither."""
    m = (_SPACED_SPAN if spaced else _SPAN).match(text)
    if m:
        return now - float(m.group(1)) * UNITS[m.group(2)]
    dt = datetime.fromisoformat(text)
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
