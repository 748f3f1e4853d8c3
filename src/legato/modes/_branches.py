"""The rules TCC and XA share: a transaction of registered branches, each with a forward
op and an undo op, that its initiator begins (``prepared``) and then submits or aborts.

* ``Submit``: ``submitted``; every branch's forward op (TCC's confirm, XA's commit)
  starts at once; when all have succeeded the transaction has ``succeeded``.
* ``AbortRequested`` or ``Timeout`` while prepared: ``aborting``; the branches'
  undo ops (cancel, rollback) run one at a time, newest branch first; when all
  have succeeded the transaction has ``failed``.
* Forward and undo ops never give up silently: a failure answer is retried like
  an unknown outcome, and past its attempts the op is parked and the transaction
  stuck, until an operator retries it.
* Once submitted it only goes forward: an abort or a timeout changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._model import DEFAULT_COMPENSATE_RETRY, OpKey, OpName, OpStatus, RetryPolicy, TxStatus
from ._core import (
    AbortRequested,
    Event,
    ForceEnd,
    OpSucceeded,
    RetryingDraft,
    Submit,
    Timeout,
    Transition,
    TxState,
    apply_retrying,
    is_current,
)


@dataclass(frozen=True, slots=True)
class BranchPlan:
    branches: tuple[str, ...]  # in order of registration
    forward: OpName
    undo: OpName
    forward_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY
    undo_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY

    def policy(self, key: OpKey) -> RetryPolicy:
        return self.forward_retry if key[1] is self.forward else self.undo_retry

    def op_keys(self) -> list[OpKey]:
        return [(b, op) for b in self.branches for op in (self.forward, self.undo)]


def new_state(gid: str, plan: BranchPlan) -> TxState:
    return TxState.fresh(gid, TxStatus.PREPARED, plan.op_keys())


class _Draft(RetryingDraft[BranchPlan]):
    def advance(self) -> None:
        if self.status is TxStatus.SUBMITTED:
            forwards = [(b, self.plan.forward) for b in self.plan.branches]
            if all(self.ops[k].status is OpStatus.SUCCEEDED for k in forwards):
                self.status, self.stuck = TxStatus.SUCCEEDED, None
                return
            for k in forwards:
                if self.ops[k].status is OpStatus.PENDING:
                    self.start(k)
        elif self.status is TxStatus.ABORTING:
            for b in reversed(self.plan.branches):
                k = (b, self.plan.undo)
                s = self.ops[k].status
                if s is OpStatus.SUCCEEDED:
                    continue
                if s is OpStatus.PENDING:
                    self.start(k)
                return  # one undo at a time, newest branch first
            self.status, self.stuck = TxStatus.FAILED, None


def apply(plan: BranchPlan, state: TxState, event: Event) -> Transition:
    """Feed one event to the transaction; see the module docstring for the rules."""
    if state.status.ended and not isinstance(event, ForceEnd):
        return Transition(state, changed=False, note="transaction has ended")
    d = _Draft(plan, state)
    match event:
        case Submit():
            if state.status is not TxStatus.PREPARED:
                return Transition(state, changed=False, note=f"cannot submit: {state.status}")
            d.status = TxStatus.SUBMITTED
            d.advance()
        case AbortRequested() | Timeout():
            if state.status is not TxStatus.PREPARED:
                return Transition(state, changed=False, note=f"cannot abort: {state.status}")
            reason = (
                event.reason if isinstance(event, AbortRequested) else "timed out (timeout_to_fail)"
            )
            d.status, d.reason = TxStatus.ABORTING, reason
            d.advance()
        case OpSucceeded(key=key, attempt=attempt, output=output):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            d.set(key, status=OpStatus.SUCCEEDED, output=output, error=None, next_at=None)
            d.advance()
        case _:
            return apply_retrying(d, state, event)
    return Transition(d.freeze(), tuple(d.commands))
