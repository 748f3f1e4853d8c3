"""The production log: PostgreSQL, shared by any number of coordinators.

Coordinators claim due work with ``FOR UPDATE SKIP LOCKED`` (see
``sql/postgres/queries.sql``) and fence every write with their lease. The log
outlives its server restarting: every connection it keeps (the reader's, the
writer's, the event loop's) is checked before each use and replaced once its
server has gone (see ``_alive``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any, cast

import asyncpg
import psycopg
from psycopg.rows import dict_row

from .. import _json
from .._errors import LeaseLost, LegatoError, LogError, LogUnavailable
from .._model import TxRecord
from ._group import Job, JobResult
from ._sql import Conn, Params, Repeatable, SqlLog, op_row_params, tx_from_row
from .base import TxWrite

_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS legato_migrations "
    "(version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)"
)
_MIGRATION_LOCK = 0x1E6A70  # pg_advisory_xact_lock key: one migrating process at a time


class PostgresLog(SqlLog):
    backend = "postgres"
    # Two batches of writes commit at once, each on its own connection: the server
    # overlaps their WAL flushes. Writes of different transactions touch disjoint rows
    # (a runner has one write in flight at a time), so the two never wait on each other.
    flushers = 2

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        super().__init__(url, auto_migrate=auto_migrate)
        self._async_conns: list[asyncpg.Connection] = []  # idle ones
        self._write_all = self.q["write_all"].replace(":creates", "$1").replace(":writes", "$2")
        self.q = {name: _PARAM.sub(r"%(\1)s", sql) for name, sql in self.q.items()}

    def _connect(self, role: str) -> Conn:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=10,
                application_name=f"legato-{role}",
            )
        except psycopg.OperationalError as exc:
            raise LogUnavailable(f"PostgreSQL log unreachable: {exc}") from exc
        # autocommit + explicit BEGIN: reads never leave an idle transaction open
        return conn

    def _healthy(self, conn: Conn) -> bool:
        return _alive(conn)

    def _lost(self, conn: Conn, exc: Exception) -> bool:
        # SQLSTATE class 08 is a connection exception; 57P, a server shutting down,
        # crashed, or not accepting connections yet
        state = getattr(exc, "sqlstate", None) or ""
        return bool(conn.closed) or state.startswith(("08", "57P"))

    def _begin(self, conn: Conn) -> None:
        conn.execute("BEGIN")

    def _begin_read(self, conn: Conn) -> None:
        # READ COMMITTED would give each statement of a read its own snapshot
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, LogError):
            return exc
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return LogUnavailable(f"PostgreSQL log: {exc}")
        return LogError(f"PostgreSQL log: {type(exc).__name__}: {exc}")

    # PostgreSQL runs each write as one statement, and a group commit's writes as one
    # statement too (``write_all``, see _run_batch): round trips, not SQL, are what a
    # write costs here. SQLite's statements are local calls and stay as they are.

    def _create_job(
        self, gid: str, tx_params: Params, op_params: list[Params], event_params: list[Params]
    ) -> Job[Conn]:
        return _Create(self.q["create_all"], tx_params, op_params, event_params, self.q["get_tx"])

    def _write_job(
        self,
        change: TxWrite,
        tx_params: Params,
        op_params: list[Params],
        event_params: list[Params],
    ) -> Job[Conn]:
        record = {**tx_params, "ops": op_params, "events": event_params}
        if change.new_ops:
            record["new_ops"] = [op_row_params(o) for o in change.new_ops]
        return _Write(self.q["write_all"], record)

    # -- the event loop's own connection ------------------------------------------------
    # Creates and fenced writes (the hot path) go over an asyncpg connection on the
    # event loop: a group commit's whole batch is one statement (``write_all``), one
    # round trip, atomic without BEGIN and COMMIT. asyncpg speaks the binary protocol
    # from an asyncio protocol and keeps the statement prepared: measured, about half
    # the client CPU per statement of psycopg's async connection, which mattered most
    # for a lone write (one saga at a time) whose every microsecond is on its path.
    # Claims, renewals and other jobs, which are rare, take the writer thread and
    # SqlLog's one-job-at-a-time batch, in a batch that runs alone (GroupCommit's gate),
    # so its connection and the loop's never hold row locks at the same time.

    def _shared_batch(self, jobs: list[Job[Conn]]) -> bool:
        return all(isinstance(j, _Create | _Write) for j in jobs)

    async def _run_batch(self, jobs: list[Job[Conn]]) -> list[JobResult]:
        if not self._shared_batch(jobs) or not _distinct(jobs):
            # the rare batch that writes one gid twice (two submits of one gid) runs
            # its jobs one statement after another in the writer thread
            return await super()._run_batch(jobs)
        try:
            conn = await self._aconn()
        except LogUnavailable:
            return await super()._run_batch(jobs)
        pjobs = cast(list[_Create | _Write], jobs)
        try:
            creates = _json.dumps([j.doc() for j in pjobs if isinstance(j, _Create)])
            writes = _json.dumps([j.record for j in pjobs if isinstance(j, _Write)])
            rows = await conn.fetch(self._write_all, creates, writes)
        except BaseException as exc:
            if not isinstance(exc, Exception):  # cancelled mid-statement: its state unknown
                conn.terminate()
                raise
            lost = _async_lost(conn, exc)
            conn.terminate()  # not returned to the idle ones
            if lost:
                # Cut off mid-flight: the statement commits by itself, so whether it
                # did is unknown. What may run twice runs again, in the writer thread.
                cut = LogUnavailable(f"PostgreSQL log: {_describe(exc)}")
                return await self._in(self._writer_pool, lambda: self._after_cut(jobs, cut))
            # a refused statement failed the whole batch: each job runs again on its own
            # (in the writer thread), so that only the bad one fails
            return [await self._in(self._writer_pool, lambda j=j: self._alone(j)) for j in jobs]  # type: ignore[misc]
        self._async_conns.append(conn)
        landed = {(r["kind"], r["gid"]) for r in rows}
        outcomes: list[JobResult] = []
        for job in pjobs:
            if isinstance(job, _Write):
                try:
                    job.check(("w", job.record["gid"]) in landed)
                    outcomes.append((True, None))
                except LegatoError as exc:
                    outcomes.append((False, exc))
            elif ("c", job.tx["gid"]) in landed:
                outcomes.append((True, None))
            else:  # the gid was taken: read what holds it, in the writer thread
                outcomes.append(await self._in(self._writer_pool, lambda j=job: self._alone(j)))  # type: ignore[misc]
        return outcomes

    async def _aconn(self) -> asyncpg.Connection:
        while self._async_conns:
            conn = self._async_conns.pop()
            if not conn.is_closed():
                return conn
            conn.terminate()
        try:
            return await asyncpg.connect(
                self.url,
                timeout=10,
                statement_cache_size=16,
                server_settings={"application_name": "legato-writer"},
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LogUnavailable(f"PostgreSQL log unreachable: {_describe(exc)}") from exc

    async def close(self) -> None:
        await super().close()
        conns, self._async_conns = self._async_conns, []
        for conn in conns:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
            conn.terminate()

    def _array(self, values: Sequence[str]) -> Any:
        return list(values)

    def _lock_for_migration(self, conn: Conn) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))

    def _applied_migrations(self, conn: Conn) -> set[int]:
        found = conn.execute("SELECT to_regclass('legato_migrations') AS t").fetchone()
        if found["t"] is None:
            # CREATE TABLE IF NOT EXISTS races with itself (both sessions see no table, the
            # second fails on pg_type's unique index): create it under the migration lock.
            outside = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            if outside:
                conn.execute("BEGIN")
            self._lock_for_migration(conn)
            conn.execute(_MIGRATIONS_TABLE)
            if outside:
                conn.execute("COMMIT")
        return {r["version"] for r in conn.execute("SELECT version FROM legato_migrations")}


class _Create(Repeatable):
    """A new transaction, its ops and its first events: one statement (``create_all``)
    when called in the writer thread, or one element of a group commit's ``write_all``
    (``PostgresLog._run_batch``).

    It may run again after its commit was cut off: it then knows a row holding the
    lease owner and the creation time it wrote for its own first write, committed
    before the connection went, not another submit's."""

    __slots__ = ("events", "get", "ops", "sql", "tx")

    def __init__(
        self, sql: str, tx: Params, ops: list[Params], events: list[Params], get: str
    ) -> None:
        self.sql, self.tx, self.ops, self.events, self.get = sql, tx, ops, events, get

    @property
    def params(self) -> Params:
        return {**self.tx, "ops": _json.dumps(self.ops), "events": _json.dumps(self.events)}

    def doc(self) -> Params:
        """This create as one element of ``write_all``'s ``creates``."""
        return {**self.tx, "ops": self.ops, "events": self.events}

    def finish(self, conn: Conn, row: Any, again: bool = False) -> TxRecord | None:
        if row["n"] == 1:
            return None
        found = conn.cursor().execute(self.get, {"gid": self.tx["gid"]}).fetchone()
        mine = (found["lease_owner"], found["created_at"]) == (
            self.tx["lease_owner"],
            self.tx["created_at"],
        )
        return None if again and mine else tx_from_row(found)

    def __call__(self, conn: Conn) -> TxRecord | None:
        return self.finish(conn, conn.cursor().execute(self.sql, self.params).fetchone())

    def again(self, conn: Conn) -> TxRecord | None:
        return self.finish(conn, conn.cursor().execute(self.sql, self.params).fetchone(), True)


class _Write:
    """One fenced write: ``write_all`` with this write alone when called in the writer
    thread, or one element of a group commit's ``write_all`` (``PostgresLog._run_batch``)."""

    __slots__ = ("record", "sql")

    def __init__(self, sql: str, record: Params) -> None:
        self.sql, self.record = sql, record

    @property
    def params(self) -> Params:
        return {"creates": "[]", "writes": _json.dumps([self.record])}

    def finish(self, conn: Conn, row: Any) -> None:
        self.check(row is not None)  # the statement returns the gids that landed

    def check(self, landed: bool) -> None:
        if not landed:
            r = self.record
            raise LeaseLost(f"{r['gid']}: the lease of {r['owner']} is lost")

    def __call__(self, conn: Conn) -> None:
        self.finish(conn, conn.cursor().execute(self.sql, self.params).fetchone())


def _alive(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Is this idle connection's server still there? A server that shut down or crashed
    while the connection was idle has sent it a FATAL message and an end of file (a
    restart: both; a kill -9: the end of file). libpq, asked to read what is waiting
    (without blocking: no round trip), finds them and marks the connection bad; with
    nothing waiting it costs one read that finds nothing."""
    try:
        for _ in range(2):  # the message and the end of file may take a read each
            conn.pgconn.consume_input()
    except psycopg.OperationalError:
        return False
    return not conn.closed


def _distinct(jobs: list[Job[Conn]]) -> bool:
    """Does every create and every write of this batch name a gid of its own?"""
    gids = [j.tx["gid"] if isinstance(j, _Create) else cast(_Write, j).record["gid"] for j in jobs]
    return len(set(gids)) == len(gids)


def _async_lost(conn: asyncpg.Connection, exc: Exception) -> bool:
    """Did ``exc`` cut the connection off (rather than the server refusing the statement)?"""
    if conn.is_closed() or isinstance(exc, OSError | TimeoutError):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        # SQLSTATE class 08 is a connection exception; 57P, a server shutting down,
        # crashed, or not accepting connections yet
        return str(exc.sqlstate or "").startswith(("08", "57P"))
    return isinstance(exc, asyncpg.InterfaceError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
