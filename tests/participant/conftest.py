"""Fresh databases for the barrier tests, one participant per driver, and the XA tests'
databases.

PostgreSQL and MariaDB fixtures skip where the server is not reachable, except under
``CI=true``, where they fail. Each test gets a database of its own
(``barrier_<uuid>``), dropped after. The XA tests' databases (``xa_pg``,
``xa_mariadb``) also check that the test left no branch prepared; ``xa_pg``'s is
on the session's throwaway PostgreSQL server that takes prepared transactions
(``prepared_pg``), never on the shared one.

``participant`` here is a barrier participant through each driver
(``tests.support.barrier``); it stands in for the root conftest's scripted HTTP one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.barrier import (
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
from tests.support.services import (
    MARIADB_HOST,
    MARIADB_PORT,
    MARIADB_USER,
    new_maria_database,
    new_pg_database,
)
from tests.support.xa import XaDb, xa_maria_database, xa_pg_database


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> Db:
    return sqlite_db(str(tmp_path / "participant.db"))


@pytest.fixture
def fresh_pg() -> Iterator[Db]:
    with new_pg_database("barrier") as url:
        yield postgres_db(url)


@pytest.fixture
def fresh_mariadb() -> Iterator[Db]:
    with new_maria_database("barrier") as name:
        yield mariadb_db(MARIADB_HOST, MARIADB_PORT, MARIADB_USER, name)


# --- one participant per driver ---------------------------------------------------------

_Builder = Callable[[Db], AbstractAsyncContextManager[Participant]]


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
_DRIVERS: dict[str, tuple[str, _Builder]] = {
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


@pytest.fixture(params=list(_DRIVERS))
async def participant(request: pytest.FixtureRequest) -> AsyncIterator[Participant]:
    """A participant service on a fresh database, through each driver in turn."""
    database_fixture, build = _DRIVERS[request.param]
    db: Db = request.getfixturevalue(database_fixture)
    async with build(db) as p:
        await p.setup()
        yield p


# --- XA: databases that take two-phase commit, and nothing left prepared after a test ---


@pytest.fixture
def xa_pg(prepared_pg: PgServer) -> Iterator[XaDb]:
    """A fresh PostgreSQL database that takes prepared transactions, on the session's
    throwaway server; none left prepared after the test."""
    with xa_pg_database(prepared_pg) as xdb:
        yield xdb


@pytest.fixture
def xa_mariadb() -> Iterator[XaDb]:
    """A fresh MariaDB database (InnoDB); none of the test's branches left prepared after it."""
    with xa_maria_database() as xdb:
        yield xdb


@pytest.fixture(params=["postgresql", "mysql"])
def xa_neighbours(request: pytest.FixtureRequest) -> Iterator[tuple[XaDb, XaDb]]:
    """Two fresh databases on one server, as two services (of two deployments, say) with a
    database each on a shared server; none of their branches left prepared after the test."""
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            server: PgServer = request.getfixturevalue("prepared_pg")
            pair = [stack.enter_context(xa_pg_database(server)) for _ in range(2)]
        else:
            pair = [stack.enter_context(xa_maria_database()) for _ in range(2)]
        yield pair[0], pair[1]
