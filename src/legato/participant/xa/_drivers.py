"""The XA resources' connections: one adapter per driver, and the runners of the pure plans.

The adapters extend the barrier's (``_drivers``) with what two-phase commit
needs: statements without parameters and their command tags, whole result
sets, the connection's transaction and autocommit state. As there, a driver is
recognised by its class in ``sys.modules`` and never imported here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Protocol, TypeVar

from ..._errors import TransactionInProgress
from .._drivers import (
    AsyncDbApi,
    AsyncpgDriver,
    DbApi,
    is_type,
    psycopg_in_transaction,
    type_name,
)
from .._sql import Args, Dialect, Fetch, ParamStyle, statements
from ._errors import XaUnsupported
from ._plans import Begin, RollbackOpen, Rows, RunBranch, Statement, XaCommand, XaPlan, XaReply

R = TypeVar("R")

SUPPORTED = (
    "psycopg.Connection, pymysql.connections.Connection (sync); psycopg.AsyncConnection, "
    "asyncpg.Connection, aiomysql.Connection (asyncio)"
)
_SQLITE = (
    "SQLite has no two-phase commit (no PREPARE TRANSACTION, no XA): an XA branch needs "
    "PostgreSQL or MySQL / MariaDB; run this branch as a saga or TCC branch behind the barrier"
)


class SyncXaDriver(Protocol):
    """A sync connection, as the XA plans use it."""

    dialect: Dialect
    style: ParamStyle

    def begin(self) -> None: ...
    def database(self) -> str | None: ...
    def statement(self, sql: str) -> str: ...
    def rows(self, sql: str) -> list[tuple[object, ...]]: ...
    def execute(self, sql: str, args: Args) -> int: ...
    def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None: ...
    def in_transaction(self) -> bool: ...
    def autocommit(self) -> bool: ...
    def set_autocommit(self, on: bool) -> None: ...


class AsyncXaDriver(Protocol):
    """An asyncio connection, as the XA plans use it."""

    dialect: Dialect
    style: ParamStyle

    async def begin(self) -> None: ...
    async def database(self) -> str | None: ...
    async def statement(self, sql: str) -> str: ...
    async def rows(self, sql: str) -> list[tuple[object, ...]]: ...
    async def execute(self, sql: str, args: Args) -> int: ...
    async def fetch(self, sql: str, args: Args) -> tuple[object, ...] | None: ...
    def in_transaction(self) -> bool: ...
    def autocommit(self) -> bool: ...
    async def set_autocommit(self, on: bool) -> None: ...


class _Psycopg(DbApi):
    def __init__(self, conn: Any) -> None:
        super().__init__(conn, "postgresql")

    def database(self) -> str | None:
        return str(self.conn.info.dbname)

    def statement(self, sql: str) -> str:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return str(cur.statusmessage or "")

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]

    def in_transaction(self) -> bool:
        return psycopg_in_transaction(self.conn)

    def autocommit(self) -> bool:
        return bool(self.conn.autocommit)

    def set_autocommit(self, on: bool) -> None:
        self.conn.autocommit = on


class _PyMySql(DbApi):
    def __init__(self, conn: Any) -> None:
        super().__init__(conn, "mysql")

    def database(self) -> str | None:
        # the database the connection was opened on (or select_db'd): no statement, which
        # outside autocommit could open the transaction XA START must not find
        return _name(self.conn.db)

    def statement(self, sql: str) -> str:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return ""

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]

    def in_transaction(self) -> bool:
        return bool(self.conn.server_status & 1)  # SERVER_STATUS_IN_TRANS

    def autocommit(self) -> bool:
        return bool(self.conn.get_autocommit())

    def set_autocommit(self, on: bool) -> None:
        self.conn.autocommit(on)


class _AsyncPsycopg(AsyncDbApi):
    def __init__(self, conn: Any) -> None:
        super().__init__(conn, "postgresql")

    async def database(self) -> str | None:
        return str(self.conn.info.dbname)

    async def statement(self, sql: str) -> str:
        async with self.conn.cursor() as cur:
            await cur.execute(sql)
            return str(cur.statusmessage or "")

    async def rows(self, sql: str) -> list[tuple[object, ...]]:
        async with self.conn.cursor() as cur:
            await cur.execute(sql)
            return [tuple(r) for r in await cur.fetchall()]

    def in_transaction(self) -> bool:
        return psycopg_in_transaction(self.conn)

    def autocommit(self) -> bool:
        return bool(self.conn.autocommit)

    async def set_autocommit(self, on: bool) -> None:
        await self.conn.set_autocommit(on)


class _AioMySql(AsyncDbApi):
    def __init__(self, conn: Any) -> None:
        super().__init__(conn, "mysql")

    async def database(self) -> str | None:
        return _name(self.conn.db)

    async def statement(self, sql: str) -> str:
        async with self.conn.cursor(*self.cursor_classes) as cur:
            await cur.execute(sql)
            return ""

    async def rows(self, sql: str) -> list[tuple[object, ...]]:
        async with self.conn.cursor(*self.cursor_classes) as cur:
            await cur.execute(sql)
            return [tuple(r) for r in await cur.fetchall()]

    def in_transaction(self) -> bool:
        return bool(self.conn.get_transaction_status())

    def autocommit(self) -> bool:
        return bool(self.conn.get_autocommit())

    async def set_autocommit(self, on: bool) -> None:
        await self.conn.autocommit(on)


class _AsyncpgXa(AsyncpgDriver):
    async def database(self) -> str | None:
        # asyncpg has no public attribute for it; outside BEGIN this commits nothing
        return str(await self.conn.fetchval("SELECT current_database()"))

    async def begin(self) -> None:
        # plain SQL, not conn.transaction(): the transaction ends in PREPARE TRANSACTION,
        # which asyncpg's Transaction object knows nothing of
        await self.conn.execute("BEGIN")

    async def statement(self, sql: str) -> str:
        return str(await self.conn.execute(sql))

    async def rows(self, sql: str) -> list[tuple[object, ...]]:
        return [tuple(r) for r in await self.conn.fetch(sql)]

    def in_transaction(self) -> bool:
        return bool(self.conn.is_in_transaction())

    def autocommit(self) -> bool:
        return True  # asyncpg has no other mode: a statement outside BEGIN commits itself

    async def set_autocommit(self, on: bool) -> None:
        return None


def _name(db: object) -> str | None:
    if isinstance(db, bytes):
        return db.decode()
    return db if isinstance(db, str) and db else None


# --- recognising a connection -------------------------------------------------------------


def _unsupported(conn: object, variant: str) -> XaUnsupported:
    if is_type(conn, "sqlite3", "Connection"):
        return XaUnsupported(_SQLITE)
    if is_type(conn, "sqlalchemy.orm", "Session") or is_type(
        conn, "sqlalchemy.engine", "Connection"
    ):
        hint = "pass its driver connection (conn.connection.driver_connection)"
        return XaUnsupported(f"the XA resources take a driver connection: {hint}")
    return XaUnsupported(
        f"the XA resources cannot use a {type_name(conn)} here ({variant}); they take {SUPPORTED}"
    )


def sync_xa_driver(conn: object) -> SyncXaDriver:
    """The adapter of a sync connection; XaUnsupported for anything else."""
    if is_type(conn, "psycopg", "Connection"):
        return _Psycopg(conn)
    if is_type(conn, "pymysql.connections", "Connection"):
        return _PyMySql(conn)
    raise _unsupported(conn, "a sync function: use the a* variant for an asyncio connection")


def async_xa_driver(conn: object) -> AsyncXaDriver:
    """The adapter of an asyncio connection; XaUnsupported for anything else."""
    if is_type(conn, "psycopg", "AsyncConnection"):
        return _AsyncPsycopg(conn)
    if is_type(conn, "asyncpg", "Connection") or is_type(
        conn, "asyncpg.pool", "PoolConnectionProxy"
    ):
        return _AsyncpgXa(conn)
    if is_type(conn, "aiomysql", "Connection"):
        return _AioMySql(conn)
    raise _unsupported(conn, "an asyncio function: use the sync variant for a sync connection")


def refuse_open(conn: object, driver: SyncXaDriver | AsyncXaDriver) -> None:
    if driver.in_transaction():
        hint = ""
        if driver.dialect == "mysql":
            hint = (
                " (on MariaDB, a connection that prepared a branch holds it until the "
                "connection closes: close it, and end the branch from another connection)"
            )
        raise TransactionInProgress(
            f"this {type_name(conn)} is already inside a transaction: commit or roll it back "
            f"first; an XA branch, its phase 2 and recovery run outside any{hint}"
        )


@contextmanager
def autocommit(conn: object, driver: SyncXaDriver) -> Iterator[None]:
    """Phase 2 and recovery run outside a transaction (the databases insist); restore after."""
    refuse_open(conn, driver)
    was = driver.autocommit()
    if not was:
        driver.set_autocommit(True)
    try:
        yield
    finally:
        if not was:
            driver.set_autocommit(False)


@asynccontextmanager
async def aautocommit(conn: object, driver: AsyncXaDriver) -> AsyncIterator[None]:
    """As :func:`autocommit`, on an asyncio connection."""
    refuse_open(conn, driver)
    was = driver.autocommit()
    if not was:
        await driver.set_autocommit(True)
    try:
        yield
    finally:
        if not was:
            await driver.set_autocommit(False)


# --- running a plan -----------------------------------------------------------------------


def _step(driver: SyncXaDriver, command: XaCommand, branch: Callable[[], object]) -> XaReply:
    if isinstance(command, Begin):
        driver.begin()
        return None
    if isinstance(command, Statement):
        return driver.statement(command.sql)
    if isinstance(command, Rows):
        return driver.rows(command.sql)
    if isinstance(command, RollbackOpen):
        if driver.in_transaction():
            driver.statement("ROLLBACK")
        return None
    if isinstance(command, RunBranch):
        branch()
        return None
    reply: XaReply = 0
    run_one = driver.fetch if isinstance(command, Fetch) else driver.execute
    for sql, args in statements(driver.dialect, driver.style, command.query, command.params):
        reply = run_one(sql, args)
    return reply


async def _astep(
    driver: AsyncXaDriver, command: XaCommand, branch: Callable[[], Awaitable[object]]
) -> XaReply:
    if isinstance(command, Begin):
        await driver.begin()
        return None
    if isinstance(command, Statement):
        return await driver.statement(command.sql)
    if isinstance(command, Rows):
        return await driver.rows(command.sql)
    if isinstance(command, RollbackOpen):
        if driver.in_transaction():
            await driver.statement("ROLLBACK")
        return None
    if isinstance(command, RunBranch):
        await branch()
        return None
    reply: XaReply = 0
    for sql, args in statements(driver.dialect, driver.style, command.query, command.params):
        if isinstance(command, Fetch):
            reply = await driver.fetch(sql, args)
        else:
            reply = await driver.execute(sql, args)
    return reply


def _no_branch() -> object:
    raise AssertionError("this plan runs no branch function")


async def _ano_branch() -> object:
    raise AssertionError("this plan runs no branch function")


def run(driver: SyncXaDriver, plan: XaPlan[R], branch: Callable[[], object] = _no_branch) -> R:
    """Run ``plan`` on a sync connection; a failed command is thrown back into the plan."""
    reply: XaReply = None
    error: BaseException | None = None
    while True:
        try:
            command = plan.send(reply) if error is None else plan.throw(error)
        except StopIteration as done:
            result: R = done.value
            return result
        reply, error = None, None
        try:
            reply = _step(driver, command, branch)
        except BaseException as exc:
            error = exc


async def arun(
    driver: AsyncXaDriver,
    plan: XaPlan[R],
    branch: Callable[[], Awaitable[object]] = _ano_branch,
) -> R:
    """Run ``plan`` on an asyncio connection; a failed command is thrown back into the plan."""
    reply: XaReply = None
    error: BaseException | None = None
    while True:
        try:
            command = plan.send(reply) if error is None else plan.throw(error)
        except StopIteration as done:
            result: R = done.value
            return result
        reply, error = None, None
        try:
            reply = await _astep(driver, command, branch)
        except BaseException as exc:
            error = exc
