"""Times and spans as an operator types them: an ISO time, or ``90s``, ``15m``, ``2h``, ``7d``."""

from __future__ import annotations

import argparse
import time

from .._moments import age, moment


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
    try:
        return age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
