"""XA resources: a participant's branch of a two-phase commit (DESIGN section 4, XA).

Phase 1 runs the branch's SQL in a real database 2PC transaction and prepares
it; phase 2 commits or rolls it back, from any connection to the same database,
once the coordinator has logged its decision::

    from legato.participant import create_table, xa

    create_table(conn)                       # once: the barrier table, legato_barrier
    res = xa.prepare_branch(conn, gid, "01", lambda c: c.execute("UPDATE ...", params))
    ...                                      # the coordinator logs commit (or abort)
    xa.commit_branch(other_conn, gid, "01")  # or xa.rollback_branch(...)
    in_doubt = xa.recover(conn)              # after a crash: [Xid(gid, branch_id, ns), ...]

``aprepare_branch``, ``acommit_branch``, ``arollback_branch``, ``acommit``,
``arollback`` and ``arecover`` take asyncio connections. Connections: psycopg
(sync and async) and asyncpg for PostgreSQL (``PREPARE TRANSACTION``, ``COMMIT
PREPARED``; the server needs ``max_prepared_transactions`` above 0, which is not
its default); PyMySQL and aiomysql for MySQL / MariaDB (``XA START`` ... ``XA
PREPARE``, ``XA COMMIT``; tables must be InnoDB). SQLite, which has no 2PC, and
anything else are refused with :class:`XaUnsupported`.

Each branch has one xid, derived from (gid, branch_id, namespace) (:func:`xid_for`,
:func:`parse_xid`), so a retried request or a recovery pass finds it again.

**Namespaces.** Every branch is prepared in a namespace, which its xid carries,
and recovery lists one namespace's branches only: deployments sharing a database
server never end each other's (``XA RECOVER`` is server-wide, and a PostgreSQL
GID is unique in the whole cluster). Each function that makes or lists xids takes
``namespace=``; left out, it is the namespace of the database the connection is
on (:func:`database_namespace`: ``db-`` and a hash of its name), the right one
for a service that prepares its own branches (DTM's XA flow), as long as it
gives the same (or none) to every call. A coordinator prepares, ends and
recovers its branches in its own namespace (``Coordinator.xa_namespace``).
Branches prepared before namespaces (the old form, namespace None) are never
listed by an automatic pass: see :data:`EVERY_NAMESPACE`.

**The barrier row.** The branch function runs after the branch's barrier row
(trans_type ``xa``, op ``action``, barrier ``01``) is inserted in the same XA
transaction; the table must exist (:func:`~legato.participant.create_table`).
It makes a retried prepare idempotent (the result says what was skipped), and it
is how phase 2 knows what happened to an xid the database no longer lists: the
row is there exactly when the branch committed. :func:`commit` succeeds only when
it committed the branch now or that row confirms an earlier commit; it never
reports a branch committed that was rolled back. :func:`rollback` of an xid that
is gone is fine, unless the row shows the branch committed (a heuristic mismatch,
:class:`BranchCommitted`); it also records the rollback, so a prepare arriving
after it is refused instead of leaving an in-doubt branch behind.

**What a branch may not do.** The branch function must not commit, roll back or
change the connection's autocommit. MySQL / MariaDB refuse DDL (and every other
statement that commits implicitly) inside an XA transaction: that is
:class:`TransactionEnded`, and nothing is left prepared. PostgreSQL accepts
transactional DDL in a prepared transaction, so DDL is not refused there; a
COMMIT in the branch function is detected (the transaction changed) but its work
is committed by then.

**Connections.** A connection already inside a transaction is refused
(:class:`~legato.participant.TransactionInProgress`). Phase 2 and recovery run
in autocommit, as the databases require; a connection outside autocommit is
switched for the call and switched back. On PostgreSQL the connection is free
again after a prepare. **MariaDB keeps a prepared branch attached to the session
that prepared it** until that connection closes: close it after
:func:`prepare_branch` (do not return it to a pool), and only then can another
connection commit the branch; until the server has seen the close, phase 2
raises :class:`BranchBusy` (retry). MySQL 8.0.29 and later detach it at prepare.

**Recovery.** :func:`recover` lists Legato's prepared xids of one namespace
(others are ignored): PostgreSQL's of the connection's database, MySQL's of the
whole server (``XA RECOVER`` does not say which database a branch wrote to; the
namespace does, by default). A coordinator resolves the branches of the
resources registered with it; a service that prepares its own branches and
registers their URLs (DTM's XA flow) runs
:func:`resolve` (or :func:`aresolve`) when it starts and now and again, which
asks the coordinator about each of its prepared branches: that ends a branch
prepared just before the service was killed, before it could register it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..._errors import TransactionInProgress
from . import _drivers, _plans, _resolve
from ._errors import (
    BranchBusy,
    BranchCommitted,
    BranchNotCommitted,
    TransactionEnded,
    XaError,
    XaUnsupported,
    XidError,
)
from ._ids import (
    EVERY_NAMESPACE,
    Namespaces,
    Xid,
    check_namespace,
    database_namespace,
    parse_xid,
    xid_for,
)
from ._plans import XaOutcome
from ._resolve import ResolveReport, verdict, verdict_from_query

C = TypeVar("C")
T = TypeVar("T")

__all__ = [
    "EVERY_NAMESPACE",
    "BranchBusy",
    "BranchCommitted",
    "BranchNotCommitted",
    "BranchResult",
    "Namespaces",
    "ResolveReport",
    "TransactionEnded",
    "TransactionInProgress",
    "XaError",
    "XaOutcome",
    "XaUnsupported",
    "Xid",
    "XidError",
    "acommit",
    "acommit_branch",
    "aprepare_branch",
    "arecover",
    "aresolve",
    "arollback",
    "arollback_branch",
    "check_namespace",
    "commit",
    "commit_branch",
    "database_namespace",
    "parse_xid",
    "prepare_branch",
    "recover",
    "resolve",
    "rollback",
    "rollback_branch",
    "verdict",
    "verdict_from_query",
    "xid_for",
]


@dataclass(frozen=True, slots=True)
class BranchResult(Generic[T]):
    """What :func:`prepare_branch` did, and the branch function's return value if it ran."""

    outcome: XaOutcome
    xid: Xid
    value: T | None = None

    @property
    def ran(self) -> bool:
        """Whether the branch function ran, and its transaction is prepared now."""
        return self.outcome is XaOutcome.PREPARED

    @property
    def skipped(self) -> bool:
        """Whether nothing ran (a retried or late request); :attr:`outcome` says why."""
        return not self.ran

    @property
    def ok(self) -> bool:
        """Whether the branch is prepared or committed: the participant answers success.

        False only for :attr:`XaOutcome.ROLLED_BACK`, a prepare arriving after the
        branch's rollback: answer it as a failure.
        """
        return self.outcome is not XaOutcome.ROLLED_BACK


def _named(gid: str, branch_id: str, namespace: str | None) -> Xid:
    """The xid, where ``namespace`` is given; else refuse ids that make none (a database's
    namespace is as long as any) before the connection is touched."""
    return xid_for(gid, branch_id, database_namespace("") if namespace is None else namespace)


def _of_database(name: str | None) -> str:
    if not name:
        raise XaError(
            "the connection is on no database, so it gives no namespace: open it on the "
            "branch's database, or pass namespace="
        )
    return database_namespace(name)


def _namespace(driver: _drivers.SyncXaDriver, namespace: str | None) -> str:
    return namespace if namespace is not None else _of_database(driver.database())


async def _anamespace(driver: _drivers.AsyncXaDriver, namespace: str | None) -> str:
    return namespace if namespace is not None else _of_database(await driver.database())


def prepare_branch(
    conn: C, gid: str, branch_id: str, fn: Callable[[C], T], *, namespace: str | None = None
) -> BranchResult[T]:
    """Run ``fn(conn)`` as branch ``branch_id`` of ``gid`` in a new 2PC transaction, and prepare it.

    ``conn`` is a psycopg or PyMySQL connection outside any transaction. If ``fn``
    raises, the branch is rolled back and the error re-raised; nothing stays
    prepared. A retried request is skipped (see :class:`XaOutcome`). The branch's
    xid is in ``namespace`` (default: the connection's database's); phase 2 and
    recovery must name the same.
    """
    _named(gid, branch_id, namespace)
    driver = _drivers.sync_xa_driver(conn)
    _drivers.refuse_open(conn, driver)
    xid = xid_for(gid, branch_id, _namespace(driver, namespace))
    values: list[T] = []
    plan = _plans.prepare_plan(driver.dialect, xid)
    outcome = _drivers.run(driver, plan, lambda: values.append(fn(conn)))
    return BranchResult(outcome, xid, values[0] if values else None)


async def aprepare_branch(
    conn: C,
    gid: str,
    branch_id: str,
    fn: Callable[[C], Awaitable[T]],
    *,
    namespace: str | None = None,
) -> BranchResult[T]:
    """As :func:`prepare_branch`: ``await fn(conn)`` on a psycopg async, asyncpg or aiomysql
    connection."""
    _named(gid, branch_id, namespace)
    driver = _drivers.async_xa_driver(conn)
    _drivers.refuse_open(conn, driver)
    xid = xid_for(gid, branch_id, await _anamespace(driver, namespace))
    values: list[T] = []

    async def branch() -> None:
        values.append(await fn(conn))

    outcome = await _drivers.arun(driver, _plans.prepare_plan(driver.dialect, xid), branch)
    return BranchResult(outcome, xid, values[0] if values else None)


def _checked(xid: Xid) -> Xid:
    if not isinstance(xid, Xid):
        raise TypeError(f"expected an Xid (xa.xid_for(gid, branch_id, namespace)), got {xid!r}")
    return xid


def _phase2(conn: object, xid: Xid, op: _plans.Phase2) -> None:
    driver = _drivers.sync_xa_driver(conn)
    with _drivers.autocommit(conn, driver):
        _drivers.run(driver, _plans.phase2_plan(driver.dialect, _checked(xid), op))


async def _aphase2(conn: object, xid: Xid, op: _plans.Phase2) -> None:
    driver = _drivers.async_xa_driver(conn)
    async with _drivers.aautocommit(conn, driver):
        await _drivers.arun(driver, _plans.phase2_plan(driver.dialect, _checked(xid), op))


def _branch_phase2(
    conn: object, gid: str, branch_id: str, namespace: str | None, op: _plans.Phase2
) -> None:
    _named(gid, branch_id, namespace)
    driver = _drivers.sync_xa_driver(conn)
    _phase2(conn, xid_for(gid, branch_id, _namespace(driver, namespace)), op)


async def _abranch_phase2(
    conn: object, gid: str, branch_id: str, namespace: str | None, op: _plans.Phase2
) -> None:
    _named(gid, branch_id, namespace)
    driver = _drivers.async_xa_driver(conn)
    await _aphase2(conn, xid_for(gid, branch_id, await _anamespace(driver, namespace)), op)


def commit(conn: object, xid: Xid) -> None:
    """Commit the prepared branch ``xid`` (phase 2), from any connection to its database.

    Returns if the branch committed now, or had committed before (its barrier row
    confirms it). Raises :class:`BranchNotCommitted` if it is not prepared and never
    committed (rolled back, or never prepared), :class:`BranchBusy` if another
    session holds it; any other database error as it is. Retry until it returns.
    """
    _phase2(conn, xid, "commit")


async def acommit(conn: object, xid: Xid) -> None:
    """As :func:`commit`, on an asyncio connection."""
    await _aphase2(conn, xid, "commit")


def rollback(conn: object, xid: Xid) -> None:
    """Roll back the prepared branch ``xid`` (phase 2), from any connection to its database.

    Returns if the branch rolled back now, or is not prepared (rolled back before, or
    never prepared: a prepare arriving later is refused). Raises :class:`BranchCommitted`
    if the branch had committed, :class:`BranchBusy` if another session holds it.
    """
    _phase2(conn, xid, "rollback")


async def arollback(conn: object, xid: Xid) -> None:
    """As :func:`rollback`, on an asyncio connection."""
    await _aphase2(conn, xid, "rollback")


def commit_branch(conn: object, gid: str, branch_id: str, *, namespace: str | None = None) -> None:
    """:func:`commit` branch ``branch_id`` of ``gid``, prepared by :func:`prepare_branch` in
    ``namespace`` (default: the connection's database's): a service's phase 2."""
    _branch_phase2(conn, gid, branch_id, namespace, "commit")


async def acommit_branch(
    conn: object, gid: str, branch_id: str, *, namespace: str | None = None
) -> None:
    """As :func:`commit_branch`, on an asyncio connection."""
    await _abranch_phase2(conn, gid, branch_id, namespace, "commit")


def rollback_branch(
    conn: object, gid: str, branch_id: str, *, namespace: str | None = None
) -> None:
    """:func:`rollback` branch ``branch_id`` of ``gid`` in ``namespace`` (default: the
    connection's database's), as :func:`commit_branch` commits it."""
    _branch_phase2(conn, gid, branch_id, namespace, "rollback")


async def arollback_branch(
    conn: object, gid: str, branch_id: str, *, namespace: str | None = None
) -> None:
    """As :func:`rollback_branch`, on an asyncio connection."""
    await _abranch_phase2(conn, gid, branch_id, namespace, "rollback")


def _listed(namespace: str | Namespaces | None) -> str | Namespaces | None:
    """The namespace a pass lists, checked; None: the connection's database's."""
    if namespace is None or namespace is EVERY_NAMESPACE:
        return namespace
    return check_namespace(namespace)


def _one(namespace: str | None) -> str | None:
    """A namespace to resolve: one (never every one: the others are not ours to end)."""
    return None if namespace is None else check_namespace(namespace)


def recover(conn: object, *, namespace: str | Namespaces | None = None) -> list[Xid]:
    """Legato's prepared, in-doubt branches in ``namespace`` (default: the connection's
    database's): PostgreSQL's in this database, MySQL's on the server.

    Each :class:`Xid` carries its ``gid``, ``branch_id`` and ``namespace``; resolve it
    from the log (no decision logged: roll back, presumed abort). Another namespace's
    branches, and those of the old form, are not listed (but see :data:`EVERY_NAMESPACE`).
    """
    wanted = _listed(namespace)
    driver = _drivers.sync_xa_driver(conn)
    with _drivers.autocommit(conn, driver):
        if wanted is None:
            wanted = _of_database(driver.database())
        return _drivers.run(driver, _plans.recover_plan(driver.dialect, wanted))


async def arecover(conn: object, *, namespace: str | Namespaces | None = None) -> list[Xid]:
    """As :func:`recover`, on an asyncio connection."""
    wanted = _listed(namespace)
    driver = _drivers.async_xa_driver(conn)
    async with _drivers.aautocommit(conn, driver):
        if wanted is None:
            wanted = _of_database(await driver.database())
        return await _drivers.arun(driver, _plans.recover_plan(driver.dialect, wanted))


def resolve(
    conn: object, coordinator: str, *, namespace: str | None = None, timeout: float = 10.0
) -> ResolveReport:
    """End this database's prepared branches in ``namespace`` (default: the connection's
    database's) whose fate the coordinator knows.

    ``coordinator`` is the DTM-compatible server URL (``http://host:36789/api/dtmsvr``,
    Legato's or DTM's): each branch's transaction is looked up with ``GET query?gid=``
    and the branch committed, rolled back or left as :func:`verdict` says. A branch
    that cannot be looked up or ended now is reported in ``failed`` and left as it is.
    Branches of other namespaces (other deployments', the old form) are not touched.
    """
    import httpx

    report = ResolveReport()
    with httpx.Client(timeout=timeout) as http:
        for xid in recover(conn, namespace=_one(namespace)):
            name = f"{xid.gid}/{xid.branch_id}"
            try:
                reply = http.get(_resolve.query_url(coordinator), params={"gid": xid.gid})
                reply.raise_for_status()
                what = verdict_from_query(xid, reply.json())
                if what is not None:
                    _phase2(conn, xid, what)
            except Exception as exc:  # this branch waits for the next pass; the rest go on
                report.failed.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            _file(report, name, what)
    return report


async def aresolve(
    conn: object, coordinator: str, *, namespace: str | None = None, timeout: float = 10.0
) -> ResolveReport:
    """As :func:`resolve`, on an asyncio connection."""
    import httpx

    report = ResolveReport()
    async with httpx.AsyncClient(timeout=timeout) as http:
        for xid in await arecover(conn, namespace=_one(namespace)):
            name = f"{xid.gid}/{xid.branch_id}"
            try:
                reply = await http.get(_resolve.query_url(coordinator), params={"gid": xid.gid})
                reply.raise_for_status()
                what = verdict_from_query(xid, reply.json())
                if what is not None:
                    await _aphase2(conn, xid, what)
            except Exception as exc:  # this branch waits for the next pass; the rest go on
                report.failed.append(f"{name}: {type(exc).__name__}: {exc}")
                continue
            _file(report, name, what)
    return report


def _file(report: ResolveReport, name: str, what: _plans.Phase2 | None) -> None:
    if what is None:
        report.left.append(name)
    else:
        (report.committed if what == "commit" else report.rolled_back).append(name)
