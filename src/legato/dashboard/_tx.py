"""What the transaction page shows, from the log's records (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._model import EventRecord, Json, Mode, OpRecord, TxRecord, TxStatus
from ..log import LogSummary
from ..observe import hops as hops_
from ..observe import journal, readable, timeline, unclaimed
from ._draw import Drawing, draw
from ._format import ago, duration

HEADER = (
    ("prepared", "prepared"),
    ("submitted", "submitted"),
    ("aborting", "aborting"),
    ("stuck", "stuck"),
    ("unclaimed", "waiting for code"),
    ("oldest", "oldest unfinished"),
    ("started", "started / min"),
    ("ended", "ended / min"),
)
"""The header's live counts: key, label. A status is named as the list's filters and
badges name it (``submitted``: being driven). Only the unended are counted by status (the
ended ones over the last minute): counting every transaction the log keeps would read
all of it, every few seconds."""
_STATUSES = [key for key, _ in HEADER if key in {str(s) for s in TxStatus if not s.ended}]


def header(summary: LogSummary, now: float) -> dict[str, str]:
    """The header's values as text, keyed as in ``HEADER`` (the page and its
    ``/summary.json`` share them)."""
    out = {status: str(summary.counts.get(status, 0)) for status in _STATUSES}
    out["stuck"] = str(summary.stuck)
    out["unclaimed"] = str(summary.unclaimed_total)
    oldest = summary.oldest_unfinished_at
    out["oldest"] = "-" if oldest is None else duration(max(0.0, now - oldest))
    out["started"] = str(summary.started)
    ended = summary.ended
    out["ended"] = (
        f"{sum(ended.values())} ({ended.get('succeeded', 0)} ok, {ended.get('failed', 0)} failed)"
    )
    return out


@dataclass(frozen=True, slots=True)
class OpRow:
    op: OpRecord
    body: Json  # what the op sends the participant, where the log holds it
    has_body: bool
    entry: journal.Entry | None = None  # a workflow's: the op as its journal reads
    status: str = ""  # as shown: "not needed" for a compensation that will never run


@dataclass(frozen=True, slots=True)
class EventRow:
    event: EventRecord
    offset: str  # since the transaction was created
    detail: str
    css: str


@dataclass(frozen=True, slots=True)
class TxPage:
    tx: TxRecord
    ops: list[OpRow]
    events: list[EventRow]
    drawing: Drawing
    timeline: timeline.Timeline
    age: str
    waiting: str | None  # waiting for code (no running coordinator claims it), in words
    name: str  # as a person reads it (``observe.readable.title``)
    hops: list[tuple[hops_.Hop, str]]  # a flow's, each with its detail as text

    @property
    def journal(self) -> bool:
        """A workflow's: its ops are listed as its journal reads."""
        return self.tx.mode is Mode.WORKFLOW

    @property
    def flow(self) -> bool:
        """A choreographed flow's: its hops are listed instead of ops."""
        return self.tx.mode is Mode.FLOW


def tx_page(
    tx: TxRecord, ops: Sequence[OpRecord], events: Sequence[EventRecord], now: float
) -> TxPage:
    line = timeline.build(tx, ops, events, now)
    steps = _spec_steps(tx)
    rows = []
    if tx.mode is Mode.WORKFLOW:
        for e in journal.entries(tx, ops):
            found, body = _body(e.op, steps)
            status = readable.op_status(tx.status.ended, e.op, e.status)
            rows.append(OpRow(e.op, body, found, e, status))
    else:
        for o in ops:
            found, body = _body(o, steps)
            rows.append(OpRow(o, body, found, status=readable.op_status(tx.status.ended, o)))
    return TxPage(
        tx=tx,
        ops=rows,
        events=[_event_row(e, tx.created_at) for e in events],
        drawing=draw(line),
        timeline=line,
        age=ago(tx.created_at, now),
        waiting=unclaimed.note(tx, now),
        name=readable.title(tx, ops, events),
        hops=[(h, readable.detail_text(h.detail, h.at)) for h in hops_.hops(events, tx.created_at)]
        if tx.mode is Mode.FLOW
        else [],
    )


def _spec_steps(tx: TxRecord) -> dict[str, Mapping[str, Any]]:
    spec = tx.options.get("spec")
    if not isinstance(spec, Mapping):
        return {}
    steps = spec.get("steps")
    if not isinstance(steps, list):
        return {}
    return {str(s.get("name")): s for s in steps if isinstance(s, Mapping)}


def _body(o: OpRecord, steps: Mapping[str, Mapping[str, Any]]) -> tuple[bool, Json]:
    """The body of the op's call: from the op (an op registered at run time) or
    from the saga's stored definition. Headers are left out: they may carry secrets."""
    call: Any = o.payload
    if call is None:
        call = steps.get(o.branch, {}).get(str(o.op))
    if isinstance(call, Mapping) and "url" in call:
        return ("body" in call, call.get("body"))
    return (call is not None, call)


def _event_row(e: EventRecord, start: float) -> EventRow:
    d = e.detail
    if e.kind == "requested":
        by = d.get("by") or "someone"
        text = f"{d.get('what')} requested by {by}"
        rest = {k: v for k, v in d.items() if k not in ("what", "by")}
    else:
        text = ""
        rest = dict(d)
    parts = [text] if text else []
    parts += [f"{k}={readable.detail_value(k, v, e.at)}" for k, v in rest.items()]
    css = "event " + e.kind.replace(".", "-").replace("_", "-")
    return EventRow(e, "+" + duration(e.at - start), ", ".join(parts), css)
