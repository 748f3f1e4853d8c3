"""A choreographed flow's hops as an operator reads them: who handled what, how it came
out, how long it took, and whether it was on the compensation path.

Pure: it reads the ``hop`` events a flow's recorder writes (``legato.flow``: each with
the ``service`` and the ``event`` it handled or emitted, and what else the service
said). ``legato tx show`` and the dashboard list these in their hops tables, and the
timeline draws each (service, event) as a lane, its deliveries as bars.

- A hop's **outcome** is the ``outcome`` it recorded; else ``skipped`` for a
  redelivery its inbox skipped (``redelivered``); else ``failed`` for an event whose
  name ends in ``failed`` (``payment.failed``), but on the compensation path (a refund
  for ``inventory.failed`` is the compensation running); else ``ok``.
- A hop **took** the ``took_ms`` it recorded; else the time since the flow's hop
  before it (the event's way through the broker, and its handling).
- A hop is on the **compensation path** where it says so (``compensation: true``), or
  where its event's last word says so (``payment.refunded``, ``stock.released``...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .._model import EventRecord, Json

OUTCOMES = ("ok", "failed", "skipped", "unknown")
UNDONE = frozenset(
    {
        "refunded",
        "released",
        "cancelled",
        "canceled",
        "compensated",
        "reverted",
        "rolled_back",
        "undone",
        "voided",
    }
)
"""An event whose name's last word is one of these undoes something: a compensation."""


@dataclass(frozen=True, slots=True)
class Hop:
    """One hop of a flow."""

    at: float
    service: str
    event: str
    outcome: str
    took: float  # seconds
    compensation: bool
    detail: dict[str, Json]  # what else the hop recorded

    @property
    def start(self) -> float:
        return self.at - self.took

    @property
    def label(self) -> str:
        return f"{self.service}: {self.event}"


def hops(events: Sequence[EventRecord], created_at: float) -> list[Hop]:
    """The flow's hops, in the order they were recorded."""
    out: list[Hop] = []
    before = created_at
    for e in events:
        if e.kind != "hop":
            continue
        d = dict(e.detail)
        service = str(d.pop("service", "?"))
        event = str(d.pop("event", "?"))
        took_ms = d.pop("took_ms", None)
        if isinstance(took_ms, int | float) and not isinstance(took_ms, bool) and took_ms >= 0:
            took = float(took_ms) / 1000
        else:
            took = max(0.0, e.at - before)
        back = _compensation(d, event)
        out.append(Hop(e.at, service, event, _outcome(d, event, back), took, back, d))
        before = max(before, e.at)
    return out


def _outcome(detail: dict[str, Json], event: str, compensation: bool) -> str:
    said = detail.pop("outcome", None)
    if isinstance(said, str) and said:
        return said
    if detail.get("redelivered"):
        return "skipped"
    failure = not compensation and _last_word(event).endswith("failed")
    return "failed" if failure else "ok"


def _compensation(detail: dict[str, Json], event: str) -> bool:
    said = detail.pop("compensation", None)
    if isinstance(said, bool):
        return said
    return _last_word(event) in UNDONE


def _last_word(event: str) -> str:
    for sep in (".", ":", "/"):
        event = event.rsplit(sep, 1)[-1]
    return event.lower().replace("-", "_")
