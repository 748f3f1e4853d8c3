"""``legato replay``'s engine: a workflow's body run against a journal read from a log,
calling nothing and writing nothing, stopping at the journal's end or at the first
entry the code does not match."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .._model import OpKey, OpRecord, TxRecord, TxStatus
from ..engine.records import state_from_log
from ..modes import workflow as machine
from ..modes._core import Park
from .workflow import ACTION, Entry, WorkflowDriver
from .workflow_calls import WorkflowDefinition

# -- replaying a journal without running anything -----------------------------------------


class _End(BaseException):
    """The body reached the end of its journal: the replay is over."""


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replaying one workflow's journal came to: ``ok``, or where and how the code
    departs from it (``detail`` names both records)."""

    gid: str
    ok: bool
    entries: int  # journal positions the code went through
    detail: str


class _ReplayDriver(WorkflowDriver):
    """A driver whose body only reads its journal: at its end, or at an outcome the
    journal does not have yet, it stops; nothing is called and nothing is written."""

    def __init__(self, definition: WorkflowDefinition, tx: TxRecord, ops: Sequence[OpRecord]):
        super().__init__(definition, tx, ops)
        self.fed: list[Any] = []
        self.feed = self.fed.append
        self.state = state_from_log(tx, ops)

    def _next(self, kind: str, name: str, digest: str) -> tuple[int, Entry | None]:
        pos, entry = super()._next(kind, name, digest)
        if entry is None:
            self.pos -= 1
            raise _End()
        return pos, entry

    def patched(self, change: str) -> bool:
        if self.entries.get(self.pos + 1) is None:
            raise _End()
        return super().patched(change)

    def _future(self, key: OpKey) -> asyncio.Future[Any]:
        fut = super()._future(key)
        if not fut.done():
            raise _End()  # in flight where the journal ends
        return fut


async def replay(definition: WorkflowDefinition, tx: TxRecord, ops: Sequence[OpRecord]) -> Replayed:
    """Run ``definition``'s body against the journal of ``tx`` without calling any step,
    and say whether the code does what the journal recorded, up to where it ends."""
    d = _ReplayDriver(definition, tx, ops)
    d.task = asyncio.current_task()
    try:
        await d._run_body()
    except _End:
        return Replayed(tx.gid, True, d.pos, f"matches its journal ({d.pos} entries)")
    parked = next((e for e in d.fed if isinstance(e, Park)), None)
    if parked is not None:
        return Replayed(tx.gid, False, d.pos, parked.reason)
    crashed = next((e for e in d.fed if isinstance(e, machine.BodyCrashed)), None)
    if crashed is not None:
        return Replayed(tx.gid, False, d.pos, f"the body raised {crashed.error}")
    returned = next((e for e in d.fed if isinstance(e, machine.BodyReturned)), None)
    recorded = d.state.ops.get((machine.RESULT, ACTION))
    if returned is not None and recorded is not None and recorded.output != returned.output:
        return Replayed(
            tx.gid, False, d.pos,
            f"the body returns {returned.output!r}; the journal has {recorded.output!r}",
        )  # fmt: skip
    failed = next((e for e in d.fed if isinstance(e, machine.BodyFailed)), None)
    if failed is not None and tx.status is TxStatus.SUCCEEDED:
        return Replayed(
            tx.gid, False, d.pos,
            f"the body now fails ({failed.reason}) where the run succeeded",
        )  # fmt: skip
    return Replayed(tx.gid, True, d.pos, f"matches its journal ({d.pos} entries)")


__all__ = ["Replayed", "replay"]
