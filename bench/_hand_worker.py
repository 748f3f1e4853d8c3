"""The travel saga written by hand, no framework: the practical limit.

What a competent engineer writes without a saga framework: a table ``saga(gid,
status, step, updated_at)`` in a log database of its own, and a plain loop per saga
that commits a log row after each step: one INSERT of the saga, then one UPDATE per
step, each its own durable commit. When the car refuses (variant B), the refusal is
logged (``compensating``: a restart must not go on forward), then each compensation
(the hotel's, then the flight's) is followed by its own UPDATE. The steps are the
same participant calls as Legato's and DBOS's (``_services.py``).

The log is durable as Legato's is: a SQLite file in WAL mode with
``synchronous=FULL`` (every commit fsynced; one connection, taken in turn, as SQLite
has one writer and its busy handler sleeps), or a PostgreSQL database (autocommit:
every statement its own commit, with the server's fsync and synchronous_commit, on;
a LIFO pool of 32 connections, twice each participant's).

Many at once, two ways, the better one reported (as for DBOS): one OS thread per
in-flight saga running the plain loop, or one asyncio task per saga whose blocking
calls each go to a thread (``asyncio.to_thread``, with as many threads as tasks).

The log holds what a recovery would need (each saga, how far it got, whether it
compensates; the participants' writes are idempotent); the recovery code itself is
not written, as nothing here crashes. At the end the participants' rows and the
log's are checked: every variant-A saga booked everywhere and ``booked`` in the
log, every variant B ``compensated``, none left running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from _measure import run_cpu, sequential_sync, throughput_async, throughput_threads
from _services import SERVICES, Backend, CarUnavailable, Pool, Services

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS saga (gid TEXT PRIMARY KEY, status TEXT NOT NULL, "
    "step INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL)"
)
BEGIN = "INSERT INTO saga (gid, status, step, updated_at) VALUES (?, 'running', 0, ?)"
STEP = "UPDATE saga SET status = ?, step = ?, updated_at = ? WHERE gid = ?"
# PostgreSQL: the log takes 4 of a variant-A saga's 7 statements, each participant 1;
# with 16 per participant (48) this stays under max_connections=100. At 64 in flight
# it measured faster than 16 (a connection per thread would be 64: past the limit).
LOG_CONNECTIONS = 32


class SagaLog:
    """The saga table, one durable commit per write."""

    def __init__(self, backend: Backend, connections: int) -> None:
        self.backend = backend
        self.connections = 1 if backend.name == "sqlite" else connections
        self._begin, self._step = BEGIN, STEP
        if backend.name == "sqlite":
            path = backend.hand_log_url

            def connect() -> sqlite3.Connection:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")  # every commit fsynced
                return conn

            self._pool = Pool(connect, 1)
        else:
            import psycopg

            url = backend.hand_log_url
            self._pool = Pool(lambda: psycopg.connect(url, autocommit=True), connections)
            self._begin, self._step = (s.replace("?", "%s") for s in (BEGIN, STEP))
        with self._pool.connection() as conn:
            conn.execute(SCHEMA)

    def write(self, sql: str, params: tuple[Any, ...]) -> None:
        # autocommit: the statement is its own transaction, durable at its commit
        with self._pool.connection() as conn:
            conn.execute(sql, params)

    def begin(self, gid: str) -> None:
        self.write(self._begin, (gid, time.time()))

    def step(self, gid: str, status: str, step: int) -> None:
        self.write(self._step, (status, step, time.time(), gid))

    def statuses(self) -> dict[str, int]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT status, count(*) FROM saga GROUP BY status").fetchall()
            return {s: int(n) for s, n in rows}

    def close(self) -> None:
        self._pool.close()


class HandSaga:
    """The three bookings and their cancellations, in order, over ``log``."""

    def __init__(self, svc: Services, log: SagaLog) -> None:
        self.log = log
        self.steps: list[tuple[Callable[[str, bool], None], Callable[[str], None]]] = [
            (lambda gid, _fail: svc.flight.book(gid), svc.flight.cancel),
            (lambda gid, _fail: svc.hotel.book(gid), svc.hotel.cancel),
            (self._book_car(svc), svc.car.cancel),
        ]

    @staticmethod
    def _book_car(svc: Services) -> Callable[[str, bool], None]:
        def book_car(gid: str, fail_car: bool) -> None:
            if fail_car:
                raise CarUnavailable("no car available")
            svc.car.book(gid)

        return book_car

    def run(self, gid: str, fail_car: bool) -> str:
        """The saga as a plain loop: a log commit after every step."""
        log, last = self.log, len(self.steps)
        log.begin(gid)
        done = 0
        try:
            for book, _ in self.steps:
                book(gid, fail_car)
                done += 1
                log.step(gid, "booked" if done == last else "running", done)
        except CarUnavailable:
            log.step(gid, "compensating", done)
            for _, cancel in reversed(self.steps[:done]):
                cancel(gid)
                done -= 1
                log.step(gid, "compensated" if done == 0 else "compensating", done)
            return "compensated"
        return "booked"

    async def run_async(self, gid: str, fail_car: bool) -> str:
        """The same loop in a task: each blocking call in a thread."""
        log, last, call = self.log, len(self.steps), asyncio.to_thread
        await call(log.begin, gid)
        done = 0
        try:
            for book, _ in self.steps:
                await call(book, gid, fail_car)
                done += 1
                await call(log.step, gid, "booked" if done == last else "running", done)
        except CarUnavailable:
            await call(log.step, gid, "compensating", done)
            for _, cancel in reversed(self.steps[:done]):
                await call(cancel, gid)
                done -= 1
                await call(log.step, gid, "compensated" if done == 0 else "compensating", done)
            return "compensated"
        return "booked"


_EXPECTED = {False: "booked", True: "compensated"}


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    backend = Backend(cfg["backend"], cfg["workdir"])
    svc = Services(backend)
    log = SagaLog(backend, int(cfg.get("hand_log_conns") or LOG_CONNECTIONS))
    saga = HandSaga(svc, log)
    ran = {False: 0, True: 0}  # sagas run, by fail_car
    lock = threading.Lock()

    def run_sync(fail_car: bool) -> None:
        result = saga.run(uuid.uuid4().hex, fail_car)
        if result != _EXPECTED[fail_car]:
            raise RuntimeError(result)
        with lock:
            ran[fail_car] += 1

    async def run_async(fail_car: bool) -> None:
        result = await saga.run_async(uuid.uuid4().hex, fail_car)
        if result != _EXPECTED[fail_car]:
            raise RuntimeError(result)
        ran[fail_car] += 1

    out: dict[str, Any] = {"framework": "hand", "backend": backend.name}
    n, warmup = cfg["n"], cfg["warmup"]
    out["seq_a"] = sequential_sync(run_sync, False, n, warmup)
    out["seq_b"] = sequential_sync(run_sync, True, n, warmup)
    modes = cfg.get("hand_modes") or ["threads", "async"]
    for c in cfg["concurrency"]:
        tried: dict[str, Any] = {}
        if "threads" in modes:
            tried["threads"] = throughput_threads(
                run_sync, c, cfg["duration"], run_cpu(backend, backend.hand_log_url)
            )
        if "async" in modes:

            async def go(c: int = c) -> dict[str, Any]:
                # a thread for every task's call, as the threads mode has
                pool = concurrent.futures.ThreadPoolExecutor(c, "hand")
                asyncio.get_running_loop().set_default_executor(pool)
                return await throughput_async(
                    run_async, c, cfg["duration"], run_cpu(backend, backend.hand_log_url)
                )

            tried["async"] = asyncio.run(go())
        best = max(tried, key=lambda m: tried[m]["per_s"])
        out[f"tput_{c}"] = {
            **tried[best],
            "mode": best,
            "all": {m: round(t["per_s"], 1) for m, t in tried.items()},
        }
    counts = svc.counts()
    statuses = log.statuses()
    svc.close()
    log.close()
    expected_log = {"booked": ran[False], "compensated": ran[True]}
    out["check"] = {
        "booked_sagas": ran[False],
        "rows": counts,
        "log": statuses,
        "ok": all(counts[s] == ran[False] for s in SERVICES)
        and {s: k for s, k in statuses.items() if k}
        == {s: k for s, k in expected_log.items() if k},
    }
    if backend.name == "sqlite":
        out["durability"] = "log: its own SQLite file, WAL, synchronous=FULL, a commit per write"
    else:
        out["durability"] = (
            f"log: its own PostgreSQL database (server settings), autocommit, a commit per "
            f"write, {log.connections} pooled connections"
        )
    return out
