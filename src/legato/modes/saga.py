"""The saga mode as a pure state machine (the kernel it shares with every mode,
state, events and commands, is ``modes._core``).

Rules (DESIGN section 4):

* Forward (``submitted``): every step whose dependencies have all succeeded
  starts. When every action has succeeded the saga has ``succeeded``.
* A definite failure of an action, an action that used up its attempts, a
  timeout or an abort request before the pivot turns the saga to
  ``aborting``. Actions still in flight are waited for (never retried); then
  every step that started (the failed one included) is compensated, one at a
  time, in reverse order of completion. When all are, the saga has ``failed``.
* A pivot whose outcome stays unknown past its attempts parks the saga as
  stuck (it may have taken effect, and has no undo).
* After the pivot step's action has succeeded, the saga only goes forward:
  a later step that fails, or runs out of attempts, parks the saga as
  *stuck*, with its reason, until an operator retries it.
* Compensations never give up silently: a definite failure of a compensation
  is retried like an unknown one, and past its attempts the saga is stuck.
* Events that arrive late or twice (for an attempt that is no longer the
  current one, an op in another status, or an ended saga) change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._model import (
    DEFAULT_ACTION_RETRY,
    DEFAULT_COMPENSATE_RETRY,
    OpKey,
    OpName,
    OpStatus,
    RetryPolicy,
    TxStatus,
)
from ._core import (
    AbortRequested,
    Draft,
    Event,
    ForceEnd,
    OperatorRetry,
    OpFailed,
    OpOngoing,
    OpSucceeded,
    OpUnknown,
    Resume,
    RetryDue,
    Timeout,
    Transition,
    TxState,
    Wake,
    is_current,
    is_due,
)

ACTION = OpName.ACTION
COMPENSATE = OpName.COMPENSATE


# -- the plan: the structure of a saga, without its callables ---------------------------


@dataclass(frozen=True, slots=True)
class StepPlan:
    name: str
    deps: tuple[str, ...] = ()
    compensable: bool = True
    pivot: bool = False
    action_retry: RetryPolicy = DEFAULT_ACTION_RETRY
    compensate_retry: RetryPolicy = DEFAULT_COMPENSATE_RETRY


@dataclass(frozen=True, slots=True)
class SagaPlan:
    """Steps in declaration order; ``deps`` name earlier steps (validated by ``Saga``)."""

    steps: tuple[StepPlan, ...]
    after_pivot: frozenset[str] = frozenset()
    pivot: str | None = None

    def step(self, name: str) -> StepPlan:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def policy(self, key: OpKey) -> RetryPolicy:
        s = self.step(key[0])
        return s.action_retry if key[1] is ACTION else s.compensate_retry

    def op_keys(self) -> list[OpKey]:
        out: list[OpKey] = []
        for s in self.steps:
            out.append((s.name, ACTION))
            if s.compensable:
                out.append((s.name, COMPENSATE))
        return out


def new_state(gid: str, plan: SagaPlan) -> TxState:
    """A saga as submitted: going forward, every op pending."""
    return TxState.fresh(gid, TxStatus.SUBMITTED, plan.op_keys())


class _Draft(Draft[SagaPlan]):
    def next_completion(self) -> int:
        done = [s.completed for s in self.ops.values() if s.completed is not None]
        return max(done, default=0) + 1

    def end_action(self, key: OpKey, status: OpStatus, error: str | None) -> None:
        self.set(key, status=status, error=error, next_at=None, completed=self.next_completion())

    def pivot_passed(self) -> bool:
        pivot = self.plan.pivot
        return pivot is not None and self.ops[(pivot, ACTION)].status is OpStatus.SUCCEEDED

    def abort(self, reason: str, now: float) -> None:
        """Turn to compensation; actions waiting to retry are ended, not retried."""
        self.status = TxStatus.ABORTING
        self.reason = reason
        for key, s in list(self.ops.items()):
            if key[1] is ACTION and s.status is OpStatus.RETRY_WAIT:
                self.end_action(key, OpStatus.FAILED, s.error or "abandoned: saga aborting")
                # a wake-up issued earlier in this same apply would be stale at once
                self.commands = [
                    c for c in self.commands if not (isinstance(c, Wake) and c.key == key)
                ]

    def retry_or_give_up(self, key: OpKey, attempt: int, error: str, now: float) -> None:
        """An attempt's outcome is unknown: wait and retry, or give up per the rules."""
        if self.retry_later(key, attempt, error, now):
            return
        given_up = self.given_up(key, error)
        if key[1] is COMPENSATE:
            self.park(key, error, f"compensation {given_up}")
        elif key[0] in self.plan.after_pivot and self.pivot_passed():
            self.park(key, error, f"after the pivot, {given_up}")
        elif key[0] == self.plan.pivot:
            # the pivot may have taken effect (a charge made) with its answer lost; it has
            # no undo by definition, so rolling back could strand it: an operator decides
            self.park(key, error, f"the pivot's outcome is unknown: {given_up}")
        else:
            self.end_action(key, OpStatus.FAILED, error)
            self.abort(given_up, now)

    def advance(self, now: float) -> None:
        """Start whatever can start; end the saga when nothing is left."""
        if self.status is TxStatus.SUBMITTED:
            self._forward()
        if self.status is TxStatus.ABORTING:
            self._backward()

    def _forward(self) -> None:
        done = {
            k[0] for k, s in self.ops.items() if k[1] is ACTION and s.status is OpStatus.SUCCEEDED
        }
        if len(done) == len(self.plan.steps):
            self.status = TxStatus.SUCCEEDED
            self.stuck = None
            return
        for step in self.plan.steps:
            key = (step.name, ACTION)
            if self.ops[key].status is OpStatus.PENDING and all(d in done for d in step.deps):
                self.start(key)

    def _backward(self) -> None:
        actions = [(k, s) for k, s in self.ops.items() if k[1] is ACTION]
        if any(s.status is OpStatus.RUNNING for _, s in actions):
            return  # wait for actions in flight to report before undoing anything
        started = [
            (s.completed or 0, k[0])
            for k, s in actions
            if s.status in (OpStatus.SUCCEEDED, OpStatus.FAILED)
        ]
        for _, name in sorted(started, reverse=True):
            if not self.plan.step(name).compensable:
                continue
            key = (name, COMPENSATE)
            c = self.ops[key]
            if c.status is OpStatus.SUCCEEDED:
                continue
            if c.status is OpStatus.PENDING:
                self.start(key)
            return  # one compensation at a time, in reverse completion order
        self.status = TxStatus.FAILED
        self.stuck = None


def apply(plan: SagaPlan, state: TxState, event: Event) -> Transition:
    """Feed one event to the saga; see the module docstring for the rules."""
    if state.status.ended and not isinstance(event, ForceEnd):
        return Transition(state, changed=False, note="saga has ended")
    d = _Draft(plan, state)
    match event:
        case Resume(now=now, fresh=fresh):
            for key in state.ops:
                op = d.ops[key]  # not state's: an abort earlier in this loop may have ended it
                if op.status is OpStatus.RUNNING and not fresh:
                    _on_unknown(d, key, op.attempts, "outcome lost: coordinator restarted", now)
                elif op.status is OpStatus.RETRY_WAIT and op.next_at is not None:
                    d.commands.append(Wake(key, op.attempts, op.next_at))
            d.advance(now)
        case OpSucceeded(key=key, attempt=attempt, now=now, output=output):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            if key[1] is ACTION:
                d.set(key, output=output)
                d.end_action(key, OpStatus.SUCCEEDED, None)
            else:
                d.set(key, status=OpStatus.SUCCEEDED, error=None, next_at=None)
            d.advance(now)
        case OpFailed(key=key, attempt=attempt, now=now, error=error):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            _on_failed(d, key, attempt, error, now)
            d.advance(now)
        case OpUnknown(key=key, attempt=attempt, now=now, error=error):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            _on_unknown(d, key, attempt, error, now)
            d.advance(now)
        case OpOngoing(key=key, attempt=attempt, now=now, error=error):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            if key[1] is ACTION and state.status is TxStatus.ABORTING:
                # going back: an action still in progress is not waited for; it is
                # compensated like any action that started
                d.end_action(key, OpStatus.FAILED, error)
            else:
                d.wait_ongoing(key, attempt, now, error)
            d.advance(now)
        case RetryDue(key=key, attempt=attempt, now=now):
            if not is_due(state, key, attempt):
                return Transition(state, changed=False, note="stale wake-up")
            d.start(key)
        case Timeout(now=now):
            if not _may_abort(d):
                return Transition(state, changed=False, note="past the point of no return")
            d.abort("timed out (timeout_to_fail)", now)
            d.advance(now)
        case AbortRequested(now=now, reason=reason):
            if not _may_abort(d):
                return Transition(state, changed=False, note="cannot abort now")
            d.abort(reason, now)
            d.advance(now)
        case OperatorRetry(now=now):
            if not d.retry_parked():
                return Transition(state, changed=False, note="nothing is stuck")
        case ForceEnd(status=status, reason=reason):
            if not status.ended or state.status.ended:
                return Transition(state, changed=False, note="not an end, or already ended")
            d.status, d.reason, d.stuck = status, reason, None
        case _:  # Submit: a saga is submitted when it is created
            return Transition(state, changed=False, note=f"a saga takes no {type(event).__name__}")
    return Transition(d.freeze(), tuple(d.commands))


def _may_abort(d: _Draft) -> bool:
    if d.status is not TxStatus.SUBMITTED:
        return False
    pivot = d.plan.pivot
    return pivot is None or d.ops[(pivot, ACTION)].status is OpStatus.PENDING


def _on_failed(d: _Draft, key: OpKey, attempt: int, error: str, now: float) -> None:
    if key[1] is COMPENSATE:
        # an undo that answers "failure" is not an end: try again (DESIGN 3.4)
        d.retry_or_give_up(key, attempt, f"compensation failed: {error}", now)
        return
    if d.status is TxStatus.ABORTING:
        d.end_action(key, OpStatus.FAILED, error)
    elif key[0] in d.plan.after_pivot and d.pivot_passed():
        d.park(key, error, f"after the pivot, {key[0]}.action failed: {error}")
    else:
        d.end_action(key, OpStatus.FAILED, error)
        d.abort(f"{key[0]} failed: {error}", now)


def _on_unknown(d: _Draft, key: OpKey, attempt: int, error: str, now: float) -> None:
    if key[1] is ACTION and d.status is TxStatus.ABORTING:
        d.end_action(key, OpStatus.FAILED, error)  # no retries while going back
    else:
        d.retry_or_give_up(key, attempt, error, now)
