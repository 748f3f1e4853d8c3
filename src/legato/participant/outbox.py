"""The transactional outbox: a service changes its database and records an event about
it in one local transaction; a relay publishes what committed.

::

    from legato.participant import outbox

    outbox.create_table(conn)                        # once, at start-up
    with conn.transaction():                         # the business transaction
        conn.execute("UPDATE orders SET status = 'paid' WHERE id = %s", (order_id,))
        outbox.add(conn, "payments", key=order_id, event={"paid": 30}, headers={"gid": gid})

    relay = outbox.Relay(lambda: psycopg.connect(url), broker)   # its own connection
    await relay.run()                                # publishes committed rows, for ever

Either the business change and its event both commit, or neither does: the event is
a row (``legato_outbox``) written on the caller's connection inside the caller's
transaction, which must be open (not autocommit). Connections: sqlite3, psycopg and
PyMySQL, or a SQLAlchemy session or connection on them; ``aadd`` takes psycopg's
async connection, asyncpg (inside ``conn.transaction()``), aiomysql, and SQLAlchemy's
async session or connection.

**Order.** Each event of a ``(topic, key)`` gets the next number of that key
(``legato_outbox_key``). Taking it locks the key's row until the business
transaction ends, so two transactions writing one key commit in the order of their
numbers, and a rolled-back transaction gives its number back: a key's committed
events are numbered 1, 2, 3... with no gap, in commit order. The relay does not
keep a high-water mark (a row with a lower id may commit after one with a higher id
was read, and a mark would skip it): every pass reads the unsent rows afresh, oldest
first, and publishes each key's in number order, stopping a key at its first failed
publish so that nothing of that key goes out of turn.

**Delivery** is at least once: a relay killed after a publish but before it marked
the row sent publishes it again after its restart, with the same message id
(consumers record ids in their inbox or barrier; NATS also drops the repeat by its
``Nats-Msg-Id``). Run one relay per database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.propagate import inject

from .._errors import BrokerError, PayloadError
from .._faults import fault_point
from ..brokers.base import Broker, Message, check_name
from ._drivers import SyncDriver, async_driver_inside, sync_driver_inside
from ._sql import Execute, Fetch, Plan, first_row, rowcount, statements
from ._transaction import AsyncTransaction, SyncTransaction, transaction

log = logging.getLogger("legato.outbox")
T = TypeVar("T")

__all__ = ["OutboxRow", "Relay", "aadd", "add", "create_table", "purge"]


def _create() -> Plan[None]:
    yield Execute("outbox_create", {})


def create_table(conn: object) -> None:
    """Create ``legato_outbox`` and ``legato_outbox_key`` where they do not exist yet."""
    with transaction(conn) as tx:
        tx.run(_create())


def _add(row: dict[str, object]) -> Plan[int]:
    yield Execute("outbox_next_seq", row)
    found = first_row((yield Fetch("outbox_seq", row)))
    assert found is not None, "the key's row was written just now"
    seq: int = int(str(found[0]))
    yield Execute("outbox_insert", {**row, "seq": seq})
    return seq


def _row(
    topic: str,
    key: str,
    event: Any,
    headers: Mapping[str, str] | None,
    message_id: str | None,
) -> dict[str, object]:
    """The outbox row, or a clear error before any SQL."""
    check_name("topic", topic)
    if not isinstance(key, str) or not 0 < len(key) <= 200:
        raise ValueError(f"an outbox key is a string of 1-200 characters, not {key!r}")
    hdrs = dict(headers or {})
    # added inside a traced request: the message carries that span's context, so its
    # consumers continue the same trace
    trace_headers: dict[str, str] = {}
    inject(trace_headers)
    for k, v in trace_headers.items():
        hdrs.setdefault(k, v)
    for k, v in hdrs.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"outbox headers are strings: {k!r}: {v!r}")
    try:
        body = event if isinstance(event, bytes) else json.dumps(event, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:  # before any SQL: nothing is written
        raise PayloadError(f"the {topic!r} event for key {key!r} is not JSON: {exc}") from exc
    row: dict[str, object] = {
        "topic": topic,
        "key": key,
        "message_id": message_id or uuid.uuid4().hex,
        "body": body,
        # MySQL takes it as hex (UNHEX): aiomysql's own escaping of bytes is broken beside
        # PyMySQL 1.1+, and a string would go through the connection's character set
        "body_hex": body.hex(),
        "headers": json.dumps(hdrs),
    }
    return row


def add(
    conn: object,
    topic: str,
    key: str,
    event: Any,
    *,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> str:
    """Record ``event`` (JSON, or ``bytes`` as they are) for ``topic`` inside the caller's
    open transaction; it is published once that transaction commits. Returns the
    message id (a new UUID unless given)."""
    row = _row(topic, key, event, headers, message_id)
    driver = sync_driver_inside(conn)
    SyncTransaction(driver).run(_add(row))
    return str(row["message_id"])


async def aadd(
    conn: object,
    topic: str,
    key: str,
    event: Any,
    *,
    headers: Mapping[str, str] | None = None,
    message_id: str | None = None,
) -> str:
    """As :func:`add`, on an asyncio connection (psycopg async, asyncpg inside
    ``conn.transaction()``, aiomysql, SQLAlchemy's async session or connection)."""
    row = _row(topic, key, event, headers, message_id)
    driver = async_driver_inside(conn)
    if driver.dialect == "mysql":
        del row["body"]  # aiomysql escapes every parameter given; MySQL's SQL takes body_hex
    await AsyncTransaction(driver).run(_add(row))
    return str(row["message_id"])


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    message: Message
    seq: int


def _rows(driver: SyncDriver, conn: Any, limit: int) -> list[OutboxRow]:
    ((sql, args),) = statements(driver.dialect, driver.style, "outbox_pending", {"limit": limit})
    cur = conn.cursor()
    try:
        cur.execute(sql, args)
        fetched = cur.fetchall()
    finally:
        cur.close()
    out = []
    for id_, topic, key, seq, message_id, body, headers in fetched:
        message = Message(topic, key, bytes(body), str(message_id), json.loads(headers))
        out.append(OutboxRow(int(id_), message, int(seq)))
    return out


def _mark(ids: list[int]) -> Plan[None]:
    for id_ in ids:
        yield Execute("outbox_sent", {"id": id_})


def _purge(age: float, limit: int) -> Plan[int]:
    return rowcount((yield Execute("outbox_purge", {"age": float(age), "limit": int(limit)})))


def purge(conn: object, older_than_seconds: float, limit: int = 10_000) -> int:
    """Delete up to ``limit`` rows sent more than ``older_than_seconds`` ago."""
    with transaction(conn) as tx:
        deleted: int = tx.run(_purge(older_than_seconds, limit))
        return deleted


class Relay:
    """Publishes committed outbox rows to ``broker``, each key's in order (up to
    ``concurrency`` keys at once), and marks them sent; retries (every
    ``poll_interval``, backing off to ``max_backoff``) while the broker or the database
    is away. ``connect`` opens the relay's own connection (sqlite3, psycopg or
    PyMySQL)."""

    def __init__(
        self,
        connect: Callable[[], Any],
        broker: Broker,
        *,
        batch: int = 500,
        poll_interval: float = 0.2,
        max_backoff: float = 5.0,
        concurrency: int = 64,
    ) -> None:
        self.connect = connect
        self.broker = broker
        self.batch = batch
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.published = 0
        self._conn: Any = None
        # one thread for every database call: the connection stays with the thread that
        # opened it (sqlite3 refuses to be used from another)
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, "legato-relay")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _db(self) -> tuple[Any, SyncDriver]:
        if self._conn is None:
            self._conn = self.connect()
        conn = self._conn
        return conn, sync_driver_inside(conn, check=False)

    def close(self) -> None:
        """Close the relay's connection (``run`` does, when it is cancelled)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.submit(self._drop).result()
            thread.shutdown()
        else:
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # a broken connection may not close cleanly
                log.debug("closing the relay's connection: %r", exc)

    def _pending(self) -> list[OutboxRow]:
        conn, driver = self._db()
        try:
            return _rows(driver, conn, self.batch)
        finally:
            conn.rollback()  # a read: end it, so the next pass sees newer commits

    def _mark_sent(self, ids: list[int]) -> None:
        conn, _ = self._db()
        with transaction(conn) as tx:
            tx.run(_mark(ids))

    async def run_once(self) -> int:
        """One pass: publish what is pending (each key in order), mark it sent; the
        number published. A key whose publish fails waits for the next pass."""
        try:
            rows = await self._call(self._pending)
        except Exception:
            await self._call(self._drop)
            raise
        # each key's rows in order, one after the other; different keys side by side (a
        # publish waits for the broker's confirm: one at a time, the relay would be as
        # slow as a round trip per event)
        chains: dict[tuple[str, str], list[OutboxRow]] = {}
        for row in rows:
            chains.setdefault((row.message.topic, row.message.key), []).append(row)
        sent: list[int] = []
        errors: list[BrokerError] = []
        gate = asyncio.Semaphore(self.concurrency)

        async def chain(key_rows: list[OutboxRow]) -> None:
            async with gate:
                for row in key_rows:
                    try:
                        await self.broker.publish(row.message)
                    except BrokerError as exc:
                        errors.append(exc)  # nothing later of this key goes out before it
                        return
                    fault_point("outbox.after_publish")  # the broker has it; not marked yet
                    sent.append(row.id)

        await asyncio.gather(*(chain(c) for c in chains.values()))
        error = errors[0] if errors else None
        if sent:
            try:
                await self._call(self._mark_sent, sent)
            except Exception:
                await self._call(self._drop)
                raise  # published, not marked: they go out again, with the same ids
        self.published += len(sent)
        if error is not None:
            raise error
        return len(sent)

    async def run(self) -> None:
        """Relay for ever (cancel the task to stop)."""
        try:
            await self._run()
        finally:
            self.close()

    async def _run(self) -> None:
        backoff = self.poll_interval
        while True:
            try:
                n = await self.run_once()
                backoff = self.poll_interval
                if n:
                    continue  # more may be waiting: go again at once
            except Exception as exc:  # the broker or the database is away: wait, retry
                log.warning("outbox relay: %s; retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            await asyncio.sleep(self.poll_interval)
