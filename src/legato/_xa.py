"""Two-phase commit (XA) from the initiator's side, and the coordinator's phase 2.

>>> coordinator.register_resource("bank_pg", "postgresql://bank@db/ledger")    # doctest: +SKIP
>>> async with coordinator.xa() as t:                                          # doctest: +SKIP
...     await t.branch(pg_conn, debit, resource="bank_pg")
...     await t.branch(maria_conn, credit, resource="bank_maria")
>>> outcome = await t.handle.result()                                          # doctest: +SKIP

Each branch is registered in the log (its resource), then run and prepared on
the caller's connection (``legato.participant.xa``: the branch's barrier row
and its SQL in one database 2PC transaction). Leaving the block normally logs
the decision to commit (status ``submitted``) and only then does the
coordinator commit every branch, through its own connection to each
registered resource, retrying until each is done; leaving it with an
exception logs the abort and rolls every branch back. A coordinator restarted
(or any other one sharing the log) finishes phase 2 from the log; branches
left prepared in a database with no decision in the log are rolled back by
``recover_xa`` (presumed abort).

Every branch is prepared in the coordinator's XA namespace (``xa_namespace``:
given, or derived from the log's deployment id, so every coordinator sharing a
log has the same one), which its xid carries and its ops record; recovery
lists that namespace's branches only, so deployments sharing a database server
never end each other's. Phase 2 uses the namespace a branch's ops recorded: a
branch registered before namespaces has none, and its xid is the old form.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._dburl import check_url, connect
from ._errors import DefinitionError, LegatoError, ResourceError
from ._faults import fault_point
from ._handle import Handle
from ._model import Mode, OpName, OpRecord, TxRecord
from ._runner import OpCalls, TccDriver, registration_order
from ._tcc import prepared
from .log import NewTransaction
from .modes.tcc import TccPlan
from .saga import StepContext, StepOp
from .transports.http import HttpCall

if TYPE_CHECKING:
    from .coordinator import Coordinator
    from .participant.xa import Xid

WIRE_XA = "wire:xa"
"""The name of every XA transaction: its branches' resources are in the log."""


@dataclass(frozen=True, slots=True)
class XaResource:
    """A database the coordinator reaches for phase 2 and recovery:
    ``postgresql://...`` (psycopg) or ``mysql://user:password@host:port/db`` (PyMySQL;
    ``?ssl=`` as ``legato._dburl.connect`` says)."""

    name: str
    url: str

    def __post_init__(self) -> None:
        if urlsplit(self.url).scheme not in ("postgresql", "postgres", "mysql", "mariadb"):
            raise DefinitionError(
                f"resource {self.name!r}: an XA resource is postgresql://... or mysql://..., "
                f"not {urlsplit(self.url).scheme or self.url!r} (SQLite has no two-phase commit)"
            )
        check_url(self.url, what=f"resource {self.name!r}")

    @property
    def mysql(self) -> bool:
        return urlsplit(self.url).scheme in ("mysql", "mariadb")

    def connect(self) -> Any:
        """A new autocommit connection (the caller closes it)."""
        return connect(self.url)


_BUSY_PAUSES = (0.002, 0.005, 0.01, 0.02, None)


class Connections:
    """Idle connections to the resources, reused by phase-2 calls from any thread (a
    new connection costs milliseconds, more than the commit); closed at the end."""

    KEEP = 8  # per resource: as many as phase-2 calls usually run at once

    def __init__(self) -> None:
        self._idle: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def open(self) -> None:
        with self._lock:
            self._closed = False

    def take(self, resource: XaResource) -> Any:
        with self._lock:
            idle = self._idle.get(resource.url)
            if idle:
                return idle.pop()
        return resource.connect()

    def give(self, resource: XaResource, conn: Any) -> None:
        with self._lock:
            idle = self._idle.setdefault(resource.url, [])
            if not self._closed and len(idle) < self.KEEP:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
            self._closed = True
        for conn in conns:
            with contextlib.suppress(Exception):
                conn.close()


DEPLOYMENT_NAMESPACE_CHARS = 12
"""How much of the log's deployment id (32 random hex digits) a default XA namespace keeps:
48 bits tell the deployments sharing a server apart, and the branch id keeps 51 bytes."""


def deployment_namespace(deployment: str) -> str:
    """The XA namespace of a coordinator given none: the start of its log's deployment id."""
    from .participant import xa

    return xa.check_namespace(deployment[:DEPLOYMENT_NAMESPACE_CHARS], "the log's deployment id")


def phase2(resource: XaResource, xid: Xid, op: OpName, conns: Connections | None = None) -> None:
    """Commit or roll back one prepared branch (in a step thread); idempotent: a branch
    already done the same way is fine, one done the other way raises. A connection taken
    from ``conns`` goes back there, unless the call failed (it may be broken)."""
    from .participant import xa

    conn = conns.take(resource) if conns is not None else resource.connect()
    end = xa.commit if op is OpName.COMMIT else xa.rollback
    try:
        for pause in _BUSY_PAUSES:
            try:
                end(conn, xid)
                break
            except xa.BranchBusy:
                # MariaDB: the session that prepared the branch has just closed, and the
                # server has not let go of the branch yet; that takes a moment, which is
                # better spent here than in the coordinator's backoff (100 ms and up)
                if pause is None:
                    raise
                time.sleep(pause)
    except BaseException:
        with contextlib.suppress(Exception):
            conn.close()
        raise
    if conns is not None:
        conns.give(resource, conn)
    else:
        conn.close()


def xa_driver(
    ops: Sequence[OpRecord], resources: Mapping[str, XaResource], conns: Connections
) -> TccDriver:
    """The runner's view of an XA transaction: TCC's rules with commit and rollback, and
    each op's phase 2 (through a registered resource, or a call to the branch's service)."""
    plan = TccPlan(registration_order(ops), forward=OpName.COMMIT, undo=OpName.ROLLBACK)
    return TccDriver(plan, OpCalls(ops, lambda o: _phase2_call(o, resources, conns)))


def _phase2_call(o: OpRecord, resources: Mapping[str, XaResource], conns: Connections) -> StepOp:
    payload = o.payload or {}
    if "url" in payload:  # the service commits or rolls back its own branch
        return HttpCall.from_json(payload)
    name = str(payload.get("resource", ""))
    resource = resources.get(name)
    # the namespace the branch was prepared in; none: registered before namespaces
    namespace = payload.get("xa_namespace")
    op = o.op

    def run(ctx: StepContext) -> None:
        from .participant import xa

        if resource is None:
            raise ResourceError(f"resource {name!r} is not registered with this coordinator")
        ns = namespace if isinstance(namespace, str) else None
        phase2(resource, xa.Xid(ctx.gid, ctx.step, ns), op, conns)

    return run


def branch_ops(gid: str, branch: str, resource: str, xid: Xid, now: float) -> list[OpRecord]:
    payload = {"resource": resource, "xa_namespace": xid.namespace}
    return [
        OpRecord(gid, branch, op, 0, f"xa {op} on {resource}", updated_at=now, payload=payload)
        for op in (OpName.COMMIT, OpName.ROLLBACK)
    ]


def http_branch_ops(gid: str, branch: str, call: HttpCall, now: float) -> list[OpRecord]:
    """A branch prepared by an HTTP service (DTM's XA flow): phase 2 is ``call`` with
    ``op=commit`` or ``op=rollback``."""
    return [
        OpRecord(gid, branch, op, 0, call.target, updated_at=now, payload=call.to_json())
        for op in (OpName.COMMIT, OpName.ROLLBACK)
    ]


def prepared_xa(gid: str, timeout_to_fail: float | None, now: float) -> NewTransaction:
    return prepared(gid, timeout_to_fail, None, now, mode=Mode.XA, name=WIRE_XA)


class XaTransaction:
    """One XA transaction, driven by its initiator; see the module docstring."""

    def __init__(self, coordinator: Coordinator, gid: str | None, timeout_to_fail: float) -> None:
        self.c = coordinator
        self._gid = gid
        self.timeout_to_fail = timeout_to_fail
        self._branches = 0
        self.handle: Handle | None = None

    @property
    def gid(self) -> str:
        if self._gid is None:
            raise RuntimeError("the transaction is not begun yet: use `async with`")
        return self._gid

    async def __aenter__(self) -> XaTransaction:
        self._gid = await self.c.begin_xa(self._gid, timeout_to_fail=self.timeout_to_fail)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        fault_point("xa.before_decision")  # every branch prepared, nothing decided
        if e is None:
            self.handle = await self.c.submit_tcc(self.gid)
        else:
            reason = f"the initiator failed: {type(e).__name__}: {e}"
            self.handle = await self.c.abort_tcc(self.gid, reason)

    async def branch(
        self,
        conn: Any,
        fn: Callable[[Any], Any] | Callable[[Any], Awaitable[Any]],
        *,
        resource: str,
        branch_id: str | None = None,
    ) -> Any:
        """Register a branch on ``resource``, run ``fn(conn)`` in it and prepare it;
        returns what ``fn`` returned. ``conn`` (psycopg, asyncpg, PyMySQL or aiomysql)
        must reach the same database as the registered resource, outside a transaction.
        """
        from .participant import xa

        if resource not in self.c.resources:
            raise ResourceError(f"register resource {resource!r} with the coordinator first")
        self._branches += 1
        branch = branch_id or f"{self._branches:02d}"
        xid = await self.c.register_xa_branch(self.gid, branch, resource)
        if inspect.iscoroutinefunction(fn):
            result = await xa.aprepare_branch(conn, self.gid, branch, fn, namespace=xid.namespace)
        else:
            result = await asyncio.to_thread(
                xa.prepare_branch, conn, self.gid, branch, fn, namespace=xid.namespace
            )
        if not result.ok:
            raise LegatoError(f"branch {branch} of {self.gid} was rolled back already")
        return result.value


@dataclass
class RecoveryReport:
    committed: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # undecided, or driven: not ours to end
    failed: list[str] = field(default_factory=list)  # tried, and tried again next round


def decide(tx: TxRecord | None, ops: Sequence[OpRecord], branch: str) -> OpName | None:
    """What an in-doubt branch of ``tx`` must become: the logged decision for a
    registered branch, a rollback otherwise (presumed abort); None while its
    initiator may still decide. The rule is the participant kit's ``xa.verdict``."""
    from .participant import xa

    registered = any(o.branch == branch for o in ops)
    what = xa.verdict(None if tx is None else str(tx.status), registered)
    return None if what is None else OpName(what)


async def recover(c: Coordinator) -> RecoveryReport:
    """Resolve every branch of ``c``'s namespace left prepared in each registered resource;
    another namespace's (another deployment's, or the old form) are not listed."""
    async with c.xa_recovery_lock:
        return await _recover(c)


async def _recover(c: Coordinator) -> RecoveryReport:
    from .participant import xa

    report = RecoveryReport()
    namespace = c.xa_namespace
    for resource in list(c.resources.values()):

        def listed(r: XaResource = resource) -> list[Xid]:
            conn = r.connect()
            try:
                return xa.recover(conn, namespace=namespace)
            finally:
                conn.close()

        for xid in await asyncio.to_thread(listed):
            loaded = await c.log.load(xid.gid)
            tx, ops = loaded if loaded else (None, [])
            if tx is not None and tx.mode is not Mode.XA:
                tx, ops = None, []  # not an XA transaction of this log: nothing decided it
            # a transaction a live coordinator holds is in its phase 2 already: running it
            # here too would only collide with it ("prepared transaction is busy")
            driven = (
                tx is not None
                and tx.lease_owner is not None
                and ((tx.lease_expires_at or 0) > time.time())
            )
            what = None if driven else decide(tx, ops, xid.branch_id)
            name = f"{resource.name}:{xid.gid}/{xid.branch_id}"
            if what is None:
                report.left.append(name)
                continue
            try:
                await asyncio.to_thread(phase2, resource, xid, what, c.xa_connections)
            except Exception as exc:  # this branch waits for the next round; the rest go on
                report.failed.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            (report.committed if what is OpName.COMMIT else report.rolled_back).append(name)
    return report
