"""A workflow's journal as an operator reads it: each entry's kind in words, what it came
to, and the signals kept for the workflow that it has not taken.

Pure: it reads the op rows the log gives, named as ``modes.workflow`` names them (the
branch is ``"<position>.<name>"``, the entries the engine writes have names starting
with ``@``, each entry's payload says its kind and name; a signal is an op ``signal``
whose branch is ``"<name>#<id>"``, taken once a wait's output names it). ``legato tx
show`` and the dashboard's transaction page list these in their ops tables; the
timeline labels a workflow's lanes and marks with them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .._model import Json, OpName, OpRecord, OpStatus, TxRecord
from ..modes import workflow as machine

NO_TIMEOUT = 365 * 86400.0
"""A wait due further off than this has no timeout (a workflow's is a hundred years)."""
VALUE_CHARS = 60

_RECORDED = {
    "now": "time",
    "uuid": "uuid",
    "random": "random number",
    "select": "select's winner",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """One op of a workflow, as shown."""

    op: OpRecord
    position: str  # "0003"; "" for the return value and for a signal
    kind: str  # step, compensation, sleep, wait, pivot, now, uuid, random, patch, select,
    # undo, result, signal
    text: str  # 'step reserve_room', 'wait for "approval"', 'signal "approval"'...
    status: str  # the op's status, in the entry's own words where they say more
    detail: str  # what it came to, or is waiting for ('' when the status says it all)

    @property
    def label(self) -> str:
        """Its position and its text: ``0003 wait for "approval"``."""
        return f"{self.position} {self.text}" if self.position else self.text


def kind_of(op: OpRecord) -> str:
    if op.op is OpName.SIGNAL:
        return "signal"
    if op.op is OpName.COMPENSATE:
        return "compensation"
    if op.branch == machine.RESULT:
        return "result"
    payload = op.payload
    if isinstance(payload, Mapping) and isinstance(payload.get("kind"), str):
        return str(payload["kind"])
    name = machine.entry_name(op.branch)
    return name[1:] if name.startswith("@") else "step"


def _name(op: OpRecord) -> str:
    payload = op.payload
    if isinstance(payload, Mapping) and isinstance(payload.get("name"), str):
        return str(payload["name"])
    return machine.entry_name(op.branch)


def taken(ops: Sequence[OpRecord]) -> dict[str, str]:
    """The signals the workflow has taken: each one's id (its branch), and the position
    of the wait that took it."""
    out: dict[str, str] = {}
    for o in ops:
        if o.op is OpName.ACTION and kind_of(o) == "wait" and isinstance(o.output, Mapping):
            signal = o.output.get("signal")
            if isinstance(signal, str):
                out[signal] = o.branch.partition(".")[0]
    return out


def untaken(ops: Sequence[OpRecord]) -> list[OpRecord]:
    """The signals kept for the workflow that no wait of it has taken (yet)."""
    took = taken(ops)
    return [o for o in ops if o.op is OpName.SIGNAL and o.branch not in took]


def entries(tx: TxRecord, ops: Sequence[OpRecord]) -> list[Entry]:
    """The workflow's ops in journal order (each step's compensation after it), then its
    return value, then the signals sent to it."""
    took = taken(ops)

    def order(o: OpRecord) -> tuple[int, int, str, float, str]:
        if o.op is OpName.SIGNAL:
            return (2, 0, "", o.updated_at, o.branch)  # in the order they came
        pos = machine.position(o.branch)
        step_first = "0" if o.op is OpName.ACTION else str(o.op)
        return (0 if pos < 1 << 62 else 1, pos, step_first, 0.0, "")

    return [describe(o, took, ended=tx.ended_at is not None) for o in sorted(ops, key=order)]


def describe(op: OpRecord, took: Mapping[str, str], *, ended: bool = False) -> Entry:
    """``op`` as shown: ``took`` is ``taken(ops)``; ``ended``, whether the workflow has."""
    kind = kind_of(op)
    head = op.branch.partition(".")[0]
    position = head if head.isdigit() else ""
    status, detail = str(op.status), ""
    out = op.output
    if kind == "signal":
        text = f'signal "{op.target}"'
        position = ""
        by = took.get(op.branch)
        status = "taken" if by else "not taken"
        where = "never taken" if ended else "kept for a wait"
        where = f"taken by the wait at {by}" if by else where
        detail = f"{op.branch} = {value(out)}; {where}"
    elif kind == "compensation":
        text = f"compensate {machine.entry_name(op.branch)}"
    elif kind == "step":
        text = f"step {_name(op)}"
        if op.status is OpStatus.RETRY_WAIT:
            detail = f"retry at {_clock(op.next_at)}" if op.next_at else "waiting for the body"
    elif kind in ("wait", "sleep"):
        text = f'wait for "{_name(op)}"' if kind == "wait" else "sleep"
        if op.status is OpStatus.RETRY_WAIT:
            status = "waiting" if kind == "wait" else "asleep"
            far = op.next_at is None or op.next_at - op.updated_at > NO_TIMEOUT
            detail = "no timeout" if far else f"until {_clock(op.next_at)}"
        elif op.status is OpStatus.SUCCEEDED and isinstance(out, Mapping):
            if isinstance(out.get("signal"), str):
                status, detail = "signalled", f"{out['signal']} = {value(out.get('value'))}"
            elif out.get("timeout"):
                status = "timed out" if kind == "wait" else "woke"
    elif kind == "pivot":
        text, detail = "pivot", "forward only from here"
    elif kind == "patch":
        text = f'patch "{_name(op)}"'
    elif kind == "undo":
        mark = op.payload.get("digest") if isinstance(op.payload, Mapping) else None
        text = f"compensate since position {mark if mark is not None else '?'}"
    elif kind == "result":
        text, detail = "return value", f"= {value(out)}"
    else:
        text = f"{_RECORDED.get(kind, kind)}, recorded"
        if op.status is OpStatus.SUCCEEDED:
            detail = f"= {value(out)}"
            if kind == "now" and isinstance(out, int | float):
                detail = f"= {_clock(float(out), ms=True)}"
    return Entry(op, position, kind, text, status, detail)


def value(v: Json) -> str:
    """A JSON value in one short line."""
    text = json.dumps(v, ensure_ascii=False, sort_keys=True, default=repr)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"


def _clock(ts: float | None, *, ms: bool = False) -> str:
    if ts is None:
        return "-"
    text = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"{text[:-3] if ms else text[:-7]} UTC"
