"""Databases for the two-phase commit (XA) tests, on servers that take it.

PostgreSQL runs prepared transactions only with ``max_prepared_transactions``
above 0, which the shared server on :5432 keeps at 0 and no test changes: the
XA tests use a throwaway server of their own (:data:`PREPARED`), one per
session (the ``prepared_pg`` fixture). MariaDB takes XA as it is.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit

import pymysql
from tests.support.servers import PgServer

PREPARED = {"max_prepared_transactions": "64"}
"""The setting a PostgreSQL server needs to prepare transactions (0, off, by default)."""

MARIA_PORT = 3306

XaDatabases = Callable[[str], AbstractContextManager[tuple[str, str]]]
"""The ``xa_databases`` fixture: ``xa_databases(prefix)``, see :func:`xa_databases`."""


def maria_unreachable(port: int = MARIA_PORT) -> str | None:
    """Why the MariaDB server on ``port`` cannot be reached, or None."""
    try:
        pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=3).close()
    except pymysql.MySQLError as exc:
        return str(exc).splitlines()[0]
    return None


@contextlib.contextmanager
def xa_databases(
    pg: PgServer, prefix: str, maria_port: int = MARIA_PORT
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
        port=parts.port or MARIA_PORT,
        user=parts.username or "root",
        database=parts.path.lstrip("/"),
        autocommit=True,
    )
