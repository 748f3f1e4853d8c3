"""The travel saga on Legato: one subprocess, one backend.

Sync step functions (run in the coordinator's step threads), the log on a
SQLite file or a PostgreSQL database, submit + ``await handle.result()``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from _measure import sequential_async, throughput_async
from _services import SERVICES, Backend, Services

import legato

_svc: Services  # set in run(): the step functions below use it


def book_flight(ctx: legato.StepContext) -> None:
    _svc.flight.book(ctx.gid)


def cancel_flight(ctx: legato.StepContext) -> None:
    _svc.flight.cancel(ctx.gid)


def book_hotel(ctx: legato.StepContext) -> None:
    _svc.hotel.book(ctx.gid)


def cancel_hotel(ctx: legato.StepContext) -> None:
    _svc.hotel.cancel(ctx.gid)


def book_car(ctx: legato.StepContext) -> None:
    if isinstance(ctx.payload, dict) and ctx.payload["fail_car"]:
        raise legato.Failure("no car available")
    _svc.car.book(ctx.gid)


def cancel_car(ctx: legato.StepContext) -> None:
    _svc.car.cancel(ctx.gid)


def travel_saga(in_thread: bool) -> legato.Saga:
    """``in_thread=False`` where a step is a write to a local SQLite file (tens of
    microseconds, never waits on a network): such a step is better run on the event
    loop than handed to a thread and back."""
    return (
        legato.Saga("travel")
        .step("flight", action=book_flight, compensate=cancel_flight, in_thread=in_thread)
        .step("hotel", action=book_hotel, compensate=cancel_hotel, in_thread=in_thread)
        .step("car", action=book_car, compensate=cancel_car, in_thread=in_thread)
    )


async def _run(cfg: dict[str, Any]) -> dict[str, Any]:
    global _svc
    backend = Backend(cfg["backend"], cfg["workdir"])
    _svc = Services(backend)
    in_thread = backend.name != "sqlite"
    saga = travel_saga(in_thread)
    booked = 0
    expected = {False: legato.TxStatus.SUCCEEDED, True: legato.TxStatus.FAILED}

    out: dict[str, Any] = {"framework": "legato", "backend": backend.name}
    threads = cfg.get("step_threads")
    async with legato.Coordinator(backend.legato_log_url, step_threads=threads) as coordinator:
        coordinator.register(saga)

        async def run_one(fail_car: bool) -> None:
            nonlocal booked
            handle = await coordinator.submit(saga, {"fail_car": fail_car}, gid=uuid.uuid4().hex)
            outcome = await handle.result()
            if outcome.status is not expected[fail_car]:
                raise RuntimeError(f"{handle.gid}: {outcome}")
            booked += not fail_car

        n, warmup = cfg["n"], cfg["warmup"]
        profiler = None
        if cfg.get("profile"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        out["seq_a"] = await sequential_async(run_one, False, n, warmup)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(cfg["profile"])
        out["seq_b"] = await sequential_async(run_one, True, n, warmup)
        for c in cfg["concurrency"]:
            before = getattr(coordinator.log, "group_stats", (0, 0))
            tput = await throughput_async(run_one, c, cfg["duration"])
            after = getattr(coordinator.log, "group_stats", (0, 0))
            commits, writes = after[0] - before[0], after[1] - before[1]
            tput["log_writes_per_commit"] = writes / commits if commits else None
            out[f"tput_{c}"] = tput
            out[f"tput_{c}"]["mode"] = "asyncio tasks"

    counts = _svc.counts()
    _svc.close()
    out["check"] = {
        "booked_sagas": booked,
        "rows": counts,
        "ok": all(counts[s] == booked for s in SERVICES),
    }
    out["durability"] = (
        "log: SQLite WAL, synchronous=FULL (Legato's setting)"
        if backend.name == "sqlite"
        else "log: PostgreSQL (server settings)"
    ) + (
        "; steps in the step threads"
        if in_thread
        else "; steps on the event loop (in_thread=False)"
    )
    return out


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_run(cfg))
