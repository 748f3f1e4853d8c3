"""What waits because no running coordinator has its code, in the words ``legato tx
list``, ``legato tx show``, ``legato stats`` and the dashboard show for it.

The rule is the log's (``log.unclaimed_since``): a transaction due for longer than
``log.UNCLAIMED_GRACE`` that no coordinator holds. A coordinator claims only the names
it has (a workflow's ``name@version``, a saga it registered, ``wire:<mode>`` for what
came over HTTP, which every coordinator claims): past the grace, none that runs has it,
or none runs at all.
"""

from __future__ import annotations

from .._model import TxRecord
from ..log import Unclaimed, unclaimed_since


def waiting_for(name: str) -> str:
    """What a transaction of ``name`` waits for, when no coordinator claims it."""
    if name.startswith("wire:"):
        return "waiting for a coordinator: none is running"
    return f"waiting for code: no coordinator has {name}"


def note(tx: TxRecord, now: float) -> str | None:
    """``tx`` waiting for code, in words; None when it is not."""
    due = unclaimed_since(tx, now)
    if due is None:
        return None
    return f"{waiting_for(tx.name)} (due {span(now - due)} ago, claimed by none)"


def summary_note(u: Unclaimed, now: float) -> str:
    """One name's waiting transactions, in words."""
    n = "1 transaction" if u.count == 1 else f"{u.count} transactions"
    return (
        f"{waiting_for(u.name)}: {n} of mode {u.mode}, the first due {span(now - u.due_since)} ago"
    )


def span(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.5 h``, ``2.0 d``."""
    s = max(0.0, seconds)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"
