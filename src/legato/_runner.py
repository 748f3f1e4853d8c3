"""Drives one saga while this coordinator holds its lease.

Each runner is a small actor: events (op results, retry wake-ups, timeouts,
operator requests) arrive on its queue; each goes through the pure state
machine, the resulting state is written to the log *first* (fenced by the
lease), and only then are the machine's commands carried out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ._errors import LeaseLost, LogError
from ._faults import fault_point
from ._handle import Outcome
from ._model import EventRecord, Json, OpKey, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from .log.base import TxWrite
from .modes import saga as machine
from .modes import tcc
from .observe.tracing import Attempt
from .saga import Saga, StepContext, StepOp
from .transports.http import CallInfo, HttpCall

Event = machine.Event | tcc.Submit


@dataclass(frozen=True, slots=True)
class OpCall:
    """What one op runs, and how its errors are read."""

    fn: StepOp
    failures: tuple[type[BaseException], ...] = ()
    in_thread: bool = True


class Driver(Protocol):
    """The mode's rules and the ops' calls, for a runner: a saga's, or a TCC's."""

    def apply(self, state: machine.SagaState, event: Event) -> machine.Transition: ...

    def call(self, key: OpKey) -> OpCall: ...


class SagaDriver:
    def __init__(self, saga: Saga) -> None:
        self.saga = saga
        self.plan = saga.plan()

    def apply(self, state: machine.SagaState, event: Event) -> machine.Transition:
        assert not isinstance(event, tcc.Submit), "a saga is submitted when it is created"
        return machine.apply(self.plan, state, event)

    def call(self, key: OpKey) -> OpCall:
        step = self.saga.by_name(key[0])
        fn = step.action if key[1] is OpName.ACTION else step.compensate
        assert fn is not None, "the plan only has compensate ops for compensable steps"
        return OpCall(fn, self.saga.failures + step.failures, step.in_thread)


def registration_order(ops: Sequence[OpRecord]) -> tuple[str, ...]:
    """A TCC or XA transaction's branches in registration order (ties, registered at
    once, by branch id)."""
    ordered = sorted(ops, key=lambda o: (o.seq, o.branch))
    return tuple(dict.fromkeys(o.branch for o in ordered))


class OpCalls:
    """Each op's call as the log holds it, decoded when the op first runs.

    A call that cannot be decoded (stored by a laxer version, say) then fails the
    attempts of its op, which are retried and end stuck with the reason, visibly;
    decoded up front, it would fail the transaction's every resumption instead, with
    its ops left as they were, running included.
    """

    def __init__(self, ops: Sequence[OpRecord], decode: Callable[[OpRecord], StepOp]) -> None:
        self._ops = {o.key: o for o in ops}
        self._decode = decode
        self._decoded: dict[OpKey, StepOp] = {}

    def __getitem__(self, key: OpKey) -> StepOp:
        fn = self._decoded.get(key)
        if fn is None:
            fn = self._decoded[key] = self._decode(self._ops[key])
        return fn


def http_call(o: OpRecord) -> StepOp:
    return HttpCall.from_json(o.payload)


class TccDriver:
    """TCC's rules (or XA's: the same plan with commit and rollback ops), and each op's
    call as registered."""

    def __init__(self, plan: tcc.TccPlan, calls: OpCalls) -> None:
        self.plan = plan
        self.calls = calls

    @staticmethod
    def from_ops(ops: Sequence[OpRecord]) -> TccDriver:
        return TccDriver(tcc.TccPlan(registration_order(ops)), OpCalls(ops, http_call))

    def apply(self, state: machine.SagaState, event: Event) -> machine.Transition:
        return tcc.apply(self.plan, state, event)

    def call(self, key: OpKey) -> OpCall:
        return OpCall(self.calls[key])


if TYPE_CHECKING:
    from .coordinator import Coordinator

logger = logging.getLogger("legato.coordinator")


class Runner:
    def __init__(
        self,
        coordinator: Coordinator,
        driver: Driver,
        tx: TxRecord,
        state: machine.SagaState,
        ops: Sequence[OpRecord],
    ) -> None:
        self.c = coordinator
        self.driver = driver
        self.tx = tx
        self.gid = tx.gid
        self.state = state
        self.meta = {o.key: (o.seq, o.target) for o in ops}
        self.queue: asyncio.Queue[tuple[list[Event], str | None]] = asyncio.Queue()
        self.settled: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._done = False
        self.stopped_by: LogError | None = None  # the log error it stopped on, if any

    # -- the loop -------------------------------------------------------------------

    async def run(
        self,
        first: list[Event] | None,
        commands: Sequence[machine.Command] = (),
        handled: str | None = None,
    ) -> None:
        try:
            if first:
                await self.feed(first, handled)
            else:
                self._execute(commands)
                self._check_done()
            busy = any(
                op.status in (OpStatus.RUNNING, OpStatus.RETRY_WAIT)
                for op in self.state.ops.values()
            )
            if self.state.status is TxStatus.PREPARED and not busy and not self._done:
                # a TCC still open for registrations: nothing to drive until its initiator
                # submits or aborts, or it times out; meanwhile no one may hold it (a msg
                # asking its initiator's query_prepared is busy: it is driven on)
                await self.c.log.release(self.c.owner, self.gid, self.tx.timeout_at)
                return
            if self.tx.timeout_at is not None and not self._done:
                delay = max(0.0, self.tx.timeout_at - time.time())
                self._timers.append(
                    asyncio.get_running_loop().call_later(
                        delay, lambda: self.push(machine.Timeout(time.time()))
                    )
                )
            while not self._done:
                events, request = await self.queue.get()
                await self.feed(events, request)
        except LeaseLost as exc:
            logger.warning("lease lost, handing %s over: %s", self.gid, exc)
        except LogError as exc:
            # the log is down: stop driving; the lease expires and a healthy coordinator
            # (or this one, once the log is back) resumes the saga from what was logged
            logger.error("log write failed for %s, leaving it to recovery: %s", self.gid, exc)
            self.stopped_by = exc
        finally:
            self._stop()

    def _stop(self) -> None:
        self._done = True
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        if not self.settled.done():
            self.settled.set_result(None)  # handed over: the handle polls the log

    def push(self, event: Event, request: str | None = None) -> None:
        if not self._done:
            self.queue.put_nowait(([event], request))

    def cancel(self) -> None:
        self.queue.put_nowait(([], "__stop__"))

    # -- one step of the machine ----------------------------------------------------

    async def feed(self, events: list[Event], handled: str | None = None) -> None:
        if handled == "__stop__":
            self._done = True
            return
        before = self.state
        state = before
        commands: list[machine.Command] = []
        records: list[EventRecord] = []
        for event in events:
            t = self.driver.apply(state, event)
            records.append(_event_record(self.gid, event, t))
            if t.changed:
                records.extend(_transition_records(self.gid, state, t, event))
                state = t.state
                commands.extend(t.commands)
        if state is before and handled is None:
            return  # late or duplicate: nothing to write
        now = max((getattr(e, "now", 0.0) for e in events), default=time.time())
        done = _settled(state)
        change = TxWrite(
            gid=self.gid,
            owner=self.c.owner,
            at=now,
            status=state.status,
            reason=state.reason,
            stuck=state.stuck,
            # While driven it stays as it was (due: it matters only once the lease has
            # expired); rewriting it each time would update its index on every write.
            next_attempt_at=None if done else (self.tx.next_attempt_at or now),
            # the machine replaces an op's state only when it changes it: identity suffices
            ops=[
                self._op_record(k, s, now) for k, s in state.ops.items() if before.ops[k] is not s
            ],
            events=records,
            release=done,
            handled=handled,
        )
        await self.c.log.write(change)
        fault_point("after_log_write")
        self.state = state
        self.c.hooks.after_write(self.tx, state, before)
        if state.status.ended and not before.status.ended:
            self.c.tracing.ended(self.tx, str(state.status), state.reason)
        self._execute(commands)
        self._check_done()

    def _check_done(self) -> None:
        s = self.state
        if _settled(s):
            self._done = True
            if not self.settled.done():
                self.settled.set_result(Outcome(self.gid, s.status, s.reason, s.stuck, s.outputs()))

    def _op_record(self, key: OpKey, s: machine.OpState, now: float) -> OpRecord:
        seq, target = self.meta[key]
        return OpRecord(
            gid=self.gid,
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

    # -- carrying out commands ------------------------------------------------------

    def _execute(self, commands: Sequence[machine.Command]) -> None:
        loop = asyncio.get_running_loop()
        for cmd in commands:
            if isinstance(cmd, machine.RunOp):
                self._start_op(cmd)
            else:
                key, attempt = cmd.key, cmd.attempt
                self._timers.append(
                    loop.call_later(
                        max(0.0, cmd.at - time.time()),
                        lambda k=key, a=attempt: self.push(machine.RetryDue(k, a, time.time())),  # type: ignore[misc]
                    )
                )

    def _start_op(self, cmd: machine.RunOp) -> None:
        report = _Report(self, cmd)
        try:
            task = self._deliver(cmd, report)
        except Exception as exc:
            # building the call, or starting the attempt, failed: the op must not stay
            # running (nothing would ever report on it), so this attempt is unknown
            report.raised(exc)
            return
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(report.ended)

    def _deliver(self, cmd: machine.RunOp, report: _Report) -> asyncio.Task[None] | None:
        """Start one attempt of an op through its transport; ``report`` hears how it ended."""
        name, op = cmd.key
        call = self.driver.call(cmd.key)
        fn = call.fn
        fault_point(f"before_op.{op}")
        remote = isinstance(fn, HttpCall)
        attempt = self.c.tracing.attempt(self.tx, name, str(op), cmd.attempt, remote=remote)
        report.begin(attempt)
        if isinstance(fn, HttpCall):
            info = CallInfo(
                gid=self.gid,
                trans_type=str(self.tx.mode),
                branch_id=name,
                op=str(op),
                attempt=cmd.attempt,
                headers={**(self.tx.options.get("headers") or {}), **attempt.headers(self.gid)},
            )
            return self.c.http.start(fn, info, timeout=cmd.timeout, done=report)
        ctx = StepContext(
            gid=self.gid,
            step=name,
            op=op,
            attempt=cmd.attempt,
            payload=self.tx.payload,
            outputs=self.state.outputs(),
            output=action.output if (action := self.state.ops.get((name, OpName.ACTION))) else None,
        )
        token = attempt.enter()  # the step's task or thread runs in the attempt's span
        try:
            return self.c.transport.start(
                fn,
                ctx,
                timeout=cmd.timeout,
                failures=call.failures,
                in_thread=call.in_thread,
                done=report,
            )
        finally:
            attempt.leave(token)


class _Report:
    """Turns one attempt's outcome into the machine's event, on the loop, once.

    Every way an attempt ends comes here: its transport's outcome, an exception out of
    the attempt's task, or one raised while starting it (DESIGN section 10: any
    exception while delivering an op is that attempt's unknown outcome, so no op is
    ever left running, unretried and not stuck).
    """

    __slots__ = ("attempt", "cmd", "reported", "runner", "started")

    def __init__(self, runner: Runner, cmd: machine.RunOp) -> None:
        self.runner = runner
        self.cmd = cmd
        self.attempt: Attempt | None = None
        self.started = time.perf_counter()
        self.reported = False

    def begin(self, attempt: Attempt) -> None:
        """The attempt is about to run, in this span."""
        self.attempt = attempt
        name, op = self.cmd.key
        self.runner.c.hooks.before_op(self.runner.tx, name, op, self.cmd.attempt)
        self.started = time.perf_counter()

    def __call__(self, outcome: tuple[str, Json]) -> None:
        if self.reported:
            return  # an outcome, then an exception out of the same task: the first counts
        self.reported = True
        cmd, runner = self.cmd, self.runner
        name, op = cmd.key
        kind, value = outcome
        if kind != "ok":
            value = readable(str(value))
        took = time.perf_counter() - self.started
        try:
            if self.attempt is not None:
                self.attempt.end(kind, value)
            runner.c.hooks.after_op(runner.tx, name, op, cmd.attempt, kind, took, value)
        except Exception:  # seeing the attempt failed; the attempt still ended
            logger.exception(
                "tracing attempt %d of %s %s.%s failed", cmd.attempt, runner.gid, name, op
            )
        fault_point(f"after_op.{op}")
        now = time.time()
        event: Event
        if kind == "ok":
            event = machine.OpSucceeded(cmd.key, cmd.attempt, now, value, took)
        elif kind == "failed":
            event = machine.OpFailed(cmd.key, cmd.attempt, now, str(value), took)
        elif kind == "ongoing":
            event = machine.OpOngoing(cmd.key, cmd.attempt, now, str(value), took)
        else:
            event = machine.OpUnknown(cmd.key, cmd.attempt, now, str(value), took)
        runner.push(event)

    def raised(self, exc: BaseException) -> None:
        name, op = self.cmd.key
        logger.error(
            "attempt %d of %s %s.%s raised %s: its outcome is unknown",
            self.cmd.attempt, self.runner.gid, name, op, type(exc).__name__, exc_info=exc,
        )  # fmt: skip
        self(("unknown", f"{type(exc).__name__}: {exc}"))

    def ended(self, task: asyncio.Task[None]) -> None:
        """The attempt's task is done: if an exception ended it, that is its outcome."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.raised(exc)


_MAX_ERROR = 2000


def readable(text: str) -> str:
    """An error's text as the log can store it and a person can read it: at most
    ``_MAX_ERROR`` characters, NUL and lone surrogates (which a database's text column
    refuses) written as escapes. The text may come from a participant."""
    if len(text) > _MAX_ERROR:
        text = text[:_MAX_ERROR] + "…"
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode()
    return text


def _settled(state: machine.SagaState) -> bool:
    """Ended, or stuck with nothing left to report back: this runner is done with it."""
    return state.status.ended or (state.stuck is not None and not _busy(state))


def _busy(state: machine.SagaState) -> bool:
    """Will anything still report back to this runner (an op in flight, a timed retry)?"""
    return any(
        s.status is OpStatus.RUNNING or (s.status is OpStatus.RETRY_WAIT and s.next_at is not None)
        for s in state.ops.values()
    )


_KINDS = {
    machine.Resume: "resumed",
    machine.OpSucceeded: "op.succeeded",
    machine.OpFailed: "op.failed",
    machine.OpUnknown: "op.unknown",
    machine.OpOngoing: "op.ongoing",
    machine.RetryDue: "op.retry_due",
    machine.Timeout: "timeout",
    machine.AbortRequested: "abort_requested",
    machine.OperatorRetry: "operator_retry",
    machine.ForceEnd: "force_end",
    tcc.Submit: "submit_requested",
}


def _event_record(gid: str, event: Event, t: machine.Transition) -> EventRecord:
    key: OpKey | None = getattr(event, "key", None)
    detail: dict[str, Json] = {}
    error = getattr(event, "error", None) or getattr(event, "reason", None)
    if error:
        detail["error"] = error
    fresh = isinstance(event, machine.Resume) and event.fresh
    kind = "submitted" if fresh else _KINDS[type(event)]
    took = getattr(event, "took", None)
    if took is not None:
        # an attempt's start is in the op's row while it runs; once it has ended, its
        # event says how long it took, so the timeline needs no separate start event
        detail["took_ms"] = round(took * 1000, 3)
    if not t.changed:
        detail["ignored"] = t.note or "no change"
    return EventRecord(
        gid=gid,
        at=getattr(event, "now", 0.0),
        kind=kind,
        branch=key[0] if key else None,
        op=str(key[1]) if key else None,
        attempt=getattr(event, "attempt", None),
        detail=detail,
    )


def _transition_records(
    gid: str, before: machine.SagaState, t: machine.Transition, event: Event
) -> list[EventRecord]:
    now = getattr(event, "now", 0.0)
    out: list[EventRecord] = []
    after = t.state
    if after.status != before.status:
        out.append(
            EventRecord(
                gid,
                now,
                "status",
                detail={
                    "from": str(before.status),
                    "to": str(after.status),
                    "reason": after.reason,
                },
            )
        )
    if after.stuck and after.stuck != before.stuck:
        out.append(EventRecord(gid, now, "stuck", detail={"reason": after.stuck}))
    for cmd in t.commands:
        if isinstance(cmd, machine.Wake):
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
