"""The workflow mode plugged into the engine: a workflow's body, run alongside its
runner, replaying its journal.

The body is the user's ``async def``; ``Workflow`` (the ``wf`` it is handed) turns
each durable thing it does into a journal entry at the next position: a step, a
value (``now``, ``uuid``, ``random``), a wait (``sleep``, ``wait_for``), a pivot, a
patch, a ``select``'s winner, a ``compensate_since``. At a position the journal
already holds, the recorded outcome is returned (or awaited) without calling
anything, after checking that the entry is the same one (kind, name, a digest of
the arguments): a body that no longer does what its journal says stops the
workflow as stuck, naming both, and runs nothing.

One body runs per runner, so at most one coordinator runs a workflow's body at a
time: the lease. When the runner stops (the lease lost, the engine stopping, the
workflow let go while it waits) the body is cancelled; wherever the workflow is
driven next, it is run again from the start, replaying.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import random as _random
import time
import uuid as _uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from .. import _json
from .._bounds import check_branch_id
from .._errors import DefinitionError, Failure, PayloadError, WorkflowError
from .._model import (
    Json,
    Mode,
    OpKey,
    OpName,
    OpRecord,
    OpStatus,
    RetryPolicy,
    TxRecord,
    TxStatus,
)
from ..engine.port import Live, Unreadable
from ..modes import workflow as machine
from ..modes._core import Event, Park, Transition, TxState
from ..transports.broker import BrokerCall
from ..transports.http import HttpCall
from ..transports.local import LocalCall
from .workflow_calls import (
    Call,
    SagaCall,
    WorkflowDefinition,
    XaEnd,
    XaStep,
    args_digest,
    bound,
    bound_conn,
    digest_of,
    jsonable,
    name_of,
    target_of,
    undo_call,
    undo_spec,
)

logger = logging.getLogger("legato.workflow")

ACTION = OpName.ACTION
COMPENSATE = OpName.COMPENSATE
CONFIRM = OpName.CONFIRM
FOREVER = 100 * 365 * 86400.0
"""How long a wait with no timeout lasts."""

T = TypeVar("T")


class _Diverged(BaseException):
    """Raised into a body whose journal says otherwise: it stops (the workflow is parked).
    A BaseException, so that a body's ``except Exception`` does not swallow it."""


# -- the body's handle -------------------------------------------------------------------


class Pending:
    """A journal entry's outcome, awaited by the body: what ``wf.step`` returns."""

    __slots__ = ("_body", "_future", "key")

    def __init__(self, body: WorkflowDriver, key: OpKey, future: asyncio.Future[Any]) -> None:
        self._body, self.key, self._future = body, key, future

    def done(self) -> bool:
        return self._future.done()

    def __await__(self) -> Generator[Any, None, Any]:
        awaiting = self._body.awaiting
        awaiting[self.key] = awaiting.get(self.key, 0) + 1
        try:
            return (yield from self._future.__await__())
        finally:
            awaiting[self.key] -= 1
            if not awaiting[self.key]:
                del awaiting[self.key]

    def __repr__(self) -> str:
        return f"<Pending {self.key[0]}>"


class Workflow:
    """What a workflow's body is handed (``wf``): each durable thing it does goes
    through here, journaled at the next position."""

    def __init__(self, driver: WorkflowDriver) -> None:
        self._d = driver

    @property
    def gid(self) -> str:
        return self._d.tx.gid

    @property
    def name(self) -> str:
        return self._d.definition.name

    @property
    def version(self) -> str:
        return self._d.definition.version

    def step(
        self,
        fn: Any,
        /,
        *args: Any,
        compensate: Any = None,
        on_commit: Any = None,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        compensate_retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Pending:
        """Run ``fn(*args, **kwargs)`` as a step (a callable, sync or async, an
        ``HttpCall`` or a ``BrokerCall``); await what it returns for its output, or
        ``legato.Failure``. ``compensate`` (journaled with its arguments before the
        step runs) undoes it if the workflow rolls back: a module-level function
        (called with the step's arguments), ``legato.call(fn, *its_args)``, or an
        ``HttpCall``. ``on_commit`` (journaled alike) runs once the workflow has
        succeeded, until it succeeds: a TCC branch's confirm."""
        return self._d.step(fn, args, kwargs, compensate, on_commit, name, retry, compensate_retry)

    def tcc(
        self,
        try_: Any,
        confirm: Any,
        cancel: Any,
        /,
        *args: Any,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> Pending:
        """A TCC branch as a step: ``try_`` now, ``confirm`` once the workflow has
        succeeded, ``cancel`` if it rolls back (each an ``HttpCall``, or a module-level
        function called with ``args``)."""
        return self._d.step(try_, args, kwargs, cancel, confirm, name, retry, None)

    async def child(self, definition: WorkflowDefinition, /, *args: Any) -> Any:
        """Run another workflow as a part of this one: its steps are journaled here, at
        the next positions; a failure out of it undoes its steps (then reaches this
        body, which may go on), and this workflow's rollback undoes them too."""
        return await self._d.child(self, definition, args)

    def xa(
        self, resource: str, fn: Any, /, *args: Any, name: str | None = None, **kwargs: Any
    ) -> Pending:
        """An XA branch as a step: ``fn(conn, *args)`` runs in a two-phase transaction on
        the database the coordinator knows as ``resource`` (``register_resource``) and is
        prepared; it commits once the workflow has succeeded and rolls back if it rolls
        back. Its output is what ``fn`` returned."""
        check_branch_id(resource, "resource")
        step = XaStep(resource, bound_conn(fn, args, kwargs))
        return self._d.step(
            step, args, kwargs, XaEnd(resource, OpName.ROLLBACK),
            XaEnd(resource, OpName.COMMIT), name or name_of(fn), None, None,
        )  # fmt: skip

    def saga(self, saga: Any, payload: Json = None, /, *, compensate: Any = None) -> Pending:
        """Run a declarative ``legato.Saga`` as a step: a transaction of its own (gid
        ``<this gid>.<position>``) that this workflow waits for; its output is the
        saga's outputs, its failure (the saga compensated itself) a ``legato.Failure``.
        ``compensate`` undoes a saga that succeeded, if this workflow rolls back."""
        return self._d.step(SagaCall(saga, payload), (), {}, compensate, None, None, None, None)

    def now(self) -> float:
        """The time (epoch seconds), journaled: a replay sees the same."""
        return float(self._d.value("now", lambda: time.time()))

    def uuid(self) -> str:
        """A random UUID (hex), journaled."""
        return str(self._d.value("uuid", lambda: _uuid.uuid4().hex))

    def random(self) -> float:
        """A random number in [0, 1), journaled."""
        return float(self._d.value("random", lambda: _random.random()))

    async def sleep(self, seconds: float) -> None:
        """Wait durably: no task and no thread is held meanwhile (a long sleep lets the
        workflow go; it is resumed on time, after a restart too)."""
        if not (isinstance(seconds, int | float) and 0 <= seconds < FOREVER):
            raise DefinitionError(f"sleep takes 0 or more seconds, not {seconds!r}")
        await self._d.wait("@sleep", None, float(seconds))

    async def wait_for(self, signal: str, timeout: float | None = None) -> Json:
        """Wait durably for the signal ``signal`` (sent with ``Coordinator.signal``, over
        HTTP or with ``legato tx signal``) and return its value (true unless the sender
        gave one); None once ``timeout`` seconds have passed. A signal sent before the
        wait is kept for it."""
        check_branch_id(signal, "signal")
        if timeout is not None and not (isinstance(timeout, int | float) and timeout >= 0):
            raise DefinitionError(f"a wait's timeout is 0 or more seconds, not {timeout!r}")
        return await self._d.wait("@wait", signal, None if timeout is None else float(timeout))

    async def pivot(self) -> None:
        """From here on the workflow only goes forward: it never rolls back."""
        self._d.value("@pivot", lambda: True)

    def abort(self, reason: str = "aborted by the workflow") -> NoReturn:
        """Roll back: the registered compensations run, and the workflow fails."""
        raise Failure(reason)

    def patched(self, change: str) -> bool:
        """Whether this run takes the new path of a change named ``change``: True for a
        run that reaches it with this code, False for one journaled before the change
        (which replays the old path)."""
        check_branch_id(change, "patch")
        return self._d.patched(change)

    def mark(self) -> int:
        """A point in the workflow, for ``compensate_since``."""
        return self._d.pos

    async def compensate_since(self, mark: int) -> None:
        """Undo (in reverse) the steps journaled after ``mark`` and go on."""
        await self._d.undo_since(mark)

    async def gather(self, *steps: Pending, return_exceptions: bool = False) -> list[Any]:
        """Await steps started together (``wf.step(...)`` calls, in a fixed order)."""
        return list(await asyncio.gather(*steps, return_exceptions=return_exceptions))

    async def select(self, *steps: Pending) -> tuple[int, Any]:
        """Await the first of ``steps`` to end (the winner is journaled, so a replay
        picks the same one); returns its index and output. The others run on."""
        return await self._d.select(steps)


# -- the driver --------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    branch: str
    payload: Mapping[str, Any]


def _describe(payload: Mapping[str, Any]) -> str:
    kind, name = payload.get("kind", "?"), payload.get("name", "?")
    return f"{kind} {name!r} (arguments {payload.get('digest', '-')})"


class WorkflowDriver:
    """One workflow's rules (the machine, with its steps' policies), its ops' calls, and
    its body, run alongside its runner (the ``Live`` the runner drives with)."""

    def __init__(
        self, definition: WorkflowDefinition, tx: TxRecord, ops: Sequence[OpRecord]
    ) -> None:
        self.definition = definition
        self.tx = tx
        self.plan = machine.WorkflowPlan(
            default_action=definition.retry, default_compensate=definition.compensate_retry
        )
        self.entries: dict[int, Entry] = {}
        self.payloads: dict[OpKey, Any] = {}
        self.signals: list[OpRecord] = []
        for o in ops:
            if o.op is OpName.SIGNAL:
                self.signals.append(o)
                continue
            self.payloads[o.key] = o.payload
            if o.op is ACTION and o.branch != machine.RESULT and isinstance(o.payload, dict):
                self.entries[o.seq] = Entry(o.branch, o.payload)
        self.signals.sort(key=lambda o: (o.updated_at, o.branch))
        self.rows: dict[OpKey, OpRecord] = {}
        self.calls: dict[OpKey, object] = {}
        self.futures: dict[OpKey, asyncio.Future[Any]] = {}
        self.awaiting: dict[OpKey, int] = {}
        self.taken: set[str] = set()
        self.state: TxState = TxState(tx.gid, tx.status, {})
        self.pos = 0
        self.task: asyncio.Task[None] | None = None
        self.feed: Callable[[Any], None] = _nowhere
        self.crashed = False
        self.stopped = False
        self.early: list[Any] = []  # the events of a body begun early (begin_early)
        self.early_written = 0  # how many of them went with the transaction's first write

    @property
    def live(self) -> Live:
        return self

    # -- Driver ---------------------------------------------------------------------

    def apply(self, state: TxState, event: Event) -> Transition:
        return machine.apply(self.plan, state, event)

    def call(self, key: OpKey) -> object:
        found = self.calls.get(key)
        if found is not None:
            return found
        payload = self.payloads.get(key)
        if key[1] is not ACTION and isinstance(payload, dict):
            found = self.calls[key] = undo_call(payload)
            return found
        raise LookupError(f"{key[0]}: its call is not known here (the body has not reached it)")

    # -- Live -----------------------------------------------------------------------

    def begin_early(self, state: TxState) -> list[Any]:
        """Run the body before its transaction is written, up to its first durable call:
        what it asks for is written with the transaction (one write, not two). Returns
        the list its events go to until ``begin``."""
        early: list[Any] = []
        self.early = early
        self.feed = early.append
        self.state = state
        self._start_body()
        return early

    def begin(self, feed: Callable[[Any], None], state: TxState) -> None:
        self.feed = feed
        self.state = state
        if self.task is not None and not self.task.done():
            # begun early: what the body asked for since the transaction was written
            for event in self.early[self.early_written :]:
                feed(event)
            self.early = []
            self.written(state)
            return
        for (b, _), s in state.ops.items():
            if machine.entry_name(b) == "@wait" and isinstance(s.output, dict):
                taken = s.output.get("signal")
                if isinstance(taken, str):
                    self.taken.add(taken)
        self._start_body()

    def _start_body(self) -> None:
        s = self.state
        if (
            s.status is not TxStatus.SUBMITTED
            or s.stuck is not None
            or (machine.RESULT, ACTION) in s.ops
            or self.stopped
        ):
            return
        self.pos = 0
        self.crashed = False
        for fut in self.futures.values():
            fut.cancel()
        self.futures.clear()
        self.task = asyncio.get_running_loop().create_task(
            self._run_body(), name=f"legato-wf-{self.tx.gid}"
        )

    def written(self, state: TxState) -> bool:
        self.state = state
        if state.status is not TxStatus.SUBMITTED:
            if self.task is not None and not self.task.done():
                self.task.cancel()
            return False
        done = []
        if self.futures:
            for key, fut in self.futures.items():
                s = state.ops.get(key)
                if s is not None and _resolve_future(fut, key, s):
                    done.append(key)
            for key in done:
                del self.futures[key]
        if self.crashed and state.stuck is None and self.task is not None and self.task.done():
            self._start_body()  # an operator's retry: run the body again, replaying
            return True
        return bool(done)

    def describe(self, key: OpKey) -> OpRecord:
        if key[0] == machine.RESULT:
            return OpRecord(self.tx.gid, key[0], key[1], self.pos + 1, "return")
        return self.rows[key]

    def idle_until(self, state: TxState) -> float | None:
        if self.task is None or self.task.done() or not self.awaiting:
            return None
        until = math.inf
        for key in self.awaiting:
            if not machine.is_wait(key[0]):
                return None
            s = state.ops.get(key)
            if s is None or s.status is not OpStatus.RETRY_WAIT or s.next_at is None:
                return None
            until = min(until, s.next_at)
        for (b, _), s in state.ops.items():
            if s.status is OpStatus.RUNNING or (
                s.status is OpStatus.RETRY_WAIT and s.next_at is not None and not machine.is_wait(b)
            ):
                return None
        return math.inf if until >= time.time() + FOREVER / 2 else until

    def signal(self, record: OpRecord) -> None:
        self.signals.append(record)
        name = record.target
        for key, fut in self.futures.items():
            if machine.entry_name(key[0]) != "@wait" or fut.done():
                continue
            payload = self.rows.get(key) or self.payloads.get(key)
            wanted = payload.payload if isinstance(payload, OpRecord) else payload
            if isinstance(wanted, dict) and wanted.get("name") == name:
                if record.branch not in self.taken:
                    self.taken.add(record.branch)
                    self.feed(machine.Delivered(time.time(), key[0], _taken(record)))
                return

    def stop(self) -> None:
        self.stopped = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    # -- the body -------------------------------------------------------------------

    async def _run_body(self) -> None:
        wf = Workflow(self)
        args = self.tx.payload if isinstance(self.tx.payload, list) else [self.tx.payload]
        try:
            out = await self.definition.fn(wf, *args)
        except Failure as exc:
            self.feed(machine.BodyFailed(time.time(), str(exc) or "failed"))
        except _Diverged:
            pass  # parked already
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.error("the body of workflow %s raised", self.tx.gid, exc_info=exc)
            self.crashed = True
            self.feed(machine.BodyCrashed(time.time(), f"{type(exc).__name__}: {exc}"))
        else:
            later = sorted(p for p in self.entries if p > self.pos)
            if later:
                e = self.entries[later[0]]
                self._diverge(
                    f"the body returned after position {self.pos}, but its journal goes on: "
                    f"at {later[0]} it has {_describe(e.payload)}"
                )
                return
            try:
                value = _json.check(out, what="the workflow's return value")
            except PayloadError as exc:
                self.crashed = True
                self.feed(machine.BodyCrashed(time.time(), str(exc)))
                return
            unused = [o.branch for o in self.signals if o.branch not in self.taken]
            if unused:
                logger.warning(
                    "workflow %s ended with signals it never took: %s", self.tx.gid, unused
                )
            info = {"unused_signals": unused} if unused else None
            self.feed(machine.BodyReturned(time.time(), value, info))

    def _in_body(self, what: str) -> None:
        if self.task is None or asyncio.current_task() is not self.task:
            raise WorkflowError(
                f"{what} is called by the workflow's body itself: in a task of its own "
                "(asyncio.create_task, asyncio.gather of coroutines) its place in the journal "
                "would depend on timing; start steps together with wf.step(...) calls and "
                "await them with wf.gather or wf.select"
            )

    def _diverge(self, why: str) -> NoReturn:
        reason = f"the workflow's code does not match its journal: {why}"
        logger.error("%s: %s", self.tx.gid, reason)
        self.feed(Park(time.time(), reason))
        raise _Diverged(reason)

    def _next(self, kind: str, name: str, digest: str) -> tuple[int, Entry | None]:
        """The next position, and the journal's entry there (checked to be the same)."""
        self.pos += 1
        pos = self.pos
        entry = self.entries.get(pos)
        if entry is not None:
            p = entry.payload
            if (p.get("kind"), p.get("name"), p.get("digest")) != (kind, name, digest):
                self._diverge(
                    f"at position {pos} the journal has {_describe(p)}, the code now asks "
                    f"for {kind} {name!r} (arguments {digest})"
                )
        return pos, entry

    def _new(self, pos: int, kind: str, name: str, digest: str, target: str, **more: Any) -> str:
        b = machine.branch(pos, f"@{kind}" if kind != "step" else name)
        payload = {"kind": kind, "name": name, "digest": digest, **more}
        row = OpRecord(self.tx.gid, b, ACTION, pos, target, payload=payload)
        self.rows[(b, ACTION)] = row
        self.entries[pos] = Entry(b, payload)
        return b

    def _future(self, key: OpKey) -> asyncio.Future[Any]:
        fut = self.futures.get(key)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(_retrieved)
            s = self.state.ops.get(key)
            if s is None or not _resolve_future(fut, key, s):
                self.futures[key] = fut
        return fut

    def step(
        self,
        fn: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        compensate: Any,
        on_commit: Any,
        name: str | None,
        retry: RetryPolicy | None,
        compensate_retry: RetryPolicy | None,
    ) -> Pending:
        self._in_body("wf.step")
        if name is not None:
            check_branch_id(name, "step name")
            if name.startswith("@"):
                raise DefinitionError(f"step names starting with '@' are Legato's: {name!r}")
        step_name = name or name_of(fn)
        if not (callable(fn) or isinstance(fn, HttpCall | BrokerCall | SagaCall | XaStep)):
            raise DefinitionError(f"a step is a callable, an HttpCall or a BrokerCall, not {fn!r}")
        shown_args = (fn.payload,) if isinstance(fn, SagaCall) else args
        digest = args_digest(shown_args, kwargs, f"the arguments of step {step_name}")
        undo = None if compensate is None else undo_spec(compensate, args, kwargs)
        commit = None if on_commit is None else undo_spec(on_commit, args, kwargs)
        pos, entry = self._next("step", step_name, digest)
        if entry is None:
            b = self._new(pos, "step", step_name, digest, target_of(fn))
            if undo is not None:
                target = target_of(compensate.fn if isinstance(compensate, Call) else compensate)
                self.rows[(b, COMPENSATE)] = OpRecord(
                    self.tx.gid, b, COMPENSATE, pos, target, payload=undo
                )
                self.payloads[(b, COMPENSATE)] = undo
            if commit is not None:
                target = target_of(on_commit.fn if isinstance(on_commit, Call) else on_commit)
                self.rows[(b, CONFIRM)] = OpRecord(
                    self.tx.gid, b, CONFIRM, pos, target, payload=commit
                )
                self.payloads[(b, CONFIRM)] = commit
        else:
            b = entry.branch
        key = (b, ACTION)
        if isinstance(fn, SagaCall):
            fn = dataclasses.replace(fn, gid=f"{self.tx.gid}.{pos}")
        self.calls[key] = (
            fn
            if isinstance(fn, HttpCall | BrokerCall | SagaCall | XaStep)
            else LocalCall(bound(fn, args, kwargs), in_thread=getattr(fn, "legato_in_thread", True))
        )
        if retry is not None:
            self.plan.action[b] = retry
        if compensate_retry is not None:
            self.plan.compensate[b] = compensate_retry
        fut = self._future(key)
        if entry is None:
            self.feed(machine.StepCalled(time.time(), b, undo is not None, commit is not None))
        else:
            s = self.state.ops.get(key)
            awaiting_body = s is not None and s.status is OpStatus.RETRY_WAIT and s.next_at is None
            if awaiting_body and self.state.stuck is None:
                self.feed(machine.StepReached(time.time(), b))
        return Pending(self, key, fut)

    def value(self, kind: str, make: Callable[[], Json]) -> Json:
        """A value journaled at the next position (``now``, ``uuid``, ``random``, a pivot)."""
        self._in_body(f"wf.{kind.lstrip('@')}")
        kind = kind.lstrip("@")
        pos, entry = self._next(kind, kind, "-")
        if entry is not None:
            s = self.state.ops.get((entry.branch, ACTION))
            return s.output if s is not None else None
        b = self._new(pos, kind, kind, "-", "")
        value = make()
        self.feed(machine.Recorded(time.time(), b, value))
        return value

    def patched(self, change: str) -> bool:
        self._in_body("wf.patched")
        entry = self.entries.get(self.pos + 1)
        if entry is not None:
            p = entry.payload
            if p.get("kind") == "patch" and p.get("name") == change:
                self.pos += 1
                return True
            return False  # journaled before the change: the old path
        self.pos += 1
        b = self._new(self.pos, "patch", change, "-", "")
        self.feed(machine.Recorded(time.time(), b, True))
        return True

    async def wait(self, kind: str, signal: str | None, seconds: float | None) -> Json:
        self._in_body("wf.sleep" if kind == "@sleep" else "wf.wait_for")
        name = signal or "sleep"
        pos, entry = self._next(kind.lstrip("@"), name, "-")
        now = time.time()
        if entry is None:
            b = self._new(pos, kind.lstrip("@"), name, "-", "")
            key = (b, ACTION)
            kept = self._untaken(signal) if signal is not None else None
            if kept is not None:
                self.taken.add(kept.branch)
                value = _taken(kept)
                self.feed(machine.Recorded(now, b, value))
                return value.get("value")
            until = now + (seconds if seconds is not None else FOREVER)
            fut = self._future(key)
            self.feed(machine.Waiting(now, b, until))
        else:
            key = (entry.branch, ACTION)
            fut = self._future(key)
            s = self.state.ops.get(key)
            if signal is not None and not fut.done() and s is not None:
                kept = self._untaken(signal)
                if kept is not None and s.status is OpStatus.RETRY_WAIT:
                    self.taken.add(kept.branch)
                    self.feed(machine.Delivered(now, key[0], _taken(kept)))
        out = await Pending(self, key, fut)
        if isinstance(out, dict) and not out.get("timeout"):
            return out.get("value")
        return None

    def _untaken(self, signal: str) -> OpRecord | None:
        for o in self.signals:
            if o.target == signal and o.branch not in self.taken:
                return o
        return None

    async def child(self, wf: Workflow, definition: WorkflowDefinition, args: Sequence[Any]) -> Any:
        self._in_body("wf.child")
        if not isinstance(definition, WorkflowDefinition):
            raise WorkflowError(f"wf.child runs a @legato.workflow, not {definition!r}")
        digest = digest_of(jsonable(list(args), f"the arguments of child {definition.key}"))
        pos, entry = self._next("child", definition.key, digest)
        if entry is None:
            b = self._new(pos, "child", definition.key, digest, definition.key)
            self.feed(machine.Recorded(time.time(), b, definition.key))
        try:
            return await definition.fn(wf, *args)
        except Failure:
            await self.undo_since(pos)  # the child's own steps, in reverse
            raise

    async def undo_since(self, mark: int) -> None:
        self._in_body("wf.compensate_since")
        if not isinstance(mark, int) or not 0 <= mark <= self.pos:
            raise DefinitionError(f"compensate_since takes a mark from wf.mark(), not {mark!r}")
        pos, entry = self._next("undo", "undo", str(mark))
        if entry is None:
            b = self._new(pos, "undo", "undo", str(mark), "")
            fut = self._future((b, ACTION))
            self.feed(machine.UndoSince(time.time(), b, mark))
        else:
            fut = self._future((entry.branch, ACTION))
        await Pending(self, (b if entry is None else entry.branch, ACTION), fut)

    async def select(self, steps: Sequence[Pending]) -> tuple[int, Any]:
        self._in_body("wf.select")
        if not steps:
            raise DefinitionError("select needs at least one step")
        names = ",".join(p.key[0] for p in steps)
        pos, entry = self._next("select", "select", digest_of(names))
        if entry is not None:
            s = self.state.ops.get((entry.branch, ACTION))
            index = int(s.output) if s is not None and isinstance(s.output, int) else 0
            return index, await steps[index]
        b = self._new(pos, "select", "select", digest_of(names), "")
        first: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def watch(i: int, p: Pending) -> None:
            with contextlib.suppress(Exception):  # a failure ends a step too
                await p
            if not first.done():
                first.set_result(i)

        watchers = [asyncio.ensure_future(watch(i, p)) for i, p in enumerate(steps)]
        try:
            index = await first
        finally:
            for w in watchers:
                w.cancel()
        self.feed(machine.Recorded(time.time(), b, index))
        return index, await steps[index]


def _taken(record: OpRecord) -> dict[str, Json]:
    return {"signal": record.branch, "value": record.output}


def _nowhere(event: Any) -> None:
    raise WorkflowError("the workflow is not running")


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # a step's failure the body never awaited is no error of its own


def _resolve_future(fut: asyncio.Future[Any], key: OpKey, s: Any) -> bool:
    """Settle ``fut`` from the entry's state ``s``; False while it has no outcome yet."""
    if fut.done():
        return True
    if s.status is OpStatus.SUCCEEDED:
        fut.set_result(s.output)
        return True
    if s.status is OpStatus.FAILED and key[1] is ACTION:
        fut.set_exception(Failure(s.error or "failed"))
        return True
    return False


class WorkflowMode:
    """Workflows, by the definitions registered here (name and version)."""

    mode = Mode.WORKFLOW

    def __init__(self) -> None:
        self.workflows: dict[str, WorkflowDefinition] = {}

    def register(self, definition: WorkflowDefinition) -> None:
        known = self.workflows.get(definition.key)
        if known is not None and known.fn is not definition.fn:
            raise DefinitionError(
                f"another body of workflow {definition.name!r} version "
                f"{definition.version!r} is already registered"
            )
        self.workflows[definition.key] = definition

    def claims(self) -> Sequence[str]:
        return list(self.workflows)

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> WorkflowDriver | Unreadable | None:
        definition = self.workflows.get(tx.name)
        if definition is None:
            return None
        return WorkflowDriver(definition, tx, ops)


__all__ = ["ACTION", "Entry", "Pending", "Workflow", "WorkflowDriver", "WorkflowMode"]
