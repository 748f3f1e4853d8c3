"""The engine: drives every transaction this process holds the lease of, whatever its
mode, through one runner each.

It knows no mode: each is plugged in as a ``ModeDriver`` (``legato.drivers``), which
says how a transaction of that mode, read back from the log, is driven; and no
transport: each call is carried by the transport registered for its kind. It
claims due work with a lease, renews the leases it holds, takes back what it still
holds but no longer drives (after the log was away), and stops cleanly: within a
grace, the ops in flight finish and their outcomes are written, then every lease
goes at once for another coordinator to take the rest over.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

from .._allow import AllowList
from .._errors import LogError, LogUnavailable, Stopping, TransactionNotFound
from .._faults import fault_point
from .._hooks import HookChain
from .._model import EventRecord, OpRecord, Request, TxRecord, TxStatus
from ..log import Log, NewTransaction, TxQuery, TxWrite
from ..log.base import purge_in_batches
from ..modes._core import Command, Event, Park, Resume, Timeout, Transition, TxState
from ..observe.tracing import Tracing
from ..transports.base import Transport
from .fence import fence_at, margin
from .handle import Handle, Outcome
from .port import Driver, ModeDriver, Unreadable
from .records import changed_ops, op_record, state_from_log, transition
from .runner import Runner, request_event

logger = logging.getLogger("legato.coordinator")

Periodic = tuple[str, float, Callable[[], Awaitable[None]]]
"""A task the engine runs every so often while it runs: (name, seconds, what)."""


class Engine:
    """See the module docstring; ``legato.Coordinator`` builds one and delegates to it."""

    def __init__(
        self,
        log: Log,
        *,
        owner: str,
        lease: float,
        poll_interval: float,
        claim_batch: int,
        recover: bool,
        retention: float | None,
        hooks: HookChain,
        tracing: Tracing,
        request_timeout: float,
        participants: AllowList,
        pool: concurrent.futures.ThreadPoolExecutor,
        transports: Mapping[type, Transport],
        modes: Sequence[ModeDriver],
    ) -> None:
        self.log = log
        self.owner = owner
        margin(lease)  # a lease that is not a positive number of seconds: refused here
        self.lease = lease
        self.poll_interval = poll_interval
        self.claim_batch = claim_batch
        self.recover = recover
        self.retention = retention
        self.hooks = hooks
        self.tracing = tracing
        self.request_timeout = request_timeout
        self.participants = participants
        self.pool = pool
        self.transports = dict(transports)
        self.modes = {m.mode: m for m in modes}
        self.periodic: list[Periodic] = []
        self.runners: dict[str, Runner] = {}
        self._runner_waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._resuming: set[str] = set()
        # Transactions whose lease this engine may hold while no runner drives them: a
        # runner stopped because the log's database could not be reached, a submit whose
        # write's outcome is unknown. The renewal takes them back once the log answers.
        self._orphans: set[str] = set()
        # Transactions whose runners stopped at their fence, until the log answers again
        # and each is driven again here or found taken over; and those not yet reported.
        self._fenced: set[str] = set()
        self._fence_report: list[tuple[str, int]] = []
        self._renewed_at = time.monotonic()  # the start of the last renewal that landed
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._started = False
        self._wake_claims = asyncio.Event()
        # A stop has begun (``begin_stop``): set until the engine is opened again.
        self.stopping = asyncio.Event()
        self._stop_by = 0.0  # when the grace ends (monotonic)
        self._hurry = asyncio.Event()  # the grace is cut short: stop at once

    # -- lifecycle ------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._started

    @property
    def fenced_count(self) -> int:
        """Transactions this engine stopped driving at their fence (its leases not renewed
        in time), not yet driven again or found taken over."""
        return len(self._fenced)

    @property
    def renewed_ago(self) -> float:
        """Seconds since the start of the last lease renewal that landed (or the start)."""
        return time.monotonic() - self._renewed_at

    def require_started(self) -> None:
        """Refuse new work before the start, and once a stop has begun (``Stopping``:
        another coordinator should take it)."""
        if self.stopping.is_set():
            raise Stopping(f"coordinator {self.owner} is stopping: send this to another one")
        if not self._started:
            raise RuntimeError("start the coordinator first: `async with Coordinator(...)`")

    async def open(self) -> None:
        """Open the log and take back what a previous incarnation under this owner held."""
        self.stopping.clear()
        self._hurry.clear()
        if self.hooks.wants("on_log_batch"):
            self.log.batch_observer = self.hooks.on_log_batch
        await self.log.open()
        # a coordinator restarted under the same owner name takes its own work back at
        # once: whatever its previous incarnation held is orphaned
        await self.log.release_owner(self.owner)

    def run(self) -> None:
        """Start driving: the lease renewal, the claims, retention and periodic tasks."""
        self._started = True
        self._renewed_at = time.monotonic()
        loop = asyncio.get_running_loop()
        self._loops.append(loop.create_task(self._renew_loop(), name="legato-renew"))
        if self.recover:
            self._loops.append(loop.create_task(self._claim_loop(), name="legato-claim"))
        if self.retention is not None:
            self._loops.append(loop.create_task(self._retention_loop(), name="legato-retention"))
        for name, seconds, what in self.periodic:
            self._loops.append(loop.create_task(_every(name, seconds, what), name=name))

    def begin_stop(self, grace: float) -> None:
        """Begin to stop (at once; ``stop_driving`` waits for the end): claim nothing
        more, start no op, and give each transaction up (its lease released, due at once)
        as soon as its ops in flight have reported and their outcomes are written, for
        ``grace`` seconds from now at most. Called again, it only shortens the grace."""
        until = time.monotonic() + max(0.0, grace)
        if self.stopping.is_set():
            if until < self._stop_by:
                self._stop_by = until
                self._hurry.set()
            return
        self._stop_by = until
        self.stopping.set()
        for task in self._loops:
            if task.get_name() != "legato-renew":  # the leases held stay renewed meanwhile
                task.cancel()
        for runner in self.runners.values():
            runner.drain()

    def hurry(self) -> None:
        """Cut the grace short: the stop under way ends at once (``stop_driving``)."""
        self.begin_stop(0.0)

    async def stop_driving(self, grace: float = 0.0) -> None:
        """Stop: ``begin_stop(grace)``, wait until every runner has given its transaction
        up or the grace has run out (or ``hurry``), then stop the rest at once.

        What is still driven then is cut: its ops in flight are cancelled (their outcome
        is unknown: the next driver retries them); the leases are released, for others to
        claim at once, when the step threads are idle (at most ``lease`` seconds later),
        else left to expire. Nothing is lost either way: the log has every decision."""
        self.begin_stop(grace)
        await self._drained()
        if self._tasks and grace > 0:
            logger.warning(
                "stopping: the grace has run out, %d transaction(s) with ops in flight cut",
                len(self._tasks),
            )
        await _cancel(self._loops)
        self._loops.clear()
        self._orphans.clear()
        runners = list(self.runners.values())
        for r in runners:
            r.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        # A sync op whose task was cancelled still runs to its end in its step thread,
        # and another coordinator must not run it again meanwhile (DESIGN 3.5): the
        # leases go once the threads are idle; past a lease's time they are left to expire.
        self.pool.shutdown(wait=False, cancel_futures=True)
        if await self._drain([r.gid for r in runners]):
            with contextlib.suppress(LogError):
                # every lease this owner holds, in one statement: the runners cut short,
                # and any claimed or taken back that no runner drove
                await self.log.release_owner(self.owner)
        self._started = False

    async def drained(self) -> None:
        """Once a stop has begun: wait until every transaction has been given up, the
        grace has run out, or it was cut short (``stop_driving`` then stops the rest)."""
        await self._drained()

    async def _drained(self) -> None:
        """Wait until no runner is left, the grace has run out, or it is cut short."""
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            while self._tasks and not self._hurry.is_set():
                left = self._stop_by - time.monotonic()
                if left <= 0:
                    break
                await asyncio.wait(
                    [*self._tasks, hurry], timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            hurry.cancel()

    # -- the transports -------------------------------------------------------------

    def transport(self, call: object) -> Transport:
        found = self.transports.get(type(call))
        if found is None:
            raise TypeError(f"no transport carries a {type(call).__name__}")
        return found

    # -- writes ---------------------------------------------------------------------

    async def create(self, new: NewTransaction) -> TxRecord | None:
        """Write a new transaction (its trace begins here), or return the existing row."""
        self.tracing.begin(new.tx)
        gid = new.tx.gid
        try:
            existing = await self.log.create(new)
        except LogUnavailable as exc:
            # Written or not, we cannot tell: if it was, the lease is this engine's and
            # the renewal takes it back; a repeat of the call finds it written.
            self._orphans.add(gid)
            raise LogUnavailable(f"{exc}; repeating the call with gid {gid!r} is safe") from exc
        if existing is None:
            self.hooks.on_created(new.tx)
        return existing

    async def begin(
        self, new: NewTransaction, driver: Driver, before: TxState, events: Sequence[Event]
    ) -> TxRecord | None:
        """Create ``new`` as ``events`` leave it from ``before`` (its ops' fresh state, as
        its rows say) and drive it here at once; or return the existing row, writing and
        driving nothing."""
        tx = new.tx
        step = transition(driver.apply, before, events)
        after, now = step.state, tx.created_at
        meta = {(o.branch, o.op): (o.seq, o.target) for o in new.ops}
        written = []
        for o in new.ops:
            key = o.key
            s = after.ops[key]
            if s is before.ops.get(key):
                written.append(o)
            else:
                row = op_record(tx.gid, key, s, meta, now)
                row.payload = o.payload  # its call, as the new row has it
                written.append(row)
        tx.status, tx.reason, tx.stuck = after.status, after.reason, after.stuck
        existing = await self.create(NewTransaction(tx, written, [*new.events, *step.records]))
        if existing is not None:
            return existing
        runner = Runner(self, driver, tx, step.state, written)
        self._start_runner(runner, None, step.commands)
        return None

    async def request(
        self, gid: str, request: Request, *, drive: bool = False, by: str | None = None
    ) -> None:
        """Log ``request`` for whoever drives ``gid`` (``by``: who asks, recorded with
        it). With ``drive`` (a TCC, XA or msg transaction, which any engine can drive),
        take the lease with the request where no one holds it and start driving it here
        at once, instead of on the next claim."""
        self.require_started()
        now = time.time()
        claim = (self.owner, now + self.lease) if drive else None
        try:
            tx = await self.log.request(gid, request.encode(), now, claim, by)
        except LogUnavailable:
            if drive:  # the lease may be ours now: taken back once the log answers
                self._orphans.add(gid)
            raise
        runner = self.runners.get(gid)
        if runner is not None:
            runner.push(request_event(request, time.time()), request)
        elif drive and tx.lease_owner == self.owner:
            await self.resume(gid, request)
        self._wake_claims.set()

    async def signal(self, gid: str, record: OpRecord, *, by: str | None = None) -> bool:
        """Keep the signal ``record`` for the workflow ``gid`` (``Log.signal``) and hand it
        to its body if it runs here; False if that signal was kept already."""
        self.require_started()
        _, new = await self.log.signal(gid, record, record.updated_at, None, by)
        fault_point("after_signal")
        runner = self.runners.get(gid)
        if new and runner is not None and runner.live is not None:
            runner.signals.add(record.branch)
            runner.live.signal(record)
        self._wake_claims.set()  # let go while it waits: due now, claimed here if ours
        return new

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

    async def transactions(self, query: TxQuery | None = None) -> list[TxRecord]:
        return await self.log.list(query or TxQuery())

    def handle(self, gid: str) -> Handle:
        return Handle(self, gid)

    @contextlib.contextmanager
    def runner_started(self, gid: str) -> Iterator[asyncio.Future[None]]:
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

    def settled(self, gid: str) -> asyncio.Future[Outcome | None] | None:
        runner = self.runners.get(gid)
        return runner.settled if runner is not None else None

    # -- runners --------------------------------------------------------------------

    def _start_runner(
        self,
        runner: Runner,
        first: list[Event] | None,
        commands: Sequence[Command] = (),
        handled: Request | None = None,
    ) -> None:
        self.runners[runner.gid] = runner
        self._orphans.discard(runner.gid)
        self._fenced.discard(runner.gid)  # driven here again (a request took it up, say)
        for waiter in self._runner_waiters.pop(runner.gid, ()):
            if not waiter.done():
                waiter.set_result(None)
        task = asyncio.get_running_loop().create_task(
            runner.run(first, commands, handled), name=f"legato-tx-{runner.gid}"
        )
        self._tasks.add(task)
        if self.stopping.is_set():  # its first ops, written already, run; no more
            runner.drain()

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self.runners.get(runner.gid) is runner:
                del self.runners[runner.gid]
            stranded = runner.fenced or isinstance(runner.stopped_by, LogUnavailable)
            if stranded and self._started:
                self._orphans.add(runner.gid)
            if not t.cancelled() and t.exception() is not None:
                logger.error("runner for %s crashed", runner.gid, exc_info=t.exception())

        task.add_done_callback(done)

    async def resume(
        self, gid: str, requested: Request | None, previous: str | None = None
    ) -> None:
        """Drive ``gid`` here from the log (claimed, requested, or taken back)."""
        failed = await self.resume_many([(gid, requested, previous)])
        if gid in failed:
            raise failed[gid]

    async def resume_many(
        self, wanted: Sequence[tuple[str, Request | None, str | None]]
    ) -> dict[str, Exception]:
        """Drive each ``(gid, request, previous owner)`` here from the log, all read back in
        one go (a claim's batch: one read per transaction made the claims wait on as many
        round trips); returns the error of each that could not be started."""
        if self.stopping.is_set():  # left to another coordinator (its lease released)
            return {}
        # claimed and requested at once: one runner only
        todo = {w[0]: w for w in wanted if w[0] not in self.runners and w[0] not in self._resuming}
        gids = list(todo)
        if not gids:
            return {}
        self._resuming.update(gids)
        try:
            try:
                loaded = await self.log.load_many(gids)
            except LogUnavailable as exc:
                self._orphans.update(gids)  # claimed, so ours, and not driven: later
                return dict.fromkeys(gids, exc)
            # side by side: one parked or released must not keep the others waiting
            started = await asyncio.gather(
                *(self._resume_loaded(g, loaded.get(g), r, p) for g, r, p in todo.values()),
                return_exceptions=True,
            )
        finally:
            self._resuming.difference_update(gids)
        failed: dict[str, Exception] = {}
        for gid, outcome in zip(gids, started, strict=True):
            if isinstance(outcome, LogUnavailable):
                self._orphans.add(gid)
            if isinstance(outcome, Exception):
                failed[gid] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return failed

    async def _resume_loaded(
        self,
        gid: str,
        loaded: tuple[TxRecord, list[OpRecord]] | None,
        requested: Request | None,
        previous: str | None,
    ) -> None:
        if loaded is None:
            return
        tx, ops = loaded
        if tx.lease_owner != self.owner or tx.status.ended:
            return
        self.hooks.on_resumed(tx, previous)
        mode = self.modes.get(tx.mode)
        driver = mode.driver(tx, ops) if mode is not None else None
        if driver is None:
            await self.log.release(self.owner, gid, time.time() + self.lease)
            return
        now = time.time()
        if isinstance(driver, Unreadable):
            await self._park(tx, ops, driver.reason, requested, now)
            return
        events: list[Event] = [Resume(now)]
        if requested is not None:
            events.append(request_event(requested, now))
        elif tx.status is TxStatus.PREPARED and tx.timeout_at is not None and tx.timeout_at <= now:
            events.append(Timeout(now))
        runner = Runner(self, driver, tx, state_from_log(tx, ops), ops)
        self._start_runner(runner, events, handled=requested)

    async def _park(
        self,
        tx: TxRecord,
        ops: Sequence[OpRecord],
        why: str,
        requested: Request | None,
        now: float,
    ) -> None:
        """Leave a transaction no one can drive stuck, with why (``modes._core.park``)."""
        logger.error("%s", why)
        before = state_from_log(tx, ops)
        step = transition(_no_rules, before, [Park(now, why)])
        meta = {o.key: (o.seq, o.target) for o in ops}
        await self.log.write(
            TxWrite(
                gid=tx.gid,
                owner=self.owner,
                at=now,
                status=step.state.status,
                reason=step.state.reason,
                stuck=step.state.stuck,
                next_attempt_at=None,
                ops=changed_ops(before, step.state, meta, now),
                events=list(step.records),
                release=True,
                handled=requested.encode() if requested is not None else None,
            )
        )

    # -- loops ----------------------------------------------------------------------

    def _claims(self) -> list[str]:
        return [name for mode in self.modes.values() for name in mode.claims()]

    async def _claim_loop(self) -> None:
        while True:
            # cleared before the claim, not after: a request made while this pass runs
            # must wake the next one, not wait out the poll interval
            self._wake_claims.clear()
            try:
                now = time.time()
                claimed = await self.log.claim(
                    self.owner, now, now + self.lease, self.claim_batch, self._claims()
                )
                failed = await self.resume_many(
                    [(c.gid, Request.decode(c.requested), c.previous) for c in claimed]
                )
                for error in failed.values():
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
        while True:
            # Every lease/3; after a failed renewal, and while orphans wait, at every poll:
            # leases are renewed, and orphans driven again, as soon as the log answers.
            await asyncio.sleep(min(self.poll_interval, self.lease / 3))
            if not self._orphans and time.monotonic() - self._renewed_at < self.lease / 3:
                continue
            # Judge only the runners whose gids were sent: one submitted while the renewal
            # was on its way is not in the answer, and has a fresh lease anyway.
            sent = dict(self.runners)
            orphans = [gid for gid in self._orphans if gid not in sent]
            # the start, read with the expiry sent: the log may write it at any moment of
            # the call, so the runners' fences count from here (fence.py)
            started = time.monotonic()
            try:
                now = time.time()
                held = await self.log.renew(self.owner, [*sent, *orphans], now, now + self.lease)
            except LogError as exc:
                logger.error("renewing leases failed: %s", exc)
                continue
            self._renewed_at = started
            fence = fence_at(started, self.lease)
            self._orphans.difference_update(orphans)
            self._fence_lifted([gid for gid in orphans if gid in self._fenced], held)
            await self._take_back({gid: held[gid] for gid in orphans if gid in held})
            for gid, runner in sent.items():
                if self.runners.get(gid) is not runner:
                    continue
                if gid not in held:
                    if not runner.settled.done():
                        logger.warning("lease on %s lost", gid)
                        runner.cancel()
                    continue
                runner.lease_renewed(fence)
                request = Request.decode(held.get(gid))
                if request is not None:
                    runner.push(request_event(request, now), request)

    # -- the fence ------------------------------------------------------------------
    # Each runner stops at its own fence (``fence.py``): the lease not renewed in time,
    # it starts no op and cancels its calls, before another coordinator may claim the
    # transaction. The engine counts and tells it, and drives the transaction on here
    # once a renewal lands and finds it still this coordinator's (an orphan's way).

    def fenced(self, tx: TxRecord, cancelled: int) -> None:
        """A runner stopped at its fence (``RunnerHost.fenced``): counted at once, and
        told in one error line for all that stop together."""
        self._fenced.add(tx.gid)
        self.hooks.on_fenced(tx)
        if not self._fence_report:
            asyncio.get_running_loop().call_soon(self._report_fenced)
        self._fence_report.append((tx.gid, cancelled))

    def _report_fenced(self) -> None:
        report, self._fence_report = self._fence_report, []
        if not report:
            return
        shown = ", ".join(gid for gid, _ in report[:5]) + (", ..." if len(report) > 5 else "")
        logger.error(
            "lease renewals have not landed for %.1fs (lease %gs, fenced %gs before its end): "
            "stopped driving %d transaction(s) (%s) and cancelled %d call(s) in flight, "
            "their outcome unknown; each is driven again here once the log answers, unless "
            "another coordinator has taken it over by then",
            self.renewed_ago, self.lease, margin(self.lease), len(report), shown,
            sum(n for _, n in report),
        )  # fmt: skip

    def _fence_lifted(self, gids: Sequence[str], held: Mapping[str, str | None]) -> None:
        """The log answered a renewal naming the fenced ``gids``: each is either still
        this engine's (driven again) or taken over (dropped)."""
        if not gids:
            return
        self._fenced.difference_update(gids)
        kept = sum(gid in held for gid in gids)
        logger.warning(
            "lease renewals land again: of %d fenced transaction(s), %d are driven again "
            "here and %d were taken over by another coordinator",
            len(gids), kept, len(gids) - kept,
        )  # fmt: skip

    async def _take_back(self, held: dict[str, str | None]) -> None:
        """Drive the orphans whose leases were just renewed (``held``: gid -> pending
        request) again here: this engine still holds them, so no other may claim them
        before their leases expire."""
        failed = await self.resume_many(
            [(gid, Request.decode(requested), None) for gid, requested in held.items()]
        )
        for gid, error in failed.items():
            logger.error("driving %s again failed: %s", gid, error)

    async def _drain(self, gids: Sequence[str]) -> bool:
        """Wait up to ``lease`` seconds for the step threads to finish, renewing the
        leases of ``gids`` meanwhile; False if they have not finished."""
        joined = _joined(self.pool)
        deadline = time.monotonic() + self.lease
        while not joined.done() and time.monotonic() < deadline:
            with contextlib.suppress(LogError):
                now = time.time()
                await self.log.renew(self.owner, gids, now, now + self.lease)
            await asyncio.wait([joined], timeout=self.lease / 3)
        return joined.done()

    async def _retention_loop(self) -> None:
        assert self.retention is not None
        while True:
            try:
                await purge_in_batches(self.log, time.time() - self.retention)
            except LogError as exc:
                logger.error("retention purge failed: %s", exc)
            await asyncio.sleep(min(3600.0, max(1.0, self.retention / 10)))


def _no_rules(state: TxState, event: Event) -> Transition:
    """A transaction that cannot be driven has no rules but the park every machine shares
    (``records.transition`` applies it)."""
    return Transition(state, changed=False, note="no rules: it cannot be driven")


async def _every(name: str, seconds: float, what: Callable[[], Awaitable[None]]) -> None:
    while True:
        try:
            await what()
        except Exception as exc:  # tried again next round
            logger.error("%s failed: %s", name, exc)
        await asyncio.sleep(seconds)


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


__all__ = ["Engine", "Periodic"]
