"""The embedded log: one SQLite file, WAL, ``synchronous=FULL``.

SQLite has one writer at a time; group commit makes that writer commit many
transactions' writes per fsync. Other processes (``legato tx list``) may read
the file while a coordinator runs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import _json
from .._errors import LogError, LogUnavailable
from ._group import Job, JobResult, WouldBlock
from ._sql import Conn, SqlLog

_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS legato_migrations "
    "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
)


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or ``sqlite://:memory:``."""
    if not url.startswith("sqlite://"):
        raise LogError(f"not a SQLite URL: {url!r}")
    rest = url[len("sqlite://") :]
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    if not rest.startswith("/"):
        raise LogError(f"a SQLite URL is sqlite:///path/to/file.db, not {url!r}")
    return rest[1:] or "legato.db"


def _wal(conn: sqlite3.Connection) -> None:
    # Connections switching a fresh file to WAL at once: all but one may be answered
    # SQLITE_BUSY at once, without the busy timeout. The switch is worth asking again.
    deadline = time.monotonic() + 30.0
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteLog(SqlLog):
    """``inline_commits`` commits on the event loop's own thread (the fastest for a
    coordinator that does little else); ``False`` hands each commit's fsync to the
    writer thread, so that a loop also serving HTTP keeps serving meanwhile."""

    backend = "sqlite"

    def __init__(
        self,
        url: str = "sqlite:///legato.db",
        *,
        auto_migrate: bool = True,
        inline_commits: bool = True,
    ) -> None:
        super().__init__(url, auto_migrate=auto_migrate)
        self.inline_commits = inline_commits
        self.path = path_from_url(url)
        if self.path == ":memory:":
            raise LogError("an in-memory SQLite log cannot be shared by threads: use memory://")

    def _connect(self, role: str) -> Conn:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        _wal(conn)
        # Durability on: every commit is fsynced. Group commit is what keeps it fast.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _begin(self, conn: Conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def _begin_or_give_up(self, conn: Conn) -> None:
        # On the event loop's thread we must never wait for another process's lock.
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise WouldBlock from exc
        finally:
            conn.execute("PRAGMA busy_timeout = 30000")

    def _inline_batch(self, jobs: list[Job[Conn]]) -> list[JobResult]:
        # A local file commit is short (one fsync) and bounded: worth saving the two
        # thread hand-offs (see GroupCommit).
        if not self.inline_commits:
            raise WouldBlock
        return self._batch_sync(jobs, begin=self._begin_or_give_up)

    def _translate(self, exc: Exception) -> Exception:
        if isinstance(exc, LogError):
            return exc
        if isinstance(exc, sqlite3.OperationalError):
            return LogUnavailable(f"SQLite log {self.path}: {exc}")
        return LogError(f"SQLite log {self.path}: {type(exc).__name__}: {exc}")

    def _array(self, values: Sequence[str]) -> Any:
        return _json.dumps(list(values))

    def _lock_for_migration(self, conn: Conn) -> None:
        pass  # BEGIN IMMEDIATE already holds the one write lock

    def _applied_migrations(self, conn: Conn) -> set[int]:
        conn.execute(_MIGRATIONS_TABLE)
        return {r[0] for r in conn.execute("SELECT version FROM legato_migrations")}

    def _migrate_sync(self, conn: Conn) -> list[str]:
        # sqlite3 in autocommit mode: BEGIN IMMEDIATE makes the whole migration atomic.
        return super()._migrate_sync(conn)
