"""Durable workflows as plain Python, with compensation built in.

>>> @legato.workflow("book_trip")                                       # doctest: +SKIP
... async def book_trip(wf: legato.Workflow, order: dict) -> dict:
...     flight = await wf.step(reserve_flight, order, compensate=cancel_flight)
...     ...
>>> handle = await coordinator.start_workflow(book_trip, order, gid="order-42")  # doctest: +SKIP
>>> await coordinator.signal("order-42", "approval", True)              # doctest: +SKIP

Each step's outcome is written to the log before the workflow goes on; after a
crash (or on another coordinator) the body is run again and the recorded outcomes
are returned without calling the steps. A failure raised out of the body runs the
compensations registered so far, in reverse, and the workflow fails. The rules:
``modes.workflow``; the body's runtime: ``drivers.workflow``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from . import _initiator, _json
from ._bounds import check_branch_id, check_headers
from ._errors import Failure, GidConflict, ResourceError, WorkflowError
from ._model import Json, Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from .drivers.workflow import Pending, Workflow, WorkflowDriver, WorkflowMode
from .drivers.workflow_calls import (
    Call,
    SagaCall,
    WorkflowDefinition,
    XaEnd,
    XaStep,
    call,
    current_step,
    step,
    workflow,
)
from .drivers.workflow_replay import Replayed, replay
from .engine.handle import Handle
from .engine.port import Engine
from .log import NewTransaction
from .modes import workflow as machine
from .modes._core import Resume
from .transports.base import AttemptResult, Done, OpAttempt
from .transports.local import LocalTransport
from .transports.xa import Connections, XaResource, phase2


async def start(
    engine: Engine,
    mode: WorkflowMode,
    definition: WorkflowDefinition,
    args: Sequence[Any],
    *,
    gid: str | None = None,
    timeout_to_fail: float | None = None,
    headers: Mapping[str, str] | None = None,
) -> Handle:
    """Write the workflow to the log and run its body here; idempotent by ``gid`` (the
    same workflow with the same arguments: its handle; anything else: ``GidConflict``)."""
    engine.require_started()
    if not isinstance(definition, WorkflowDefinition):
        raise WorkflowError(f"start_workflow takes a @legato.workflow, not {definition!r}")
    mode.register(definition)
    gid = _initiator.new_gid(gid)
    _initiator.check_timeout(timeout_to_fail)
    payload = _json.loads(_json.dumps(list(args), what="the workflow's arguments", checked=True))
    options: dict[str, Json] = {}
    if headers:
        options["headers"] = check_headers(headers)
    timeout = timeout_to_fail if timeout_to_fail is not None else definition.timeout_to_fail
    if timeout is not None:
        options["timeout_to_fail"] = timeout
    now = time.time()
    tx = TxRecord(
        gid=gid,
        mode=Mode.WORKFLOW,
        name=definition.key,
        fingerprint=definition.version,
        status=TxStatus.SUBMITTED,
        payload=payload,
        options=options,
        created_at=now,
        updated_at=now,
        timeout_at=now + timeout if timeout is not None else None,
        next_attempt_at=now,
        lease_owner=engine.owner,
        lease_expires_at=now + engine.lease,
    )
    driver = WorkflowDriver(definition, tx, [])
    fresh = machine.new_state(gid)
    # the body runs up to its first durable call, which is written with the transaction
    early = driver.begin_early(fresh)
    await asyncio.sleep(0)
    first = list(early)
    driver.early_written = len(first)
    rows = [dataclasses.replace(r, updated_at=now) for r in driver.rows.values()]
    if any(isinstance(e, machine.BodyReturned) for e in first):
        rows.append(driver.describe((machine.RESULT, OpName.ACTION)))
    try:
        existing = await engine.begin(
            NewTransaction(tx, rows), driver, fresh, [Resume(now, True), *first]
        )
    except BaseException:
        driver.stop()
        raise
    if existing is not None:
        driver.stop()
        if existing.mode is not Mode.WORKFLOW or existing.name != definition.key:
            what = existing.name if existing.mode is Mode.WORKFLOW else f"a {existing.mode}"
            raise GidConflict(f"gid {gid!r} is already used by {what}, not {definition.key}")
        if existing.payload != payload:
            raise GidConflict(f"gid {gid!r} was already started with other arguments")
    return engine.handle(gid)


SubmitSaga = Callable[[Any, Json, str], Awaitable[Handle]]


class SagaStepTransport:
    """Carries a workflow's ``wf.saga`` steps: submits the saga (idempotent by its gid,
    so an attempt after a restart finds the one already submitted) and reports its
    outcome: succeeded (its outputs), failed (a definite failure: it compensated
    itself), stuck ("not yet": asked again, as the parent waits for an operator)."""

    remote = False

    def __init__(self, submit: SubmitSaga) -> None:
        self.submit = submit

    def start(
        self, call: SagaCall, attempt: OpAttempt, *, timeout: float | None, done: Done
    ) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                handle = await self.submit(call.saga, call.payload, call.gid)
                outcome = await handle.result(timeout=timeout)
            except GidConflict as exc:
                done(AttemptResult.failed(str(exc)))
                return
            except TimeoutError:
                done(AttemptResult.unknown(f"saga {call.gid} did not settle in {timeout}s"))
                return
            if outcome.succeeded:
                done(AttemptResult.ok(dict(outcome.outputs)))
            elif outcome.status is TxStatus.FAILED:
                done(AttemptResult.failed(f"saga {call.gid} failed: {outcome.reason}"))
            else:
                done(AttemptResult.ongoing(f"saga {call.gid} is stuck: {outcome.stuck}"))

        return asyncio.get_running_loop().create_task(run())


class XaStepTransport:
    """Carries a workflow's XA branches (``wf.xa``): the prepare (the branch function run
    in a two-phase transaction on the resource, in a step thread) and phase 2, in this
    coordinator's XA namespace (an xid per gid and journal entry)."""

    remote = False

    def __init__(
        self,
        local: LocalTransport,
        resources: Mapping[str, XaResource],
        conns: Connections,
        namespace: Callable[[], str],
    ) -> None:
        self.local, self.resources, self.conns, self.namespace = local, resources, conns, namespace

    def start(
        self, call: XaStep | XaEnd, attempt: OpAttempt, *, timeout: float | None, done: Done
    ) -> None:
        from .participant import xa

        resource = self.resources.get(call.resource)
        namespace = self.namespace()

        def work() -> AttemptResult:
            if resource is None:
                raise ResourceError(f"resource {call.resource!r} is not registered here")
            if isinstance(call, XaEnd):
                phase2(
                    resource, xa.Xid(attempt.gid, attempt.branch, namespace), call.op, self.conns
                )
                return AttemptResult.ok()
            conn = resource.connect()
            try:
                result = xa.prepare_branch(
                    conn, attempt.gid, attempt.branch, call.fn, namespace=namespace
                )
            except Failure as exc:
                return AttemptResult.failed(str(exc))
            finally:
                conn.close()
            if not result.ok:
                return AttemptResult.failed("the branch was rolled back already")
            return AttemptResult.ok(_json.check(result.value, what="the branch's output"))

        self.local.in_thread(work, timeout, done)


def signal_record(
    gid: str, name: str, value: Json = True, *, id: str | None = None, now: float
) -> OpRecord:
    """The op row that keeps the signal ``name`` (with ``value``) for the workflow
    ``gid``, as ``Log.signal`` takes it: its branch is ``name#id`` (a new id unless
    ``id`` is given), its output the value. Checked first: the gid, the name and the
    id (``DefinitionError``), the value (``PayloadError``)."""
    _initiator.new_gid(gid)
    check_branch_id(name, "signal")
    ident = check_branch_id(id, "signal id") if id is not None else uuid.uuid4().hex
    value = _json.loads(_json.dumps(value, what="the signal's value", checked=True))
    return OpRecord(
        gid, f"{name}#{ident}", OpName.SIGNAL, 0, name, OpStatus.SUCCEEDED, output=value,
        updated_at=now,
    )  # fmt: skip


async def signal(
    engine: Engine,
    gid: str,
    name: str,
    value: Json = True,
    *,
    id: str | None = None,
    by: str | None = None,
) -> bool:
    """Send the signal ``name`` with ``value`` to the workflow ``gid``; kept until the
    workflow waits for it. ``id`` makes the send idempotent (the same id again is kept
    once); returns False if it was kept already."""
    record = signal_record(gid, name, value, id=id, now=time.time())
    return await engine.signal(gid, record, by=by)


__all__ = [
    "Call",
    "Pending",
    "Replayed",
    "SagaCall",
    "SagaStepTransport",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowError",
    "WorkflowMode",
    "XaEnd",
    "XaStep",
    "XaStepTransport",
    "call",
    "current_step",
    "replay",
    "signal",
    "signal_record",
    "start",
    "step",
    "workflow",
]
