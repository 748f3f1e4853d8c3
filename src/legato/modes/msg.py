"""The msg mode (two-phase message) as a pure state machine.

The initiator prepares the message (its branches are known from the start), runs
its local transaction with the msg barrier row, and submits. Then:

* ``Submit``: ``submitted``; the branches' ``action`` ops (the deliveries) run one
  at a time, in order: each starts once the one before it has succeeded, so a
  delivery that fails holds back the ones after it (as DTM delivers a message). A
  ``concurrent`` message starts them all at once. When all have succeeded the
  transaction has ``succeeded``. A delivery is never given up silently: a failure
  answer is retried like an unknown outcome (nothing is undone: a message only goes
  forward), and past its attempts the op is parked and the transaction stuck, until
  an operator retries it.
* ``AbortRequested`` while prepared (the local transaction failed): ``failed`` at
  once; nothing was delivered, so nothing is undone.
* ``Timeout`` while prepared (the initiator went quiet): the coordinator asks the
  initiator's ``query_prepared`` (the op ``("00", msg)``): success (its barrier
  row says the local transaction committed) submits; a definite failure (it
  rolled back, or never will commit now) fails the message; "not yet" or no
  answer asks again later. Without a query op, the timeout fails it.
* Once submitted it only goes forward.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._model import DEFAULT_COMPENSATE_RETRY, OpKey, OpName, OpStatus, RetryPolicy, TxStatus
from ._core import (
    AbortRequested,
    Event,
    ForceEnd,
    OpFailed,
    OpSucceeded,
    RetryingDraft,
    Submit,
    Timeout,
    Transition,
    TxState,
    apply_retrying,
    is_current,
)

QUERY: OpKey = ("00", OpName.MSG)
"""The initiator's local transaction, asked about through its ``query_prepared``."""

# asked again at this pace, for as long as the initiator's answer takes to come
QUERY_RETRY = RetryPolicy(max_attempts=1000, backoff=1.0, max_backoff=30.0)


@dataclass(frozen=True, slots=True)
class MsgPlan:
    branches: tuple[str, ...]  # the deliveries, in order
    has_query: bool
    concurrent: bool = False  # deliver all at once, not one after another
    deliver_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY
    query_retry: RetryPolicy = QUERY_RETRY

    def op_keys(self) -> list[OpKey]:
        keys = [(b, OpName.ACTION) for b in self.branches]
        return [*keys, QUERY] if self.has_query else keys

    def policy(self, key: OpKey) -> RetryPolicy:
        return self.query_retry if key == QUERY else self.deliver_retry


def new_state(gid: str, plan: MsgPlan) -> TxState:
    return TxState.fresh(gid, TxStatus.PREPARED, plan.op_keys())


class _Draft(RetryingDraft[MsgPlan]):
    def advance(self) -> None:
        if self.status is not TxStatus.SUBMITTED:
            return
        deliveries = [(b, OpName.ACTION) for b in self.plan.branches]
        if all(self.ops[k].status is OpStatus.SUCCEEDED for k in deliveries):
            self.status, self.stuck = TxStatus.SUCCEEDED, None
            return
        for k in deliveries:
            status = self.ops[k].status
            if status is OpStatus.PENDING:
                self.start(k)
            if not self.plan.concurrent and status is not OpStatus.SUCCEEDED:
                return  # the next waits until this one has succeeded

    def fail(self, reason: str) -> None:
        self.status, self.reason, self.stuck = TxStatus.FAILED, reason, None


def apply(plan: MsgPlan, state: TxState, event: Event) -> Transition:
    """Feed one event to the message; see the module docstring for the rules."""
    if state.status.ended and not isinstance(event, ForceEnd):
        return Transition(state, changed=False, note="transaction has ended")
    d = _Draft(plan, state)
    asking = plan.has_query and state.ops[QUERY].status in (
        OpStatus.RUNNING,
        OpStatus.RETRY_WAIT,
    )
    match event:
        case Submit():
            if state.status is not TxStatus.PREPARED:
                return Transition(state, changed=False, note=f"cannot submit: {state.status}")
            d.status = TxStatus.SUBMITTED
            d.advance()
        case AbortRequested(reason=reason):
            if state.status is not TxStatus.PREPARED:
                return Transition(state, changed=False, note=f"cannot abort: {state.status}")
            d.fail(reason)
        case Timeout():
            if state.status is not TxStatus.PREPARED or asking:
                return Transition(state, changed=False, note="not prepared, or asking already")
            if not plan.has_query:
                d.fail("timed out (timeout_to_fail), and no query_prepared to ask")
            else:
                d.start(QUERY)
        case OpSucceeded(key=key, attempt=attempt, output=output):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            d.set(key, status=OpStatus.SUCCEEDED, output=output, error=None, next_at=None)
            if key == QUERY and state.status is TxStatus.PREPARED:
                d.status = TxStatus.SUBMITTED  # the local transaction committed
            d.advance()
        case OpFailed(key=key, attempt=attempt, error=error) if key == QUERY:
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            d.set(key, status=OpStatus.FAILED, error=error, next_at=None)
            if state.status is TxStatus.PREPARED:
                d.fail(f"the local transaction did not commit (query_prepared: {error})")
        case _:
            # deliveries (and a query without an answer) are retried like TCC's ops
            return apply_retrying(d, state, event)
    return Transition(d.freeze(), tuple(d.commands))
