"""The coordinator: submits sagas, claims due work, holds leases, drives runners.

>>> async with Coordinator("sqlite:///legato.db") as coordinator:  # doctest: +SKIP
...     coordinator.register(trip)
...     handle = await coordinator.submit(trip, {"trip": 42}, gid="order-42")
...     outcome = await handle.result()

Any number of coordinators may share one PostgreSQL log: each claims due
transactions with a lease (owner + expiry), renews the leases it holds, and
every write it makes is fenced by its lease. A coordinator that dies simply
stops renewing; once its leases expire another one claims and resumes them.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType
from typing import TypeGuard

from . import _json, _spec
from ._allow import AllowList
from ._bounds import check_headers
from ._errors import (
    DefinitionError,
    GidConflict,
    IllegalStateChange,
    LogError,
    LogUnavailable,
    TransactionNotFound,
)
from ._handle import Handle, Outcome
from ._hooks import HookChain, Hooks
from ._initiated import InitiatedModes, _check_gid, _positive
from ._model import EventRecord, Json, Mode, OpRecord, OpStatus, TxRecord, TxStatus
from ._msg import WIRE_MSG, MsgDriver
from ._runner import Driver, Runner, SagaDriver, TccDriver, _event_record, _transition_records
from ._tcc import WIRE_TCC
from ._xa import WIRE_XA, Connections, XaResource, deployment_namespace, xa_driver
from .brokers import Broker, broker_from_url
from .log import Log, NewTransaction, TxQuery, TxWrite, open_log
from .log.base import purge_in_batches
from .modes import saga as machine
from .modes import tcc
from .observe.tracing import Tracing
from .saga import Saga
from .transports.http import (
    DEFAULT_MAX_ANSWER_BYTES,
    DEFAULT_REQUEST_TIMEOUT,
    HttpCall,
    HttpTransport,
)
from .transports.local import LocalTransport

logger = logging.getLogger("legato.coordinator")

_REQUESTS = ("retry", "abort", "succeeded", "failed", "submit")
WIRE_SAGA = "wire:saga"
"""The name of the sagas submitted over the coordinator service's API: they carry their
definition in the log, and every coordinator claims them."""


def _checked_namespace(value: str) -> str:
    from .participant.xa import XidError, check_namespace

    try:
        return check_namespace(value, "xa_namespace")
    except XidError as exc:
        raise DefinitionError(str(exc)) from None


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Coordinator(InitiatedModes):
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
        self.log: Log = open_log(log) if isinstance(log, str) else log
        self.owner = owner or _default_owner()
        self.lease = lease
        self.poll_interval = poll_interval
        self.claim_batch = claim_batch
        self.recover = recover
        self.retention = retention
        self.hooks = HookChain(hooks)
        self.tracing = tracing or Tracing()
        self._pool = concurrent.futures.ThreadPoolExecutor(step_threads, "legato-step")
        self.transport = LocalTransport(self._pool)
        self.request_timeout = request_timeout
        self.max_answer_bytes = max_answer_bytes
        self.http = self._http_transport()
        self.participants = AllowList(participants)
        self.resources: dict[str, XaResource] = {}
        self.xa_connections = Connections()  # phase 2's, to the resources
        # the brokers msg branches publish to, by name (connected at start)
        self.broker_urls = dict(brokers or {})
        self.brokers: dict[str, Broker] = {}
        for name, url in (resources or {}).items():
            self.register_resource(name, url)
        self.xa_recovery_interval = xa_recovery_interval
        self._xa_namespace = None if xa_namespace is None else _checked_namespace(xa_namespace)
        # one XA recovery pass at a time in this process (the periodic one and an explicit
        # recover_xa): two would reach for the same prepared branches at once
        self.xa_recovery_lock = asyncio.Lock()
        self._sagas: dict[str, Saga] = {}
        self._runners: dict[str, Runner] = {}
        self._runner_waiters: dict[str, builtins.list[asyncio.Future[None]]] = {}
        self._resuming: set[str] = set()
        # Transactions whose lease this coordinator may hold while no runner drives them:
        # a runner stopped because the log's database could not be reached, a submit whose
        # write's outcome is unknown. The renewal takes them back once the log answers.
        self._orphans: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._started = False
        self._wake_claims = asyncio.Event()

    def _http_transport(self) -> HttpTransport:
        return HttpTransport(
            request_timeout=self.request_timeout, max_answer_bytes=self.max_answer_bytes
        )

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Coordinator:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            return
        if hasattr(self.log, "batch_observer") and self.hooks.wants("on_log_batch"):
            self.log.batch_observer = self.hooks.on_log_batch
        await self.log.open()
        if self._xa_namespace is None:
            self._xa_namespace = deployment_namespace(await self.log.deployment())
        if self.http.closed:
            self.http = self._http_transport()
        # a coordinator restarted under the same owner name takes its own work back
        # at once: whatever its previous incarnation held is orphaned
        await self.log.release_owner(self.owner)
        for name, url in self.broker_urls.items():
            broker = broker_from_url(url)
            await broker.connect()
            self.brokers[name] = broker
        self._started = True
        self.xa_connections.open()
        loop = asyncio.get_running_loop()
        self._loops.append(loop.create_task(self._renew_loop(), name="legato-renew"))
        if self.recover:
            self._loops.append(loop.create_task(self._claim_loop(), name="legato-claim"))
        if self.retention is not None:
            self._loops.append(loop.create_task(self._retention_loop(), name="legato-retention"))
        if self.recover and self.resources:
            self._loops.append(loop.create_task(self._xa_recovery_loop(), name="legato-xa"))

    async def stop(self) -> None:
        """Stop driving. Ops in flight are cancelled (their outcome is unknown, so the
        next coordinator retries them); leases are released for others to claim once
        the step threads are idle (at most ``lease`` seconds later)."""
        if not self._started:
            return
        await _cancel(self._loops)
        self._loops.clear()
        self._orphans.clear()
        runners = list(self._runners.values())
        for r in runners:
            r.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        # A sync op whose task was cancelled still runs to its end in its step thread,
        # and another coordinator must not run it again meanwhile (DESIGN 3.5): the
        # leases go once the threads are idle; past a lease's time they are left to expire.
        self._pool.shutdown(wait=False, cancel_futures=True)
        idle = await self._drain([r.gid for r in runners])
        for r in runners if idle else ():
            with contextlib.suppress(LogError):
                await self.log.release(self.owner, r.gid, time.time())
        await self.http.close()
        await self.log.close()
        self.xa_connections.close()
        for broker in self.brokers.values():
            await broker.close()
        self.brokers.clear()
        self._started = False

    @property
    def xa_namespace(self) -> str:
        """The namespace of this coordinator's XA branches (see the class docstring)."""
        if self._xa_namespace is None:
            raise RuntimeError("the coordinator is not started: its XA namespace is its log's")
        return self._xa_namespace

    # -- sagas ----------------------------------------------------------------------

    def register(self, *sagas: Saga) -> None:
        """Make sagas known here, so that this coordinator can resume them after a crash."""
        for saga in sagas:
            if saga.name.startswith("wire:"):
                raise DefinitionError(
                    f"saga names starting with 'wire:' are Legato's: {saga.name!r}"
                )
            known = self._sagas.get(saga.name)
            if known is saga:
                continue
            saga.plan()  # validate now, not at the first submit
            if (
                known is not None
                and known is not saga
                and known.fingerprint() != saga.fingerprint()
            ):
                raise DefinitionError(
                    f"another saga named {saga.name!r} with different steps is already registered"
                )
            self._sagas[saga.name] = saga

    async def submit(
        self,
        saga: Saga,
        payload: Json = None,
        *,
        gid: str | None = None,
        timeout_to_fail: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Handle:
        """Write the saga to the log and start it; idempotent by ``gid``.

        Everything is checked before anything is written: the definition
        (``DefinitionError``), the payload (``PayloadError``), and a gid already
        used for another saga or payload (``GidConflict``). ``headers`` are sent
        with every call to this transaction's HTTP participants.
        """
        self._require_started()
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
        if saga.portable:
            options["spec"] = _spec.to_spec(saga)
        payload_text = _json.dumps(payload, checked=True)
        _check_gid(gid)
        if timeout_to_fail is not None and not _positive(timeout_to_fail):
            raise DefinitionError(
                f"timeout_to_fail must be a positive number of seconds, not {timeout_to_fail!r}"
            )
        gid = gid or uuid.uuid4().hex
        if gid in self._runners:
            await self._check_same(gid, saga, payload_text)
            return Handle(self, gid)
        now = time.time()
        timeout = timeout_to_fail if timeout_to_fail is not None else saga.timeout_to_fail
        state0 = machine.SagaState.new(gid, plan)
        first = machine.Resume(now, fresh=True)
        t = machine.apply(plan, state0, first)
        tx = TxRecord(
            gid=gid,
            mode=Mode.SAGA,
            name=saga.name,
            fingerprint=saga.fingerprint(),
            status=t.state.status,
            payload=_json.loads(payload_text),
            options={**options, "timeout_to_fail": timeout} if timeout is not None else options,
            created_at=now,
            updated_at=now,
            timeout_at=now + timeout if timeout is not None else None,
            next_attempt_at=now,
            lease_owner=self.owner,
            lease_expires_at=now + self.lease,
        )
        ops = [
            OpRecord(
                gid,
                name,
                op,
                i,
                saga.target(name, op),
                s.status,
                s.attempts,
                s.budget,
                s.next_at,
                s.output,
                s.error,
                s.completed,
                now,
            )
            for i, ((name, op), s) in enumerate(t.state.ops.items())
        ]
        events = [_event_record(gid, first, t), *_transition_records(gid, state0, t, first)]
        existing = await self._create(NewTransaction(tx, ops, events))
        if existing is not None:
            self._check_existing(existing, saga, payload_text)
            return Handle(self, gid)
        runner = Runner(self, SagaDriver(saga), tx, t.state, ops)
        self._start_runner(runner, None, t.commands)
        return Handle(self, gid)

    async def _create(self, new: NewTransaction) -> TxRecord | None:
        """Write a new transaction (its trace begins here), or return the existing row."""
        self.tracing.begin(new.tx)
        gid = new.tx.gid
        try:
            existing = await self.log.create(new)
        except LogUnavailable as exc:
            # Written or not, we cannot tell: if it was, the lease is this coordinator's
            # and the renewal takes it back; a repeat of the call finds it written.
            self._orphans.add(gid)
            raise LogUnavailable(f"{exc}; repeating the call with gid {gid!r} is safe") from exc
        if existing is None:
            self.hooks.on_created(new.tx)
        return existing

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
        return Handle(self, gid)

    @property
    def in_flight(self) -> int:
        """Transactions this coordinator is driving now."""
        return len(self._runners)

    # -- operator requests ----------------------------------------------------------

    async def retry(self, gid: str, *, by: str | None = None) -> None:
        """Ask a stuck transaction to try its parked ops again; ``by`` (who asks) is
        recorded with the request."""
        await self._request(gid, "retry", by=by)

    async def abort(self, gid: str, *, by: str | None = None) -> None:
        """Ask a transaction to roll back (refused once past its pivot)."""
        await self._request(gid, "abort", by=by)

    async def force_end(self, gid: str, status: TxStatus | str, *, by: str | None = None) -> None:
        """End a transaction by decree, after an operator has repaired it by hand."""
        try:
            status = TxStatus(status)
        except ValueError:
            status = TxStatus.SUBMITTED  # refused just below
        if not status.ended:
            raise IllegalStateChange(f"force_end needs succeeded or failed, not {status}")
        await self._request(gid, str(status), by=by)

    async def _request(
        self, gid: str, what: str, *, drive: bool = False, by: str | None = None
    ) -> None:
        """Log a request for whoever drives ``gid``. With ``drive`` (a TCC or XA
        transaction, which any coordinator can drive), take the lease with the request
        where no one holds it and start driving it here at once, instead of on the
        next claim."""
        self._require_started()
        assert _is_request(what)
        now = time.time()
        claim = (self.owner, now + self.lease) if drive else None
        try:
            tx = await self.log.request(gid, what, now, claim, by)
        except LogUnavailable:
            if drive:  # the lease may be ours now: taken back once the log answers
                self._orphans.add(gid)
            raise
        runner = self._runners.get(gid)
        if runner is not None:
            runner.push(_request_event(what, time.time()), what)
        elif drive and tx.lease_owner == self.owner:
            await self._resume(gid, what)
        self._wake_claims.set()

    # -- reads ----------------------------------------------------------------------

    async def get(self, gid: str) -> tuple[TxRecord, list[OpRecord]]:
        loaded = await self.log.load(gid)
        if loaded is None:
            raise TransactionNotFound(f"no transaction has gid {gid!r}")
        return loaded

    async def outcome(self, gid: str) -> Outcome:
        tx, ops = await self.get(gid)
        return Outcome.from_log(tx, ops)

    async def events(self, gid: str) -> list[EventRecord]:
        return await self.log.events(gid)

    async def list(self, query: TxQuery | None = None) -> list[TxRecord]:
        return await self.log.list(query or TxQuery())

    @contextlib.contextmanager
    def _runner_start(self, gid: str) -> Iterator[asyncio.Future[None]]:
        """A future done once a runner for ``gid`` starts here (say, for a submit that
        the claim loop is about to pick up), for a handle waiting on the transaction."""
        waiter = asyncio.get_running_loop().create_future()
        waiters = self._runner_waiters.setdefault(gid, [])
        waiters.append(waiter)
        try:
            yield waiter
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self._runner_waiters.get(gid) is waiters:
                del self._runner_waiters[gid]

    def _settled_future(self, gid: str) -> asyncio.Future[Outcome | None] | None:
        runner = self._runners.get(gid)
        return runner.settled if runner is not None else None

    # -- runners --------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("start the coordinator first: `async with Coordinator(...)`")

    def _start_runner(
        self,
        runner: Runner,
        first: builtins.list[machine.Event | tcc.Submit] | None,
        commands: Sequence[machine.Command] = (),
        handled: str | None = None,
    ) -> None:
        self._runners[runner.gid] = runner
        self._orphans.discard(runner.gid)
        for waiter in self._runner_waiters.pop(runner.gid, ()):
            if not waiter.done():
                waiter.set_result(None)
        task = asyncio.get_running_loop().create_task(
            runner.run(first, commands, handled), name=f"legato-saga-{runner.gid}"
        )
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self._runners.get(runner.gid) is runner:
                del self._runners[runner.gid]
            if isinstance(runner.stopped_by, LogUnavailable) and self._started:
                self._orphans.add(runner.gid)
            if not t.cancelled() and t.exception() is not None:
                logger.error("runner for %s crashed", runner.gid, exc_info=t.exception())

        task.add_done_callback(done)

    async def _resume(self, gid: str, requested: str | None, previous: str | None = None) -> None:
        if gid in self._runners or gid in self._resuming:
            return  # claimed and requested at once: one runner only
        self._resuming.add(gid)
        try:
            await self._resume_loaded(gid, requested, previous)
        except LogUnavailable:
            self._orphans.add(gid)  # claimed, so ours, and not driven: take it back later
            raise
        finally:
            self._resuming.discard(gid)

    async def _resume_loaded(
        self, gid: str, requested: str | None, previous: str | None = None
    ) -> None:
        loaded = await self.log.load(gid)
        if loaded is None:
            return
        tx, ops = loaded
        if tx.lease_owner != self.owner or tx.status.ended:
            return
        self.hooks.on_resumed(tx, previous)
        if tx.mode in (Mode.TCC, Mode.XA, Mode.MSG):
            self._resume_tcc(tx, ops, requested)
            return
        saga = self._sagas.get(tx.name)
        spec = tx.options.get("spec")
        if tx.name == WIRE_SAGA and spec is not None:
            try:
                saga = _spec.from_spec(spec)
            except (DefinitionError, LookupError, TypeError, ValueError) as exc:
                # stored by a laxer version, say: retrying cannot help, an operator can
                why = f"the definition of {gid} in the log cannot be read: {exc}"
                await self._park(tx, ops, why, requested)
                return
        if saga is None:
            await self.log.release(self.owner, gid, time.time() + self.lease)
            return
        if saga.fingerprint() != tx.fingerprint:
            # The code changed under a running saga: driving it on could run the wrong
            # steps. It is parked as stuck, visibly; once the definition it was submitted
            # with is deployed again, `legato tx retry` lets a coordinator resume it.
            why = (
                f"the definition of saga {tx.name!r} changed since {gid} was submitted "
                "(its steps differ): deploy the old definition, then retry"
            )
            await self._park(tx, ops, why, requested)
            return
        state = _state_from_log(tx, ops)
        now = time.time()
        events: builtins.list[machine.Event | tcc.Submit] = [machine.Resume(now)]
        if _is_request(requested):
            events.append(_request_event(requested, now))
        runner = Runner(self, SagaDriver(saga), tx, state, ops)
        self._start_runner(runner, events, handled=requested)

    async def _park(
        self, tx: TxRecord, ops: Sequence[OpRecord], why: str, requested: str | None
    ) -> None:
        """Leave a transaction no one can drive stuck, with why. An op it had running is
        parked with it (its outcome is lost, as on any resumption): an operator's retry
        starts it again."""
        logger.error("%s", why)
        now = time.time()
        running = [o for o in ops if o.status is OpStatus.RUNNING]
        await self.log.write(
            TxWrite(
                gid=tx.gid,
                owner=self.owner,
                at=now,
                status=tx.status,
                reason=tx.reason,
                stuck=why,
                next_attempt_at=None,
                ops=[
                    dataclasses.replace(
                        o, status=OpStatus.RETRY_WAIT, next_at=None, error=why, updated_at=now
                    )
                    for o in running
                ],
                events=[EventRecord(tx.gid, now, "stuck", detail={"reason": why})],
                release=True,
                handled=requested,
            )
        )

    def _resume_tcc(
        self, tx: TxRecord, ops: builtins.list[OpRecord], requested: str | None
    ) -> None:
        now = time.time()
        events: builtins.list[machine.Event | tcc.Submit] = [machine.Resume(now)]
        if _is_request(requested):
            events.append(_request_event(requested, now))
        elif tx.status is TxStatus.PREPARED and tx.timeout_at is not None and tx.timeout_at <= now:
            events.append(machine.Timeout(now))
        driver: Driver
        if tx.mode is Mode.XA:
            driver = xa_driver(ops, self.resources, self.xa_connections)
        elif tx.mode is Mode.MSG:
            headers = tx.options.get("headers")
            driver = MsgDriver.from_ops(
                ops, self.brokers, headers if isinstance(headers, dict) else None
            )
        else:
            driver = TccDriver.from_ops(ops)
        runner = Runner(self, driver, tx, _state_from_log(tx, ops), ops)
        self._start_runner(runner, events, handled=requested)

    async def _claim_loop(self) -> None:
        while True:
            # cleared before the claim, not after: a request made while this pass runs
            # must wake the next one, not wait out the poll interval
            self._wake_claims.clear()
            try:
                now = time.time()
                names = [*self._sagas, WIRE_SAGA, WIRE_TCC, WIRE_XA, WIRE_MSG]
                claimed = await self.log.claim(
                    self.owner, now, now + self.lease, self.claim_batch, names
                )
                # loaded and started side by side: one after the other, a batch of them
                # kept the last waiting for every load before it
                resumed = await asyncio.gather(
                    *(
                        self._resume(c.gid, c.requested, c.previous)
                        for c in claimed
                        if c.gid not in self._runners
                    ),
                    return_exceptions=True,
                )
                for error in resumed:
                    if isinstance(error, Exception):
                        logger.error("resuming a claimed transaction failed: %s", error)
                if len(claimed) == self.claim_batch:
                    continue  # more is due: claim again at once
            except LogError as exc:
                logger.error("claiming due work failed: %s", exc)
            # asyncio.timeout, not wait_for: on 3.11 a wait_for whose event is set as the
            # task is cancelled swallows the cancellation, and stop() then waits forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_interval):
                    await self._wake_claims.wait()

    async def _renew_loop(self) -> None:
        renewed = time.monotonic()
        while True:
            # Every lease/3; after a failed renewal, and while orphans wait, at every poll:
            # leases are renewed, and orphans driven again, as soon as the log answers.
            await asyncio.sleep(min(self.poll_interval, self.lease / 3))
            if not self._orphans and time.monotonic() - renewed < self.lease / 3:
                continue
            # Judge only the runners whose gids were sent: one submitted while the renewal
            # was on its way is not in the answer, and has a fresh lease anyway.
            sent = dict(self._runners)
            orphans = [gid for gid in self._orphans if gid not in sent]
            try:
                now = time.time()
                held = await self.log.renew(self.owner, [*sent, *orphans], now, now + self.lease)
            except LogError as exc:
                logger.error("renewing leases failed: %s", exc)
                continue
            renewed = time.monotonic()
            self._orphans.difference_update(orphans)
            await self._take_back({gid: held[gid] for gid in orphans if gid in held})
            for gid, runner in sent.items():
                if self._runners.get(gid) is not runner:
                    continue
                if gid not in held:
                    if not runner.settled.done():
                        logger.warning("lease on %s lost", gid)
                        runner.cancel()
                    continue
                request = held.get(gid)
                if _is_request(request):
                    runner.push(_request_event(request, now), request)

    async def _take_back(self, held: dict[str, str | None]) -> None:
        """Drive the orphans whose leases were just renewed (``held``: gid -> pending
        request) again here: this coordinator still holds them, so no other may claim
        them before their leases expire."""
        resumed = await asyncio.gather(
            *(self._resume(gid, requested) for gid, requested in held.items()),
            return_exceptions=True,
        )
        for gid, error in zip(held, resumed, strict=True):
            if isinstance(error, Exception):
                logger.error("driving %s again failed: %s", gid, error)

    async def _drain(self, gids: Sequence[str]) -> bool:
        """Wait up to ``lease`` seconds for the step threads to finish, renewing the
        leases of ``gids`` meanwhile; False if they have not finished."""
        joined = _joined(self._pool)
        deadline = time.monotonic() + self.lease
        while not joined.done() and time.monotonic() < deadline:
            with contextlib.suppress(LogError):
                now = time.time()
                await self.log.renew(self.owner, gids, now, now + self.lease)
            await asyncio.wait([joined], timeout=self.lease / 3)
        return joined.done()

    async def _xa_recovery_loop(self) -> None:
        while True:
            try:
                report = await self.recover_xa()
                if report.committed or report.rolled_back:
                    logger.warning(
                        "XA recovery: committed %s, rolled back %s",
                        report.committed,
                        report.rolled_back,
                    )
                if report.failed:
                    logger.error("XA recovery failed, to be tried again: %s", report.failed)
            except Exception as exc:  # a resource down now is tried again next round
                logger.error("XA recovery failed: %s", exc)
            await asyncio.sleep(self.xa_recovery_interval)

    async def _retention_loop(self) -> None:
        assert self.retention is not None
        while True:
            try:
                await purge_in_batches(self.log, time.time() - self.retention)
            except LogError as exc:
                logger.error("retention purge failed: %s", exc)
            await asyncio.sleep(min(3600.0, max(1.0, self.retention / 10)))


async def _cancel(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _joined(pool: concurrent.futures.ThreadPoolExecutor) -> asyncio.Future[None]:
    """Done once a shut-down pool's threads have finished their work.

    A daemon thread joins them, so that an op that never returns holds up neither
    the caller nor the event loop's close.
    """
    loop = asyncio.get_running_loop()
    joined: asyncio.Future[None] = loop.create_future()

    def joined_now() -> None:
        if not joined.done():
            joined.set_result(None)

    def join() -> None:
        pool.shutdown(wait=True)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(joined_now)

    threading.Thread(target=join, name="legato-stop", daemon=True).start()
    return joined


def _is_request(what: str | None) -> TypeGuard[str]:
    """A request is one of ``_REQUESTS``, or ``abort:<reason>``."""
    return what is not None and what.partition(":")[0] in _REQUESTS


def _request_event(what: str, now: float) -> machine.Event | tcc.Submit:
    what, _, why = what.partition(":")
    if what == "submit":
        return tcc.Submit(now)
    if what == "retry":
        return machine.OperatorRetry(now)
    if what == "abort":
        return machine.AbortRequested(now, why or "aborted by an operator")
    return machine.ForceEnd(now, TxStatus(what), f"ended as {what} by an operator")


def _state_from_log(tx: TxRecord, ops: Iterable[OpRecord]) -> machine.SagaState:
    return machine.SagaState(
        gid=tx.gid,
        status=tx.status,
        ops={
            o.key: machine.OpState(
                o.status, o.attempts, o.budget, o.next_at, o.output, o.error, o.completed
            )
            for o in ops
        },
        reason=tx.reason,
        stuck=tx.stuck,
    )
