"""The coordinator: the public face of one engine, its modes and its transports.

>>> async with Coordinator("sqlite:///legato.db") as coordinator:  # doctest: +SKIP
...     coordinator.register(trip)
...     handle = await coordinator.submit(trip, {"trip": 42}, gid="order-42")
...     outcome = await handle.result()

Any number of coordinators may share one PostgreSQL log: each claims due
transactions with a lease (owner + expiry), renews the leases it holds, and
every write it makes is fenced by its lease. A coordinator that dies simply
stops renewing; once its leases expire another one claims and resumes them.

This module puts the parts together and delegates: the engine (``engine/``) drives
every transaction; each mode is a machine (``modes/``), a driver (``drivers/``)
and a public API (``saga``, ``tcc``, ``xa``, ``msg``); each kind of call has its
transport (``transports/``).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

from . import _json, _spec, workflow
from . import flow as _flow
from . import msg as _msg
from . import tcc as _tcc
from ._allow import AllowList
from ._bounds import check_custom_data, check_headers, check_title
from ._errors import GidConflict, IllegalStateChange
from ._hooks import HookChain, Hooks
from ._initiator import check_timeout, new_gid
from ._model import EventRecord, Json, Mode, OpRecord, Request, RequestKind, TxRecord, TxStatus
from .brokers import Broker, broker_from_url
from .drivers.msg import MsgMode
from .drivers.saga import SagaDriver, SagaMode
from .drivers.tcc import TccMode
from .drivers.xa import XaMode
from .engine.core import Engine
from .engine.handle import Handle, Outcome
from .log import Log, NewTransaction, TxQuery, open_log
from .modes import saga as saga_machine
from .modes._core import Resume
from .observe.tracing import Tracing
from .participant.xa import Xid
from .saga import WIRE_SAGA, Saga
from .tcc import DEFAULT_TCC_TIMEOUT, TccTransaction
from .transports.broker import BrokerCall, BrokerTransport
from .transports.http import (
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    HttpCall,
    HttpTransport,
)
from .transports.local import LocalCall, LocalTransport
from .transports.xa import Connections, XaCall, XaResource, XaTransport
from .workflow import (
    SagaCall,
    SagaStepTransport,
    WorkflowDefinition,
    WorkflowMode,
    XaEnd,
    XaStep,
    XaStepTransport,
)
from .xa import DEFAULT_XA_TIMEOUT, RecoveryReport, Xa, XaTransaction

logger = logging.getLogger("legato.coordinator")

__all__ = ["DEFAULT_GRACE", "WIRE_SAGA", "Coordinator"]

DEFAULT_GRACE = 10.0
"""Seconds ``close()`` lets the ops in flight finish (``legato serve --grace``): well
under the 30 s an orchestrator waits by default before it kills a process."""


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Coordinator:
    """Drives global transactions to an end. One per process is typical; there is
    no global instance.

    ``log`` is a ``Log`` or a URL (``sqlite:///legato.db``, ``postgresql://...``,
    ``memory://``). ``owner`` names this coordinator in leases; give a stable one
    (e.g. the pod name) and a restarted coordinator takes its unfinished work
    back at once instead of waiting ``lease`` seconds for its old leases to
    expire. ``recover=False`` drives only what this coordinator submits.

    ``step_threads`` sizes the pool that runs sync ops (default: Python's own
    ``min(32, cores + 4)``). More threads let more slow, blocking ops wait at once;
    past what the work needs they only contend for the GIL (measured: 64 threads
    gave a quarter fewer sagas/s than 8 on two cores). Ops that wait on the network
    are better written async.

    HTTP ops (``HttpCall``) go through one pooled client; ``request_timeout`` bounds
    each request whose op and step set no timeout of their own, body included, and
    ``max_answer_bytes`` the body read from a participant's answer, inflated (1 MiB by
    default): a larger answer is an unknown outcome (``legato.transports.http`` says
    why), and a 2xx JSON body of up to 64 KiB becomes the op's output. ``participants``,
    a list of ``host:port`` patterns (``legato._allow``), is the only places HTTP ops
    may call (default: anywhere); a transaction naming another URL is refused when it
    is submitted or its branch registered.

    ``resources`` are the databases XA branches run in (``postgresql://`` or
    ``mysql://``). Their branches are prepared in ``xa_namespace`` (1-16 of ``A-Z a-z
    0-9 - _ .``; default: the start of the log's deployment id, the same for every
    coordinator sharing the log), and ``recover_xa`` ends that namespace's branches
    only: deployments sharing a database server never end each other's.
    """

    def __init__(
        self,
        log: Log | str = "sqlite:///legato.db",
        *,
        owner: str | None = None,
        lease: float = 15.0,
        poll_interval: float = 1.0,
        claim_batch: int = 64,
        step_threads: int | None = None,
        recover: bool = True,
        retention: float | None = None,
        hooks: Sequence[Hooks] = (),
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        resources: dict[str, str] | None = None,
        brokers: dict[str, str] | None = None,
        xa_recovery_interval: float = 60.0,
        xa_namespace: str | None = None,
        tracing: Tracing | None = None,
        participants: Iterable[str] = (),
    ) -> None:
        self.request_timeout = request_timeout
        self.max_answer_bytes = max_answer_bytes
        self._pool = concurrent.futures.ThreadPoolExecutor(step_threads, "legato-step")
        self.transport = LocalTransport(self._pool)
        self.http = self._http_transport()
        self.xa_connections = Connections()  # phase 2's, to the resources
        # the brokers msg branches publish to, by name (connected at start)
        self.broker_urls = dict(brokers or {})
        self.brokers: dict[str, Broker] = {}
        self.sagas = SagaMode()
        self.workflows = WorkflowMode()
        self.engine = Engine(
            open_log(log) if isinstance(log, str) else log,
            owner=owner or _default_owner(),
            lease=lease,
            poll_interval=poll_interval,
            claim_batch=claim_batch,
            recover=recover,
            retention=retention,
            hooks=HookChain(hooks),
            tracing=tracing or Tracing(),
            request_timeout=request_timeout,
            participants=AllowList(participants),
            pool=self._pool,
            transports={},
            modes=[self.sagas, self.workflows, TccMode(), XaMode(), MsgMode()],
        )
        self.xa_part = Xa(self.engine, self.xa_connections, xa_namespace)
        self._route_transports()
        for name, url in (resources or {}).items():
            self.register_resource(name, url)
        self.xa_recovery_interval = xa_recovery_interval

    def _http_transport(self) -> HttpTransport:
        return HttpTransport(
            request_timeout=self.request_timeout, max_answer_bytes=self.max_answer_bytes
        )

    def _route_transports(self) -> None:
        """Which transport carries which kind of call (the HTTP one is remade at a restart)."""
        self.engine.transports.update(
            {
                LocalCall: self.transport,
                HttpCall: self.http,
                BrokerCall: BrokerTransport(self.brokers),
                XaCall: XaTransport(self.transport, self.resources, self.xa_connections),
                SagaCall: SagaStepTransport(self._submit_child),
            }
        )
        xa_steps = XaStepTransport(
            self.transport, self.resources, self.xa_connections, lambda: self.xa_namespace
        )
        self.engine.transports.update({XaStep: xa_steps, XaEnd: xa_steps})

    # -- what the engine holds, by the names the coordinator has always had -------------

    @property
    def log(self) -> Log:
        return self.engine.log

    @property
    def owner(self) -> str:
        return self.engine.owner

    @property
    def lease(self) -> float:
        return self.engine.lease

    @property
    def hooks(self) -> HookChain:
        return self.engine.hooks

    @property
    def tracing(self) -> Tracing:
        return self.engine.tracing

    @property
    def participants(self) -> AllowList:
        return self.engine.participants

    @property
    def resources(self) -> dict[str, XaResource]:
        return self.xa_part.resources

    @property
    def xa_recovery_lock(self) -> asyncio.Lock:
        return self.xa_part.recovery_lock

    @property
    def xa_namespace(self) -> str:
        """The namespace of this coordinator's XA branches (see the class docstring)."""
        return self.xa_part.namespace

    @property
    def in_flight(self) -> int:
        """Transactions this coordinator is driving now."""
        return len(self.engine.runners)

    @property
    def fenced(self) -> int:
        """Transactions this coordinator stopped driving before their leases could expire,
        its renewals not landing (the log unreachable): driven again here once the log
        answers, unless another coordinator has taken them over by then."""
        return self.engine.fenced_count

    @property
    def lease_renewed_ago(self) -> float:
        """Seconds since the start of the last lease renewal that landed."""
        return self.engine.renewed_ago

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Coordinator:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self.engine.started:
            return
        await self.engine.open()
        await self.xa_part.open()
        if self.http.closed:
            self.http = self._http_transport()
            self._route_transports()
        for name, url in self.broker_urls.items():
            broker = broker_from_url(url)
            await broker.connect()
            self.brokers[name] = broker
        self.xa_connections.open()
        if self.engine.recover and self.resources:
            self.engine.periodic = [
                ("legato-xa", self.xa_recovery_interval, self._xa_recovery_pass)
            ]
        self.engine.run()

    @property
    def stopping(self) -> bool:
        """A stop has begun: no new work is taken (``Stopping``), waits should end."""
        return self.engine.stopping.is_set()

    async def until_stopping(self) -> None:
        """Return once a stop begins (``begin_stop``, ``close``, ``stop``)."""
        await self.engine.stopping.wait()

    def begin_stop(self, grace: float = DEFAULT_GRACE) -> None:
        """Begin a graceful stop now, without waiting for it (a signal handler's first
        move, say; ``close`` waits for the end): claim nothing more, refuse new work
        (``Stopping``), start no op; each transaction is given up, its lease released for
        another coordinator, as soon as its ops in flight have reported, for ``grace``
        seconds at most. Called again, it only shortens the grace; ``grace=0`` cuts it."""
        self.engine.begin_stop(grace)

    async def drained(self) -> None:
        """After ``begin_stop``: wait until every transaction this coordinator drove has
        been given up (its ops in flight reported, its lease released), or the grace has
        run out, or the stop was cut short. ``close`` then ends what is left."""
        await self.engine.drained()

    async def close(self, grace: float = DEFAULT_GRACE) -> None:
        """Stop gracefully: ``begin_stop(grace)``, then wait for the ops in flight to
        finish and their outcomes to be written, for ``grace`` seconds at most; every
        lease is released at once, so that another coordinator sharing the log drives
        the rest on without waiting for the leases to expire. Past the grace (or once
        ``begin_stop(0)`` is called meanwhile), what still runs is cut as ``stop`` does.
        """
        if not self.engine.started:
            return
        await self.engine.stop_driving(grace)
        await self.http.close()
        await self.engine.log.close()
        self.xa_connections.close()
        for broker in self.brokers.values():
            await broker.close()
        self.brokers.clear()

    async def stop(self) -> None:
        """Stop at once (``close`` with no grace). Ops in flight are cancelled (their
        outcome is unknown, so the next coordinator retries them); leases are released
        for others to claim once the step threads are idle (at most ``lease`` seconds
        later)."""
        await self.close(grace=0.0)

    async def _xa_recovery_pass(self) -> None:
        report = await self.recover_xa()
        if report.committed or report.rolled_back:
            logger.warning(
                "XA recovery: committed %s, rolled back %s", report.committed, report.rolled_back
            )
        if report.failed:
            logger.error("XA recovery failed, to be tried again: %s", report.failed)

    # -- sagas ----------------------------------------------------------------------

    def register(self, *definitions: Saga | WorkflowDefinition) -> None:
        """Make sagas and workflows known here, so that this coordinator can resume them
        after a crash (a workflow: the versions registered here)."""
        for d in definitions:
            if isinstance(d, WorkflowDefinition):
                self.workflows.register(d)
            else:
                self.sagas.register(d)

    # -- workflows (legato.workflow) -----------------------------------------------------

    async def _submit_child(self, saga: Saga, payload: Json, gid: str) -> Handle:
        return await self.submit(saga, payload, gid=gid)

    async def start_workflow(
        self,
        definition: WorkflowDefinition,
        /,
        *args: Json,
        gid: str | None = None,
        timeout_to_fail: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Handle:
        """Write the workflow to the log and run ``definition``'s body with ``args``;
        idempotent by ``gid``."""
        return await workflow.start(
            self.engine, self.workflows, definition, args, gid=gid,
            timeout_to_fail=timeout_to_fail, headers=headers,
        )  # fmt: skip

    async def signal(
        self,
        gid: str,
        name: str,
        value: Json = True,
        *,
        id: str | None = None,
        by: str | None = None,
    ) -> bool:
        """Send the signal ``name`` (with ``value``, true by default: a wait that times out
        returns None) to the workflow ``gid``: kept until the workflow waits for it.
        ``id`` makes it idempotent; False: kept already."""
        return await workflow.signal(self.engine, gid, name, value, id=id, by=by)

    async def submit(
        self,
        saga: Saga,
        payload: Json = None,
        *,
        gid: str | None = None,
        timeout_to_fail: float | None = None,
        headers: dict[str, str] | None = None,
        title: str | None = None,
        custom_data: str | None = None,
    ) -> Handle:
        """Write the saga to the log and start it; idempotent by ``gid``.

        Everything is checked before anything is written: the definition
        (``DefinitionError``), the payload (``PayloadError``), and a gid already
        used for another saga or payload (``GidConflict``). ``headers`` are sent
        with every call to this transaction's HTTP participants. ``title`` names it for
        people (lists, ``legato tx show``, the dashboard); a saga submitted over HTTP
        without one reads as its steps. ``custom_data`` is the caller's own text, kept
        with the transaction and shown back as given (DTM's ``custom_data``).
        """
        self.engine.require_started()
        plan = saga.plan()
        for step in saga.steps:
            for op, fn in (("action", step.action), ("compensate", step.compensate)):
                if isinstance(fn, HttpCall):
                    self.participants.check(fn.url, f"step {step.name} {op}")
        if saga.name != WIRE_SAGA:  # a wire saga carries its own definition in the log
            self.register(saga)
        options: dict[str, Json] = {}
        if headers:
            options["headers"] = check_headers(headers)
        if title is not None:
            options["title"] = check_title(title)
        if custom_data:
            options["custom_data"] = check_custom_data(custom_data)
        if saga.portable:
            options["spec"] = _spec.to_spec(saga)
        payload_text = _json.dumps(payload, checked=True)
        gid = new_gid(gid)
        check_timeout(timeout_to_fail)
        if gid in self.engine.runners:
            await self._check_same(gid, saga, payload_text)
            return self.handle(gid)
        now = time.time()
        timeout = timeout_to_fail if timeout_to_fail is not None else saga.timeout_to_fail
        tx = TxRecord(
            gid=gid,
            mode=Mode.SAGA,
            name=saga.name,
            fingerprint=saga.fingerprint(),
            status=TxStatus.SUBMITTED,
            payload=_json.loads(payload_text),
            options={**options, "timeout_to_fail": timeout} if timeout is not None else options,
            created_at=now,
            updated_at=now,
            timeout_at=now + timeout if timeout is not None else None,
            next_attempt_at=now,
            lease_owner=self.owner,
            lease_expires_at=now + self.lease,
        )
        fresh = saga_machine.new_state(gid, plan)
        ops = [
            OpRecord(gid, name, op, i, saga.target(name, op), updated_at=now)
            for i, (name, op) in enumerate(fresh.ops)
        ]
        new = NewTransaction(tx, ops)
        driver = SagaDriver(saga)
        existing = await self.engine.begin(new, driver, fresh, [Resume(now, fresh=True)])
        if existing is not None:
            self._check_existing(existing, saga, payload_text)
        return self.handle(gid)

    async def _check_same(self, gid: str, saga: Saga, payload_text: str) -> None:
        loaded = await self.log.load(gid)
        if loaded is not None:
            self._check_existing(loaded[0], saga, payload_text)

    def _check_existing(self, tx: TxRecord, saga: Saga, payload_text: str) -> None:
        if tx.name != saga.name or tx.fingerprint != saga.fingerprint():
            raise GidConflict(
                f"gid {tx.gid!r} is already used by saga {tx.name!r} with another definition"
            )
        if tx.payload != _json.loads(payload_text):
            raise GidConflict(f"gid {tx.gid!r} was already submitted with a different payload")

    def handle(self, gid: str) -> Handle:
        return self.engine.handle(gid)

    # -- operator requests ----------------------------------------------------------

    async def retry(self, gid: str, *, by: str | None = None) -> None:
        """Ask a stuck transaction to try its parked ops again; ``by`` (who asks) is
        recorded with the request. A choreographed flow refuses (its services drive it)."""
        if await _flow.operator_request(self.log, gid, "retry", by=by) is None:
            await self.engine.request(gid, Request(RequestKind.RETRY), by=by)

    async def abort(self, gid: str, *, by: str | None = None) -> None:
        """Ask a transaction to roll back (refused once past its pivot, and by a
        choreographed flow, which its services drive)."""
        if await _flow.operator_request(self.log, gid, "abort", by=by) is None:
            await self.engine.request(gid, Request(RequestKind.ABORT), by=by)

    async def force_end(self, gid: str, status: TxStatus | str, *, by: str | None = None) -> None:
        """End a transaction by decree, after an operator has repaired it by hand (a
        choreographed flow ends here at once: no coordinator drives it)."""
        try:
            status = TxStatus(status)
        except ValueError:
            status = TxStatus.SUBMITTED  # refused just below
        if not status.ended:
            raise IllegalStateChange(f"force_end needs succeeded or failed, not {status}")
        if await _flow.operator_request(self.log, gid, status, by=by) is None:
            await self.engine.request(gid, Request.end(status), by=by)

    # -- reads ----------------------------------------------------------------------

    async def get(self, gid: str) -> tuple[TxRecord, builtins.list[OpRecord]]:
        return await self.engine.get(gid)

    async def outcome(self, gid: str) -> Outcome:
        return await self.engine.outcome(gid)

    async def events(self, gid: str) -> builtins.list[EventRecord]:
        return await self.engine.events(gid)

    async def list(self, query: TxQuery | None = None) -> builtins.list[TxRecord]:
        return await self.engine.transactions(query)

    # -- TCC (legato.tcc) -------------------------------------------------------------

    def tcc(
        self,
        gid: str | None = None,
        *,
        timeout_to_fail: float = DEFAULT_TCC_TIMEOUT,
        headers: dict[str, str] | None = None,
    ) -> TccTransaction:
        """A TCC transaction for ``async with``: see ``legato.tcc``."""
        return TccTransaction(self.engine, gid, timeout_to_fail=timeout_to_fail, headers=headers)

    async def begin_tcc(
        self,
        gid: str | None = None,
        *,
        timeout_to_fail: float | None = DEFAULT_TCC_TIMEOUT,
        headers: dict[str, str] | None = None,
        custom_data: str | None = None,
        title: str | None = None,
    ) -> str:
        """Write a prepared TCC transaction; see ``legato.tcc.begin``."""
        return await _tcc.begin(
            self.engine,
            gid,
            timeout_to_fail=timeout_to_fail,
            headers=headers,
            custom_data=custom_data,
            title=title,
        )

    async def register_tcc_branch(
        self, gid: str, branch: str, confirm: HttpCall, cancel: HttpCall
    ) -> None:
        """Add a branch (its confirm and cancel calls) to a prepared TCC transaction."""
        await _tcc.register_branch(self.engine, gid, branch, confirm, cancel)

    async def submit_tcc(self, gid: str) -> Handle:
        """The tries all succeeded (or, for XA, every branch is prepared): go forward."""
        return await _tcc.submit(self.engine, gid)

    async def abort_tcc(self, gid: str, reason: str = "aborted by the initiator") -> Handle:
        """Cancel (or roll back) every branch, newest first."""
        return await _tcc.abort(self.engine, gid, reason)

    # -- XA (legato.xa) ---------------------------------------------------------------

    def register_resource(self, name: str, url: str) -> None:
        """A database this coordinator reaches for XA's phase 2 and recovery: every
        coordinator sharing the log should know the same resources by the same names."""
        self.xa_part.register_resource(name, url)

    def xa(
        self, gid: str | None = None, *, timeout_to_fail: float = DEFAULT_XA_TIMEOUT
    ) -> XaTransaction:
        """A two-phase commit transaction for ``async with``: see ``legato.xa``."""
        return self.xa_part.transaction(gid, timeout_to_fail=timeout_to_fail)

    async def begin_xa(
        self,
        gid: str | None = None,
        *,
        timeout_to_fail: float | None = DEFAULT_XA_TIMEOUT,
        custom_data: str | None = None,
        title: str | None = None,
    ) -> str:
        """Write a prepared XA transaction; branches are then registered and prepared."""
        return await self.xa_part.begin(
            gid, timeout_to_fail=timeout_to_fail, custom_data=custom_data, title=title
        )

    async def register_xa_branch(self, gid: str, branch: str, resource: str) -> Xid:
        """Record a branch (and its resource) before it prepares; see ``Xa.register_branch``."""
        return await self.xa_part.register_branch(gid, branch, resource)

    async def register_xa_http_branch(self, gid: str, branch: str, call: HttpCall | str) -> None:
        """Record a branch an HTTP service prepared itself (DTM's XA flow)."""
        await self.xa_part.register_http_branch(gid, branch, call)

    async def recover_xa(self) -> RecoveryReport:
        """Resolve this namespace's branches left prepared in the registered resources:
        commit where the log holds the decision to commit, roll back where it holds an
        abort or nothing at all (presumed abort)."""
        return await self.xa_part.recover()

    # -- msg (legato.msg) -------------------------------------------------------------

    async def begin_msg(
        self,
        gid: str | None,
        steps: Sequence[HttpCall | BrokerCall],
        *,
        query_prepared: HttpCall | None = None,
        timeout_to_fail: float | None = _msg.DEFAULT_MSG_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        concurrent: bool = False,
        custom_data: str | None = None,
        title: str | None = None,
    ) -> str:
        """Write a prepared message; see ``legato.msg.begin``: its steps are delivered
        one at a time, in order, unless ``concurrent``."""
        return await _msg.begin(
            self.engine,
            gid,
            steps,
            query_prepared=query_prepared,
            timeout_to_fail=timeout_to_fail,
            headers=headers,
            concurrent=concurrent,
            custom_data=custom_data,
            title=title,
        )

    async def submit_msg(self, gid: str) -> Handle:
        """The local transaction committed: deliver the message's branches."""
        return await _msg.submit(self.engine, gid)

    async def abort_msg(self, gid: str, reason: str = "the local transaction failed") -> Handle:
        """The local transaction did not commit: the message is dropped, never delivered."""
        return await _msg.abort(self.engine, gid, reason)
