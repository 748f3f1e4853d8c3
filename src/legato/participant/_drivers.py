"""Driver adapters: one small class per database driver, behind one sync and one asyncio port.

A connection is recognised by its class, looked up in ``sys.modules``: a driver
that was never imported cannot have made the connection, so nothing here imports
a driver at module level, and a driver that is not installed costs nothing.

Every adapter opens its own transaction and refuses a connection that is already
inside one (where the driver can tell): joining a caller's transaction would
commit or roll back work the barrier does not own.
"""

from __future__ import annotations

import importlib
import sys
from functools import cache
from typing import Any, Protocol

from .._errors import NoTransaction, TransactionInProgress
from ._sql import Args, Dialect, ParamStyle

SUPPORTED = (
    "sqlite3.Connection, psycopg.Connection, pymysql.connections.Connection, "
    "sqlalchemy.orm.Session, sqlalchemy.engine.Connection (sync); psycopg.AsyncConnection, "
    "asyncpg.Connection, aiomysql.Connection, sqlalchemy.ext.asyncio.AsyncSession, "
    "sqlalchemy.ext.asyncio.AsyncConnection (asyncio)"
)


def is_type(conn: object, module: str, name: str) -> bool:
    owner = sys.modules.get(module)
    cls = getattr(owner, name, None) if owner is not None else None
    return isinstance(cls, type) and isinstance(conn, cls)


def type_name(conn: object) -> str:
    return f"{type(conn).__module__}.{type(conn).__qualname__}"


def _sqlalchemy_dialect(name: str) -> Dialect:
    if name == "postgresql":
        return "postgresql"
    if name in ("mysql", "mariadb"):
        return "mysql"
    if name == "sqlite":
        return "sqlite"
    raise TypeError(f"the barrier does not speak the SQLAlchemy dialect {name!r}")


def _refuse_open(conn: object, in_transaction: bool) -> None:
    if in_transaction:
        raise TransactionInProgress(
            f"this {type_name(conn)} is already inside a transaction: commit or roll it back "
            "first; the barrier opens and commits its own transaction"
        )


class SyncDriver(Protocol):
    """A sync connection, seen through its driver."""

    dialect: Dialect
    style: ParamStyle

    def begin(self) -> None: ...
    def execute(self, sql: str, args: Args) -> int: ...
    def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class AsyncDriver(Protocol):
    """An asyncio connection, seen through its driver."""

    dialect: Dialect
    style: ParamStyle

    async def begin(self) -> None: ...
    async def execute(self, sql: str, args: Args) -> int: ...
    async def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None: ...
    async def commit(self) -> None: ...
    async def rollback(self) -> None: ...


# --- sync drivers -------------------------------------------------------------------------


class _Sqlite3:
    dialect: Dialect = "sqlite"
    style: ParamStyle = "named"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def begin(self) -> None:
        # Spelled out in SQL, whatever the connection's isolation_level or autocommit:
        # IMMEDIATE takes the write lock now, so racing requests queue instead of failing.
        self.conn.execute("BEGIN IMMEDIATE")

    def execute(self, sql: str, args: Args) -> int:
        return int(self.conn.execute(sql, args).rowcount)

    def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None:
        row = self.conn.execute(sql, args).fetchone()
        return None if row is None else tuple(row)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class DbApi:
    """psycopg and PyMySQL: a cursor per statement, commit() and rollback() on the connection."""

    dialect: Dialect
    style: ParamStyle = "pyformat"

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect

    def begin(self) -> None:
        if self.dialect == "mysql":
            self.conn.begin()
        elif self.conn.autocommit:
            self.conn.execute("BEGIN")
        # else psycopg begins implicitly on the first statement

    def execute(self, sql: str, args: Args) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return int(cur.rowcount)

    def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            row = cur.fetchone()
            return None if row is None else tuple(row)

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


class _SqlAlchemyBase:
    style: ParamStyle = "named"

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        from sqlalchemy import text

        self.conn = conn
        self.dialect = dialect
        self.text = text


class _SqlAlchemy(_SqlAlchemyBase):
    """A sync SQLAlchemy Session or Connection."""

    def begin(self) -> None:
        self.conn.begin()

    def execute(self, sql: str, args: Args) -> int:
        return int(self.conn.execute(self.text(sql), args).rowcount)

    def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None:
        row = self.conn.execute(self.text(sql), args).first()
        return None if row is None else tuple(row)

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()


# --- asyncio drivers ----------------------------------------------------------------------


@cache
def _quiet_aiomysql_cursor() -> Any:
    """An aiomysql cursor that does not turn the server's warnings into Python warnings.

    INSERT IGNORE reports each ignored duplicate as a server warning, and CREATE TABLE
    IF NOT EXISTS an existing table: here both are the barrier working, not a problem.
    (SQLAlchemy's aiomysql dialect silences them the same way.)
    """
    aiomysql = importlib.import_module("aiomysql")

    async def _show_warnings(self: Any, conn: Any) -> None:
        return None

    return type("_BarrierCursor", (aiomysql.Cursor,), {"_show_warnings": _show_warnings})


class AsyncDbApi:
    """psycopg's AsyncConnection and aiomysql."""

    dialect: Dialect
    style: ParamStyle = "pyformat"

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.conn = conn
        self.dialect = dialect
        self.cursor_classes = (_quiet_aiomysql_cursor(),) if dialect == "mysql" else ()

    async def begin(self) -> None:
        if self.dialect == "mysql":
            await self.conn.begin()
        elif self.conn.autocommit:
            await self.conn.execute("BEGIN")

    async def execute(self, sql: str, args: Args) -> int:
        async with self.conn.cursor(*self.cursor_classes) as cur:
            await cur.execute(sql, args)
            return int(cur.rowcount)

    async def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None:
        async with self.conn.cursor(*self.cursor_classes) as cur:
            await cur.execute(sql, args)
            row = await cur.fetchone()
            return None if row is None else tuple(row)

    async def commit(self) -> None:
        await self.conn.commit()

    async def rollback(self) -> None:
        await self.conn.rollback()


class AsyncpgDriver:
    dialect: Dialect = "postgresql"
    style: ParamStyle = "numeric"

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.tx: Any = None

    async def begin(self) -> None:
        self.tx = self.conn.transaction()
        await self.tx.start()

    async def execute(self, sql: str, args: Args) -> int:
        status: str = await self.conn.execute(sql, *args)
        # a command tag: "INSERT 0 1", "DELETE 3", "CREATE TABLE"
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None:
        row = await self.conn.fetchrow(sql, *args)
        return None if row is None else tuple(row)

    async def commit(self) -> None:
        await self.tx.commit()

    async def rollback(self) -> None:
        if self.tx is not None:
            await self.tx.rollback()


class _AsyncSqlAlchemy(_SqlAlchemyBase):
    """An asyncio SQLAlchemy AsyncSession or AsyncConnection."""

    async def begin(self) -> None:
        await self.conn.begin()

    async def execute(self, sql: str, args: Args) -> int:
        return int((await self.conn.execute(self.text(sql), args)).rowcount)

    async def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None:
        row = (await self.conn.execute(self.text(sql), args)).first()
        return None if row is None else tuple(row)

    async def commit(self) -> None:
        await self.conn.commit()

    async def rollback(self) -> None:
        await self.conn.rollback()


# --- recognising a connection -------------------------------------------------------------


_SYNC = (
    ("sqlite3", "Connection"),
    ("psycopg", "Connection"),
    ("pymysql.connections", "Connection"),
    ("sqlalchemy.orm", "Session"),
    ("sqlalchemy.engine", "Connection"),
)
_ASYNC = (
    ("psycopg", "AsyncConnection"),
    ("asyncpg", "Connection"),
    ("asyncpg.pool", "PoolConnectionProxy"),
    ("aiomysql", "Connection"),
    ("sqlalchemy.ext.asyncio", "AsyncSession"),
    ("sqlalchemy.ext.asyncio", "AsyncConnection"),
)


def is_async(conn: object) -> bool:
    """Whether ``conn`` is one of the asyncio connections the barrier knows."""
    return any(is_type(conn, module, name) for module, name in _ASYNC)


def _unsupported(conn: object) -> TypeError:
    if is_async(conn):
        return TypeError(f"{type_name(conn)} is an asyncio connection: use the async variant")
    if any(is_type(conn, module, name) for module, name in _SYNC):
        return TypeError(f"{type_name(conn)} is a sync connection: use the sync variant")
    return TypeError(f"the barrier cannot use a {type_name(conn)}; it takes {SUPPORTED}")


def psycopg_in_transaction(conn: Any) -> bool:
    from psycopg.pq import TransactionStatus

    # UNKNOWN (a broken connection) is left for the first statement to report
    return conn.info.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR)


def sync_driver(conn: object) -> SyncDriver:
    c: Any = conn
    if is_type(conn, "sqlite3", "Connection"):
        _refuse_open(conn, c.in_transaction)
        return _Sqlite3(conn)
    if is_type(conn, "psycopg", "Connection"):
        _refuse_open(conn, psycopg_in_transaction(conn))
        return DbApi(conn, "postgresql")
    if is_type(conn, "pymysql.connections", "Connection"):
        # PyMySQL sees SERVER_STATUS_IN_TRANS after a write, not after a read; BEGIN ends a
        # read-only transaction harmlessly
        _refuse_open(conn, bool(c.server_status & 1))
        return DbApi(conn, "mysql")
    if is_type(conn, "sqlalchemy.orm", "Session"):
        _refuse_open(conn, c.in_transaction())
        return _SqlAlchemy(conn, _sqlalchemy_dialect(c.get_bind().dialect.name))
    if is_type(conn, "sqlalchemy.engine", "Connection"):
        _refuse_open(conn, c.in_transaction())
        return _SqlAlchemy(conn, _sqlalchemy_dialect(c.dialect.name))
    raise _unsupported(conn)


def sync_driver_inside(conn: object, *, check: bool = True) -> SyncDriver:
    """The driver for statements run inside the caller's transaction (the outbox row):
    a connection in autocommit, outside a transaction, is refused (with ``check``)."""
    c: Any = conn
    if is_type(conn, "sqlite3", "Connection"):
        alone = c.isolation_level is None and not c.in_transaction
        driver: SyncDriver = _Sqlite3(conn)
    elif is_type(conn, "psycopg", "Connection"):
        alone = bool(c.autocommit) and not psycopg_in_transaction(conn)
        driver = DbApi(conn, "postgresql")
    elif is_type(conn, "pymysql.connections", "Connection"):
        alone = bool(c.get_autocommit()) and not c.server_status & 1
        driver = DbApi(conn, "mysql")
    elif is_type(conn, "sqlalchemy.orm", "Session"):
        alone = False  # a session begins its transaction itself
        driver = _SqlAlchemy(conn, _sqlalchemy_dialect(c.get_bind().dialect.name))
    elif is_type(conn, "sqlalchemy.engine", "Connection"):
        alone = False
        driver = _SqlAlchemy(conn, _sqlalchemy_dialect(c.dialect.name))
    else:
        raise _unsupported(conn)
    if check and alone:
        raise NoTransaction(
            f"this {type_name(conn)} is in autocommit mode outside a transaction: the "
            "outbox row would commit on its own; begin the business transaction first"
        )
    return driver


def async_driver_inside(conn: object) -> AsyncDriver:
    """As :func:`sync_driver_inside`, for asyncio connections: refuses one that would
    commit the outbox row on its own."""
    c: Any = conn
    if is_type(conn, "psycopg", "AsyncConnection"):
        alone = bool(c.autocommit) and not psycopg_in_transaction(conn)
        driver: AsyncDriver = AsyncDbApi(conn, "postgresql")
    elif is_type(conn, "asyncpg", "Connection") or is_type(
        conn, "asyncpg.pool", "PoolConnectionProxy"
    ):
        alone = not c.is_in_transaction()  # asyncpg commits each statement outside one
        driver = AsyncpgDriver(conn)
    elif is_type(conn, "aiomysql", "Connection"):
        alone = bool(c.get_autocommit()) and not c.get_transaction_status()
        driver = AsyncDbApi(conn, "mysql")
    elif is_type(conn, "sqlalchemy.ext.asyncio", "AsyncSession"):
        alone = False
        driver = _AsyncSqlAlchemy(conn, _sqlalchemy_dialect(c.get_bind().dialect.name))
    elif is_type(conn, "sqlalchemy.ext.asyncio", "AsyncConnection"):
        alone = False
        driver = _AsyncSqlAlchemy(conn, _sqlalchemy_dialect(c.dialect.name))
    else:
        raise _unsupported(conn)
    if alone:
        raise NoTransaction(
            f"this {type_name(conn)} is outside a transaction: the outbox row would commit "
            "on its own; begin the business transaction first"
        )
    return driver


def async_driver(conn: object) -> AsyncDriver:
    c: Any = conn
    if is_type(conn, "psycopg", "AsyncConnection"):
        _refuse_open(conn, psycopg_in_transaction(conn))
        return AsyncDbApi(conn, "postgresql")
    if is_type(conn, "asyncpg", "Connection") or is_type(
        conn, "asyncpg.pool", "PoolConnectionProxy"
    ):
        _refuse_open(conn, c.is_in_transaction())
        return AsyncpgDriver(conn)
    if is_type(conn, "aiomysql", "Connection"):
        _refuse_open(conn, c.get_transaction_status())
        return AsyncDbApi(conn, "mysql")
    if is_type(conn, "sqlalchemy.ext.asyncio", "AsyncSession"):
        _refuse_open(conn, c.in_transaction())
        return _AsyncSqlAlchemy(conn, _sqlalchemy_dialect(c.get_bind().dialect.name))
    if is_type(conn, "sqlalchemy.ext.asyncio", "AsyncConnection"):
        _refuse_open(conn, c.in_transaction())
        return _AsyncSqlAlchemy(conn, _sqlalchemy_dialect(c.dialect.name))
    raise _unsupported(conn)
