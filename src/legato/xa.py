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
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _initiator
from ._bounds import check_branch_id
from ._errors import DefinitionError, IllegalStateChange, LegatoError, ResourceError
from ._faults import fault_point
from ._model import Mode, OpName, OpRecord, TxRecord, TxStatus
from .drivers.xa import WIRE_XA
from .engine.handle import Handle
from .engine.port import Engine
from .transports.http import HttpCall
from .transports.xa import Connections, XaResource, phase2

if TYPE_CHECKING:
    from .participant.xa import Xid

DEFAULT_XA_TIMEOUT = 35.0  # seconds an XA transaction may stay prepared


DEPLOYMENT_NAMESPACE_CHARS = 12
"""How much of the log's deployment id (32 random hex digits) a default XA namespace keeps:
48 bits tell the deployments sharing a server apart, and the branch id keeps 51 bytes."""


def _checked_namespace(value: str) -> str:
    from .participant.xa import XidError, check_namespace

    try:
        return check_namespace(value, "xa_namespace")
    except XidError as exc:
        raise DefinitionError(str(exc)) from None


def deployment_namespace(deployment: str) -> str:
    """The XA namespace of a coordinator given none: the start of its log's deployment id."""
    from .participant import xa

    return xa.check_namespace(deployment[:DEPLOYMENT_NAMESPACE_CHARS], "the log's deployment id")


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


class Xa:
    """A coordinator's two-phase commit: the resources it reaches for phase 2 and
    recovery, its branches' namespace, and the initiator's calls over its engine."""

    def __init__(
        self,
        engine: Engine,
        connections: Connections,
        namespace: str | None = None,
    ) -> None:
        self.engine = engine
        self.resources: dict[str, XaResource] = {}
        self.connections = connections
        self._namespace = None if namespace is None else _checked_namespace(namespace)
        # one recovery pass at a time in this process (the periodic one and an explicit
        # recover): two would reach for the same prepared branches at once
        self.recovery_lock = asyncio.Lock()

    @property
    def namespace(self) -> str:
        """The namespace of this coordinator's XA branches (see ``Coordinator``)."""
        if self._namespace is None:
            raise RuntimeError("the coordinator is not started: its XA namespace is its log's")
        return self._namespace

    async def open(self) -> None:
        """Once the log is open: its deployment id gives the namespace where none was set."""
        if self._namespace is None:
            self._namespace = deployment_namespace(await self.engine.log.deployment())

    def register_resource(self, name: str, url: str) -> None:
        """A database this coordinator reaches for XA's phase 2 and recovery: every
        coordinator sharing the log should know the same resources by the same names."""
        self.resources[name] = XaResource(name, url)

    def transaction(
        self, gid: str | None = None, *, timeout_to_fail: float = DEFAULT_XA_TIMEOUT
    ) -> XaTransaction:
        return XaTransaction(self, gid, timeout_to_fail)

    async def begin(
        self,
        gid: str | None = None,
        *,
        timeout_to_fail: float | None = DEFAULT_XA_TIMEOUT,
        custom_data: str | None = None,
        title: str | None = None,
    ) -> str:
        """Write a prepared XA transaction; branches are then registered and prepared.
        ``custom_data`` is the caller's own text, kept and shown back as given; ``title``
        names the transaction for people."""
        self.engine.require_started()
        gid = _initiator.new_gid(gid)
        new = _initiator.prepared(
            gid, timeout_to_fail, None, time.time(), mode=Mode.XA, name=WIRE_XA,
            custom_data=custom_data, title=title,
        )  # fmt: skip
        existing = await self.engine.create(new)
        if existing is not None and (
            existing.mode is not Mode.XA or existing.status is not TxStatus.PREPARED
        ):
            raise IllegalStateChange(f"{gid} exists already ({existing.mode}, {existing.status})")
        return gid

    async def register_branch(self, gid: str, branch: str, resource: str) -> Xid:
        """Record a branch (and its resource) before it prepares: write-ahead. Returns its
        xid, in this coordinator's namespace: prepare the branch under it
        (``xa.prepare_branch(conn, gid, branch, fn, namespace=xid.namespace)``), or phase 2
        and recovery will not find it."""
        from .participant import xa

        check_branch_id(branch)
        self.engine.require_started()
        xid = xa.xid_for(gid, branch, self.namespace)  # refuses ids that make no xid
        now = time.time()
        await self.engine.log.register(gid, branch_ops(gid, branch, resource, xid, now), now)
        return xid

    async def register_http_branch(self, gid: str, branch: str, call: HttpCall | str) -> None:
        """Record a branch an HTTP service prepared itself (DTM's XA flow): phase 2 calls
        its URL with ``op=commit`` or ``op=rollback``."""
        self.engine.require_started()
        check_branch_id(branch)
        now = time.time()
        call = HttpCall(call) if isinstance(call, str) else call
        self.engine.participants.check(call.url, f"branch {branch} url")
        await self.engine.log.register(gid, http_branch_ops(gid, branch, call, now), now)

    async def submit(self, gid: str) -> Handle:
        """Every branch is prepared: log the decision to commit, then commit each."""
        return await _initiator.submit(self.engine, gid)

    async def abort(self, gid: str, reason: str = "aborted by the initiator") -> Handle:
        """Roll every branch back (newest first)."""
        return await _initiator.abort(self.engine, gid, reason)

    async def recover(self) -> RecoveryReport:
        """Resolve every branch of this namespace left prepared in each registered
        resource: commit where the log holds the decision to commit, roll back where it
        holds an abort or nothing at all (presumed abort). Another namespace's
        (another deployment's, or the old form) are not listed."""
        async with self.recovery_lock:
            return await self._recover()

    async def _recover(self) -> RecoveryReport:
        from .participant import xa

        report = RecoveryReport()
        namespace = self.namespace
        for resource in list(self.resources.values()):

            def listed(r: XaResource = resource) -> list[Xid]:
                conn = r.connect()
                try:
                    return xa.recover(conn, namespace=namespace)
                finally:
                    conn.close()

            for xid in await asyncio.to_thread(listed):
                loaded = await self.engine.log.load(xid.gid)
                tx, ops = loaded if loaded else (None, [])
                # a transaction a live coordinator holds is in its phase 2 already (or, a
                # workflow, running): ending the branch here too would collide with it
                driven = (
                    tx is not None
                    and tx.lease_owner is not None
                    and ((tx.lease_expires_at or 0) > time.time())
                )
                if tx is not None and tx.mode is Mode.WORKFLOW:
                    what = None if driven else workflow_decision(tx)
                else:
                    if tx is not None and tx.mode is not Mode.XA:
                        tx, ops = None, []  # not an XA transaction of this log: none decided it
                    what = None if driven else decide(tx, ops, xid.branch_id)
                name = f"{resource.name}:{xid.gid}/{xid.branch_id}"
                if what is None:
                    report.left.append(name)
                    continue
                try:
                    await asyncio.to_thread(phase2, resource, xid, what, self.connections)
                except Exception as exc:  # this branch waits for the next round; the rest go on
                    report.failed.append(f"{name}: {type(exc).__name__}: {exc}")
                    continue
                (report.committed if what is OpName.COMMIT else report.rolled_back).append(name)
        return report


class XaTransaction:
    """One XA transaction, driven by its initiator; see the module docstring."""

    def __init__(self, xa: Xa, gid: str | None, timeout_to_fail: float) -> None:
        self.xa = xa
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
        self._gid = await self.xa.begin(self._gid, timeout_to_fail=self.timeout_to_fail)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        fault_point("xa.before_decision")  # every branch prepared, nothing decided
        if e is None:
            self.handle = await self.xa.submit(self.gid)
        else:
            reason = f"the initiator failed: {type(e).__name__}: {e}"
            self.handle = await self.xa.abort(self.gid, reason)

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

        if resource not in self.xa.resources:
            raise ResourceError(f"register resource {resource!r} with the coordinator first")
        self._branches += 1
        branch = branch_id or f"{self._branches:02d}"
        xid = await self.xa.register_branch(self.gid, branch, resource)
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


def workflow_decision(tx: TxRecord) -> OpName | None:
    """What a workflow's XA branch (``wf.xa``) left prepared must become: committed once the
    workflow has succeeded, rolled back once it has failed; None while it runs or waits
    (its own commit or compensation op ends the branch when it gets there)."""
    if tx.status is TxStatus.SUCCEEDED:
        return OpName.COMMIT
    if tx.status is TxStatus.FAILED:
        return OpName.ROLLBACK
    return None


def decide(tx: TxRecord | None, ops: Sequence[OpRecord], branch: str) -> OpName | None:
    """What an in-doubt branch of ``tx`` must become: the logged decision for a
    registered branch, a rollback otherwise (presumed abort); None while its
    initiator may still decide. The rule is the participant kit's ``xa.verdict``."""
    from .participant import xa

    registered = any(o.branch == branch for o in ops)
    what = xa.verdict(None if tx is None else str(tx.status), registered)
    return None if what is None else OpName(what)
