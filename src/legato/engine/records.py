"""What the log is told about a transition: the records ``transition`` builds, and the
machine state read back from the log's records.

``transition`` is the one path by which any mode's transaction changes: it feeds
events to the mode's machine and builds every record of what happened (an event
per input, a status change, a stuck transaction, a retry scheduled). The runner
writes what it returns; a fresh submit, a parked transaction and a recorded flow
go through it too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from .._model import EventRecord, Json, OpKey, OpRecord, TxRecord
from ..modes._core import (
    Command,
    OpState,
    Park,
    Resume,
    Transition,
    TxState,
    Wake,
    park,
)


class Timed(Protocol):
    """An event as the records see it: when it happened, and its name in the timeline."""

    @property
    def now(self) -> float: ...

    @property
    def kind(self) -> str: ...


E = TypeVar("E", bound=Timed)

Machine = Callable[[TxState, E], Transition]
"""A mode's rules, bound to the transaction's plan: ``(state, event) -> Transition``."""


@dataclass(slots=True)
class Step:
    """What feeding a list of events came to."""

    state: TxState
    commands: tuple[Command, ...]
    records: tuple[EventRecord, ...]
    at: float  # the latest event's time


def transition(machine: Machine[E], state: TxState, events: Sequence[E]) -> Step:
    """Feed ``events`` to ``machine``, one after the other, from ``state``; a ``Park`` is
    every machine's alike (``modes._core.park``)."""
    commands: list[Command] = []
    records: list[EventRecord] = []
    at = 0.0
    for event in events:
        at = max(at, event.now)
        t = park(state, event) if isinstance(event, Park) else machine(state, event)
        if event.kind:  # a park is said by the "stuck" record it causes; a step started
            records.append(_event_record(state.gid, event, t))  # by its op's row
        if t.changed:
            records.extend(_transition_records(state.gid, state, t, event))
            state = t.state
            commands.extend(t.commands)
    return Step(state, tuple(commands), tuple(records), at)


def _event_record(gid: str, event: Timed, t: Transition) -> EventRecord:
    key: OpKey | None = getattr(event, "key", None)
    info = getattr(event, "info", None)
    detail: dict[str, Json] = dict(info) if info else {}
    error = getattr(event, "error", None) or getattr(event, "reason", None)
    if error:
        detail["error"] = error
    kind = "submitted" if isinstance(event, Resume) and event.fresh else event.kind
    took = getattr(event, "took", None)
    if took is not None:
        # an attempt's start is in the op's row while it runs; once it has ended, its
        # event says how long it took, so the timeline needs no separate start event
        detail["took_ms"] = round(took * 1000, 3)
    if not t.changed:
        detail["ignored"] = t.note or "no change"
    return EventRecord(
        gid=gid,
        at=event.now,
        kind=kind,
        branch=key[0] if key else None,
        op=str(key[1]) if key else None,
        attempt=getattr(event, "attempt", None),
        detail=detail,
    )


def _transition_records(
    gid: str, before: TxState, t: Transition, event: Timed
) -> list[EventRecord]:
    now = event.now
    out: list[EventRecord] = []
    after = t.state
    if after.status != before.status:
        detail: dict[str, Json] = {
            "from": str(before.status),
            "to": str(after.status),
            "reason": after.reason,
        }
        out.append(EventRecord(gid, now, "status", detail=detail))
    if after.stuck and after.stuck != before.stuck:
        out.append(EventRecord(gid, now, "stuck", detail={"reason": after.stuck}))
    for cmd in t.commands:
        if isinstance(cmd, Wake):
            out.append(
                EventRecord(
                    gid,
                    now,
                    "op.retry_scheduled",
                    cmd.key[0],
                    str(cmd.key[1]),
                    cmd.attempt,
                    {"at": cmd.at},
                )
            )
    return out


OpMeta = Mapping[OpKey, tuple[int, str]]
"""Each op's place (its ``seq``) and what it calls (its ``target``), as the log shows it."""


def op_record(gid: str, key: OpKey, s: OpState, meta: OpMeta, now: float) -> OpRecord:
    """An op's row for its state ``s``."""
    seq, target = meta[key]
    return OpRecord(
        gid=gid,
        branch=key[0],
        op=key[1],
        seq=seq,
        target=target,
        status=s.status,
        attempts=s.attempts,
        budget=s.budget,
        next_at=s.next_at,
        output=s.output,
        error=s.error,
        completed=s.completed,
        updated_at=now,
    )


def changed_ops(before: TxState, after: TxState, meta: OpMeta, now: float) -> list[OpRecord]:
    """The rows of the ops ``after`` changed (a machine replaces an op's state only when
    it changes it: identity suffices)."""
    old = before.ops
    return [
        op_record(after.gid, k, s, meta, now)
        for k, s in after.ops.items()
        if (was := old.get(k)) is not s and was is not None  # a new op is inserted, not here
    ]


def state_from_log(tx: TxRecord, ops: Iterable[OpRecord]) -> TxState:
    """A transaction's machine state, as the log holds it."""
    return TxState(
        gid=tx.gid,
        status=tx.status,
        ops={
            o.key: OpState(
                o.status, o.attempts, o.budget, o.next_at, o.output, o.error, o.completed
            )
            for o in ops
        },
        reason=tx.reason,
        stuck=tx.stuck,
    )
