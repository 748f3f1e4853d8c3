"""What the four demo services share: their own SQLite database, and a barrier.

The barrier (DESIGN section 2) is a table in the service's own database, keyed
by the op's idempotency key ``(gid, step, op)``, and written in the same local
transaction as the business change. So:

* an op delivered twice (a retry after a lost reply, a late call that the
  coordinator had given up on) changes nothing the second time and answers
  what it answered the first time;
* a compensation whose action never took effect records itself and does
  nothing (*null compensation*);
* an action that arrives after its compensation is refused (*hanging*): the
  trip is being rolled back, it must not take a seat now.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from legato import Failure, Json, OpName, StepContext

BARRIER_SCHEMA = """
CREATE TABLE IF NOT EXISTS barrier (
    gid        TEXT    NOT NULL,
    step       TEXT    NOT NULL,
    op         TEXT    NOT NULL,
    outcome    TEXT    NOT NULL CHECK (outcome IN ('done', 'failed', 'null', 'refused')),
    result     TEXT,
    error      TEXT,
    deliveries INTEGER NOT NULL DEFAULT 1,
    at         REAL    NOT NULL,
    PRIMARY KEY (gid, step, op)
);
"""

Apply = Callable[[sqlite3.Connection], Json]
Undo = Callable[[sqlite3.Connection, Json], None]


class Service:
    """A participant with its own SQLite file, called from the coordinator's step threads.

    Each thread gets its own connection. Writes also take a per-service lock:
    SQLite has one writer anyway, and a Python lock hands over at once where
    SQLite's busy handler would sleep and poll, which under 30 concurrent
    trips costs more than the writes themselves.
    """

    name = "service"
    schema = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._write_lock = threading.Lock()
        self._idle = threading.Condition()
        self._in_flight = 0
        db = self._db()
        with self._write_lock:
            db.executescript(BARRIER_SCHEMA + self.schema)

    # -- connections ----------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA journal_mode = WAL")
            # the participant survives a crash of the process with NORMAL in WAL mode;
            # only a power cut could lose its last commits (the log is the one on FULL)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._write_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def call(self) -> Iterator[None]:
        """Wrap each entry point, so that ``wait_idle`` can wait for late calls to land."""
        with self._idle:
            self._in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is running (abandoned attempts still finish in their thread)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def close(self) -> None:
        with self._write_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- the barrier ----------------------------------------------------------------

    def _action(self, ctx: StepContext, apply: Apply) -> Json:
        """Run ``apply`` once per idempotency key; a repeat answers as the first did.

        ``apply`` raises ``Failure`` before it writes anything (sold out, declined):
        the failure is recorded too, so that a repeat gets the same answer.
        """
        key = (ctx.gid, ctx.step, str(ctx.op))
        with self._transaction() as db:
            seen = _repeat(db, key)
            if seen is None:
                undone = db.execute(
                    "SELECT 1 FROM barrier WHERE gid = ? AND step = ? AND op = ?",
                    (ctx.gid, ctx.step, str(OpName.COMPENSATE)),
                ).fetchone()
                if undone is not None:
                    seen = ("refused", None, "refused: this step was already rolled back")
                    _record(db, key, *seen)
                else:
                    try:
                        seen = ("done", json.dumps(apply(db)), None)
                    except Failure as exc:
                        seen = ("failed", None, str(exc))
                    _record(db, key, *seen)
        outcome, result, error = seen
        if outcome != "done":
            raise Failure(error or outcome)
        return json.loads(result) if result is not None else None

    def _compensate(self, ctx: StepContext, undo: Undo) -> Json:
        """Undo what the action recorded in the barrier, once; nothing if it never took effect."""
        key = (ctx.gid, ctx.step, str(ctx.op))
        with self._transaction() as db:
            if _repeat(db, key) is not None:
                return None
            row = db.execute(
                "SELECT outcome, result FROM barrier WHERE gid = ? AND step = ? AND op = ?",
                (ctx.gid, ctx.step, str(OpName.ACTION)),
            ).fetchone()
            if row is None or row[0] != "done":
                _record(db, key, "null", None, None)
                return None
            # undo what the service itself recorded, not ctx.output: after a lost
            # reply the coordinator never saw the action's result
            undo(db, json.loads(row[1]))
            _record(db, key, "done", None, None)
        return None


def _repeat(
    db: sqlite3.Connection, key: tuple[str, str, str]
) -> tuple[str, str | None, str | None] | None:
    row = db.execute(
        "SELECT outcome, result, error FROM barrier WHERE gid = ? AND step = ? AND op = ?", key
    ).fetchone()
    if row is None:
        return None
    db.execute(
        "UPDATE barrier SET deliveries = deliveries + 1 WHERE gid = ? AND step = ? AND op = ?", key
    )
    return (row[0], row[1], row[2])


def _record(
    db: sqlite3.Connection,
    key: tuple[str, str, str],
    outcome: str,
    result: str | None,
    error: str | None,
) -> None:
    db.execute(
        "INSERT INTO barrier (gid, step, op, outcome, result, error, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (*key, outcome, result, error, time.time()),
    )
