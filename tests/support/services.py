"""The shared servers the suite runs against, and what a test does when one is absent.

PostgreSQL (``LEGATO_TEST_PG``, an admin URL, :5432 by default), MariaDB
(``LEGATO_TEST_MARIADB_HOST``, ``_PORT``, ``_USER``: root on 127.0.0.1:3306), Redis,
RabbitMQ and NATS on their standard ports. A test never changes their settings nor
restarts them (``tests.support.servers`` starts a throwaway server for that); it
makes databases of its own on them, named with a random suffix, and drops them:

    with new_pg_database("barrier") as url:      # postgresql://.../barrier_<12 hex>
        ...

A test that needs a server calls ``need_service(name, problem)``: it skips where the
server does not answer, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from functools import cache
from typing import Any

import psycopg
import pymysql
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
"""Under CI every service must be up: a test that misses one fails instead of skipping."""

PG_ADMIN = os.environ.get("LEGATO_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
MARIADB_HOST = os.environ.get("LEGATO_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("LEGATO_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("LEGATO_TEST_MARIADB_USER", "root")


def need_service(name: str, problem: str | None) -> None:
    """Skip (fail under CI=true) when a service the test needs is absent."""
    if problem is None:
        return
    message = f"{name} is not reachable: {problem}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: services must be up)")
    pytest.skip(message)


def port_problem(port: int) -> str | None:
    """Why nothing answers on ``127.0.0.1:port``, or None when something does."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError as exc:
        return str(exc)
    return None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# asked once a session: a server that is absent stays absent, and each test asking again
# would wait out the connect timeout
@cache
def pg_unreachable() -> str | None:
    """Why the shared PostgreSQL server cannot be reached, or None."""
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return _first_line(exc)


@cache
def maria_unreachable() -> str | None:
    """Why the shared MariaDB server cannot be reached, or None."""
    try:
        maria_admin().close()
        return None
    except pymysql.Error as exc:
        return _first_line(exc)


def pg_url(dbname: str) -> str:
    """The URL of database ``dbname`` on the shared PostgreSQL server."""
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{dbname}"


def pg_execute(sql: str) -> None:
    """Run ``sql`` as the shared PostgreSQL server's admin, outside a transaction."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def maria_admin() -> Any:
    """A PyMySQL connection to the shared MariaDB server, in no database."""
    return pymysql.connect(
        host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, connect_timeout=3
    )


def maria_execute(sql: str) -> None:
    """Run ``sql`` as the shared MariaDB server's admin."""
    conn = maria_admin()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@contextlib.contextmanager
def new_pg_database(prefix: str, *, template: str | None = None) -> Iterator[str]:
    """A new database ``<prefix>_<12 hex>`` on the shared PostgreSQL server (a copy of
    ``template`` if given, else empty); yields its URL, and drops it after."""
    need_service("PostgreSQL", pg_unreachable())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    pg_execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    try:
        yield pg_url(name)
    finally:
        pg_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextlib.contextmanager
def new_maria_database(prefix: str) -> Iterator[str]:
    """A new, empty database ``<prefix>_<12 hex>`` on the shared MariaDB server; yields
    its name, and drops it after."""
    need_service("MariaDB", maria_unreachable())
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    maria_execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        maria_execute(f"DROP DATABASE IF EXISTS {name}")
