"""Times and spans as an operator types them: an ISO time, or ``90s``, ``15m``, ``2h``, ``7d``."""

from __future__ import annotations

import argparse
import time

from .._moments import UNITS, moment


def parse_time(text: str) -> float:
    """An ISO 8601 time, or a span back from now: ``90s``, ``15m``, ``2h``, ``7d``."""
    try:
        return moment(text.strip(), time.time())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO time nor a span such as 15m or 2h"
        ) from None


def parse_age(text: str) -> float:
    """Seconds, or a span such as ``90s``, ``15m``, ``12h``, ``7d``."""
    raw = text.strip()
    unit = UNITS.get(raw[-1:])
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        problem = f"{text!r} is not an age such as 3600, 90m or 7d"
        raise argparse.ArgumentTypeError(problem) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"an age must be positive, not {text!r}")
    return value
