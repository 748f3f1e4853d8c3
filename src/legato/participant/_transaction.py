"""Running a pure plan inside one transaction of the caller's connection.

The transaction is the barrier's own: it begins here, commits when the block
ends well, and rolls back (and re-raises) when anything in it raises, the
business code included. The plan loop is written once per I/O style; the plans
themselves are shared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

from ._drivers import AsyncDriver, SyncDriver, async_driver, sync_driver
from ._sql import Commit, Execute, Plan, Reply, statements

R = TypeVar("R")


class SyncTransaction:
    """One open transaction on a sync connection; runs plans inside it."""

    def __init__(self, driver: SyncDriver) -> None:
        self._driver = driver

    def run(self, plan: Plan[R]) -> R:
        d = self._driver
        reply: Reply = None
        while True:
            try:
                command = plan.send(reply)
            except StopIteration as done:
                result: R = done.value
                return result
            if isinstance(command, Commit):
                d.commit()
                d.begin()
                reply = None
                continue
            reply = 0
            for sql, args in statements(d.dialect, d.style, command.query, command.params):
                reply = d.execute(sql, args) if isinstance(command, Execute) else d.fetch(sql, args)


class AsyncTransaction:
    """One open transaction on an asyncio connection; runs plans inside it."""

    def __init__(self, driver: AsyncDriver) -> None:
        self._driver = driver

    async def run(self, plan: Plan[R]) -> R:
        d = self._driver
        reply: Reply = None
        while True:
            try:
                command = plan.send(reply)
            except StopIteration as done:
                result: R = done.value
                return result
            if isinstance(command, Commit):
                await d.commit()
                await d.begin()
                reply = None
                continue
            reply = 0
            for sql, args in statements(d.dialect, d.style, command.query, command.params):
                if isinstance(command, Execute):
                    reply = await d.execute(sql, args)
                else:
                    reply = await d.fetch(sql, args)


@contextmanager
def transaction(conn: object) -> Iterator[SyncTransaction]:
    """Begin a transaction on ``conn``; commit it if the block ends well, else roll it back."""
    driver = sync_driver(conn)
    driver.begin()
    try:
        yield SyncTransaction(driver)
        driver.commit()
    except BaseException as exc:
        try:
            driver.rollback()
        except Exception as rollback_error:
            exc.add_note(f"the barrier's rollback failed too: {rollback_error!r}")
        raise


@asynccontextmanager
async def atransaction(conn: object) -> AsyncIterator[AsyncTransaction]:
    """Begin a transaction on ``conn``; commit it if the block ends well, else roll it back."""
    driver = async_driver(conn)
    await driver.begin()
    try:
        yield AsyncTransaction(driver)
        await driver.commit()
    except BaseException as exc:
        try:
            await driver.rollback()
        except Exception as rollback_error:
            exc.add_note(f"the barrier's rollback failed too: {rollback_error!r}")
        raise
