"""XA resources on real databases: a branch prepared, then committed or rolled back.

Every test runs through each driver (psycopg, psycopg async and asyncpg on
PostgreSQL; PyMySQL and aiomysql on MariaDB), on a fresh database, and reads the
outcome back from the participant's own tables. The ``xa_pg`` / ``xa_mariadb``
fixtures fail a test that leaves a branch prepared. A branch is prepared on a
connection that is then closed, as a participant service does: MariaDB keeps a
prepared branch on the session that prepared it until that connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import aiomysql
import asyncpg
import psycopg
import pymysql
import pytest

from legato import Failure
from legato.participant import TransactionInProgress, acreate_table, create_table, xa
from legato.participant.xa import (
    BranchBusy,
    BranchCommitted,
    BranchNotCommitted,
    BranchResult,
    TransactionEnded,
    XaOutcome,
    Xid,
)
from tests.support.barrier import Db
from tests.support.services import MARIADB_HOST, MARIADB_PORT, MARIADB_USER
from tests.support.xa import XaDb

Exec = Callable[[Any, str, tuple[object, ...]], Any]


@dataclass
class Side:
    """One participant database, reached through one driver; a new connection per step."""

    driver: str
    xdb: XaDb
    is_async: bool
    open: Callable[[], Awaitable[Any]]
    shut: Callable[[Any], Awaitable[None]]
    exec: Exec  # runs one statement on a connection: a function, or a coroutine function
    begin_sql: str  # leaves the connection inside a transaction
    opened: list[Any] = field(default_factory=list)

    @property
    def db(self) -> Db:
        return self.xdb.db

    def new_gid(self) -> str:
        return self.xdb.new_gid()

    @property
    def namespace(self) -> str:
        """The namespace a branch gets by default: its database's."""
        return xa.database_namespace(self.db.url.rsplit("/", 1)[1])

    def xid(self, gid: str, branch_id: str = "01") -> Xid:
        return xa.xid_for(gid, branch_id, self.namespace)

    async def connect(self) -> Any:
        conn = await self.open()
        self.opened.append(conn)
        return conn

    async def close(self, conn: Any) -> None:
        """Close ``conn``; on MariaDB, wait until the server has let go of its session."""
        thread_id = conn.thread_id() if self.db.dialect == "mysql" else None
        self.opened.remove(conn)
        await self.shut(conn)
        sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s"
        while thread_id is not None and self.db.rows(sql, (thread_id,))[0][0]:
            await asyncio.sleep(0.01)

    async def sql(self, conn: Any, sql: str, *params: object) -> None:
        result = self.exec(conn, sql, params)
        if inspect.isawaitable(result):
            await result

    def runs(self, sql: str, *params: object, then: Exception | None = None) -> Any:
        """A branch function that runs ``sql`` (and then raises ``then``); returns ``sql``."""
        if self.is_async:

            async def abranch(conn: Any) -> str:
                await self.sql(conn, sql, *params)
                if then is not None:
                    raise then
                return sql

            return abranch

        def branch(conn: Any) -> str:
            self.exec(conn, sql, params)
            if then is not None:
                raise then
            return sql

        return branch

    def writes(self, gid: str, entry: str, then: Exception | None = None) -> Any:
        """A branch function that appends ``(gid, entry)`` to the ledger."""
        ph = "$1, $2" if self.driver == "asyncpg" else "%s, %s"
        return self.runs(f"INSERT INTO ledger (gid, entry) VALUES ({ph})", gid, entry, then=then)

    def autocommit(self, conn: Any) -> bool:
        if self.driver == "asyncpg":
            return True
        return bool(conn.autocommit if self.db.dialect == "postgresql" else conn.get_autocommit())

    # the API under test, sync or asyncio as the driver is

    async def prepare(self, conn: Any, gid: str, branch_id: str, fn: Any) -> BranchResult[Any]:
        if self.is_async:
            return await xa.aprepare_branch(conn, gid, branch_id, fn)
        return xa.prepare_branch(conn, gid, branch_id, fn)

    async def commit(self, conn: Any, xid: Xid) -> None:
        await xa.acommit(conn, xid) if self.is_async else xa.commit(conn, xid)

    async def rollback(self, conn: Any, xid: Xid) -> None:
        await xa.arollback(conn, xid) if self.is_async else xa.rollback(conn, xid)

    async def recover(self, conn: Any, namespace: Any = None) -> list[Xid]:
        if self.is_async:
            return await xa.arecover(conn, namespace=namespace)
        return xa.recover(conn, namespace=namespace)

    # one step on a connection of its own, closed after

    async def prepared(self, gid: str, entry: str = "booked") -> Xid:
        """Branch 01 of ``gid``, writing ``entry``, prepared on a connection then closed."""
        conn = await self.connect()
        result = await self.prepare(conn, gid, "01", self.writes(gid, entry))
        assert result.outcome is XaOutcome.PREPARED
        await self.close(conn)
        return result.xid

    async def commit_new(self, xid: Xid) -> None:
        conn = await self.connect()
        try:
            await self.commit(conn, xid)
        finally:
            await self.close(conn)

    async def rollback_new(self, xid: Xid) -> None:
        conn = await self.connect()
        try:
            await self.rollback(conn, xid)
        finally:
            await self.close(conn)

    async def recover_new(self, namespace: Any = None) -> list[Xid]:
        conn = await self.connect()
        try:
            return await self.recover(conn, namespace)
        finally:
            await self.close(conn)


# --- one side per driver ------------------------------------------------------------------


def _psycopg_exec(conn: Any, sql: str, params: tuple[object, ...]) -> None:
    conn.execute(sql, params or None).close()


async def _apsycopg_exec(conn: Any, sql: str, params: tuple[object, ...]) -> None:
    await (await conn.execute(sql, params or None)).close()


async def _asyncpg_exec(conn: Any, sql: str, params: tuple[object, ...]) -> None:
    await conn.execute(sql, *params)


def _pymysql_exec(conn: Any, sql: str, params: tuple[object, ...]) -> None:
    with conn.cursor() as cur:
        cur.execute(sql, params or None)


async def _aiomysql_exec(conn: Any, sql: str, params: tuple[object, ...]) -> None:
    async with conn.cursor() as cur:
        await cur.execute(sql, params or None)


def _build(driver: str, xdb: XaDb) -> Side:
    url = xdb.db.url

    async def opened(value: Any) -> Any:
        return value

    async def shut_sync(conn: Any) -> None:
        conn.close()

    async def shut_async(conn: Any) -> None:
        await conn.close()

    async def shut_aiomysql(conn: Any) -> None:
        await conn.ensure_closed()

    def aiomysql_connect() -> Awaitable[Any]:
        name = url.rsplit("/", 1)[1]
        return aiomysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, db=name)

    sides = {
        "psycopg": lambda: Side(
            driver,
            xdb,
            False,
            lambda: opened(psycopg.connect(url)),
            shut_sync,
            _psycopg_exec,
            "SELECT 1",
        ),
        "psycopg-async": lambda: Side(
            driver,
            xdb,
            True,
            lambda: psycopg.AsyncConnection.connect(url),
            shut_async,
            _apsycopg_exec,
            "SELECT 1",
        ),
        "asyncpg": lambda: Side(
            driver, xdb, True, lambda: asyncpg.connect(url), shut_async, _asyncpg_exec, "BEGIN"
        ),
        "pymysql": lambda: Side(
            driver,
            xdb,
            False,
            lambda: opened(xdb.db.connect()),
            shut_sync,
            _pymysql_exec,
            "BEGIN",
        ),
        "aiomysql": lambda: Side(
            driver, xdb, True, aiomysql_connect, shut_aiomysql, _aiomysql_exec, "BEGIN"
        ),
    }
    return sides[driver]()


PG_DRIVERS = ["psycopg", "psycopg-async", "asyncpg"]
MARIA_DRIVERS = ["pymysql", "aiomysql"]


async def _side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    driver: str = request.param
    xdb: XaDb = request.getfixturevalue("xa_pg" if driver in PG_DRIVERS else "xa_mariadb")
    side = _build(driver, xdb)
    try:
        yield side
    finally:
        for conn in list(side.opened):
            await side.close(conn)


@pytest.fixture(params=PG_DRIVERS + MARIA_DRIVERS)
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    """A participant database through each driver in turn."""
    async for s in _side(request):
        yield s


@pytest.fixture(params=PG_DRIVERS)
async def pg_side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    async for s in _side(request):
        yield s


@pytest.fixture(params=MARIA_DRIVERS)
async def maria_side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    async for s in _side(request):
        yield s


# --- phase 1 and phase 2 ------------------------------------------------------------------


async def test_a_branch_prepared_then_committed_from_another_connection_is_in_the_database(
    side: Side,
) -> None:
    gid = side.new_gid()
    conn = await side.connect()

    result = await side.prepare(conn, gid, "01", side.writes(gid, "booked"))

    assert (result.outcome, result.xid) == (XaOutcome.PREPARED, side.xid(gid))
    assert result.ran and result.ok and result.value is not None
    assert side.db.ledger(gid) == []  # prepared: not visible until committed
    await side.close(conn)

    other = await side.connect()
    autocommit = side.autocommit(other)
    await side.commit(other, result.xid)

    assert side.db.ledger(gid) == ["booked"]
    assert side.db.barrier_rows(gid) == [("01", "action", "01", "action")]
    assert side.autocommit(other) == autocommit  # the connection is left as it was found
    assert result.xid not in await side.recover(other)


async def test_a_branch_prepared_then_rolled_back_from_another_connection_leaves_nothing(
    side: Side,
) -> None:
    gid = side.new_gid()
    xid = await side.prepared(gid)

    await side.rollback_new(xid)

    assert side.db.ledger(gid) == []
    assert side.db.barrier_rows(gid) == [("01", "action", "01", "rollback")]
    assert xid not in await side.recover_new()


async def test_a_prepared_branch_survives_its_connection_closing_and_is_recovered(
    side: Side,
) -> None:
    gid = side.new_gid()
    xid = await side.prepared(gid)
    conn = await side.connect()

    in_doubt = [x for x in await side.recover(conn) if x == xid]

    assert [(x.gid, x.branch_id) for x in in_doubt] == [(gid, "01")]
    await side.commit(conn, in_doubt[0])
    assert side.db.ledger(gid) == ["booked"]


async def test_creating_the_barrier_table_at_start_up_does_not_wait_for_a_prepared_branch(
    side: Side,
) -> None:
    """A service restarted with a branch prepared runs create_table before it resolves it:
    that must not wait for the branch's locks (CREATE INDEX would, on PostgreSQL)."""
    xid = await side.prepared(side.new_gid())
    conn = await side.connect()
    if side.db.dialect == "postgresql":
        await side.sql(conn, "SET lock_timeout = 2000")
        if not side.autocommit(conn):  # psycopg: SET began a transaction
            done = conn.commit()
            if inspect.isawaitable(done):
                await done
    else:
        await side.sql(conn, "SET SESSION lock_wait_timeout = 2")

    if side.is_async:
        await acreate_table(conn)
    else:
        create_table(conn)

    await side.rollback(conn, xid)


async def test_committing_a_committed_branch_again_succeeds_confirmed_by_its_barrier_row(
    side: Side,
) -> None:
    gid = side.new_gid()
    xid = await side.prepared(gid)
    await side.commit_new(xid)

    await side.commit_new(xid)

    assert side.db.ledger(gid) == ["booked"]


async def test_committing_a_rolled_back_branch_is_refused_never_reported_committed(
    side: Side,
) -> None:
    gid = side.new_gid()
    xid = await side.prepared(gid)
    await side.rollback_new(xid)

    with pytest.raises(BranchNotCommitted, match=f"gid '{gid}'.*it was rolled back"):
        await side.commit_new(xid)

    assert side.db.ledger(gid) == []


async def test_committing_a_branch_that_was_never_prepared_is_refused(side: Side) -> None:
    gid = side.new_gid()

    with pytest.raises(BranchNotCommitted, match="rolled back, or never prepared"):
        await side.commit_new(side.xid(gid))


async def test_rolling_back_a_rolled_back_or_never_prepared_branch_again_succeeds(
    side: Side,
) -> None:
    gid, never = side.new_gid(), side.new_gid()
    xid = await side.prepared(gid)
    await side.rollback_new(xid)

    await side.rollback_new(xid)
    await side.rollback_new(side.xid(never))

    assert side.db.ledger(gid) == []


async def test_rolling_back_a_committed_branch_is_refused_as_a_heuristic_mismatch(
    side: Side,
) -> None:
    gid = side.new_gid()
    xid = await side.prepared(gid)
    await side.commit_new(xid)

    with pytest.raises(BranchCommitted, match=f"gid '{gid}'.*had committed"):
        await side.rollback_new(xid)

    assert side.db.ledger(gid) == ["booked"]


# --- retried and late prepares --------------------------------------------------------------


async def test_a_prepare_retried_after_the_commit_is_skipped(side: Side) -> None:
    gid = side.new_gid()
    await side.commit_new(await side.prepared(gid))
    conn = await side.connect()

    result = await side.prepare(conn, gid, "01", side.writes(gid, "again"))

    assert (result.outcome, result.skipped, result.ok) == (XaOutcome.ALREADY_COMMITTED, True, True)
    assert result.value is None
    assert side.db.ledger(gid) == ["booked"]


async def test_a_prepare_retried_while_the_branch_is_prepared_is_skipped(side: Side) -> None:
    gid = side.new_gid()
    xid = await side.prepared(gid)
    conn = await side.connect()

    result = await side.prepare(conn, gid, "01", side.writes(gid, "again"))

    assert (result.outcome, result.ok) == (XaOutcome.ALREADY_PREPARED, True)
    await side.close(conn)
    await side.commit_new(xid)
    assert side.db.ledger(gid) == ["booked"]


async def test_a_prepare_arriving_after_its_rollback_is_refused_and_leaves_nothing(
    side: Side,
) -> None:
    gid = side.new_gid()
    await side.rollback_new(side.xid(gid))  # the rollback overtook the prepare
    conn = await side.connect()

    result = await side.prepare(conn, gid, "01", side.writes(gid, "late"))

    assert (result.outcome, result.ok) == (XaOutcome.ROLLED_BACK, False)
    assert side.db.ledger(gid) == []
    assert result.xid not in await side.recover(conn)


# --- what is refused ------------------------------------------------------------------------


async def test_a_failing_branch_function_is_rolled_back_and_nothing_is_left_prepared(
    side: Side,
) -> None:
    gid, next_gid = side.new_gid(), side.new_gid()
    conn = await side.connect()

    with pytest.raises(Failure, match="sold out"):
        await side.prepare(conn, gid, "01", side.writes(gid, "booked", then=Failure("sold out")))

    assert side.db.ledger(gid) == [] and side.db.barrier_rows(gid) == []
    assert side.xid(gid) not in await side.recover(conn)
    # and the connection runs the next branch
    result = await side.prepare(conn, next_gid, "01", side.writes(next_gid, "booked"))
    await side.close(conn)
    await side.commit_new(result.xid)
    assert side.db.ledger(next_gid) == ["booked"]


async def test_a_connection_already_inside_a_transaction_is_refused(side: Side) -> None:
    gid = side.new_gid()
    conn = await side.connect()
    await side.sql(conn, side.begin_sql)

    with pytest.raises(TransactionInProgress, match="already inside a transaction"):
        await side.prepare(conn, gid, "01", side.writes(gid, "booked"))
    with pytest.raises(TransactionInProgress, match="already inside a transaction"):
        await side.commit(conn, side.xid(gid))
    with pytest.raises(TransactionInProgress, match="already inside a transaction"):
        await side.recover(conn)

    assert side.db.ledger(gid) == []


async def test_ddl_in_a_mariadb_branch_is_refused_and_nothing_is_left_prepared(
    maria_side: Side,
) -> None:
    side = maria_side
    gid, next_gid = side.new_gid(), side.new_gid()
    conn = await side.connect()

    with pytest.raises(TransactionEnded, match="commits implicitly") as caught:
        await side.prepare(conn, gid, "01", side.runs("CREATE TABLE surprise (id int)"))

    assert isinstance(caught.value.__cause__, pymysql.err.OperationalError)
    assert caught.value.__cause__.args[0] == 1399  # XAER_RMFAIL
    assert side.xid(gid) not in await side.recover(conn)
    assert side.db.rows("SHOW TABLES LIKE 'surprise'") == []
    assert side.db.barrier_rows(gid) == []
    # the connection is out of the XA transaction, and runs the next branch
    result = await side.prepare(conn, next_gid, "01", side.writes(next_gid, "booked"))
    await side.close(conn)
    await side.commit_new(result.xid)
    assert side.db.ledger(next_gid) == ["booked"]


async def test_mariadb_phase2_waits_for_the_connection_that_prepared_the_branch_to_close(
    maria_side: Side,
) -> None:
    side = maria_side
    gid = side.new_gid()
    conn, other = await side.connect(), await side.connect()
    result = await side.prepare(conn, gid, "01", side.writes(gid, "booked"))

    with pytest.raises(BranchBusy, match="close that connection"):
        await side.commit(other, result.xid)
    with pytest.raises(TransactionInProgress, match="holds it until the connection closes"):
        await side.commit(conn, result.xid)

    await side.close(conn)
    await side.commit(other, result.xid)
    assert side.db.ledger(gid) == ["booked"]


async def test_postgresql_accepts_ddl_in_a_branch_and_commits_it_in_phase_2(pg_side: Side) -> None:
    side = pg_side
    gid = side.new_gid()
    conn = await side.connect()

    result = await side.prepare(conn, gid, "01", side.runs("CREATE TABLE surprise (id int)"))
    await side.commit(conn, result.xid)  # the same connection is free again after a prepare

    assert side.db.rows("SELECT to_regclass('surprise') IS NOT NULL") == [(True,)]


async def test_a_postgresql_branch_function_that_commits_is_refused(pg_side: Side) -> None:
    side = pg_side
    gid = side.new_gid()
    conn = await side.connect()

    with pytest.raises(TransactionEnded, match="ended the transaction"):
        await side.prepare(conn, gid, "01", side.runs("COMMIT"))

    assert side.xid(gid) not in await side.recover(conn)


async def test_a_postgresql_branch_that_swallowed_an_error_is_not_prepared(pg_side: Side) -> None:
    side = pg_side
    gid = side.new_gid()
    conn = await side.connect()
    failing = side.runs("SELECT 1/0")

    async def swallows_async(c: Any) -> None:
        with contextlib.suppress(psycopg.Error, asyncpg.PostgresError):
            await failing(c)

    def swallows(c: Any) -> None:
        with contextlib.suppress(psycopg.Error):
            failing(c)

    branch = swallows_async if side.is_async else swallows
    with pytest.raises((psycopg.Error, asyncpg.PostgresError), match="transaction is aborted"):
        await side.prepare(conn, gid, "01", branch)

    assert side.xid(gid) not in await side.recover(conn)


FOREIGN = ["other-app-1:b", "lgx:not~7elegato:01"]  # another application's; not canonical


def _prepare_foreign(db: Db, name: str) -> Any:
    """Prepare an empty transaction that is not Legato's; its connection stays open."""
    conn = db.connect()
    if db.dialect == "postgresql":
        conn.execute(f"PREPARE TRANSACTION '{name}'")  # psycopg has begun one implicitly
    else:
        gtrid, _, bqual = name.rpartition(":")
        with conn.cursor() as cur:
            for verb in ("START", "END", "PREPARE"):
                cur.execute(f"XA {verb} '{gtrid}','{bqual}'")
    return conn


def _end_foreign(db: Db, conn: Any, name: str) -> None:
    if db.dialect == "postgresql":
        conn.autocommit = True
        conn.execute(f"ROLLBACK PREPARED '{name}'")
    else:
        gtrid, _, bqual = name.rpartition(":")
        with conn.cursor() as cur:
            cur.execute(f"XA ROLLBACK '{gtrid}','{bqual}'")  # on the session that holds it
    conn.close()


async def test_recovery_lists_its_namespaces_branches_and_no_other(side: Side) -> None:
    gid = side.new_gid()
    xid = await side.prepared(gid)
    old, other = f"lgx:{gid}-old:01", f"lgx:{gid}-other:01@other-deploy"  # not ours to end
    foreign = {name: _prepare_foreign(side.db, name) for name in [*FOREIGN, old, other]}
    try:
        recovered = await side.recover_new()
        every = await side.recover_new(xa.EVERY_NAMESPACE)
        theirs = await side.recover_new("other-deploy")
    finally:
        for name, conn in foreign.items():
            _end_foreign(side.db, conn, name)

    assert [x for x in recovered if x.gid.startswith(side.xdb.token)] == [xid]
    assert not [x for x in recovered if "other-app" in x.pg or "legato" in x.pg]
    mine = {(x.pg, x.namespace) for x in every if x.gid.startswith(side.xdb.token)}
    assert mine == {(xid.pg, side.namespace), (old, None), (other, "other-deploy")}
    assert [x.pg for x in theirs if x.gid.startswith(side.xdb.token)] == [other]
    await side.rollback_new(xid)


# --- requests racing a branch being prepared ------------------------------------------------


async def test_requests_racing_a_branch_being_prepared_are_told_to_retry(
    side: Side, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xa._plans, "LOCK_TIMEOUT_MS", 200)
    gid = side.new_gid()
    xid = side.xid(gid)
    first, other = await side.connect(), await side.connect()
    if side.db.dialect == "mysql":
        await side.sql(other, "SET SESSION innodb_lock_wait_timeout = 1")
    entered, release = threading.Event(), threading.Event()
    insert = side.writes(gid, "booked")

    def held(conn: Any) -> str:
        insert(conn)
        entered.set()
        release.wait(10)
        return "booked"

    async def aheld(conn: Any) -> str:
        await insert(conn)
        entered.set()
        await asyncio.to_thread(release.wait, 10)
        return "booked"

    if side.is_async:
        running = asyncio.ensure_future(side.prepare(first, gid, "01", aheld))
    else:  # a sync driver blocks: the first request runs in a thread of its own
        call = asyncio.to_thread(xa.prepare_branch, first, gid, "01", held)
        running = asyncio.ensure_future(call)
    try:
        await asyncio.to_thread(entered.wait, 10)

        with pytest.raises(BranchBusy, match="retry the prepare"):
            await side.prepare(other, gid, "01", side.writes(gid, "twice"))
        with pytest.raises(BranchBusy, match="retry the rollback"):
            await side.rollback(other, xid)
    finally:
        release.set()
        result = await running

    assert result.outcome is XaOutcome.PREPARED
    await side.close(first)
    await side.commit(other, xid)
    assert side.db.ledger(gid) == ["booked"]


def test_the_branch_function_runs_with_the_callers_lock_timeout(xa_pg: XaDb) -> None:
    gid = xa_pg.new_gid()
    with closing(psycopg.connect(xa_pg.db.url, autocommit=True)) as conn:
        conn.execute("SET lock_timeout = '7s'")

        result = xa.prepare_branch(conn, gid, "01", lambda c: c.execute("SHOW lock_timeout"))

        assert result.value is not None and result.value.fetchone() == ("7s",)
        assert conn.autocommit and conn.execute("SHOW lock_timeout").fetchone() == ("7s",)
        xa.rollback(conn, result.xid)
