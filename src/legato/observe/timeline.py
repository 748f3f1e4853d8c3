"""A transaction's timeline: each op's attempts as bars on a time axis.

Pure: it reads a transaction's row, ops and events as the log gives them, and
returns what the dashboard draws as SVG and ``legato tx show`` draws in the
terminal. An attempt's end is its event (``op.succeeded``, ``op.failed``,
``op.unknown``, ``op.ongoing``); its start is that event's time minus the
``took_ms`` it records. An attempt still running has no event yet: its start is
the op row's last update, and it runs until ``now``.

A workflow's lanes are its steps and its waits, named as its journal reads
(``observe.journal``). A wait (``@sleep``, ``@wait``) is a bar of its own kind,
from its ``wf.waiting`` event to its end: a signal taken (``wf.signal_taken``), its
time come (``op.retry_due``: timed out, or a sleep over), or, where it never ended,
the workflow's leaving its forward path (a rollback) or now. The stretches it was
let go while it waited (``suspended`` to ``resumed``: no coordinator held it, no
task ran for it) are ``let_go``; a signal's arrival, each value it recorded, its
pivot and a ``compensate_since`` are marks.

A choreographed flow's lanes are its hops (``observe.hops``): one lane per service and
event it handled, one bar per delivery, from the hop before it to this one (or for the
``took_ms`` it recorded); the hops that compensate come after, on the compensation path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .._model import EventRecord, Mode, OpKey, OpName, OpRecord, OpStatus, TxRecord
from ..modes import workflow as machine
from . import hops, journal, readable

MIN_IDLE = 1.0  # seconds: a shorter pause is drawn to scale
IDLE_SHARE = 0.1  # ...and so is one under this share of the time drawn to scale

BACKWARD = frozenset({OpName.COMPENSATE, OpName.CANCEL, OpName.ROLLBACK})
"""Ops on the compensation path."""

_OUTCOMES = {
    "op.succeeded": "ok",
    "op.failed": "failed",
    "op.unknown": "unknown",
    "op.ongoing": "ongoing",
}

WAITS = {"signalled": "signal", "timed_out": "timed out", "asleep": "asleep", "waiting": "waiting"}
"""A wait's outcomes (its bar's ``outcome``), and how each reads."""

_WAIT_ENDS = ("wf.signal_taken", "op.retry_due")

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
}


@dataclass(frozen=True, slots=True)
class Bar:
    """One attempt of one op."""

    branch: str
    op: str
    attempt: int | None
    start: float
    end: float
    outcome: str  # ok, failed, unknown, ongoing, running, a hop's skipped; a wait's: WAITS
    error: str | None = None
    label: str | None = None  # a wait's: '"approval": signal', 'asleep'...
    compensation: bool = False  # a flow's hop on the compensation path

    @property
    def backward(self) -> bool:
        return self.compensation or self.op in BACKWARD

    @property
    def wait(self) -> bool:
        """A workflow waiting (for a time or a signal), not an attempt."""
        return self.outcome in WAITS

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
    label: str | None = None  # a workflow's entry as its journal reads; None: branch and op
    compensation: bool = False  # a flow's hops on the compensation path

    @property
    def backward(self) -> bool:
        return self.compensation or self.op in BACKWARD


@dataclass(frozen=True, slots=True)
class LetGo:
    """A stretch a workflow was let go while it waited: no coordinator held it and no
    task ran for it, until it was resumed (``back``), or until its end or now."""

    start: float
    end: float
    back: bool

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(slots=True)
class Timeline:
    start: float
    end: float
    lanes: list[Lane] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    let_go: list[LetGo] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)

    def position(self, at: float) -> float:
        """Where ``at`` falls on a linear axis, from 0 to 1."""
        span = self.seconds
        if span <= 0:
            return 0.0
        return min(1.0, max(0.0, (at - self.start) / span))

    def idle(self) -> list[tuple[float, float]]:
        """The idle stretches worth drawing short (see ``idle_stretches``). A wait, and
        being let go, are idle between their ends: a day's wait for a signal is cut
        short like any other pause."""
        bars = [b for lane in self.lanes for b in lane.bars]
        busy = [(b.start, b.end) for b in bars if not b.wait]
        busy += [(at, at) for b in bars if b.wait for at in (b.start, b.end)]
        busy += [(at, at) for g in self.let_go for at in (g.start, g.end)]
        busy += [(m.at, m.at) for m in self.marks]
        busy.append((self.start, self.start))
        return idle_stretches(self.start, self.end, busy)


class Axis:
    """Time to x, from ``left`` to ``right``: to scale, but for the idle stretches in
    ``cuts``, each drawn ``gap`` wide (less where many would take over 30% of it)."""

    def __init__(
        self,
        start: float,
        end: float,
        cuts: Sequence[tuple[float, float]],
        left: float,
        right: float,
        gap: float,
    ) -> None:
        self.start, self.end, self.left, self.right = start, end, left, right
        self.gap = min(float(gap), 0.3 * (right - left) / len(cuts)) if cuts else 0.0
        scaled = (end - start) - sum(b - a for a, b in cuts)
        room = (right - left) - self.gap * len(cuts)
        self.per_second = room / scaled if scaled > 0 else 0.0
        self.cuts = list(cuts)
        # each piece of the axis: (from, to, x where it begins, drawn to scale?)
        self.pieces: list[tuple[float, float, float, bool]] = []
        x, t = left, start
        for a, b in self.cuts:
            self.pieces.append((t, a, x, True))
            x += (a - t) * self.per_second
            self.pieces.append((a, b, x, False))
            x += self.gap
            t = b
        self.pieces.append((t, end, x, True))

    def x(self, at: float) -> float:
        for a, b, x0, to_scale in self.pieces:
            if at <= b:
                at = max(at, a)
                if to_scale:
                    return x0 + (at - a) * self.per_second
                return x0 + (self.gap * (at - a) / (b - a) if b > a else 0.0)
        return self.right

    def scaled_pieces(self) -> list[tuple[float, float]]:
        return [(a, b) for a, b, _, to_scale in self.pieces if to_scale]


def idle_stretches(
    start: float, end: float, busy: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The stretches between ``busy`` spans worth cutting short: longer than
    ``MIN_IDLE`` and than ``IDLE_SHARE`` of whatever time is left drawn to scale."""
    idle: list[tuple[float, float]] = []
    cursor = start
    for a, b in sorted(busy):
        if a > cursor:
            idle.append((cursor, a))
        cursor = max(cursor, b)
    if end > cursor:
        idle.append((cursor, end))
    chosen: set[tuple[float, float]] = set()
    while True:  # cutting the longest stretches shows up the shorter ones: look again
        scaled = (end - start) - sum(b - a for a, b in chosen)
        threshold = max(MIN_IDLE, IDLE_SHARE * scaled)
        more = {s for s in idle if s[1] - s[0] > threshold} - chosen
        if not more:
            return sorted(chosen)
        chosen |= more


def build(
    tx: TxRecord, ops: Sequence[OpRecord], events: Sequence[EventRecord], now: float
) -> Timeline:
    """The timeline of one transaction; ``now`` ends whatever is still running."""
    if tx.mode is Mode.FLOW:
        return _flow(tx, events, now)
    bars: dict[tuple[str, str], list[Bar]] = {}
    marks: list[Mark] = []
    workflow = tx.mode is Mode.WORKFLOW
    rows: dict[OpKey, OpRecord] = {o.key: o for o in ops}
    taken = journal.taken(ops) if workflow else {}
    waits: dict[str, float] = {}  # a wait's branch: when it began
    wait_ends: dict[str, tuple[float, str]] = {}  # ...and when it ended, by which event
    leaving: list[float] = []  # when the workflow left its forward path
    let_go: list[LetGo] = []
    away: float | None = None  # let go since
    for e in events:
        if e.kind == "status" and e.detail.get("from") == "submitted":
            leaving.append(e.at)
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
        elif e.kind == "wf.waiting" and e.branch is not None:
            waits.setdefault(e.branch, e.at)
        elif (
            e.kind in _WAIT_ENDS
            and e.branch in waits
            and e.branch not in wait_ends
            and "ignored" not in e.detail
        ):
            wait_ends[e.branch] = (e.at, e.kind)
        elif e.kind == "suspended":
            away = e.at if away is None else away
        elif e.kind == "resumed" and away is not None:
            let_go.append(LetGo(away, e.at, back=True))
            away = None
        elif workflow and (found := _workflow_mark(e, rows, taken)) is not None:
            marks.append(found)
        elif e.kind in _MARKS:
            marks.append(Mark(e.at, e.kind, _label(e)))
    last = tx.ended_at if tx.ended_at is not None else now
    if away is not None:
        let_go.append(LetGo(away, max(away, last), back=False))
    for b, began in waits.items():
        row = rows.get((b, OpName.ACTION))
        bar = _wait_bar(b, began, wait_ends.get(b), row, leaving, last)
        bars.setdefault((b, str(OpName.ACTION)), []).append(bar)
    lanes: list[Lane] = []
    for o in sorted(ops, key=lambda o: (o.op in BACKWARD, o.seq, o.branch)):
        key = (o.branch, str(o.op))
        drawn = bars.get(key, [])
        if o.status is OpStatus.RUNNING:
            drawn.append(Bar(o.branch, str(o.op), o.attempts, o.updated_at, now, "running"))
        if not drawn and o.status is OpStatus.PENDING:
            continue  # never started: nothing to draw
        if not workflow:
            lanes.append(Lane(o.branch, str(o.op), str(o.status), tuple(drawn)))
            continue
        if not drawn and (o.op is OpName.SIGNAL or machine.entry_name(o.branch)[:1] == "@"):
            continue  # a signal, a value recorded, the result: marks, not lanes
        entry = journal.describe(o, taken, ended=tx.ended_at is not None)
        lanes.append(Lane(o.branch, str(o.op), entry.status, tuple(drawn), entry.label))
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
    ends += [g.end for g in let_go]
    end = max([last, *ends])
    return Timeline(start, end, lanes, sorted(marks, key=lambda m: m.at), let_go)


def _flow(tx: TxRecord, events: Sequence[EventRecord], now: float) -> Timeline:
    """A flow's timeline: its hops as lanes (see the module's docstring)."""
    bars: dict[tuple[str, str, bool], list[Bar]] = {}
    for h in hops.hops(events, tx.created_at):
        drawn = bars.setdefault((h.service, h.event, h.compensation), [])
        extra = {k: v for k, v in h.detail.items() if k != "redelivered"}
        said = readable.detail_text(extra, h.at) or None
        drawn.append(
            Bar(h.service, h.event, len(drawn) + 1, h.start, h.at, h.outcome, said,
                compensation=h.compensation)
        )  # fmt: skip
    lanes = [
        Lane(service, event, drawn[-1].outcome, tuple(drawn), f"{service}: {event}", back)
        for (service, event, back), drawn in bars.items()
    ]
    lanes = [lane for lane in lanes if not lane.backward] + [
        lane for lane in lanes if lane.backward
    ]
    marks = [Mark(e.at, e.kind, _label(e)) for e in events if e.kind in _MARKS]
    last = tx.ended_at if tx.ended_at is not None else now
    start = min([tx.created_at, *(b.start for lane in lanes for b in lane.bars)])
    ends = [b.end for lane in lanes for b in lane.bars] + [m.at for m in marks]
    return Timeline(start, max([last, *ends]), lanes, sorted(marks, key=lambda m: m.at))


def _wait_bar(
    branch: str,
    began: float,
    ended: tuple[float, str] | None,
    row: OpRecord | None,
    leaving: Sequence[float],
    last: float,
) -> Bar:
    """A wait, from when it began to its end (see the module's docstring)."""
    sleep = machine.entry_name(branch) == "@sleep"
    name = journal.describe(row, {}).text.removeprefix("wait for ") if row else branch
    out = row.output if row is not None else None
    if ended is not None:
        at, how = ended
        outcome = "signalled" if how == "wf.signal_taken" else "timed_out"
    elif row is not None and row.status is OpStatus.SUCCEEDED:
        at = max(began, row.updated_at)
        took_signal = isinstance(out, Mapping) and isinstance(out.get("signal"), str)
        outcome = "signalled" if took_signal else "timed_out"
    else:
        at = min([t for t in leaving if t >= began] + [last])
        outcome = "waiting"
    if sleep:
        return Bar(branch, str(OpName.ACTION), None, began, at, "asleep", label="asleep")
    text = WAITS[outcome] if outcome != "waiting" or at >= last else "no signal"
    return Bar(branch, str(OpName.ACTION), None, began, at, outcome, label=f"{name}: {text}")


def _workflow_mark(
    e: EventRecord, rows: Mapping[OpKey, OpRecord], took: Mapping[str, str]
) -> Mark | None:
    """A workflow's own moments: a signal's arrival, a value recorded (a kept signal
    taken at once, the pivot), a ``compensate_since``."""
    d = e.detail
    if e.kind == "signal":
        by = f", by {d['by']}" if d.get("by") else ""
        return Mark(e.at, "signal", f'signal "{d.get("signal")}" arrived ({d.get("id")}{by})')
    if e.kind not in ("wf.recorded", "wf.compensate_since") or e.branch is None:
        return None
    row = rows.get((e.branch, OpName.ACTION))
    if row is None:
        return Mark(e.at, "recorded", e.branch)
    entry = journal.describe(row, took)
    if entry.kind == "undo":
        return Mark(e.at, "undo", entry.label)
    if entry.kind == "wait":
        return Mark(e.at, "recorded", f"{entry.label}: a kept signal, taken at once")
    text = entry.label
    if entry.detail:
        text += f" {entry.detail}" if entry.detail.startswith("=") else f": {entry.detail}"
    return Mark(e.at, "pivot" if entry.kind == "pivot" else "recorded", text)


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
    return e.kind.replace("_", " ")
