"""One participant service per driver, for the barrier tests.

A ``Participant`` runs barrier ops through one driver, a new connection per op
(so two ops run concurrently on two connections: threads for a sync driver,
tasks for an asyncio one). Each op's business code appends ``(gid, entry)`` to
the participant's ``ledger`` table. ``Db`` reads the database back over a plain
connection of its own, so tests assert on what the database holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    closing,
)
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymysql

from legato import Failure
from legato.participant import (
    Barrier,
    BarrierResult,
    acreate_table,
    apurge,
    aquery_prepared,
    create_table,
    purge,
    query_prepared,
)

LEDGER = {
    "sqlite": "CREATE TABLE ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, gid TEXT, entry TEXT)",
    "postgresql": "CREATE TABLE ledger (id serial PRIMARY KEY, gid text, entry text)",
    "mysql": "CREATE TABLE ledger (id int AUTO_INCREMENT PRIMARY KEY, gid varchar(128), "
    "entry varchar(64)) ENGINE=InnoDB",
}
AGE_TWO_HOURS = {
    "sqlite": "UPDATE legato_barrier SET created_at = datetime(created_at, '-2 hours') "
    "WHERE gid = ?",
    "postgresql": "UPDATE legato_barrier SET created_at = created_at - interval '2 hours' "
    "WHERE gid = %s",
    "mysql": "UPDATE legato_barrier SET created_at = created_at - INTERVAL 2 HOUR WHERE gid = %s",
}


@dataclass
class Db:
    """A fresh database of one dialect, read and written over plain sync connections."""

    dialect: str
    connect: Callable[[], Any]
    url: str  # for SQLAlchemy, without the driver part: "postgresql://..." etc.

    @property
    def ph(self) -> str:
        return "?" if self.dialect == "sqlite" else "%s"

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> None:
        with closing(self.connect()) as conn:
            cur = conn.cursor()
            cur.execute(sql, params)
            cur.close()
            conn.commit()

    def rows(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(self.connect()) as conn:
            cur = conn.cursor()
            cur.execute(sql, params)
            out = [tuple(r) for r in cur.fetchall()]
            cur.close()
            conn.commit()
            return out

    def ledger(self, gid: str) -> list[str]:
        """The entries the business code committed for ``gid``, in order."""
        rows = self.rows(f"SELECT entry FROM ledger WHERE gid = {self.ph} ORDER BY id", (gid,))
        return [r[0] for r in rows]

    def barrier_rows(self, gid: str) -> list[tuple[str, str, str, str]]:
        """(branch_id, op, barrier_id, reason) of each barrier row of ``gid``."""
        sql = (
            "SELECT branch_id, op, barrier_id, reason FROM legato_barrier "
            f"WHERE gid = {self.ph} ORDER BY id"
        )
        return [(r[0], r[1], r[2], r[3]) for r in self.rows(sql, (gid,))]

    def age_two_hours(self, gid: str) -> None:
        self.execute(AGE_TWO_HOURS[self.dialect], (gid,))


def sqlite_db(path: str) -> Db:
    return Db("sqlite", lambda: sqlite3.connect(path), f"sqlite:///{path}")


def postgres_db(url: str) -> Db:
    return Db("postgresql", lambda: psycopg.connect(url), url)


def mariadb_db(host: str, port: int, user: str, database: str) -> Db:
    def connect() -> Any:
        return pymysql.connect(host=host, port=port, user=user, database=database)

    return Db("mysql", connect, f"mysql://{user}@{host}:{port}/{database}")


@dataclass
class Hold:
    """Keeps an op's business code (and so its transaction) open until released."""

    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 30), "the op never got in"


Insert = Callable[[Any, str, str], Any]


class Participant:
    """A service whose handlers run through one driver; ``run`` is one op, one connection."""

    def __init__(self, name: str, db: Db) -> None:
        self.name = name
        self.db = db

    async def setup(self) -> None:
        self.db.execute(LEDGER[self.db.dialect])
        await self.create_table()
        await self.create_table()  # idempotent

    async def create_table(self) -> None:
        raise NotImplementedError

    async def run(
        self, barrier: Barrier, entry: str, *, fail: bool = False, hold: Hold | None = None
    ) -> BarrierResult[str]:
        raise NotImplementedError

    async def query_prepared(self, gid: str) -> str:
        raise NotImplementedError

    async def purge(self, older_than_seconds: float, limit: int) -> int:
        raise NotImplementedError


class SyncParticipant(Participant):
    """A sync driver: each op runs in a worker thread on a connection of its own."""

    def __init__(
        self,
        name: str,
        db: Db,
        connect: Callable[[], AbstractContextManager[Any]],
        insert: Insert,
    ) -> None:
        super().__init__(name, db)
        self.connect = connect
        self.insert = insert

    async def _on_conn(self, fn: Callable[[Any], Any]) -> Any:
        def work() -> Any:
            with self.connect() as conn:
                return fn(conn)

        return await asyncio.to_thread(work)

    async def create_table(self) -> None:
        await self._on_conn(create_table)

    async def run(
        self, barrier: Barrier, entry: str, *, fail: bool = False, hold: Hold | None = None
    ) -> BarrierResult[str]:
        def business(conn: Any) -> str:
            self.insert(conn, barrier.gid, entry)
            if hold is not None:
                hold.entered.set()
                hold.release.wait(30)
            if fail:
                raise Failure(f"{entry} refused")
            return entry

        result: BarrierResult[str] = await self._on_conn(lambda c: barrier.call(c, business))
        return result

    async def query_prepared(self, gid: str) -> str:
        status: str = await self._on_conn(lambda c: query_prepared(c, gid))
        return status

    async def purge(self, older_than_seconds: float, limit: int) -> int:
        n: int = await self._on_conn(lambda c: purge(c, older_than_seconds, limit))
        return n


class AsyncParticipant(Participant):
    """An asyncio driver: each op runs as a task on a connection of its own."""

    def __init__(
        self,
        name: str,
        db: Db,
        connect: Callable[[], AbstractAsyncContextManager[Any]],
        insert: Insert,
    ) -> None:
        super().__init__(name, db)
        self.connect = connect
        self.insert = insert

    async def create_table(self) -> None:
        async with self.connect() as conn:
            await acreate_table(conn)

    async def run(
        self, barrier: Barrier, entry: str, *, fail: bool = False, hold: Hold | None = None
    ) -> BarrierResult[str]:
        async def business(conn: Any) -> str:
            await self.insert(conn, barrier.gid, entry)
            if hold is not None:
                hold.entered.set()
                await asyncio.to_thread(hold.release.wait, 30)
            if fail:
                raise Failure(f"{entry} refused")
            return entry

        async with self.connect() as conn:
            return await barrier.acall(conn, business)

    async def query_prepared(self, gid: str) -> str:
        async with self.connect() as conn:
            return await aquery_prepared(conn, gid)

    async def purge(self, older_than_seconds: float, limit: int) -> int:
        async with self.connect() as conn:
            return await apurge(conn, older_than_seconds, limit)


def closing_sync(connect: Callable[[], Any]) -> Callable[[], AbstractContextManager[Any]]:
    def open_() -> AbstractContextManager[Any]:
        return closing(connect())

    return open_


def closing_async(
    connect: Callable[[], Any], close: Callable[[Any], Any]
) -> Callable[[], AbstractAsyncContextManager[Any]]:
    @asynccontextmanager
    async def open_() -> AsyncIterator[Any]:
        conn = await connect()
        try:
            yield conn
        finally:
            await close(conn)

    return open_
