"""Fresh databases for the barrier tests, and one participant per driver.

PostgreSQL and MariaDB tests skip where the server is not reachable, except under
``CI=true``, where they fail. Each test gets a database of its own
(``barrier_<uuid>``), dropped after. The XA tests' databases (``xa_pg``,
``xa_mariadb``) also check that the test left no branch prepared; ``xa_pg``'s is
on the session's throwaway PostgreSQL server that takes prepared transactions
(``prepared_pg``), never on the shared one.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from barrier_harness import (
    AsyncParticipant,
    Db,
    Participant,
    SyncParticipant,
    closing_async,
    closing_sync,
    mariadb_db,
    postgres_db,
    sqlite_db,
)
from tests.support.servers import PgServer

PG_ADMIN = os.environ.get("LEGATO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MARIADB_HOST = os.environ.get("LEGATO_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("LEGATO_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("LEGATO_TEST_MARIADB_USER", "root")
IN_CI = os.environ.get("CI", "").lower() == "true"


def need_service(name: str, problem: str | None) -> None:
    """Skip (fail under CI=true) when a server the test needs is not reachable."""
    if problem is None:
        return
    message = f"{name} is not reachable: {problem}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: services must be up)")
    pytest.skip(message)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@cache
def _pg_problem() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return _first_line(exc)


def _maria_admin() -> Any:
    return pymysql.connect(
        host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, connect_timeout=3
    )


@cache
def _maria_problem() -> str | None:
    try:
        _maria_admin().close()
        return None
    except pymysql.Error as exc:
        return _first_line(exc)


def _pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def _maria_admin_execute(sql: str) -> None:
    conn = _maria_admin()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> Db:
    return sqlite_db(str(tmp_path / "participant.db"))


@pytest.fixture
def fresh_pg() -> Iterator[Db]:
    need_service("PostgreSQL", _pg_problem())
    name = f"barrier_{uuid.uuid4().hex[:12]}"
    _pg_admin(f"CREATE DATABASE {name}")
    try:
        yield postgres_db(f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}")
    finally:
        _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def _maria_database(prefix: str) -> Iterator[Db]:
    need_service("MariaDB", _maria_problem())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    _maria_admin_execute(f"CREATE DATABASE {name}")
    try:
        yield mariadb_db(MARIADB_HOST, MARIADB_PORT, MARIADB_USER, name)
    finally:
        _maria_admin_execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def fresh_mariadb() -> Iterator[Db]:
    with _maria_database("barrier") as db:
        yield db


# --- one participant per driver ---------------------------------------------------------

Builder = Callable[[Db], AbstractAsyncContextManager[Participant]]


def _sa_url(db: Db, driver: str) -> str:
    scheme, rest = db.url.split("://", 1)
    return f"{scheme}+{driver}://{rest}"


def _sa_insert(conn: Any, gid: str, entry: str) -> Any:
    from sqlalchemy import text

    sql = text("INSERT INTO ledger (gid, entry) VALUES (:gid, :entry)")
    return conn.execute(sql, {"gid": gid, "entry": entry})


@asynccontextmanager
async def _sqlite3(db: Db) -> AsyncIterator[Participant]:
    import sqlite3

    path = db.url.removeprefix("sqlite:///")

    def insert(conn: Any, gid: str, entry: str) -> None:
        conn.execute("INSERT INTO ledger (gid, entry) VALUES (?, ?)", (gid, entry))

    yield SyncParticipant("sqlite3", db, closing_sync(lambda: sqlite3.connect(path)), insert)


@asynccontextmanager
async def _psycopg(db: Db) -> AsyncIterator[Participant]:
    def insert(conn: Any, gid: str, entry: str) -> None:
        conn.execute("INSERT INTO ledger (gid, entry) VALUES (%s, %s)", (gid, entry)).close()

    yield SyncParticipant("psycopg", db, closing_sync(lambda: psycopg.connect(db.url)), insert)


@asynccontextmanager
async def _pymysql(db: Db) -> AsyncIterator[Participant]:
    def insert(conn: Any, gid: str, entry: str) -> None:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO ledger (gid, entry) VALUES (%s, %s)", (gid, entry))

    yield SyncParticipant("pymysql", db, closing_sync(db.connect), insert)


@asynccontextmanager
async def _psycopg_async(db: Db) -> AsyncIterator[Participant]:
    async def insert(conn: Any, gid: str, entry: str) -> None:
        sql = "INSERT INTO ledger (gid, entry) VALUES (%s, %s)"
        await (await conn.execute(sql, (gid, entry))).close()

    connect = closing_async(lambda: psycopg.AsyncConnection.connect(db.url), lambda c: c.close())
    yield AsyncParticipant("psycopg-async", db, connect, insert)


@asynccontextmanager
async def _asyncpg(db: Db) -> AsyncIterator[Participant]:
    import asyncpg

    async def insert(conn: Any, gid: str, entry: str) -> None:
        await conn.execute("INSERT INTO ledger (gid, entry) VALUES ($1, $2)", gid, entry)

    connect = closing_async(lambda: asyncpg.connect(db.url), lambda c: c.close())
    yield AsyncParticipant("asyncpg", db, connect, insert)


@asynccontextmanager
async def _aiomysql(db: Db) -> AsyncIterator[Participant]:
    import aiomysql

    async def insert(conn: Any, gid: str, entry: str) -> None:
        async with conn.cursor() as cur:
            await cur.execute("INSERT INTO ledger (gid, entry) VALUES (%s, %s)", (gid, entry))

    def connect() -> Any:
        host, port = MARIADB_HOST, MARIADB_PORT
        database = db.url.rsplit("/", 1)[1]
        return aiomysql.connect(host=host, port=port, user=MARIADB_USER, db=database)

    yield AsyncParticipant(
        "aiomysql", db, closing_async(connect, lambda c: c.ensure_closed()), insert
    )


@asynccontextmanager
async def _sqlalchemy_session(db: Db) -> AsyncIterator[Participant]:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(_sa_url(db, "pymysql"))
    try:
        yield SyncParticipant("sqlalchemy-session", db, lambda: Session(engine), _sa_insert)
    finally:
        engine.dispose()


@asynccontextmanager
async def _sqlalchemy_connection(db: Db) -> AsyncIterator[Participant]:
    from sqlalchemy import create_engine

    engine = create_engine(db.url)
    try:
        yield SyncParticipant("sqlalchemy-connection", db, engine.connect, _sa_insert)
    finally:
        engine.dispose()


@asynccontextmanager
async def _sqlalchemy_async_session(db: Db) -> AsyncIterator[Participant]:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(_sa_url(db, "asyncpg"))
    try:
        connect = lambda: AsyncSession(engine)  # noqa: E731
        yield AsyncParticipant("sqlalchemy-async-session", db, connect, _sa_insert)
    finally:
        await engine.dispose()


@asynccontextmanager
async def _sqlalchemy_async_connection(db: Db) -> AsyncIterator[Participant]:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(_sa_url(db, "psycopg"))
    try:
        yield AsyncParticipant("sqlalchemy-async-connection", db, engine.connect, _sa_insert)
    finally:
        await engine.dispose()


# driver -> (the database fixture it runs on, how to build it)
DRIVERS: dict[str, tuple[str, Builder]] = {
    "sqlite3": ("fresh_sqlite", _sqlite3),
    "psycopg": ("fresh_pg", _psycopg),
    "psycopg-async": ("fresh_pg", _psycopg_async),
    "asyncpg": ("fresh_pg", _asyncpg),
    "pymysql": ("fresh_mariadb", _pymysql),
    "aiomysql": ("fresh_mariadb", _aiomysql),
    "sqlalchemy-session-mariadb": ("fresh_mariadb", _sqlalchemy_session),
    "sqlalchemy-connection-sqlite": ("fresh_sqlite", _sqlalchemy_connection),
    "sqlalchemy-asyncsession-postgres": ("fresh_pg", _sqlalchemy_async_session),
    "sqlalchemy-asyncconnection-postgres": ("fresh_pg", _sqlalchemy_async_connection),
}


@pytest.fixture(params=list(DRIVERS))
async def participant(request: pytest.FixtureRequest) -> AsyncIterator[Participant]:
    """A participant service on a fresh database, through each driver in turn."""
    database_fixture, build = DRIVERS[request.param]
    db: Db = request.getfixturevalue(database_fixture)
    async with build(db) as p:
        await p.setup()
        yield p


# --- XA: databases that take two-phase commit, and nothing left prepared after a test ---


@dataclass
class XaDb:
    """A fresh database for the XA tests, with ``ledger`` and ``legato_barrier``, and gids."""

    db: Db
    token: str  # every gid of the test starts with it

    def new_gid(self) -> str:
        return f"{self.token}-{uuid.uuid4().hex[:8]}"


def _ready(db: Db) -> XaDb:
    from barrier_harness import LEDGER

    from legato.participant import create_table

    db.execute(LEDGER[db.dialect])
    with closing(db.connect()) as conn:
        create_table(conn)
    return XaDb(db, f"t{uuid.uuid4().hex[:10]}")


def _pg_left_prepared(db: Db) -> list[str]:
    """Roll back every Legato xid prepared in ``db``; the ones there were."""
    from legato.participant import xa

    with psycopg.connect(db.url, autocommit=True) as conn:
        left = [xid.pg for xid in xa.recover(conn, namespace=xa.EVERY_NAMESPACE)]
        for gid in left:
            conn.execute(f"ROLLBACK PREPARED '{gid}'")  # type: ignore[arg-type]
    return left


def _maria_left_prepared(xdb: XaDb) -> list[str]:
    """Roll back every Legato xid of this test prepared on the server; the ones there were.

    XA RECOVER is server-wide, so only this test's gids are touched. A branch still
    attached to a closing session cannot be rolled back from here until the server has
    let go of it: retry for a while.
    """
    from legato.participant import xa

    conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, autocommit=True)
    left: list[str] = []
    try:
        for _ in range(200):
            listed = xa.recover(conn, namespace=xa.EVERY_NAMESPACE)
            mine = [x for x in listed if x.gid.startswith(xdb.token)]
            left += [x.pg for x in mine if x.pg not in left]
            if not mine:
                break
            for xid in mine:
                with conn.cursor() as cur, contextlib.suppress(pymysql.err.OperationalError):
                    cur.execute(f"XA ROLLBACK '{xid.gtrid}','{xid.bqual}'")
            time.sleep(0.05)
    finally:
        conn.close()
    return left


@contextlib.contextmanager
def _xa_pg_database(server: PgServer) -> Iterator[XaDb]:
    name = f"xa_{uuid.uuid4().hex[:12]}"
    db = postgres_db(server.create_database(name))
    try:
        xdb = _ready(db)
        yield xdb
        left = _pg_left_prepared(db)
        assert not left, f"the test left Legato branches prepared: {left}"
    finally:
        server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _xa_maria_database() -> Iterator[XaDb]:
    with _maria_database("xa") as db:
        xdb = _ready(db)
        yield xdb
        left = _maria_left_prepared(xdb)
        assert not left, f"the test left Legato branches prepared: {left}"


@pytest.fixture
def xa_pg(prepared_pg: PgServer) -> Iterator[XaDb]:
    """A fresh PostgreSQL database that takes prepared transactions, on the session's
    throwaway server; none left prepared after the test."""
    with _xa_pg_database(prepared_pg) as xdb:
        yield xdb


@pytest.fixture
def xa_mariadb() -> Iterator[XaDb]:
    """A fresh MariaDB database (InnoDB); none of the test's branches left prepared after it."""
    with _xa_maria_database() as xdb:
        yield xdb


@pytest.fixture(params=["postgresql", "mysql"])
def xa_neighbours(request: pytest.FixtureRequest) -> Iterator[tuple[XaDb, XaDb]]:
    """Two fresh databases on one server, as two services (of two deployments, say) with a
    database each on a shared server; none of their branches left prepared after the test."""
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            server: PgServer = request.getfixturevalue("prepared_pg")
            pair = [stack.enter_context(_xa_pg_database(server)) for _ in range(2)]
        else:
            pair = [stack.enter_context(_xa_maria_database()) for _ in range(2)]
        yield pair[0], pair[1]
