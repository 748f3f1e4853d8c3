"""Drives one transaction while this engine holds its lease.

Each runner is a small actor: events (op results, retry wake-ups, timeouts,
requests) arrive on its queue; each batch goes through ``records.transition`` (the
mode's machine), the resulting state is written to the log *first* (fenced by the
lease), and only then are the machine's commands carried out. When the engine stops
it *drains* its runners: none starts an op any more, each writes the outcomes of the
ops in flight as they come, then gives its lease up for another coordinator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from .._errors import LeaseLost, LogError
from .._faults import fault_point
from .._model import (
    EventRecord,
    OpKey,
    OpName,
    OpRecord,
    OpStatus,
    Request,
    RequestKind,
    TxRecord,
    TxStatus,
)
from ..log.base import TxWrite
from ..modes._core import (
    AbortRequested,
    Command,
    Event,
    ForceEnd,
    OperatorRetry,
    OpFailed,
    OpOngoing,
    OpSucceeded,
    OpUnknown,
    RetryDue,
    RunOp,
    Signalled,
    Submit,
    Timeout,
    TxState,
)
from ..observe.tracing import Attempt
from ..transports.base import AttemptResult, OpAttempt, ResultKind
from .fence import fence_of_expiry
from .handle import Outcome
from .port import Driver, RunnerHost
from .records import Step, changed_ops, transition

logger = logging.getLogger("legato.coordinator")

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_OK = ResultKind.OK
SUSPEND_AFTER = 1.0
"""A transaction whose live code only waits, for longer than this many seconds, is let
go (its lease released, due again when the wait ends): it holds no task meanwhile."""


def request_event(request: Request, now: float) -> Event:
    """The machine's event for a request recorded on a transaction."""
    match request.kind:
        case RequestKind.SUBMIT:
            return Submit(now)
        case RequestKind.RETRY:
            return OperatorRetry(now)
        case RequestKind.ABORT:
            return AbortRequested(now, request.reason or "aborted by an operator")
        case RequestKind.SIGNAL:
            return Signalled(now)
        case _:
            what = str(request.kind)
            return ForceEnd(now, TxStatus(what), f"ended as {what} by an operator")


@dataclass(slots=True)
class _Feed:
    events: list[Event]
    handled: Request | None = None  # the request these events carry out, cleared with them


class _Stop:
    """Stop driving (the engine stops, or the lease is lost)."""


class Runner:
    def __init__(
        self,
        host: RunnerHost,
        driver: Driver,
        tx: TxRecord,
        state: TxState,
        ops: Sequence[OpRecord],
    ) -> None:
        self.host = host
        self.driver = driver
        self.tx = tx
        self.gid = tx.gid
        self.mode = str(tx.mode)
        self.state = state
        self.meta: dict[OpKey, tuple[int, str]] = {o.key: (o.seq, o.target) for o in ops}
        self.queue: asyncio.Queue[_Feed | _Stop] = asyncio.Queue()
        self.settled: asyncio.Future[Outcome | None] = asyncio.get_running_loop().create_future()
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: list[asyncio.TimerHandle] = []
        self._done = False
        self.draining = False  # the engine stops: no op starts here any more (``drain``)
        self.stopped_by: LogError | None = None  # the log error it stopped on, if any
        self.live = driver.live
        self._held: _Feed | _Stop | None = None  # taken out of the queue, to feed next
        self.signals = {o.branch for o in ops if o.op is OpName.SIGNAL}
        # The fence (monotonic): no op starts past it, and the calls in flight are
        # cancelled there, unless a renewal has moved it on (``lease_renewed``).
        wall, lease = time.time(), host.lease
        expires = tx.lease_expires_at if tx.lease_expires_at is not None else wall + lease
        self.fence_at = fence_of_expiry(expires, wall, time.monotonic(), lease)
        self.fenced = False
        self._fence_timer: asyncio.TimerHandle | None = None
        self._arm_fence()

    # -- the fence ------------------------------------------------------------------

    def lease_renewed(self, fence: float) -> None:
        """A renewal of its lease landed: ``fence`` (monotonic) is the new fence. The
        timer is not moved: when it fires at the old fence, it sets itself again."""
        self.fence_at = max(self.fence_at, fence)

    def _arm_fence(self) -> None:
        if self._fence_timer is not None:
            self._fence_timer.cancel()
        delay = max(0.0, self.fence_at - time.monotonic())
        self._fence_timer = asyncio.get_running_loop().call_later(delay, self._fence_due)

    def _fence_due(self) -> None:
        if time.monotonic() < self.fence_at:  # moved on meanwhile
            self._arm_fence()
        else:
            self.fence()

    def fence(self) -> None:
        """Its lease may expire soon, and another coordinator take the transaction over:
        start no more op and stop driving it (it is driven again here if the lease is
        still this coordinator's once the log answers, else by the one that claims it).

        The calls in flight are cancelled, not waited for: a call may take up to its
        request timeout, which a step may set past the lease, and the one that takes
        the transaction over must not meet a second caller of the same op. Each
        cancelled attempt's outcome is unknown; the log still has the op running, so
        whoever drives the transaction next retries it. An op running in a step
        thread (a sync Python step, an XA phase) cannot be interrupted: it runs on to
        its end, and the fence only keeps the next one from starting."""
        if self.fenced or self._done:
            return
        self.fenced = True
        self._done = True  # nothing more is fed, started or released
        cancelled = 0
        for task in self._tasks:
            cancelled += task.cancel()
        for timer in self._timers:
            timer.cancel()
        self.queue.put_nowait(_Stop())  # wake it if it waits for an event
        self.host.fenced(self.tx, cancelled)

    # -- the loop -------------------------------------------------------------------

    async def run(
        self,
        first: list[Event] | None,
        commands: Sequence[Command] = (),
        handled: Request | None = None,
    ) -> None:
        try:
            if first:
                await self.feed(_Feed(first, handled))
            else:
                self._execute(commands)
                self._check_done()
            if self.live is not None and not self._done and not self.draining:
                self.live.begin(self._feed_live, self.state)
                await self._suspend_if_idle()
            busy = any(
                op.status in (OpStatus.RUNNING, OpStatus.RETRY_WAIT)
                for op in self.state.ops.values()
            )
            if self.state.status is TxStatus.PREPARED and not busy and not self._done:
                # a TCC still open for registrations: nothing to drive until its initiator
                # submits or aborts, or it times out; meanwhile no one may hold it (a msg
                # asking its initiator's query_prepared is busy: it is driven on)
                await self.host.log.release(self.host.owner, self.gid, self.tx.timeout_at)
                return
            if self.tx.timeout_at is not None and not self._done and not self.draining:
                delay = max(0.0, self.tx.timeout_at - time.time())
                self._timers.append(
                    asyncio.get_running_loop().call_later(
                        delay, lambda: self.push(Timeout(time.time()))
                    )
                )
            while not self._done:
                if self.draining and not running(self.state):
                    await self._let_go()
                    break
                item, self._held = self._held or await self.queue.get(), None
                if isinstance(item, _Stop):
                    break
                await self.feed(item)
                if (
                    self.live is not None
                    and not self._done
                    and not self.draining
                    and self.queue.empty()
                    and self._held is None
                ):
                    await self._suspend_if_idle()
        except LeaseLost as exc:
            logger.warning("lease lost, handing %s over: %s", self.gid, exc)
        except LogError as exc:
            # the log is down: stop driving; the lease expires and a healthy coordinator
            # (or this one, once the log is back) resumes the transaction from the log
            logger.error("log write failed for %s, leaving it to recovery: %s", self.gid, exc)
            self.stopped_by = exc
        finally:
            self._stop()

    def _stop(self) -> None:
        self._done = True
        if self._fence_timer is not None:
            self._fence_timer.cancel()
        if self.live is not None:
            self.live.stop()
        for timer in self._timers:
            timer.cancel()
        for task in self._tasks:
            task.cancel()
        if not self.settled.done():
            self.settled.set_result(None)  # handed over: the handle polls the log

    def push(self, event: Event, request: Request | None = None) -> None:
        if not self._done:
            self.queue.put_nowait(_Feed([event], request))

    def cancel(self) -> None:
        self.queue.put_nowait(_Stop())

    def drain(self) -> None:
        """The engine stops: start no more op (nor retry, nor timeout), let the ops in
        flight report and write their outcomes, then give the lease up, due at once, for
        another coordinator to drive the transaction on from the log."""
        if self.draining or self._done:
            return
        self.draining = True
        for timer in self._timers:
            timer.cancel()
        self.queue.put_nowait(_Feed([]))  # wake it: with nothing in flight it lets go now

    async def _let_go(self) -> None:
        """Drained: the lease goes, the transaction due at once (its ops' own retry times
        are in their rows: the next driver waits for those)."""
        self._done = True
        await self.host.log.release(self.host.owner, self.gid, time.time())

    def _feed_live(self, event: object) -> None:
        self.push(event)  # type: ignore[arg-type]  # a mode's own event, for its machine

    async def _suspend_if_idle(self) -> None:
        """The live code only waits, and long: write that, and let the transaction go."""
        assert self.live is not None
        until = self.live.idle_until(self.state)
        now = time.time()
        if until is None or until - now <= SUSPEND_AFTER:
            return
        if self.tx.timeout_at is not None:
            until = min(until, self.tx.timeout_at)
        due = None if until == float("inf") else until
        s = self.state
        detail = {"until": due} if due is not None else {}
        await self.host.log.write(
            TxWrite(
                gid=self.gid,
                owner=self.host.owner,
                at=now,
                status=s.status,
                reason=s.reason,
                stuck=s.stuck,
                next_attempt_at=due,
                events=[EventRecord(self.gid, now, "suspended", detail=detail)],
                release=True,
            )
        )
        self._done = True

    async def _take_signals(self) -> None:
        """Hand the live code the signals the log has for it that it has not had yet."""
        assert self.live is not None
        loaded = await self.host.log.load(self.gid)
        for o in loaded[1] if loaded is not None else ():
            if o.op is OpName.SIGNAL and o.branch not in self.signals:
                self.signals.add(o.branch)
                self.live.signal(o)

    # -- one step of the machine ----------------------------------------------------

    async def feed(self, item: _Feed) -> None:
        before = self.state
        if self.draining and item.handled is not None:
            return  # an operator's request: left in the log for the next driver
        if (
            self.live is not None
            and item.handled is not None
            and item.handled.kind is RequestKind.SIGNAL
        ):
            await self._take_signals()
        step = transition(self.driver.apply, before, item.events)
        if self.draining:
            step = held_back(before, step)
        elif self.live is not None and step.state is not before:
            step, item = await self._with_next_moves(step, item)
        state = step.state
        if state is before and item.handled is None:
            return  # late or duplicate: nothing to write
        now = step.at or time.time()
        done = _settled(state)
        change = TxWrite(
            gid=self.gid,
            owner=self.host.owner,
            at=now,
            status=state.status,
            reason=state.reason,
            stuck=state.stuck,
            # While driven it stays as it was (due: it matters only once the lease has
            # expired); rewriting it each time would update its index on every write.
            next_attempt_at=None if done else (self.tx.next_attempt_at or now),
            ops=changed_ops(before, state, self.meta, now),
            new_ops=self._new_ops(before, state, now),
            events=list(step.records),
            release=done,
            handled=item.handled.encode() if item.handled is not None else None,
        )
        await self.host.log.write(change)
        fault_point("after_log_write")
        self.state = state
        if self.live is not None and not self.draining:
            self.live.written(state)
        self.host.hooks.after_write(self.tx, state, before)
        if state.status.ended and not before.status.ended:
            self.host.tracing.ended(self.tx, str(state.status), state.reason)
        self._execute(step.commands)
        self._check_done()

    async def _with_next_moves(self, step: Step, item: _Feed) -> tuple[Step, _Feed]:
        """Let the live code see ``step``'s state and make its next moves, to write them
        with it: one write for a step's outcome and the next step's start. Nothing the
        code moves to is carried out before that write (commands run after it)."""
        assert self.live is not None
        records, commands = list(step.records), list(step.commands)
        handled = item.handled
        for _ in range(8):
            events: list[Event] = []
            while self._held is None and not self.queue.empty():
                nxt = self.queue.get_nowait()
                if isinstance(nxt, _Stop) or (nxt.handled is not None and handled is not None):
                    self._held = nxt  # fed next, after this write
                else:
                    handled = handled or nxt.handled
                    events.extend(nxt.events)
            if events:
                more = transition(self.driver.apply, step.state, events)
                records.extend(more.records)
                commands.extend(more.commands)
                step = Step(more.state, (), (), max(step.at, more.at))
            if self._held is not None:
                break
            woke = self.live.written(step.state)
            if woke:
                await asyncio.sleep(0)  # the code runs up to its next wait
            elif not events:
                break  # nothing new, and nothing it waited for: it makes no move now
        return Step(step.state, tuple(commands), tuple(records), step.at), _Feed([], handled)

    def _new_ops(self, before: TxState, after: TxState, now: float) -> list[OpRecord]:
        """The rows of the ops ``after`` has and ``before`` had not (a workflow's journal
        grows as its body runs)."""
        if self.live is None or len(after.ops) == len(before.ops):
            return []
        out = []
        for key, s in after.ops.items():
            if key in before.ops:
                continue
            row = self.live.describe(key)
            self.meta[key] = (row.seq, row.target)
            out.append(
                OpRecord(self.gid, key[0], key[1], row.seq, row.target, s.status, s.attempts,
                         s.budget, s.next_at, s.output, s.error, s.completed, now, row.payload)
            )  # fmt: skip
        return out

    def _check_done(self) -> None:
        s = self.state
        if _settled(s):
            self._done = True
            if not self.settled.done():
                self.settled.set_result(Outcome(self.gid, s.status, s.reason, s.stuck, s.outputs()))

    # -- carrying out commands ------------------------------------------------------

    def _execute(self, commands: Sequence[Command]) -> None:
        loop = asyncio.get_running_loop()
        for cmd in commands:
            if isinstance(cmd, RunOp):
                self._start_op(cmd)
            else:
                key, attempt = cmd.key, cmd.attempt
                self._timers.append(
                    loop.call_later(
                        max(0.0, cmd.at - time.time()),
                        lambda k=key, a=attempt: self.push(RetryDue(k, a, time.time())),  # type: ignore[misc]
                    )
                )

    def _start_op(self, cmd: RunOp) -> None:
        # The gate: the timer fires the fence on time as a rule; a busy loop can run it
        # late, and a log write that lands past the fence must not start its ops either.
        # The op stays running in the log, and is retried by the next driver.
        if self.fenced or time.monotonic() >= self.fence_at:
            self.fence()
            return
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

    def _deliver(self, cmd: RunOp, report: _Report) -> asyncio.Task[None] | None:
        """Start one attempt of an op through its transport; ``report`` hears how it ended."""
        name, op = cmd.key
        call = self.driver.call(cmd.key)
        transport = self.host.transport(call)
        fault_point(f"before_op.{op}")
        remote = transport.remote
        span = self.host.tracing.attempt(self.tx, name, str(op), cmd.attempt, remote=remote)
        report.begin(span)
        state = self.state
        action = state.ops.get((name, OpName.ACTION)) if op is not OpName.ACTION else None
        headers = (
            {**(self.tx.options.get("headers") or {}), **span.headers(self.gid)}
            if remote
            else _NO_HEADERS
        )
        attempt = OpAttempt(  # positionally: made for every attempt of every op
            self.gid,
            self.mode,
            name,
            op,
            cmd.attempt,
            headers,
            self.tx.payload,
            state.outputs,
            action.output if action is not None else None,
        )
        token = span.enter()  # the step's task or thread runs in the attempt's span
        try:
            return transport.start(call, attempt, timeout=cmd.timeout, done=report)
        finally:
            span.leave(token)


class _Report:
    """Turns one attempt's result into the machine's event, on the loop, once.

    Every way an attempt ends comes here: its transport's result, an exception out of
    the attempt's task, or one raised while starting it (DESIGN section 10: any
    exception while delivering an op is that attempt's unknown outcome, so no op is
    ever left running, unretried and not stuck).
    """

    __slots__ = ("cmd", "reported", "runner", "span", "started")

    def __init__(self, runner: Runner, cmd: RunOp) -> None:
        self.runner = runner
        self.cmd = cmd
        self.span: Attempt | None = None
        self.started = time.perf_counter()
        self.reported = False

    def begin(self, span: Attempt) -> None:
        """The attempt is about to run, in this span."""
        self.span = span
        name, op = self.cmd.key
        self.runner.host.hooks.before_op(self.runner.tx, name, op, self.cmd.attempt)
        self.started = time.perf_counter()

    def __call__(self, result: AttemptResult) -> None:
        if self.reported:
            return  # a result, then an exception out of the same task: the first counts
        self.reported = True
        cmd, runner = self.cmd, self.runner
        name, op = cmd.key
        kind, value = result.kind, result.value
        if kind is not _OK:
            value = readable(str(value))
        took = time.perf_counter() - self.started
        try:
            if self.span is not None:
                self.span.end(str(kind), value)
            runner.host.hooks.after_op(runner.tx, name, op, cmd.attempt, str(kind), took, value)
        except Exception:  # seeing the attempt failed; the attempt still ended
            logger.exception(
                "tracing attempt %d of %s %s.%s failed", cmd.attempt, runner.gid, name, op
            )
        fault_point(f"after_op.{op}")
        now = time.time()
        event: Event
        if kind is _OK:
            event = OpSucceeded(cmd.key, cmd.attempt, now, value, took)
        elif kind is ResultKind.FAILED:
            event = OpFailed(cmd.key, cmd.attempt, now, str(value), took)
        elif kind is ResultKind.ONGOING:
            event = OpOngoing(cmd.key, cmd.attempt, now, str(value), took)
        else:
            event = OpUnknown(cmd.key, cmd.attempt, now, str(value), took)
        runner.push(event)

    def raised(self, exc: BaseException) -> None:
        name, op = self.cmd.key
        logger.error(
            "attempt %d of %s %s.%s raised %s: its outcome is unknown",
            self.cmd.attempt, self.runner.gid, name, op, type(exc).__name__, exc_info=exc,
        )  # fmt: skip
        self(AttemptResult.unknown(f"{type(exc).__name__}: {exc}"))

    def ended(self, task: asyncio.Task[None]) -> None:
        """The attempt's task is done: if an exception ended it, that is its result."""
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


def held_back(before: TxState, step: Step) -> Step:
    """``step`` as a draining runner writes it: no command, and every op it starts left
    as ``before`` had it (an op it adds, left out). The next driver starts those ops as
    the machine says, not as attempts whose outcome was lost (which would cost an
    attempt and a backoff); a retry scheduled keeps its time in its op's row. An op
    that was in flight and is started again by the same step (its outcome in it) is
    left as a retry due now, its attempt not counted."""
    starts = {c.key for c in step.commands if isinstance(c, RunOp)}
    if not starts:
        return Step(step.state, (), step.records, step.at)
    ops = dict(step.state.ops)
    for key in starts:
        was = before.ops.get(key)
        if was is None:
            del ops[key]
        elif was.status is OpStatus.RUNNING:
            s = ops[key]
            ops[key] = dataclasses.replace(
                s, status=OpStatus.RETRY_WAIT, attempts=s.attempts - 1, budget=s.budget - 1,
                next_at=step.at,
            )  # fmt: skip
        else:
            ops[key] = was
    state = dataclasses.replace(step.state, ops=ops)
    if state == before:
        return Step(before, (), (), step.at)  # it only started ops: nothing happened
    return Step(state, (), step.records, step.at)


def running(state: TxState) -> bool:
    """Is an op of it in flight (started, not reported)?"""
    return any(s.status is OpStatus.RUNNING for s in state.ops.values())


def _settled(state: TxState) -> bool:
    """Ended, or stuck with nothing left to report back: this runner is done with it."""
    return state.status.ended or (state.stuck is not None and not busy(state))


def busy(state: TxState) -> bool:
    """Will anything still report back to this runner (an op in flight, a timed retry)?"""
    return any(
        s.status is OpStatus.RUNNING or (s.status is OpStatus.RETRY_WAIT and s.next_at is not None)
        for s in state.ops.values()
    )
