"""The kernel every mode's machine shares: a transaction's state, the events that move
it, the commands it returns, and the working copy a transition is computed on.

A machine is a pure function ``apply(plan, state, event) -> Transition``: the new
state plus the commands the engine carries out *after* it has written the new
state to the log (write-ahead). Nothing here does I/O or reads a clock: time
comes in on the events, and retry jitter is a hash of the gid (see
``RetryPolicy.delay``). Each mode (``saga``, ``tcc``, ``xa``, ``msg``, ``flow``)
adds its plan and its rules on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Generic, Protocol, TypeVar

from .._model import Json, OpKey, OpName, OpStatus, RetryPolicy, TxStatus

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
class TxState:
    """One global transaction as its machine sees it: its status and each op's state."""

    gid: str
    status: TxStatus
    ops: Mapping[OpKey, OpState]
    reason: str | None = None
    stuck: str | None = None

    @staticmethod
    def fresh(gid: str, status: TxStatus, keys: Sequence[OpKey]) -> TxState:
        """A new transaction in ``status``, every op of ``keys`` pending."""
        return TxState(gid, status, {k: OpState() for k in keys})

    def op(self, key: OpKey) -> OpState:
        return self.ops[key]

    def outputs(self) -> dict[str, Json]:
        """Outputs of the actions that succeeded, by step name."""
        return {
            k[0]: s.output
            for k, s in self.ops.items()
            if k[1] is OpName.ACTION and s.status is OpStatus.SUCCEEDED
        }


# -- events (inputs) --------------------------------------------------------------------
# Each event's ``kind`` names it in the transaction's timeline (its event record); a
# Park has none of its own: the "stuck" record it causes says it.


@dataclass(frozen=True, slots=True)
class Resume:
    """Drive the transaction from its logged state: at submit, and after a claim.

    Any op logged as running was in flight in a driver that is gone, so its
    outcome is unknown: it is retried (or, while aborting, ended).
    """

    kind: ClassVar[str] = "resumed"
    now: float
    fresh: bool = False  # True at submit: nothing can be in flight


@dataclass(frozen=True, slots=True)
class OpSucceeded:
    kind: ClassVar[str] = "op.succeeded"
    key: OpKey
    attempt: int
    now: float
    output: Json = None
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class OpFailed:
    """A definite failure (``legato.Failure``, HTTP 409, ``FAILURE``)."""

    kind: ClassVar[str] = "op.failed"
    key: OpKey
    attempt: int
    now: float
    error: str = "failed"
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class OpUnknown:
    """An attempt whose outcome is unknown: an error, a timeout, a lost connection."""

    kind: ClassVar[str] = "op.unknown"
    key: OpKey
    attempt: int
    now: float
    error: str = "unknown outcome"
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class OpOngoing:
    """The participant answered "not yet" (HTTP 425, ``ONGOING``): ask again at the
    op's fixed ``ongoing_interval``, without using up an attempt."""

    kind: ClassVar[str] = "op.ongoing"
    key: OpKey
    attempt: int
    now: float
    error: str = "ongoing"
    took: float | None = None  # seconds the attempt ran (for the timeline only)


@dataclass(frozen=True, slots=True)
class RetryDue:
    kind: ClassVar[str] = "op.retry_due"
    key: OpKey
    attempt: int  # the attempt that failed; the next one is attempt + 1
    now: float


@dataclass(frozen=True, slots=True)
class Timeout:
    kind: ClassVar[str] = "timeout"
    now: float


@dataclass(frozen=True, slots=True)
class AbortRequested:
    kind: ClassVar[str] = "abort_requested"
    now: float
    reason: str = "aborted on request"


@dataclass(frozen=True, slots=True)
class OperatorRetry:
    """An operator asks a stuck transaction to try its parked ops again."""

    kind: ClassVar[str] = "operator_retry"
    now: float


@dataclass(frozen=True, slots=True)
class ForceEnd:
    """An operator ends the transaction by decree (after repairing things by hand)."""

    kind: ClassVar[str] = "force_end"
    now: float
    status: TxStatus
    reason: str


@dataclass(frozen=True, slots=True)
class Submit:
    """The initiator's local part is done (TCC's tries, XA's prepares, msg's local
    transaction): go forward."""

    kind: ClassVar[str] = "submit_requested"
    now: float


@dataclass(frozen=True, slots=True)
class Signalled:
    """A signal for the transaction waits in the log (a workflow's: its driver reads it;
    no machine has anything to do with it)."""

    kind: ClassVar[str] = "signalled"
    now: float


@dataclass(frozen=True, slots=True)
class Park:
    """The engine cannot drive this transaction (its definition changed, or cannot be
    read): it is stuck with ``reason``, and an op it had running is parked with it."""

    kind: ClassVar[str] = ""
    now: float
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
    | Submit
    | Signalled
    | Park
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
    state: TxState
    commands: tuple[Command, ...] = ()
    changed: bool = True
    note: str | None = field(default=None)


# -- the working copy -------------------------------------------------------------------


class HasPolicy(Protocol):
    def policy(self, key: OpKey) -> RetryPolicy: ...


P = TypeVar("P", bound=HasPolicy)


class Draft(Generic[P]):
    """A mutable working copy used inside one ``apply`` call only; each mode's machine
    adds its own rules on top."""

    def __init__(self, plan: P, state: TxState) -> None:
        self.plan = plan
        self.gid = state.gid
        self.status = state.status
        self.ops = dict(state.ops)
        self.reason = state.reason
        self.stuck = state.stuck
        self.commands: list[Command] = []

    def freeze(self) -> TxState:
        return TxState(self.gid, self.status, self.ops, self.reason, self.stuck)

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

    def retry_later(self, key: OpKey, attempt: int, error: str, now: float) -> bool:
        """After attempt ``attempt`` of ``key`` failed with an unknown outcome: wait and
        retry per the op's policy. False (nothing changed) once its attempts are spent:
        what then is each machine's rule (``given_up`` says it)."""
        policy = self.plan.policy(key)
        if self.ops[key].budget >= policy.max_attempts:
            return False
        at = now + policy.delay(attempt, f"{self.gid}:{key[0]}:{key[1]}")
        self.set(key, status=OpStatus.RETRY_WAIT, next_at=at, error=error)
        self.commands.append(Wake(key, attempt, at))
        return True

    def given_up(self, key: OpKey, error: str) -> str:
        """How an op out of attempts is said."""
        return f"{key[0]}.{key[1]} gave up after {self.ops[key].attempts} attempts: {error}"

    def park(self, key: OpKey, error: str, why: str) -> None:
        """Park ``key`` (an operator's retry starts it again): the transaction is stuck."""
        self.set(key, status=OpStatus.RETRY_WAIT, next_at=None, error=error)
        self.stuck = why

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
        # (stuck with nothing parked: the engine parked the whole transaction, e.g. because
        # its definition changed; the retry lifts that and it is driven on)
        self.stuck = None
        for key in parked:
            self.set(key, budget=0)
            self.start(key)
        return True


class RetryingDraft(Draft[P]):
    """The working copy of a machine whose every op is retried until it succeeds (TCC's
    and XA's confirm/cancel and commit/rollback, msg's deliveries): a failure is no end,
    and past its attempts an op is parked and the transaction stuck."""

    def retry_or_park(self, key: OpKey, attempt: int, error: str, now: float) -> None:
        if not self.retry_later(key, attempt, error, now):
            self.park(key, error, self.given_up(key, error))

    def advance(self) -> None:
        raise NotImplementedError


def apply_retrying(d: RetryingDraft[P], state: TxState, event: object) -> Transition:
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
        case _:
            return Transition(
                state, changed=False, note=f"{type(event).__name__} means nothing here"
            )
    return Transition(d.freeze(), tuple(d.commands))


def park(state: TxState, event: Park) -> Transition:
    """Every machine's answer to ``Park``: stuck with the reason, an op in flight parked
    (its outcome is lost, as on any resumption: an operator's retry starts it again)."""
    ops = {
        k: OpState(OpStatus.RETRY_WAIT, s.attempts, s.budget, None, s.output, event.reason,
                   s.completed)
        if s.status is OpStatus.RUNNING
        else s
        for k, s in state.ops.items()
    }  # fmt: skip
    return Transition(TxState(state.gid, state.status, ops, state.reason, event.reason))


def is_current(state: TxState, key: OpKey, attempt: int, *statuses: OpStatus) -> bool:
    """Is ``attempt`` the op's latest, and the op in one of ``statuses``? (A result or a
    wake-up for anything else arrived late or twice.)"""
    s = state.ops.get(key)
    return s is not None and s.attempts == attempt and s.status in statuses


def is_due(state: TxState, key: OpKey, attempt: int) -> bool:
    """Is this wake-up the one the op waits for?"""
    s = state.ops.get(key)
    return (
        is_current(state, key, attempt, OpStatus.RETRY_WAIT)
        and s is not None
        and (s.next_at is not None)
    )
