"""The three participant services of the travel saga: flight, hotel, car.

Each service owns its own database (a SQLite file, or a PostgreSQL database)
with one table, ``booking(gid, step)``. A forward op inserts the row, a
compensation deletes it. Legato and DBOS run exactly the same functions here,
with the same connections and the same durability settings.
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICES = ("flight", "hotel", "car")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/{db}"

# The participants' own durability choice, identical for Legato and DBOS:
# WAL with synchronous=NORMAL (a commit survives a process crash; the last
# commits before a power loss may be lost; the database is never corrupted).
SQLITE_PARTICIPANT_PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL")


class CarUnavailable(Exception):
    """no car available: the car step refuses (variant B)"""


@dataclass(frozen=True)
class Backend:
    """Where the participants, Legato's log and DBOS's system database live."""

    name: str  # "sqlite" | "postgres"
    workdir: str  # SQLite files go here
    prefix: str = "bench"  # PostgreSQL databases are named <prefix>_<what>

    def db(self, what: str) -> str:
        """The name of a PostgreSQL database of this bench (``flight``, ``legato_log``...)."""
        return f"{self.prefix}_{what}"

    def service_url(self, service: str) -> str:
        if self.name == "sqlite":
            return str(Path(self.workdir) / f"{service}.db")
        return PG_URL.format(db=self.db(service))

    @property
    def legato_log_url(self) -> str:
        if self.name == "sqlite":
            return f"sqlite:///{Path(self.workdir) / 'legato-log.db'}"
        return PG_URL.format(db=self.db("legato_log"))

    @property
    def hand_log_url(self) -> str:
        """The hand-written saga's log: a SQLite file path, or a PostgreSQL URL."""
        if self.name == "sqlite":
            return str(Path(self.workdir) / "hand-log.db")
        return PG_URL.format(db=self.db("hand_log"))

    @property
    def dbos_system_url(self) -> str:
        if self.name == "sqlite":
            return f"sqlite:///{Path(self.workdir) / 'dbos-system.db'}"
        return PG_URL.format(db=self.db("dbos_sys"))

    @property
    def dbos_sqlite_path(self) -> str:
        return str(Path(self.workdir) / "dbos-system.db")

    @property
    def connections_per_service(self) -> int:
        # SQLite has one writer per file: one connection per service, shared through
        # the pool, serialises writers in Python instead of in SQLite's busy handler
        # (which sleeps in 1..100 ms steps). PostgreSQL: enough for the concurrency,
        # while 3 services x 16 + the log/system DB stay under max_connections=100.
        return 1 if self.name == "sqlite" else 16


# -- setting the databases up -------------------------------------------------------


def _pg_admin(statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def pg_recreate(*names: str) -> None:
    stmts: list[str] = []
    for n in names:
        stmts += [f"DROP DATABASE IF EXISTS {n} WITH (FORCE)", f"CREATE DATABASE {n}"]
    _pg_admin(stmts)


def pg_drop(*names: str) -> None:
    _pg_admin([f"DROP DATABASE IF EXISTS {n} WITH (FORCE)" for n in names])


def _remove_sqlite(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)


def prepare(backend: Backend, framework: str) -> None:
    """Fresh participant databases, and a fresh log / system database for ``framework``
    (``dbos``, ``hand``; anything else is Legato's: its saga, its workflow, the memory
    runs)."""
    if backend.name == "sqlite":
        Path(backend.workdir).mkdir(parents=True, exist_ok=True)
        for s in SERVICES:
            path = backend.service_url(s)
            _remove_sqlite(path)
            conn = sqlite3.connect(path, isolation_level=None)
            for p in SQLITE_PARTICIPANT_PRAGMAS:
                conn.execute(p)
            conn.execute(
                "CREATE TABLE booking (gid TEXT NOT NULL, step TEXT NOT NULL, "
                "PRIMARY KEY (gid, step))"
            )
            conn.close()
        _remove_sqlite(backend.legato_log_url[len("sqlite:///") :])
        _remove_sqlite(backend.dbos_sqlite_path)
        _remove_sqlite(backend.hand_log_url)
        if framework == "dbos":
            # DBOS's default SQLite system database uses the rollback journal (DELETE
            # mode, two fsyncs per commit and more). WAL is a property of the file and
            # is set here once, so DBOS runs in the same mode as Legato's log, with its
            # own default synchronous=FULL: the fairest setting for DBOS.
            conn = sqlite3.connect(backend.dbos_sqlite_path, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.close()
        return
    pg_recreate(*(backend.db(s) for s in SERVICES))
    for s in SERVICES:
        import psycopg

        with psycopg.connect(backend.service_url(s), autocommit=True) as pg:
            pg.execute(
                "CREATE TABLE booking (gid text NOT NULL, step text NOT NULL, "
                "PRIMARY KEY (gid, step))"
            )
    logs = {"dbos": "dbos_sys", "hand": "hand_log"}
    pg_recreate(backend.db(logs.get(framework, "legato_log")))


def cleanup(backend: Backend) -> None:
    if backend.name == "postgres":
        pg_drop(*(backend.db(s) for s in (*SERVICES, "legato_log", "dbos_sys", "hand_log")))


def pg_settings() -> dict[str, str]:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        out = {}
        for name in (
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_sync_method",
            "max_connections",
        ):
            row = conn.execute(f"SHOW {name}").fetchone()
            out[name] = str(row[0]) if row else "?"
        return out


# -- the services at run time -------------------------------------------------------


class Pool:
    """A bounded LIFO pool of connections, made on first need: a thread usually gets
    back the connection it just used. ``connect()`` makes one."""

    def __init__(self, connect: Callable[[], Any], size: int) -> None:
        self._connect = connect
        self._size = size
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()
        self._all: list[Any] = []

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                make = self._made < self._size
                if make:
                    self._made += 1
            if make:
                conn = self._connect()
                self._all.append(conn)
            else:
                conn = self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put(conn)

    def close(self) -> None:
        for conn in self._all:
            with contextlib.suppress(Exception):
                conn.close()


class Service:
    """One participant: a bounded pool of connections to its database.

    A pool rather than a connection per thread: DBOS at 64 concurrent threads
    would need 64 x 3 PostgreSQL connections, past max_connections=100.
    """

    def __init__(self, backend: Backend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.url = backend.service_url(name)
        self._pool = Pool(self._connect, backend.connections_per_service)
        if backend.name == "sqlite":
            self._insert = "INSERT INTO booking (gid, step) VALUES (?, ?)"
            self._delete = "DELETE FROM booking WHERE gid = ? AND step = ?"
        else:
            self._insert = "INSERT INTO booking (gid, step) VALUES (%s, %s) ON CONFLICT DO NOTHING"
            self._delete = "DELETE FROM booking WHERE gid = %s AND step = %s"

    def _connect(self) -> Any:
        if self.backend.name == "sqlite":
            conn = sqlite3.connect(
                self.url, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            for p in SQLITE_PARTICIPANT_PRAGMAS:
                conn.execute(p)
            return conn
        import psycopg

        # autocommit: each insert/delete is its own durable transaction
        return psycopg.connect(self.url, autocommit=True)

    def connection(self) -> contextlib.AbstractContextManager[Any]:
        return self._pool.connection()

    def book(self, gid: str) -> None:
        with self.connection() as conn:
            if self.backend.name == "sqlite":
                conn.execute("INSERT OR IGNORE" + self._insert[len("INSERT") :], (gid, self.name))
            else:
                conn.execute(self._insert, (gid, self.name))

    def cancel(self, gid: str) -> None:
        with self.connection() as conn:
            conn.execute(self._delete, (gid, self.name))

    def count(self) -> int:
        with self.connection() as conn:
            row = conn.execute("SELECT count(*) FROM booking").fetchone()
            return int(row[0])

    def close(self) -> None:
        self._pool.close()


class Services:
    def __init__(self, backend: Backend) -> None:
        self.by_name = {s: Service(backend, s) for s in SERVICES}
        self.flight = self.by_name["flight"]
        self.hotel = self.by_name["hotel"]
        self.car = self.by_name["car"]

    def counts(self) -> dict[str, int]:
        return {n: s.count() for n, s in self.by_name.items()}

    def close(self) -> None:
        for s in self.by_name.values():
            s.close()
