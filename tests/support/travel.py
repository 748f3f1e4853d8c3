"""The participants of the chaos tests: flight, hotel and car, each owning a database.

A service's database is a SQLite file or a PostgreSQL database. Each op writes
a barrier row keyed by ``(gid, step, op)`` in the same local transaction as its
business change, as DTM's barrier does:

* an action that finds its own row already there changes nothing (Legato
  delivers at least once) and answers what it answered the first time;
* a compensation that finds no action row writes one itself, marked
  ``null-compensate``: the action never took effect, so there is nothing to
  undo, and an action arriving later (*hanging*) is refused by that row.

Every business change is also appended to an ``effect`` ledger, with no key,
so a change made twice would show up there. The saga's last step (car) fails
definitely for every third saga, so that compensation runs; some ops commit
and then "lose their reply" on the first attempt, so that a retry meets the
barrier.

``Tracker`` (PostgreSQL) counts how many runs of each op are in flight at once,
for the two-coordinators test.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg

import legato
from legato import OpName, StepContext, TxQuery, TxStatus

STEPS = ("flight", "hotel", "car")
SAGA_NAME = "chaos_trip"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS reservation (gid TEXT NOT NULL, step TEXT NOT NULL, "
    "status TEXT NOT NULL, PRIMARY KEY (gid, step))",
    "CREATE TABLE IF NOT EXISTS barrier (gid TEXT NOT NULL, step TEXT NOT NULL, "
    "op TEXT NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (gid, step, op))",
    "CREATE TABLE IF NOT EXISTS effect (gid TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL)",
)

_TRACKER_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS op_counter (gid TEXT NOT NULL, step TEXT NOT NULL, "
    "op TEXT NOT NULL, in_flight INTEGER NOT NULL, runs INTEGER NOT NULL, "
    "max_in_flight INTEGER NOT NULL, PRIMARY KEY (gid, step, op))",
    "CREATE TABLE IF NOT EXISTS op_run (id BIGSERIAL PRIMARY KEY, gid TEXT NOT NULL, "
    "step TEXT NOT NULL, op TEXT NOT NULL, attempt INTEGER NOT NULL, owner TEXT NOT NULL, "
    "started_at DOUBLE PRECISION NOT NULL, ended_at DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS violation (gid TEXT NOT NULL, step TEXT NOT NULL, "
    "op TEXT NOT NULL, owner TEXT NOT NULL, in_flight INTEGER NOT NULL, "
    "at DOUBLE PRECISION NOT NULL)",
)


class LostReply(ConnectionError):
    """The op took effect, but its answer never reached the coordinator."""


def gid_of(i: int) -> str:
    return f"saga-{i}"


def fails(i: int) -> bool:
    """Every third saga is refused by the car service: it must end all undone."""
    return i % 3 == 2


def payload_of(i: int) -> dict[str, Any]:
    return {"i": i, "fail": fails(i)}


def _loses_reply(i: int, step: str, op: OpName, attempt: int) -> bool:
    if attempt != 1:
        return False
    if op is OpName.ACTION:
        return step == "hotel" and i % 7 == 0
    return step == "flight" and i % 5 == 0


@dataclass
class Setup:
    """Where a chaos run keeps its log, and each service its database (by step)."""

    log_url: str
    locations: dict[str, str]


def is_postgres(location: str) -> bool:
    return location.startswith(("postgresql:", "postgres:"))


# -- one service's database -----------------------------------------------------------


class Database:
    """A SQLite file or a PostgreSQL database, one connection per step thread."""

    def __init__(self, location: str, application: str = "chaos") -> None:
        self.location = location
        self.postgres = is_postgres(location)
        self.application = application
        self._local = threading.local()

    def _connect(self) -> Any:
        if self.postgres:
            return psycopg.connect(
                self.location,
                autocommit=True,
                connect_timeout=10,
                application_name=self.application,
            )
        conn = sqlite3.connect(
            self.location, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """One local transaction; ``execute`` takes ``?`` placeholders on both backends."""
        conn = self._conn()
        try:
            conn.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
            yield _Tx(conn, self.postgres)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except Exception:
                self._drop()
            raise

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as tx:
            return [tuple(r) for r in tx.execute(sql, params).fetchall()]

    def close(self) -> None:
        self._drop()


@dataclass
class _Tx:
    conn: Any
    postgres: bool

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.postgres:
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, params)


# -- the participants -----------------------------------------------------------------


class Service:
    """One participant: reserves (action) and cancels (compensate) with a barrier."""

    def __init__(self, step: str, db: Database, tracker: Tracker | None = None) -> None:
        self.step = step
        self.db = db
        self.tracker = tracker

    def reserve(self, ctx: StepContext) -> str:
        with self._tracked(ctx):
            return self._reserve(ctx)

    def cancel(self, ctx: StepContext) -> str:
        with self._tracked(ctx):
            return self._cancel(ctx)

    def _tracked(self, ctx: StepContext) -> contextlib.AbstractContextManager[None]:
        return self.tracker.run(ctx) if self.tracker else contextlib.nullcontext()

    def _reserve(self, ctx: StepContext) -> str:
        answer = f"{self.step}:{ctx.gid}"
        if self.step == "car" and ctx.payload["fail"]:
            raise legato.Failure("no car left")
        if not reserve_once(self.db, ctx.gid, self.step):
            return answer  # a repeat: it took effect the first time
        if _loses_reply(ctx.payload["i"], self.step, ctx.op, ctx.attempt):
            raise LostReply("connection reset after commit")
        return answer

    def _cancel(self, ctx: StepContext) -> str:
        done = cancel_once(self.db, ctx.gid, self.step)
        if done == "cancelled" and _loses_reply(ctx.payload["i"], self.step, ctx.op, ctx.attempt):
            raise LostReply("connection reset after commit")
        return done


def reserve_once(db: Database, gid: str, step: str) -> bool:
    """Reserve ``step`` for ``gid`` behind its barrier row, in one local transaction:
    True if this call took effect, False for a repeat. Raises ``legato.Failure`` where a
    compensation came first (and left its null-compensate row)."""
    with db.transaction() as tx:
        inserted = tx.execute(
            "INSERT INTO barrier (gid, step, op, reason) VALUES (?, ?, 'action', 'action') "
            "ON CONFLICT DO NOTHING",
            (gid, step),
        ).rowcount
        if not inserted:
            (reason,) = tx.execute(
                "SELECT reason FROM barrier WHERE gid = ? AND step = ? AND op = 'action'",
                (gid, step),
            ).fetchone()
            if reason == "null-compensate":
                raise legato.Failure("refused: this reservation was already compensated")
            return False
        tx.execute(
            "INSERT INTO reservation (gid, step, status) VALUES (?, ?, 'active')", (gid, step)
        )
        tx.execute("INSERT INTO effect (gid, step, kind) VALUES (?, ?, 'reserve')", (gid, step))
    return True


def cancel_once(db: Database, gid: str, step: str) -> str:
    """Cancel the reservation of ``step`` for ``gid`` behind its barrier row, in one local
    transaction: ``cancelled``, ``repeat``, or ``null`` (it never took effect: nothing to
    undo, and a late reservation is refused now)."""
    with db.transaction() as tx:
        inserted = tx.execute(
            "INSERT INTO barrier (gid, step, op, reason) "
            "VALUES (?, ?, 'compensate', 'compensate') ON CONFLICT DO NOTHING",
            (gid, step),
        ).rowcount
        if not inserted:
            return "repeat"
        null = tx.execute(
            "INSERT INTO barrier (gid, step, op, reason) "
            "VALUES (?, ?, 'action', 'null-compensate') ON CONFLICT DO NOTHING",
            (gid, step),
        ).rowcount
        if null:
            return "null"
        tx.execute(
            "UPDATE reservation SET status = 'cancelled' "
            "WHERE gid = ? AND step = ? AND status = 'active'",
            (gid, step),
        )
        tx.execute("INSERT INTO effect (gid, step, kind) VALUES (?, ?, 'cancel')", (gid, step))
    return "cancelled"


def build_saga(
    locations: Mapping[str, str], track_owner: str | None = None, *, hold: float = 0.03
) -> legato.Saga:
    """The trip saga over the services at ``locations`` (by step); steps sharing a
    database share its connections. ``track_owner`` counts runs in flight."""
    dbs: dict[str, Database] = {}
    saga = legato.Saga(SAGA_NAME)
    for step in STEPS:
        location = locations[step]
        db = dbs.setdefault(location, Database(location, track_owner or "chaos"))
        tracker = Tracker(db, track_owner, hold) if track_owner else None
        service = Service(step, db, tracker)
        saga.step(step, action=service.reserve, compensate=service.cancel)
    return saga


def create_tables(locations: Mapping[str, str], *, track: bool = False) -> None:
    """Build each service's tables (and the tracker's), before any worker starts."""
    for location in set(locations.values()):
        db = Database(location)
        try:
            with db.transaction() as tx:
                for statement in _SCHEMA + (_TRACKER_SCHEMA if track else ()):
                    tx.execute(statement)
        finally:
            db.close()


# -- counting runs in flight (PostgreSQL) ---------------------------------------------


class Tracker:
    """Counts the runs of each op in flight, in the participant's database.

    A run increments its op's counter in a committed transaction before it does
    anything, and decrements it when done; a counter above one means two runs
    of the same op overlapped, which is recorded in ``violation``. ``op_run``
    keeps each run's interval so that the test can check overlaps afterwards,
    and ``reap`` ends the runs of a coordinator that was killed mid-op (the
    kernel ended them; their decrement never came).
    """

    def __init__(self, db: Database, owner: str, hold: float = 0.03) -> None:
        assert db.postgres
        self.db = db
        self.owner = owner
        self.hold = hold

    @contextlib.contextmanager
    def run(self, ctx: StepContext) -> Iterator[None]:
        key = (ctx.gid, ctx.step, str(ctx.op))
        with self.db.transaction() as tx:
            (in_flight,) = tx.execute(
                "INSERT INTO op_counter (gid, step, op, in_flight, runs, max_in_flight) "
                "VALUES (?, ?, ?, 1, 1, 1) ON CONFLICT (gid, step, op) DO UPDATE SET "
                "in_flight = op_counter.in_flight + 1, runs = op_counter.runs + 1, "
                "max_in_flight = GREATEST(op_counter.max_in_flight, op_counter.in_flight + 1) "
                "RETURNING in_flight",
                key,
            ).fetchone()
            if in_flight > 1:
                tx.execute(
                    "INSERT INTO violation (gid, step, op, owner, in_flight, at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (*key, self.owner, in_flight, time.time()),
                )
            # in the same transaction as the increment, so that ``reap`` finds every
            # run a killed coordinator left counted
            started = time.time()
            (run_id,) = tx.execute(
                "INSERT INTO op_run (gid, step, op, attempt, owner, started_at) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (*key, ctx.attempt, self.owner, started),
            ).fetchone()
        try:
            # long enough that a second run of the same op would overlap this one
            time.sleep(self.hold * (1 + zlib.crc32(repr(key).encode()) % 5 / 4))
            yield
        finally:
            ended = time.time()
            with self.db.transaction() as tx:
                tx.execute("UPDATE op_run SET ended_at = ? WHERE id = ?", (ended, run_id))
                tx.execute(
                    "UPDATE op_counter SET in_flight = in_flight - 1 "
                    "WHERE gid = ? AND step = ? AND op = ?",
                    key,
                )


def reap(location: str, owner: str, at: float) -> int:
    """End the runs a killed coordinator left open: it died at ``at``.

    A COMMIT the coordinator sent just before it died still lands once the
    server reads it, so this first waits for the dead process's sessions to go.
    """
    db = Database(location)
    try:
        deadline = time.monotonic() + 10
        while db.query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = ?", (owner,)
        )[0][0]:
            assert time.monotonic() < deadline, f"the sessions of {owner} outlive it"
            time.sleep(0.005)
        with db.transaction() as tx:
            open_runs = tx.execute(
                "SELECT id, gid, step, op FROM op_run WHERE owner = ? AND ended_at IS NULL",
                (owner,),
            ).fetchall()
            for run_id, gid, step, op in open_runs:
                tx.execute("UPDATE op_run SET ended_at = ? WHERE id = ?", (at, run_id))
                tx.execute(
                    "UPDATE op_counter SET in_flight = in_flight - 1 "
                    "WHERE gid = ? AND step = ? AND op = ?",
                    (gid, step, op),
                )
        return len(open_runs)
    finally:
        db.close()


# -- reading the outcome back: the services' databases against the log ----------------


async def check_outcomes(
    log_url: str, locations: Mapping[str, str], n: int, *, complete: bool = True
) -> list[str]:
    """Every problem found; ``[]`` means every saga in the log ended all done or all
    undone, and no service holds an effect of a saga the log does not know.

    ``complete`` asks for all ``n`` sagas to be in the log; without it (after a
    recovery that resubmitted nothing) the log may hold fewer.
    """
    problems: list[str] = []
    log = legato.open_log(log_url)
    await log.open()
    try:
        txs = {tx.gid: tx for tx in await log.list(TxQuery(limit=10 * n + 10))}
        ops = {}
        for gid in txs:
            loaded = await log.load(gid)
            assert loaded is not None
            ops[gid] = {(o.branch, o.op): o for o in loaded[1]}
    finally:
        await log.close()

    expected = {gid_of(i) for i in range(n)}
    missing = sorted(expected - set(txs)) if complete else []
    extra = sorted(set(txs) - expected)
    if missing or extra:
        problems.append(
            f"the log holds {len(txs)} sagas; missing {missing[:10]}, unexpected {extra[:10]}"
        )

    state: dict[str, dict[str, Any]] = {}
    for step, location in locations.items():
        db = Database(location)
        try:
            state[step] = {
                "reservation": {
                    (g, s): st
                    for g, s, st in db.query("SELECT gid, step, status FROM reservation")
                    if s == step
                },
                "barrier": {
                    (g, s, o): r
                    for g, s, o, r in db.query("SELECT gid, step, op, reason FROM barrier")
                    if s == step
                },
                "effect": [
                    (g, s, k)
                    for g, s, k in db.query("SELECT gid, step, kind FROM effect")
                    if s == step
                ],
            }
        finally:
            db.close()

    for step in STEPS:
        # write-ahead: an op runs only once its start is in the log
        strays = sorted({g for g, _, _ in state[step]["barrier"]} - set(txs))
        if strays:
            problems.append(f"{step} holds effects of sagas the log does not know: {strays[:10]}")

    for i in range(n):
        gid = gid_of(i)
        tx = txs.get(gid)
        if tx is None:
            continue
        where = f"{gid} ({tx.status})"
        if not tx.status.ended or tx.stuck:
            problems.append(f"{where} has not ended: stuck={tx.stuck!r} reason={tx.reason!r}")
            continue
        want = TxStatus.FAILED if fails(i) else TxStatus.SUCCEEDED
        if tx.status is not want:
            problems.append(f"{where} should have {want}: {tx.reason}")
        active = []
        for step in STEPS:
            s = state[step]
            reservation = s["reservation"].get((gid, step))
            active.append(reservation == "active")
            kinds = [k for g, _, k in s["effect"] if g == gid]
            if kinds.count("reserve") > 1 or kinds.count("cancel") > 1:
                problems.append(f"{where}: {step} took effect more than once: {kinds}")
            if "cancel" in kinds and "reserve" not in kinds:
                problems.append(f"{where}: {step} cancelled a reservation it never made")
            if (reservation is not None) != ("reserve" in kinds) or (
                reservation == "cancelled"
            ) != ("cancel" in kinds):
                problems.append(f"{where}: {step} row {reservation!r} disagrees with {kinds}")
            action = s["barrier"].get((gid, step, "action"))
            compensate = s["barrier"].get((gid, step, "compensate"))
            op_log = ops[gid]
            if tx.status is TxStatus.SUCCEEDED:
                if action != "action" or compensate is not None:
                    problems.append(f"{where}: {step} barrier is {action!r}/{compensate!r}")
                if op_log[(step, OpName.ACTION)].status is not legato.OpStatus.SUCCEEDED:
                    problems.append(f"{where}: the log says {step}.action did not succeed")
            else:
                # every step started before car failed, so every one is compensated
                if compensate != "compensate":
                    problems.append(f"{where}: {step} was never compensated ({action!r})")
                logged = op_log[(step, OpName.COMPENSATE)].status
                if logged is not legato.OpStatus.SUCCEEDED:
                    problems.append(f"{where}: the log says {step}.compensate is {logged}")
        if any(active) and not all(active):
            problems.append(f"{where}: half done: active={dict(zip(STEPS, active, strict=True))}")
        if tx.status is TxStatus.SUCCEEDED and not all(active):
            problems.append(f"{where}: succeeded, but active={active}")
        if tx.status is TxStatus.FAILED and any(active):
            problems.append(f"{where}: failed, but active={active}")
    return problems
