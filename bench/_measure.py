"""Timing loops shared by the Legato and DBOS workers.

A "run" is one whole saga from the caller's point of view: start it and wait
for its end (succeeded for variant A, compensated for variant B).
"""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _machine import CpuMeter

AsyncRun = Callable[[bool], Awaitable[None]]  # run_one(fail_car)
SyncRun = Callable[[bool], None]


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summarise(latencies: list[float]) -> dict[str, float]:
    s = sorted(latencies)
    return {
        "n": len(s),
        "p50_ms": percentile(s, 50) * 1e3,
        "p99_ms": percentile(s, 99) * 1e3,
        "mean_ms": sum(s) / len(s) * 1e3 if s else float("nan"),
    }


async def sequential_async(run: AsyncRun, fail_car: bool, n: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        await run(fail_car)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        await run(fail_car)
        lat.append(time.perf_counter() - t)
    return summarise(lat)


def sequential_sync(run: SyncRun, fail_car: bool, n: int, warmup: int) -> dict[str, float]:
    for _ in range(warmup):
        run(fail_car)
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        run(fail_car)
        lat.append(time.perf_counter() - t)
    return summarise(lat)


def run_cpu(backend: Any, log_url: str) -> RunCpu:
    """The CPU meter of a throughput run on ``backend`` whose log is at ``log_url``."""
    if backend.name != "postgres":
        return RunCpu(None, None)
    from _services import SERVICES

    services = [backend.service_url(s).rsplit("/", 1)[1] for s in SERVICES]
    return RunCpu(log_url.rsplit("/", 1)[1], services)


class RunCpu:
    """Where the CPU goes during a throughput run: this process (the framework, its
    step threads and the participants' client calls) and, on PostgreSQL, the server
    processes serving the framework's log and those serving the three services
    (found by database in ``pg_stat_activity`` once the run's connections are open)."""

    def __init__(self, log_db: str | None, service_dbs: list[str] | None) -> None:
        self.log_db, self.service_dbs = log_db, service_dbs or []
        self._meter: CpuMeter | None = None

    def _groups(self) -> dict[str, list[int]]:
        groups = {"this process": [os.getpid()]}
        if self.log_db is None:
            return groups
        import psycopg
        from _services import PG_ADMIN_URL

        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid, datname FROM pg_stat_activity WHERE datname = ANY(%s)",
                ([self.log_db, *self.service_dbs],),
            ).fetchall()
        groups["postgres (log)"] = [pid for pid, db in rows if db == self.log_db]
        groups["postgres (services)"] = [pid for pid, db in rows if db != self.log_db]
        return groups

    def start(self) -> None:
        self._meter = CpuMeter(self._groups())
        self._meter.start()

    def stop(self, sagas: int) -> dict[str, float]:
        """CPU ms per saga, by group."""
        assert self._meter is not None
        used = self._meter.stop()
        return {name: s / sagas * 1e3 for name, s in used.items()} if sagas else {}


async def throughput_async(
    run: AsyncRun, concurrency: int, duration: float, cpu: RunCpu | None = None
) -> dict[str, Any]:
    """``concurrency`` tasks, each looping start-and-await, for ``duration`` seconds.

    Sagas still in flight at the deadline are waited for and counted; the rate is
    completed sagas over the whole elapsed time.
    """
    done = 0
    deadline = 0.0
    longest = 0.0

    async def worker() -> None:
        nonlocal done, longest
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            await run(False)
            longest = max(longest, time.perf_counter() - t)
            done += 1

    # a short warm-up at the same concurrency: threads, connections, caches
    deadline = time.perf_counter() + min(1.0, duration / 5)
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    done = 0
    longest = 0.0
    if cpu is not None:
        cpu.start()
    start = time.perf_counter()
    deadline = start + duration
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    out = {"sagas": done, "seconds": elapsed, "per_s": done / elapsed, "longest_s": longest}
    if cpu is not None:
        out["cpu_ms"] = cpu.stop(done)
    return out


def throughput_threads(
    run: SyncRun, concurrency: int, duration: float, cpu: RunCpu | None = None
) -> dict[str, Any]:
    """The same with ``concurrency`` OS threads, for synchronous frameworks."""
    lock = threading.Lock()
    done = 0
    deadline = 0.0
    longest = 0.0
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal done, longest
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                run(False)
                took = time.perf_counter() - t
                with lock:
                    done += 1
                    longest = max(longest, took)
        except BaseException as exc:  # surfaced below, not swallowed
            errors.append(exc)

    def burst() -> None:
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    deadline = time.perf_counter() + min(1.0, duration / 5)
    burst()
    done = 0
    longest = 0.0
    if cpu is not None:
        cpu.start()
    start = time.perf_counter()
    deadline = start + duration
    burst()
    elapsed = time.perf_counter() - start
    out = {"sagas": done, "seconds": elapsed, "per_s": done / elapsed, "longest_s": longest}
    if cpu is not None:
        out["cpu_ms"] = cpu.stop(done)
    return out
