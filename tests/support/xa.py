"""Databases for the two-phase commit (XA) tests, on servers that take it.

PostgreSQL runs prepared transactions only with ``max_prepared_transactions``
above 0, which the shared server on :5432 keeps at 0 and no test changes: the
XA tests use a throwaway server of their own (:data:`PREPARED`), one per
session (the ``prepared_pg`` fixture). MariaDB takes XA as it is.

Two shapes: :func:`xa_databases` is a database of one name on each server, for a
transfer across them; :class:`XaDb` is one participant's database with its
``ledger`` and barrier tables, which checks that its test left nothing prepared.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pymysql

import legato
from legato.participant import create_table, xa
from tests.support.barrier import LEDGER, Db, mariadb_db, postgres_db
from tests.support.servers import PgServer
from tests.support.services import (
    MARIADB_HOST,
    MARIADB_PORT,
    MARIADB_USER,
    new_maria_database,
)

PREPARED = {"max_prepared_transactions": "64"}
"""The setting a PostgreSQL server needs to prepare transactions (0, off, by default)."""

XaDatabases = Callable[[str], AbstractContextManager[tuple[str, str]]]
"""The ``xa_databases`` fixture: ``xa_databases(prefix)``, see :func:`xa_databases`."""


@contextlib.contextmanager
def xa_databases(
    pg: PgServer, prefix: str, maria_port: int = MARIADB_PORT
) -> Iterator[tuple[str, str]]:
    """A new database of one name in ``pg`` and in the MariaDB server on ``maria_port``, for
    two-phase commit across them: ``(postgresql://..., mysql://...)``, dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg_url = pg.create_database(name)
    admin = pymysql.connect(host="127.0.0.1", port=maria_port, user="root", autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield pg_url, f"mysql://root@127.0.0.1:{maria_port}/{name}"
    finally:
        pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with admin.cursor() as cur:
            # a branch left prepared holds its tables' metadata locks: fail, do not hang
            cur.execute("SET SESSION lock_wait_timeout = 10")
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def maria_connect(url: str) -> Any:
    """A PyMySQL connection (autocommit) to the database of a ``mysql://root@host:port/db`` URL."""
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or MARIADB_PORT,
        user=parts.username or "root",
        database=parts.path.lstrip("/"),
        autocommit=True,
    )


def prepared_xids(pg: str, maria: str, namespace: str, *, roll_back: bool = False) -> list[str]:
    """The xids of ``namespace`` still prepared in the PostgreSQL database ``pg`` and the
    MariaDB one ``maria`` (``mysql://`` URL), rolled back if asked."""
    out = []
    for connect in (lambda: psycopg.connect(pg, autocommit=True), lambda: maria_connect(maria)):
        conn = connect()
        try:
            for xid in xa.recover(conn, namespace=namespace):
                out.append(str(xid))
                if roll_back:
                    xa.rollback(conn, xid)
        finally:
            conn.close()
    return out


def move(delta_sql: str, account: int, amount: int) -> Any:
    """A branch's work on an ``account`` table: ``amount`` added (``+``) to or taken
    (``-``) from ``account``, refused (Failure) where it would overdraw it."""

    def run(conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT balance FROM account WHERE id = %s FOR UPDATE", (account,))
            (balance,) = cur.fetchone()
            if balance + amount * (1 if delta_sql == "+" else -1) < 0:
                raise legato.Failure("insufficient funds")
            cur.execute(
                f"UPDATE account SET balance = balance {delta_sql} %s WHERE id = %s",
                (amount, account),
            )

    return run


# --- one participant's database, nothing left prepared after its test --------------------


@dataclass
class XaDb:
    """A fresh database for the XA tests, with ``ledger`` and ``legato_barrier``, and gids."""

    db: Db
    token: str  # every gid of the test starts with it

    def new_gid(self) -> str:
        return f"{self.token}-{uuid.uuid4().hex[:8]}"


def _ready(db: Db) -> XaDb:
    db.execute(LEDGER[db.dialect])
    with closing(db.connect()) as conn:
        create_table(conn)
    return XaDb(db, f"t{uuid.uuid4().hex[:10]}")


def _pg_left_prepared(db: Db) -> list[str]:
    """Roll back every Legato xid prepared in ``db``; the ones there were."""
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
def xa_pg_database(server: PgServer) -> Iterator[XaDb]:
    """A fresh database on ``server`` (one that takes prepared transactions); fails the
    test if it left a Legato branch prepared there, and drops it."""
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
def xa_maria_database() -> Iterator[XaDb]:
    """A fresh database on the shared MariaDB server; fails the test if it left one of
    its branches prepared there, and drops it."""
    with new_maria_database("xa") as name:
        xdb = _ready(mariadb_db(MARIADB_HOST, MARIADB_PORT, MARIADB_USER, name))
        yield xdb
        left = _maria_left_prepared(xdb)
        assert not left, f"the test left Legato branches prepared: {left}"
