"""The production log: PostgreSQL, shared by any number of coordinators.

Coordinators claim due work with ``FOR UPDATE SKIP LOCKED`` (see
``sql/postgres/queries.sql``) and fence every write with their lease.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .. import _json
from .._errors import LeaseLost, LogError, LogUnavailable
from .._model import TxRecord
from ._group import Job
from ._sql import Conn, Params, SqlLog, _tx_from_row
from .base import TxWrite

_PARAM = re.compile(r"(?<![:\w]):(\w+)")
_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS legato_migrations "
    "(version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)"
)
_MIGRATION_LOCK = 0x1E6A70  # pg_advisory_xact_lock key: one migrating process at a time


class PostgresLog(SqlLog):
    backend = "postgres"

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        super().__init__(url, auto_migrate=auto_migrate)
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
        return not conn.closed and not conn.broken

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

    # PostgreSQL runs each write as one statement: its round trips, not its SQL, are
    # what a write costs here (SQLite's statements are local calls and stay separate).

    def _create_job(
        self, gid: str, tx_params: Params, op_params: list[Params], event_params: list[Params]
    ) -> Job[Conn]:
        params = {**tx_params, "ops": _json.dumps(op_params), "events": _json.dumps(event_params)}
        sql, get = self.q["create_all"], self.q["get_tx"]

        def job(conn: Conn) -> TxRecord | None:
            cur = conn.cursor()
            if cur.execute(sql, params).fetchone()["n"] == 1:
                return None
            return _tx_from_row(cur.execute(get, {"gid": gid}).fetchone())

        return job

    def _write_job(
        self,
        change: TxWrite,
        tx_params: Params,
        op_params: list[Params],
        event_params: list[Params],
    ) -> Job[Conn]:
        params = {**tx_params, "ops": _json.dumps(op_params), "events": _json.dumps(event_params)}
        sql = self.q["write_all"]

        def job(conn: Conn) -> None:
            if conn.cursor().execute(sql, params).fetchone()["n"] == 0:
                raise LeaseLost(f"{change.gid}: the lease of {change.owner} is lost")

        return job

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
