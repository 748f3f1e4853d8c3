"""The workflow mode as a pure state machine: a durable workflow's journal.

A workflow is plain Python (``legato.workflow``); its body runs alongside the
runner and tells this machine what it does, as events: a step called, a value
recorded, a wait begun, the body returned or raised. Each journal entry is an op
whose branch is ``"<position>.<name>"`` (``0003.reserve_room``); entries the engine
itself writes have names starting with ``@`` (``@sleep``, ``@wait``, ``@pivot``,
``@now``...), and the body's return value is the op ``@result``.

Rules:

* A step's compensation is journaled (pending) with the step, before it runs.
* A step's definite failure is its end: the body hears ``legato.Failure`` and may
  go on. An unknown outcome is retried per the step's policy; past its attempts,
  the decision to roll back is journaled (``aborting``) before anything is undone.
* Rolling back (a failure raised out of the body, an abort, ``timeout_to_fail``, a
  step out of attempts) waits for the steps in flight, then runs the compensation
  of every step that succeeded or whose outcome was lost, one at a time, in reverse
  order of completion; then the workflow has ``failed``. A definitely failed step
  is not compensated: it did not happen.
* ``compensate_since`` undoes the steps after a mark the same way, and the body
  goes on.
* Past the pivot a workflow never rolls back: a step that fails or runs out of
  attempts parks it as stuck (an operator's retry runs it again), and so does a
  failure raised out of the body.
* Compensations never give up: past their attempts the workflow is stuck.
* A step may have a commit op (a TCC branch's confirm): once the body has returned
  and nothing is in flight, the commit ops of the steps that succeeded run, each
  until it succeeds (never given up: past its attempts the workflow is stuck); then
  the workflow has succeeded. A rolled-back workflow runs none.
* A body that raises anything but a failure has a bug: the workflow is stuck with
  the error until an operator retries it (the body is then run again, replaying).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

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
from ._core import (
    AbortRequested,
    Draft,
    Event,
    ForceEnd,
    OperatorRetry,
    OpFailed,
    OpOngoing,
    OpState,
    OpSucceeded,
    OpUnknown,
    Resume,
    RetryDue,
    Signalled,
    Timeout,
    Transition,
    TxState,
    Wake,
    is_current,
    is_due,
)

ACTION = OpName.ACTION
COMPENSATE = OpName.COMPENSATE
CONFIRM = OpName.CONFIRM
RESULT = "@result"
"""The branch of the op that holds the body's return value."""

WAITS = ("@sleep", "@wait")
"""Journal entries that wait for a time (or a signal, until a time)."""

LOST = "outcome lost: coordinator restarted"
GAVE_UP = "gave up: "
"""How the error of a step given up on begins: it may have happened, so it is undone."""


def _gave_up(s: OpState) -> bool:
    return s.status is OpStatus.FAILED and (s.error or "").startswith(GAVE_UP)


def branch(pos: int, name: str) -> str:
    """A journal entry's branch: its position, then its name."""
    return f"{pos:04d}.{name}"


def position(branch: str) -> int:
    """The position of a journal entry (``@result``: after every other)."""
    head, _, _ = branch.partition(".")
    return int(head) if head.isdigit() else 1 << 62


def entry_name(branch: str) -> str:
    return branch.partition(".")[2] or branch


def is_wait(branch: str) -> bool:
    return entry_name(branch) in WAITS


# -- the plan: each entry's retry policies, as the body gave them ------------------------


@dataclass(slots=True)
class WorkflowPlan:
    """The retry policies of the workflow's steps, by branch (a step not named here,
    one journaled before a restart whose body has not reached it yet, has the
    defaults). Filled by the driver as the body calls its steps."""

    action: dict[str, RetryPolicy] = field(default_factory=dict)
    compensate: dict[str, RetryPolicy] = field(default_factory=dict)
    default_action: RetryPolicy = DEFAULT_ACTION_RETRY
    default_compensate: RetryPolicy = DEFAULT_COMPENSATE_RETRY

    def policy(self, key: OpKey) -> RetryPolicy:
        if key[1] is not ACTION:  # a compensation, or a commit op: retried long
            return self.compensate.get(key[0], self.default_compensate)
        return self.action.get(key[0], self.default_action)


# -- the body's events -------------------------------------------------------------------


class _AtEntry:
    """An event about one journal entry (its ``branch``): the op it concerns, for its
    record in the timeline, is the entry's."""

    __slots__ = ()
    branch: str

    @property
    def key(self) -> OpKey:
        return (self.branch, ACTION)


@dataclass(frozen=True, slots=True)
class StepCalled(_AtEntry):
    """The body called a step at a new position: journal it (and its compensation,
    pending) and run it. No event of its own: the op's row says it started, and its
    outcome's event when and how it ended."""

    kind: ClassVar[str] = ""
    now: float
    branch: str
    compensable: bool
    commits: bool = False  # it has an op to run once the workflow succeeds (a TCC confirm)


@dataclass(frozen=True, slots=True)
class StepReached(_AtEntry):
    """Replaying, the body reached a step whose outcome was lost in a restart: run it
    again (another attempt)."""

    kind: ClassVar[str] = "wf.step_reached"
    now: float
    branch: str


@dataclass(frozen=True, slots=True)
class Recorded(_AtEntry):
    """A value the body asked for (a time, a random number, a patch's answer, a pivot,
    a signal already there): journaled as is."""

    kind: ClassVar[str] = "wf.recorded"
    now: float
    branch: str
    output: Json


@dataclass(frozen=True, slots=True)
class Waiting(_AtEntry):
    """The body waits (a sleep, or a signal) until ``until``."""

    kind: ClassVar[str] = "wf.waiting"
    now: float
    branch: str
    until: float


@dataclass(frozen=True, slots=True)
class Delivered(_AtEntry):
    """A signal reached a wait: it ends with ``output``."""

    kind: ClassVar[str] = "wf.signal_taken"
    now: float
    branch: str
    output: Json


@dataclass(frozen=True, slots=True)
class UndoSince(_AtEntry):
    """``compensate_since(mark)``: undo the steps after position ``mark``; the entry
    ``branch`` succeeds once they are."""

    kind: ClassVar[str] = "wf.compensate_since"
    now: float
    branch: str
    mark: int


@dataclass(frozen=True, slots=True)
class BodyReturned:
    kind: ClassVar[str] = "wf.returned"
    now: float
    output: Json
    info: Mapping[str, Json] | None = None  # for the timeline: signals kept and never taken


@dataclass(frozen=True, slots=True)
class BodyFailed:
    """A failure raised out of the body (or ``wf.abort``): roll back."""

    kind: ClassVar[str] = "wf.failed"
    now: float
    reason: str


@dataclass(frozen=True, slots=True)
class BodyCrashed:
    """The body raised something other than a failure: a bug. Stuck until retried."""

    kind: ClassVar[str] = "wf.crashed"
    now: float
    error: str


WorkflowEvent = (
    Event
    | StepCalled
    | StepReached
    | Recorded
    | Waiting
    | Delivered
    | UndoSince
    | BodyReturned
    | BodyFailed
    | BodyCrashed
)


# -- the rules ---------------------------------------------------------------------------


def pivoted(ops: Mapping[OpKey, OpState]) -> bool:
    return any(k[0].endswith(".@pivot") and s.status is OpStatus.SUCCEEDED for k, s in ops.items())


class WorkflowDraft(Draft[WorkflowPlan]):
    def next_completed(self) -> int:
        return 1 + max((s.completed or 0 for s in self.ops.values()), default=0)

    def add(self, key: OpKey, state: OpState) -> None:
        self.ops[key] = state

    def retry_or(self, key: OpKey, attempt: int, error: str, now: float, *, give_up: bool) -> None:
        """Retry ``key`` per its policy; past its attempts, roll back (``give_up``) or
        park the workflow as stuck."""
        if self.retry_later(key, attempt, error, now):
            return
        if give_up:
            attempts = self.ops[key].attempts
            self.set(key, status=OpStatus.FAILED, error=f"{GAVE_UP}{error}",
                     completed=self.next_completed())  # fmt: skip
            self.roll_back(f"step {entry_name(key[0])} gave up after {attempts} attempts: {error}")
            return
        self.park(key, error, self.given_up(key, error))

    def roll_back(self, reason: str) -> None:
        if self.status is not TxStatus.SUBMITTED:
            return
        self.status, self.reason = TxStatus.ABORTING, reason
        for key, s in list(self.ops.items()):
            if entry_name(key[0]) == "@undo" and s.status is OpStatus.RUNNING:
                self.set(key, status=OpStatus.FAILED, error="rolled back whole")
        self.undo_done(None)

    # -- undoing ----------------------------------------------------------------------

    def undo(self, mark: int | None) -> bool:
        """Run the next compensation due (of the steps after ``mark``; None: all), one
        at a time; True once there is none left to run or wait for."""
        undoable: list[tuple[int, int, str]] = []
        for (b, op), s in self.ops.items():
            if op is not COMPENSATE or (mark is not None and position(b) <= mark):
                continue
            if s.status is OpStatus.RUNNING or (
                s.status is OpStatus.RETRY_WAIT and s.next_at is not None
            ):
                return False  # one at a time: wait for it
            if s.status is OpStatus.RETRY_WAIT and s.next_at is None:
                return False  # parked: stuck until an operator retries it
            if s.status is not OpStatus.PENDING:
                continue
            action = self.ops.get((b, ACTION))
            if action is None:
                continue
            if action.status in (OpStatus.RUNNING,) or (
                action.status is OpStatus.RETRY_WAIT and action.next_at is not None
            ):
                return False  # in flight: wait for its outcome
            # a definite failure did not happen; an outcome given up on may have
            happened = action.status is not OpStatus.FAILED or _gave_up(action)
            if action.attempts == 0 or not happened:
                continue
            undoable.append((action.completed or (1 << 40), position(b), b))
        if not undoable:
            return True
        undoable.sort(reverse=True)
        self.start((undoable[0][2], COMPENSATE))
        return False

    def undo_done(self, mark: int | None) -> None:
        """Close what an undo finished: the rolled-back workflow has failed; a
        ``compensate_since`` entry has succeeded."""
        for (b, op), s in list(self.ops.items()):
            if entry_name(b) == "@undo" and s.status is OpStatus.RUNNING and op is ACTION:
                since = int(s.output) if isinstance(s.output, int) else 0
                if self.undo(since):
                    self.set((b, op), status=OpStatus.SUCCEEDED, completed=self.next_completed())
        if (
            self.status is TxStatus.ABORTING
            and self.stuck is None
            and self.undo(None)
            and not any(s.status is OpStatus.RUNNING for s in self.ops.values())
        ):
            self.status = TxStatus.FAILED

    def finish(self) -> None:
        """The body has returned and nothing is in flight: the steps' commit ops run (a
        TCC branch's confirm: all at once, each until it succeeds), then the workflow
        has succeeded."""
        if self.status is not TxStatus.SUBMITTED or (RESULT, ACTION) not in self.ops:
            return
        for (b, _), s in self.ops.items():
            if s.status is OpStatus.RUNNING or (s.status is OpStatus.RETRY_WAIT and not is_wait(b)):
                return
        due = [
            k
            for k, s in self.ops.items()
            if k[1] is CONFIRM
            and s.status is OpStatus.PENDING
            and self.ops[(k[0], ACTION)].status is OpStatus.SUCCEEDED
        ]
        if due:
            for key in due:
                self.start(key)
            return
        self.status = TxStatus.SUCCEEDED

    def advance(self) -> None:
        self.undo_done(None)
        self.finish()


def new_state(gid: str) -> TxState:
    return TxState(gid, TxStatus.SUBMITTED, {})


def apply(plan: WorkflowPlan, state: TxState, event: WorkflowEvent) -> Transition:
    if state.status.ended:
        return Transition(state, changed=False, note="the workflow has ended")
    d = WorkflowDraft(plan, state)
    submitted = state.status is TxStatus.SUBMITTED
    match event:
        case Resume(now=now, fresh=fresh):
            for key, s in state.ops.items():
                b, op = key
                if s.status is OpStatus.RUNNING and not fresh:
                    if op is not ACTION or entry_name(b) == "@undo":
                        if op is not ACTION:
                            d.retry_or(key, s.attempts, LOST, now, give_up=False)
                    elif not submitted:
                        # rolling back: a step in flight is never retried, only undone
                        d.set(key, status=OpStatus.FAILED, error=f"{GAVE_UP}{LOST}",
                              completed=d.next_completed())  # fmt: skip
                    else:
                        # the body runs it again when it reaches it (StepReached)
                        d.set(key, status=OpStatus.RETRY_WAIT, next_at=None, error=LOST)
                elif s.status is OpStatus.RETRY_WAIT and s.next_at is not None:
                    d.commands.append(Wake(key, s.attempts, s.next_at))
            d.advance()
        case StepCalled(branch=b, compensable=compensable):
            if not submitted or (b, ACTION) in state.ops:
                return Transition(state, changed=False, note="not now, or journaled already")
            d.add((b, ACTION), OpState())
            if compensable:
                d.add((b, COMPENSATE), OpState())
            if event.commits:
                d.add((b, CONFIRM), OpState())
            d.start((b, ACTION))
        case StepReached(branch=b):
            key = (b, ACTION)
            lost = state.ops.get(key)
            if (
                not submitted
                or lost is None
                or lost.status is not OpStatus.RETRY_WAIT
                or lost.next_at
            ):
                return Transition(state, changed=False, note="nothing to run again")
            if lost.budget >= plan.policy(key).max_attempts:
                why = lost.error or LOST
                d.retry_or(key, lost.attempts, why, event.now, give_up=not pivoted(d.ops))
            else:
                d.start(key)
        case Recorded(branch=b, output=output):
            if (b, ACTION) in state.ops and b != RESULT:
                return Transition(state, changed=False, note="journaled already")
            d.add((b, ACTION), OpState(OpStatus.SUCCEEDED, output=output))
        case Waiting(branch=b, until=until):
            if (b, ACTION) in state.ops:
                return Transition(state, changed=False, note="journaled already")
            d.add((b, ACTION), OpState(OpStatus.RETRY_WAIT, next_at=until))
            d.commands.append(Wake((b, ACTION), 0, until))
        case Delivered(branch=b, output=output):
            waiting = state.ops.get((b, ACTION))
            if waiting is None or waiting.status is not OpStatus.RETRY_WAIT:
                return Transition(state, changed=False, note="not waiting")
            d.set((b, ACTION), status=OpStatus.SUCCEEDED, next_at=None, output=output)
        case UndoSince(branch=b, mark=mark):
            if (b, ACTION) in state.ops or not submitted:
                return Transition(state, changed=False, note="journaled already, or not now")
            d.add((b, ACTION), OpState(OpStatus.RUNNING, output=mark))
            d.undo_done(mark)
        case BodyReturned(output=output):
            if not submitted:
                return Transition(state, changed=False, note="not running forward")
            d.add((RESULT, ACTION), OpState(OpStatus.SUCCEEDED, output=output))
            d.finish()
        case BodyFailed(reason=reason) | AbortRequested(reason=reason):
            if not submitted:
                return Transition(state, changed=False, note="not running forward")
            if pivoted(state.ops):
                if isinstance(event, AbortRequested):
                    return Transition(state, changed=False, note="past the pivot: no rollback")
                d.stuck = f"failed past the pivot, so it cannot roll back: {reason}"
            else:
                d.roll_back(reason)
        case BodyCrashed(error=error):
            d.stuck = f"the workflow's body raised {error}"
        case Timeout(now=now):
            if not submitted or pivoted(state.ops):
                return Transition(state, changed=False, note="not running forward, or past pivot")
            d.roll_back("timed out")
        case OpSucceeded(key=key, attempt=attempt, output=output):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            d.set(key, status=OpStatus.SUCCEEDED, output=output, error=None,
                  completed=d.next_completed() if key[1] is ACTION else None)  # fmt: skip
            d.advance()
        case OpFailed(key=key, attempt=attempt, now=now, error=error):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            if key[1] is not ACTION:
                d.retry_or(key, attempt, f"{key[1]} failed: {error}", now, give_up=False)
            elif not submitted:
                d.set(key, status=OpStatus.FAILED, error=error)
                d.advance()
            elif pivoted(state.ops):
                d.park(key, error, f"step {entry_name(key[0])} failed past the pivot: {error}")
            else:
                d.set(key, status=OpStatus.FAILED, error=error)
        case OpUnknown(key=key, attempt=attempt, now=now, error=error):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            if key[1] is ACTION and not submitted:
                # rolling back: a step in flight is not retried; it is undone
                d.set(key, status=OpStatus.FAILED, error=f"{GAVE_UP}{error}",
                      completed=d.next_completed())  # fmt: skip
                d.advance()
            else:
                forward = key[1] is ACTION and not pivoted(state.ops)
                d.retry_or(key, attempt, error, now, give_up=forward)
                if key[1] is CONFIRM:
                    d.finish()
        case OpOngoing(key=key, attempt=attempt, now=now, error=error):
            if not is_current(state, key, attempt, OpStatus.RUNNING):
                return Transition(state, changed=False, note="stale result")
            d.wait_ongoing(key, attempt, now, error)
        case RetryDue(key=key, attempt=attempt):
            if not is_due(state, key, attempt):
                return Transition(state, changed=False, note="stale wake-up")
            if is_wait(key[0]):
                d.set(key, status=OpStatus.SUCCEEDED, next_at=None, output={"timeout": True})
            elif key[1] is ACTION and not submitted:
                why = f"{GAVE_UP}{d.ops[key].error}"
                d.set(key, status=OpStatus.FAILED, next_at=None, error=why,
                      completed=d.next_completed())  # fmt: skip
                d.advance()
            else:
                d.start(key)
        case OperatorRetry():
            if not d.retry_parked():
                return Transition(state, changed=False, note="nothing is stuck")
            d.advance()
        case Signalled():
            return Transition(state, changed=False, note="the body takes signals")
        case ForceEnd(status=status, reason=reason):
            if not status.ended:
                return Transition(state, changed=False, note="not an end")
            d.status, d.reason, d.stuck = status, reason, None
        case _:
            return Transition(
                state, changed=False, note=f"{type(event).__name__} means nothing here"
            )
    return Transition(d.freeze(), tuple(d.commands))
