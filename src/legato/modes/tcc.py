"""The TCC mode as a pure state machine (try / confirm / cancel).

The initiator begins the transaction (``prepared``), registers each branch
(its confirm and cancel calls) and calls the branch's try itself. Then:

* ``Submit`` (every try succeeded): ``submitted``; every branch's confirm
  starts at once; when all have succeeded the transaction has ``succeeded``.
* ``AbortRequested`` (a try failed) or ``Timeout`` (still prepared past
  ``timeout_to_fail``): ``aborting``; the branches are cancelled one at a
  time, in reverse order of registration (a cancel of a branch whose try
  never ran is the participant's null compensation, which its barrier
  absorbs); when all are, the transaction has ``failed``.
* Confirm and cancel never give up silently: a failure answer is retried
  like an unknown outcome, and past its attempts the op is parked and the
  transaction marked stuck, until an operator retries it.
* Once submitted it only goes forward: an abort or a timeout changes nothing.

The state, events and commands are the saga machine's (``SagaState`` with
``(branch, confirm|cancel)`` ops); only the rules differ.

Two-phase commit (XA) follows the same rules with ``commit`` and ``rollback``
ops (``TccPlan(..., forward=COMMIT, undo=ROLLBACK)``): each branch prepared its
part before ``Submit``, and the status ``submitted`` written to the log *is*
the commit decision; nothing is committed before it is durable.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._model import DEFAULT_COMPENSATE_RETRY, OpKey, OpName, OpStatus, RetryPolicy, TxStatus
from .saga import (
    AbortRequested,
    Draft,
    ForceEnd,
    OperatorRetry,
    OpFailed,
    OpOngoing,
    OpState,
    OpSucceeded,
    OpUnknown,
    P,
    Resume,
    RetryDue,
    SagaState,
    Timeout,
    Transition,
    Wake,
    is_current,
    is_due,
)
from .saga import Event as SagaEvent

CONFIRM = OpName.CONFIRM
CANCEL = OpName.CANCEL


@dataclass(frozen=True, slots=True)
class Submit:
    """The initiator's tries all succeeded: confirm every branch."""

    now: float


Event = SagaEvent | Submit


@dataclass(frozen=True, slots=True)
class TccPlan:
    branches: tuple[str, ...]  # in order of registration
    confirm_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY
    cancel_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY
    forward: OpName = CONFIRM  # XA: COMMIT
    undo: OpName = CANCEL  # XA: ROLLBACK

    def policy(self, key: OpKey) -> RetryPolicy:
        return self.confirm_retry if key[1] is self.forward else self.cancel_retry

    def op_keys(self) -> list[OpKey]:
        return [(b, op) for b in self.branches for op in (self.forward, self.undo)]


def new_state(gid: str, plan: TccPlan) -> SagaState:
    return SagaState(gid, TxStatus.PREPARED, {k: OpState() for k in plan.op_keys()})


class RetryingDraft(Draft[P]):
    """The working copy of a machine whose every op is retried until it succeeds (TCC
    and XA's confirm/cancel, msg's deliveries): a failure is no end, and past its
    attempts an op is parked and the transaction stuck."""

    def retry_or_park(self, key: OpKey, attempt: int, error: str, now: float) -> None:
        s = self.ops[key]
        policy = self.plan.policy(key)
        if s.budget < policy.max_attempts:
            at = now + policy.delay(attempt, f"{self.gid}:{key[0]}:{key[1]}")
            self.set(key, status=OpStatus.RETRY_WAIT, next_at=at, error=error)
            self.commands.append(Wake(key, attempt, at))
            return
        self.set(key, status=OpStatus.RETRY_WAIT, next_at=None, error=error)
        self.stuck = f"{key[0]}.{key[1]} gave up after {s.attempts} attempts: {error}"

    def advance(self) -> None:
        raise NotImplementedError


def apply_retrying(d: RetryingDraft[P], state: SagaState, event: object) -> Transition:
    """The events such a machine handles alike: a restart, an op's failed or unknown
    outcome (retried), "not yet", a due retry, an operator's retry, a forced end."""
    match event:
        case Resume(now=now, fresh=fresh):
            for key, op in state.ops.items():
                if op.status is OpStatus.RUNNING and not fresh:
                    d.retry_or_park(key, op.attempts, "outcome lost: coordinator restarted", now)
                elif op.status is OpStatus.RETRY_WAIT and op.next_at is not None:
                    d.commands.append(Wake(key, op.attempts, op.next_at))
            d.advance()
        case (
            OpFailed(key=key, attempt=attempt, now=now, error=error)
            | OpUnknown(key=key, attempt=attempt, now=now, error=error)
        ):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            # a forward or undo op answering "failure" is not an end (DESIGN 3.4)
            d.retry_or_park(key, attempt, f"{key[1]} failed: {error}", now)
        case OpOngoing(key=key, attempt=attempt, now=now, error=error):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            d.wait_ongoing(key, attempt, now, error)
        case RetryDue(key=key, attempt=attempt):
            if not is_due(state, key, attempt):
                return Transition(state, changed=False, note="stale wake-up")
            d.start(key)
        case OperatorRetry():
            if not d.retry_parked():
                return Transition(state, changed=False, note="nothing is stuck")
            d.advance()
        case ForceEnd(status=status, reason=reason):
            if not status.ended or state.status.ended:
                return Transition(state, changed=False, note="not an end, or already ended")
            d.status, d.reason, d.stuck = status, reason, None
    return Transition(d.freeze(), tuple(d.commands))


class _Draft(RetryingDraft[TccPlan]):
    def advance(self) -> None:
        if self.status is TxStatus.SUBMITTED:
            confirms = [(b, self.plan.forward) for b in self.plan.branches]
            if all(self.ops[k].status is OpStatus.SUCCEEDED for k in confirms):
                self.status, self.stuck = TxStatus.SUCCEEDED, None
                return
            for k in confirms:
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
                return  # one cancel at a time, newest branch first
            self.status, self.stuck = TxStatus.FAILED, None


def apply(plan: TccPlan, state: SagaState, event: Event) -> Transition:
    """Feed one event to the TCC transaction; see the module docstring for the rules."""
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
