"""A transaction's timeline: each op's attempts as bars on a time axis.

Pure: it reads a transaction's row, ops and events as the log gives them, and
returns what the dashboard draws as SVG and ``legato tx show`` draws in the
terminal. An attempt's end is its event (``op.succeeded``, ``op.failed``,
``op.unknown``, ``op.ongoing``); its start is that event's time minus the
``took_ms`` it records. An attempt still running has no event yet: its start is
the op row's last update, and it runs until ``now``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .._model import EventRecord, OpName, OpRecord, OpStatus, TxRecord

BACKWARD = frozenset({OpName.COMPENSATE, OpName.CANCEL, OpName.ROLLBACK})
"""Ops on the compensation path."""

_OUTCOMES = {
    "op.succeeded": "ok",
    "op.failed": "failed",
    "op.unknown": "unknown",
    "op.ongoing": "ongoing",
}

_MARKS = {
    "submitted",
    "prepared",
    "submit_requested",
    "status",
    "stuck",
    "timeout",
    "abort_requested",
    "operator_retry",
    "force_end",
    "resumed",
    "requested",
    "hop",
}


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt of one op."""

    branch: str
    op: str
    attempt: int | None
    start: float
    end: float
    outcome: str  # ok, failed, unknown, ongoing, running
    error: str | None = None

    @property
    def backward(self) -> bool:
        return self.op in BACKWARD

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True, slots=True)
class Mark:
    """A moment on the transaction's axis: submitted, a status change, an operator's
    request, a timeout..."""

    at: float
    kind: str
    label: str


@dataclass(frozen=True, slots=True)
class Lane:
    """One op's row: its attempts, in order."""

    branch: str
    op: str
    status: str
    bars: tuple[Bar, ...]

    @property
    def backward(self) -> bool:
        return self.op in BACKWARD


@dataclass(slots=True)
class Timeline:
    start: float
    end: float
    lanes: list[Lane] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def position(self, at: float) -> float:
        """Where ``at`` falls on the axis, from 0 to 1."""
        span = self.seconds
        if span <= 0:
            return 0.0
        return min(1.0, max(0.0, (at - self.start) / span))


def build(
    tx: TxRecord, ops: Sequence[OpRecord], events: Sequence[EventRecord], now: float
) -> Timeline:
    """The timeline of one transaction; ``now`` ends whatever is still running."""
    bars: dict[tuple[str, str], list[Bar]] = {}
    marks: list[Mark] = []
    for e in events:
        outcome = _OUTCOMES.get(e.kind)
        if outcome is not None and e.branch is not None and e.op is not None:
            if "ignored" in e.detail:
                continue  # a late or repeated report: the attempt was drawn already
            took = e.detail.get("took_ms")
            start = e.at - (float(took) / 1000 if isinstance(took, int | float) else 0.0)
            error = e.detail.get("error")
            bars.setdefault((e.branch, e.op), []).append(
                Bar(
                    e.branch,
                    e.op,
                    e.attempt,
                    start,
                    e.at,
                    outcome,
                    str(error) if error is not None else None,
                )
            )
        elif e.kind in _MARKS:
            marks.append(Mark(e.at, e.kind, _label(e)))
    lanes: list[Lane] = []
    for o in sorted(ops, key=lambda o: (o.op in BACKWARD, o.seq, o.branch)):
        key = (o.branch, str(o.op))
        drawn = bars.get(key, [])
        if o.status is OpStatus.RUNNING:
            drawn.append(Bar(o.branch, str(o.op), o.attempts, o.updated_at, now, "running"))
        if not drawn and o.status is OpStatus.PENDING:
            continue  # never started: nothing to draw
        lanes.append(Lane(o.branch, str(o.op), str(o.status), tuple(drawn)))
    # the forward path in definition order, then the compensations in the order they ran
    forward = [lane for lane in lanes if not lane.backward]
    backward = sorted(
        (lane for lane in lanes if lane.backward),
        key=lambda lane: min((b.start for b in lane.bars), default=float("inf")),
    )
    lanes = forward + backward
    moments = [tx.created_at, *(b.start for lane in lanes for b in lane.bars)]
    start = min(moments)
    ends = [b.end for lane in lanes for b in lane.bars] + [m.at for m in marks]
    end = tx.ended_at if tx.ended_at is not None else now
    end = max([end, *ends])
    return Timeline(start, end, lanes, sorted(marks, key=lambda m: m.at))


def _label(e: EventRecord) -> str:
    d = e.detail
    if e.kind == "status":
        text = f"{d.get('from')} -> {d.get('to')}"
        return f"{text}: {d['reason']}" if d.get("reason") else text
    if e.kind == "stuck":
        return f"stuck: {d.get('reason')}"
    if e.kind == "requested":
        by = f" by {d['by']}" if d.get("by") else ""
        return f"{d.get('what')} requested{by}"
    if e.kind == "hop":
        return ", ".join(f"{k}={v}" for k, v in d.items())
    return e.kind.replace("_", " ")
