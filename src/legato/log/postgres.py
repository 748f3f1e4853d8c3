"""The production log: PostgreSQL, shared by any number of coordinators.

Coordinators claim due work with ``FOR UPDATE SKIP LOCKED`` (see
``sql/postgres/queries.sql``) and fence every write with their lease. The log
outlives its server restarting: every connection it keeps (the reader's, the
writer's, the event loop's) is checked before each use and replaced once its
server has gone (see ``_alive``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from typing import Any, cast

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
        self._async_conns: list[psycopg.AsyncConnection[Any]] = []  # idle ones
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

    # PostgreSQL runs each write as one statement, and a group commit sends all of its
    # statements in one pipeline (psycopg's pipeline mode, see _async_batch): round
    # trips, not SQL, are what a write costs here. SQLite's statements are local calls
    # and stay as they are.

    def _create_job(
        self, gid: str, tx_params: Params, op_params: list[Params], event_params: list[Params]
    ) -> Job[Conn]:
        params = {**tx_params, "ops": _json.dumps(op_params), "events": _json.dumps(event_params)}
        return _Create(self.q["create_all"], params, self.q["get_tx"])

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
        return _Write(self.q["write_batch"], record)

    # -- the event loop's own connection ------------------------------------------------
    # Writes (the hot path: creates and fenced writes, all one statement each) go over
    # an asyncio connection on the event loop, so that the loop never waits for a
    # writer thread to win the GIL back between its network waits (measured: that
    # wait tripled a batch's time under load). Claims, renewals and other jobs, which
    # are rare, take the writer thread and SqlLog's one-job-at-a-time batch, in a batch
    # that runs alone (GroupCommit's gate), so its connection and the loop's never hold
    # row locks at the same time.

    def _shared_batch(self, jobs: list[Job[Conn]]) -> bool:
        return all(isinstance(j, _Create | _Write) for j in jobs)

    async def _run_batch(self, jobs: list[Job[Conn]]) -> list[JobResult]:
        if not self._shared_batch(jobs):
            return await super()._run_batch(jobs)
        try:
            conn = await self._aconn()
        except LogUnavailable:
            return await super()._run_batch(jobs)
        try:
            outcomes = await self._async_batch(conn, jobs)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        if not conn.closed and not conn.broken:
            self._async_conns.append(conn)
        for i, outcome in enumerate(outcomes):
            if not outcome[0] and isinstance(outcome[1], _Redo):
                job = jobs[i]
                outcomes[i] = await self._in(self._writer_pool, lambda j=job: self._alone(j))  # type: ignore[misc]
        return outcomes

    async def _aconn(self) -> psycopg.AsyncConnection[Any]:
        while self._async_conns:
            conn = self._async_conns.pop()
            if _alive(conn):
                return conn
            with contextlib.suppress(Exception):
                await conn.close()
        try:
            return await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                row_factory=dict_row,
                connect_timeout=10,
                application_name="legato-writer",
            )
        except psycopg.OperationalError as exc:
            raise LogUnavailable(f"PostgreSQL log unreachable: {exc}") from exc

    async def close(self) -> None:
        await super().close()
        conns, self._async_conns = self._async_conns, []
        for conn in conns:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _async_batch(
        self, conn: psycopg.AsyncConnection[Any], jobs: list[Job[Conn]]
    ) -> list[JobResult]:
        pjobs = cast(list[_Create | _Write], jobs)
        writes = [j for j in pjobs if isinstance(j, _Write)]
        gids = [w.record["gid"] for w in writes]
        together = len(writes) > 1 and len(set(gids)) == len(gids)
        rest = [j for j in pjobs if not (together and isinstance(j, _Write))]
        try:
            if len(pjobs) == 1:  # one statement is atomic alone: no BEGIN, no COMMIT
                cur = conn.cursor()
                await cur.execute(pjobs[0].sql, pjobs[0].params)
                rows: dict[int, Any] = {id(pjobs[0]): await cur.fetchone()}
                landed: set[str] = set()
            else:
                async with conn.pipeline():
                    await conn.execute("BEGIN")
                    batch_cur = conn.cursor() if together else None
                    if batch_cur is not None:
                        records = _json.dumps([w.record for w in writes])
                        await batch_cur.execute(self.q["write_batch"], {"writes": records})
                    cursors = {}
                    for j in rest:
                        cursors[id(j)] = cur = conn.cursor()
                        await cur.execute(j.sql, j.params)
                    await conn.execute("COMMIT")
                landed = {r["gid"] for r in await batch_cur.fetchall()} if batch_cur else set()
                rows = {key: await c.fetchone() for key, c in cursors.items()}
        except Exception as exc:
            lost = self._lost(conn, exc)
            with contextlib.suppress(Exception):
                await conn.close()  # not returned to the idle ones: it is closed
            if lost:
                # Cut off mid-flight: a lone statement commits by itself, and a batch's
                # COMMIT went out in the same pipeline, so whether any of it committed
                # is unknown. What may run twice runs again, in the writer thread.
                cut = self._unavailable(exc)
                return await self._in(self._writer_pool, lambda: self._after_cut(jobs, cut))
            error = self._translate(exc)
            if isinstance(error, LogUnavailable):
                raise error from exc
            # a refused statement failed the whole batch: each job runs again on its own
            # (in the writer thread), so that only the bad one fails
            return [await self._in(self._writer_pool, lambda j=j: self._alone(j)) for j in jobs]  # type: ignore[misc]
        outcomes: list[JobResult] = []
        for job in pjobs:
            try:
                if together and isinstance(job, _Write):
                    job.check(job.record["gid"] in landed)
                    outcomes.append((True, None))
                else:
                    outcomes.append((True, job.finish(None, rows[id(job)])))
            except (LegatoError, _Redo) as exc:
                outcomes.append((False, exc))
        return outcomes

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


class _Redo(Exception):
    """The job needs a second query: run it again in the writer thread."""


class _Create(Repeatable):
    """A new transaction, its ops and its first events as one statement (``create_all``);
    runs alone when called, or inside a pipelined batch (``PostgresLog._async_batch``).

    It may run again after its commit was cut off: it then knows a row holding the
    lease owner and the creation time it wrote for its own first write, committed
    before the connection went, not another submit's."""

    __slots__ = ("get", "params", "sql")

    def __init__(self, sql: str, params: Params, get: str) -> None:
        self.sql, self.params, self.get = sql, params, get

    def finish(self, conn: Conn | None, row: Any, again: bool = False) -> TxRecord | None:
        if row["n"] == 1:
            return None
        if conn is None:  # on the event loop's connection: fetch it the plain way
            raise _Redo
        found = conn.cursor().execute(self.get, {"gid": self.params["gid"]}).fetchone()
        mine = (found["lease_owner"], found["created_at"]) == (
            self.params["lease_owner"],
            self.params["created_at"],
        )
        return None if again and mine else tx_from_row(found)

    def __call__(self, conn: Conn) -> TxRecord | None:
        return self.finish(conn, conn.cursor().execute(self.sql, self.params).fetchone())

    def again(self, conn: Conn) -> TxRecord | None:
        return self.finish(conn, conn.cursor().execute(self.sql, self.params).fetchone(), True)


class _Write:
    """One fenced write, sent as ``write_batch`` of one, or with the other writes of
    its group commit in one ``write_batch``."""

    __slots__ = ("record", "sql")

    def __init__(self, sql: str, record: Params) -> None:
        self.sql, self.record = sql, record

    @property
    def params(self) -> Params:
        return {"writes": _json.dumps([self.record])}

    def finish(self, conn: Conn | None, row: Any) -> None:
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
