"""The saga mode as a pure state machine.

``apply(plan, state, event)`` returns the new state and the commands the
driver must carry out *after* it has written the new state to the log
(write-ahead). Nothing here does I/O or reads a clock: time comes in on the
events, and retry jitter is a hash of the gid (see ``RetryPolicy.delay``).

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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .._model import (
    DEFAULT_ACTION_RETRY,
    DEFAULT_COMPENSATE_RETRY,
    Json,
    OpKey,
    OpName,
    OpStatus,
    RetryPolicy,
    TxStatus,
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


# -- state ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpState:
    status: OpStatus = OpStatus.PENDING
    attempts: int = 0  # attempts issued in all
    budget: int = 0  # attempts issued since the last operator retry
    next_at: float | None = None  # RETRY_WAIT: when to try again; None = parked (stuck)
    output: Json = None
    error: str | None = None
    completed: int | None = None  # completion order of actions, for compensation


@dataclass(frozen=True, slots=True)
class SagaState:
    gid: str
    status: TxStatus
    ops: Mapping[OpKey, OpState]
    reason: str | None = None
    stuck: str | None = None

    @staticmethod
    def new(gid: str, plan: SagaPlan) -> SagaState:
        return SagaState(gid, TxStatus.SUBMITTED, {k: OpState() for k in plan.op_keys()})

    def op(self, key: OpKey) -> OpState:
        return self.ops[key]

    def outputs(self) -> dict[str, Json]:
        """Outputs of the actions that succeeded, by step name."""
        return {
            k[0]: s.output
            for k, s in self.ops.items()
            if k[1] is ACTION and s.status is OpStatus.SUCCEEDED
        }


# -- events (inputs) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Resume:
    """Drive the saga from its logged state: at submit, and after a claim.

    Any op logged as running was in flight in a driver that is gone, so its
    outcome is unknown: it is retried (or, while aborting, ended).
    """

    now: float
    fresh: bool = False  # True at submit: nothing can be in flight


@dataclass(frozen=True, slots=True)
class OpSucceeded:
    key: OpKey
    attempt: int
    now: float
    output: Json = None
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class OpFailed:
    """A definite failure (``legato.Failure``, HTTP 409, ``FAILURE``)."""

    key: OpKey
    attempt: int
    now: float
    error: str = "failed"
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class OpUnknown:
    """An attempt whose outcome is unknown: an error, a timeout, a lost connection."""

    key: OpKey
    attempt: int
    now: float
    error: str = "unknown outcome"
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class OpOngoing:
    """The participant answered "not yet" (HTTP 425, ``ONGOING``): ask again at the
    step's fixed ``ongoing_interval``, without using up an attempt."""

    key: OpKey
    attempt: int
    now: float
    error: str = "ongoing"
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class RetryDue:
    key: OpKey
    attempt: int  # the attempt that failed; the next one is attempt + 1
    now: float


@dataclass(frozen=True, slots=True)
class Timeout:
    now: float


@dataclass(frozen=True, slots=True)
class AbortRequested:
    now: float
    reason: str = "aborted on request"


@dataclass(frozen=True, slots=True)
class OperatorRetry:
    """An operator asks a stuck saga to try its parked ops again."""

    now: float


@dataclass(frozen=True, slots=True)
class ForceEnd:
    """An operator ends the saga by decree (after repairing things by hand)."""

    now: float
    status: TxStatus
    reason: str


Event = (
    Resume
    | OpSucceeded
    | OpFailed
    | OpUnknown
    | OpOngoing
    | RetryDue
    | Timeout
    | AbortRequested
    | OperatorRetry
    | ForceEnd
)


# -- commands (outputs) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOp:
    """Run attempt ``attempt`` of op ``key`` now (its start is already logged)."""

    key: OpKey
    attempt: int
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Wake:
    """Send ``RetryDue(key, attempt)`` at time ``at``."""

    key: OpKey
    attempt: int
    at: float


Command = RunOp | Wake


@dataclass(frozen=True, slots=True)
class Transition:
    state: SagaState
    commands: tuple[Command, ...] = ()
    changed: bool = True
    note: str | None = field(default=None)


# -- the machine ------------------------------------------------------------------------


class _HasPolicy(Protocol):
    def policy(self, key: OpKey) -> RetryPolicy: ...


P = TypeVar("P", bound=_HasPolicy)


class Draft(Generic[P]):
    """A mutable working copy used inside one ``apply`` call only; each mode's machine
    (saga, TCC/XA) adds its own rules on top."""

    def __init__(self, plan: P, state: SagaState) -> None:
        self.plan = plan
        self.gid = state.gid
        self.status = state.status
        self.ops = dict(state.ops)
        self.reason = state.reason
        self.stuck = state.stuck
        self.commands: list[Command] = []

    def freeze(self) -> SagaState:
        return SagaState(self.gid, self.status, self.ops, self.reason, self.stuck)

    def set(self, key: OpKey, **changes: object) -> None:
        # by hand rather than dataclasses.replace: this is the machine's hottest line
        s = self.ops[key]
        fields = {
            "status": s.status,
            "attempts": s.attempts,
            "budget": s.budget,
            "next_at": s.next_at,
            "output": s.output,
            "error": s.error,
            "completed": s.completed,
        }
        fields.update(changes)
        self.ops[key] = OpState(**fields)

    def start(self, key: OpKey) -> None:
        s = self.ops[key]
        attempt = s.attempts + 1
        self.set(key, status=OpStatus.RUNNING, attempts=attempt, budget=s.budget + 1, next_at=None)
        self.commands.append(RunOp(key, attempt, self.plan.policy(key).timeout))

    def wait_ongoing(self, key: OpKey, attempt: int, now: float, error: str) -> None:
        """The participant answered "not yet": ask again at the op's fixed interval,
        without using up an attempt."""
        at = now + self.plan.policy(key).ongoing_interval
        budget = self.ops[key].budget - 1
        self.set(key, status=OpStatus.RETRY_WAIT, next_at=at, error=error, budget=budget)
        self.commands.append(Wake(key, attempt, at))

    def retry_parked(self) -> bool:
        """An operator's retry: every parked op starts again with a fresh budget, and the
        transaction is no longer stuck. False when nothing is stuck."""
        parked = [
            k for k, s in self.ops.items() if s.status is OpStatus.RETRY_WAIT and s.next_at is None
        ]
        if not parked and self.stuck is None:
            return False
        # (stuck with nothing parked: the driver parked the whole transaction, e.g. because
        # its definition changed; the retry lifts that and it is driven on)
        self.stuck = None
        for key in parked:
            self.set(key, budget=0)
            self.start(key)
        return True


class _Draft(Draft[SagaPlan]):
    def next_completion(self) -> int:
        done = [s.completed for s in self.ops.values() if s.completed is not None]
        return max(done, default=0) + 1

    def end_action(self, key: OpKey, status: OpStatus, error: str | None) -> None:
        self.set(key, status=status, error=error, next_at=None, completed=self.next_completion())

    def park(self, key: OpKey, error: str, why: str) -> None:
        self.set(key, status=OpStatus.RETRY_WAIT, next_at=None, error=error)
        self.stuck = why

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
        s = self.ops[key]
        policy = self.plan.policy(key)
        if s.budget < policy.max_attempts:
            at = now + policy.delay(attempt, f"{self.gid}:{key[0]}:{key[1]}")
            self.set(key, status=OpStatus.RETRY_WAIT, next_at=at, error=error)
            self.commands.append(Wake(key, attempt, at))
            return
        given_up = f"{key[0]}.{key[1]} gave up after {s.attempts} attempts: {error}"
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


def is_current(state: SagaState, key: OpKey, attempt: int, *statuses: OpStatus) -> bool:
    """Is ``attempt`` the op's latest, and the op in one of ``statuses``? (A result or a
    wake-up for anything else arrived late or twice.)"""
    s = state.ops.get(key)
    return s is not None and s.attempts == attempt and s.status in statuses


def is_due(state: SagaState, key: OpKey, attempt: int) -> bool:
    """Is this wake-up the one the op waits for?"""
    s = state.ops.get(key)
    return (
        is_current(state, key, attempt, OpStatus.RETRY_WAIT)
        and s is not None
        and (s.next_at is not None)
    )


def apply(plan: SagaPlan, state: SagaState, event: Event) -> Transition:
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
