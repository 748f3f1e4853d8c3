"""The travel saga on DBOS Transact: one subprocess (DBOS is a process singleton).

``@DBOS.step`` functions do the same inserts and deletes as Legato's steps; a
``@DBOS.workflow`` calls the three steps and, when the car step raises, runs
the compensations of the steps that succeeded in its ``except`` block.

Two ways to run many at once are measured and the better one is reported:
OS threads calling the sync workflow, and asyncio tasks awaiting an async
workflow whose async steps hand the blocking database call to a thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from _measure import run_cpu, sequential_sync, throughput_async, throughput_threads
from _services import SERVICES, Backend, CarUnavailable, Services
from dbos import DBOS, DBOSConfig

_svc: Services


# -- sync workflow ------------------------------------------------------------------


@DBOS.step()
def book_flight(gid: str) -> None:
    _svc.flight.book(gid)


@DBOS.step()
def cancel_flight(gid: str) -> None:
    _svc.flight.cancel(gid)


@DBOS.step()
def book_hotel(gid: str) -> None:
    _svc.hotel.book(gid)


@DBOS.step()
def cancel_hotel(gid: str) -> None:
    _svc.hotel.cancel(gid)


@DBOS.step()
def book_car(gid: str, fail_car: bool) -> None:
    if fail_car:
        raise CarUnavailable("no car available")
    _svc.car.book(gid)


@DBOS.step()
def cancel_car(gid: str) -> None:
    _svc.car.cancel(gid)


@DBOS.workflow()
def travel(gid: str, fail_car: bool) -> str:
    undo: list[Callable[[str], None]] = []
    try:
        book_flight(gid)
        undo.append(cancel_flight)
        book_hotel(gid)
        undo.append(cancel_hotel)
        book_car(gid, fail_car)
        undo.append(cancel_car)
    except CarUnavailable:
        for compensate in reversed(undo):
            compensate(gid)
        return "compensated"
    return "booked"


# -- async workflow -----------------------------------------------------------------


@DBOS.step()
async def book_flight_async(gid: str) -> None:
    await asyncio.to_thread(_svc.flight.book, gid)


@DBOS.step()
async def cancel_flight_async(gid: str) -> None:
    await asyncio.to_thread(_svc.flight.cancel, gid)


@DBOS.step()
async def book_hotel_async(gid: str) -> None:
    await asyncio.to_thread(_svc.hotel.book, gid)


@DBOS.step()
async def cancel_hotel_async(gid: str) -> None:
    await asyncio.to_thread(_svc.hotel.cancel, gid)


@DBOS.step()
async def book_car_async(gid: str, fail_car: bool) -> None:
    if fail_car:
        raise CarUnavailable("no car available")
    await asyncio.to_thread(_svc.car.book, gid)


@DBOS.step()
async def cancel_car_async(gid: str) -> None:
    await asyncio.to_thread(_svc.car.cancel, gid)


@DBOS.workflow()
async def travel_async(gid: str, fail_car: bool) -> str:
    undo: list[Any] = []
    try:
        await book_flight_async(gid)
        undo.append(cancel_flight_async)
        await book_hotel_async(gid)
        undo.append(cancel_hotel_async)
        await book_car_async(gid, fail_car)
        undo.append(cancel_car_async)
    except CarUnavailable:
        for compensate in reversed(undo):
            await compensate(gid)
        return "compensated"
    return "booked"


# -- the run ------------------------------------------------------------------------

_EXPECTED = {False: "booked", True: "compensated"}


def _system_db_settings(backend: Backend) -> str:
    from dbos._dbos import _get_dbos_instance
    from sqlalchemy import text

    engine = _get_dbos_instance()._sys_db.engine
    with engine.connect() as conn:
        if backend.name == "sqlite":
            mode = conn.execute(text("PRAGMA journal_mode")).scalar()
            sync = conn.execute(text("PRAGMA synchronous")).scalar()
            names = {"0": "OFF", "1": "NORMAL", "2": "FULL", "3": "EXTRA"}
            level = names.get(str(sync), str(sync))
            return f"system DB: SQLite {str(mode).upper()}, synchronous={level}"
        sc = conn.execute(text("SHOW synchronous_commit")).scalar()
        return f"system DB: PostgreSQL, synchronous_commit={sc} (session)"


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    global _svc
    backend = Backend(cfg["backend"], cfg["workdir"])
    _svc = Services(backend)
    config: DBOSConfig = {
        "name": "travel-bench",
        "system_database_url": backend.dbos_system_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    booked = 0
    lock = threading.Lock()

    def run_sync(fail_car: bool) -> None:
        nonlocal booked
        result = travel(uuid.uuid4().hex, fail_car)
        if result != _EXPECTED[fail_car]:
            raise RuntimeError(result)
        if not fail_car:
            with lock:
                booked += 1

    async def run_async(fail_car: bool) -> None:
        nonlocal booked
        result = await travel_async(uuid.uuid4().hex, fail_car)
        if result != _EXPECTED[fail_car]:
            raise RuntimeError(result)
        booked += not fail_car

    out: dict[str, Any] = {"framework": "dbos", "backend": backend.name}
    try:
        out["durability"] = _system_db_settings(backend)
        n, warmup = cfg["n"], cfg["warmup"]
        out["seq_a"] = sequential_sync(run_sync, False, n, warmup)
        out["seq_b"] = sequential_sync(run_sync, True, n, warmup)
        modes = cfg.get("dbos_modes", ["threads", "async"])
        for c in cfg["concurrency"]:
            tried: dict[str, Any] = {}
            if "threads" in modes:
                tried["threads"] = throughput_threads(
                    run_sync, c, cfg["duration"], run_cpu(backend, backend.dbos_system_url)
                )
            if "async" in modes:

                async def go(c: int = c) -> dict[str, Any]:
                    return await throughput_async(
                        run_async, c, cfg["duration"], run_cpu(backend, backend.dbos_system_url)
                    )

                tried["async"] = asyncio.run(go())
            best = max(tried, key=lambda m: tried[m]["per_s"])
            out[f"tput_{c}"] = {
                **tried[best],
                "mode": best,
                "all": {m: round(t["per_s"], 1) for m, t in tried.items()},
            }
    finally:
        DBOS.destroy(workflow_completion_timeout_sec=5)
    counts = _svc.counts()
    _svc.close()
    out["check"] = {
        "booked_sagas": booked,
        "rows": counts,
        "ok": all(counts[s] == booked for s in SERVICES),
    }
    return out
