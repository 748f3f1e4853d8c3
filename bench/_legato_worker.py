"""The travel saga on Legato: one subprocess, one backend.

Sync step functions (run in the coordinator's step threads), the log on a
SQLite file or a PostgreSQL database, submit + ``await handle.result()``.

``kind: "workflow"`` runs the same three steps, with the same compensations, as a
durable workflow (``@legato.workflow``, ``start_workflow`` + ``await
handle.result()``); ``kind: "asleep"`` measures the memory that many workflows
asleep at once hold in the coordinator, ``kind: "inflight"`` the memory that many
sagas in flight at once (each held in its first step) hold.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any

from _measure import run_cpu, sequential_async, throughput_async
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


# -- the same steps as a workflow ---------------------------------------------------
#
# ``wf.step(fn, *args, compensate=undo)`` calls ``fn(*args)``, and ``undo(*args)`` when
# the workflow rolls back. A sync step runs in the step threads; one marked
# ``@legato.step(in_thread=False)`` on the event loop, inline, as the saga's
# ``in_thread=False`` steps do (used where the saga uses in_thread=False: SQLite).


def wf_book_flight(gid: str) -> None:
    _svc.flight.book(gid)


def wf_cancel_flight(gid: str) -> None:
    _svc.flight.cancel(gid)


def wf_book_hotel(gid: str) -> None:
    _svc.hotel.book(gid)


def wf_cancel_hotel(gid: str) -> None:
    _svc.hotel.cancel(gid)


def wf_book_car(gid: str, fail_car: bool) -> None:
    if fail_car:
        raise legato.Failure("no car available")
    _svc.car.book(gid)


def wf_cancel_car(gid: str, fail_car: bool) -> None:
    _svc.car.cancel(gid)


@legato.step(in_thread=False)
def wf_book_flight_on_loop(gid: str) -> None:
    _svc.flight.book(gid)


@legato.step(in_thread=False)
def wf_cancel_flight_on_loop(gid: str) -> None:
    _svc.flight.cancel(gid)


@legato.step(in_thread=False)
def wf_book_hotel_on_loop(gid: str) -> None:
    _svc.hotel.book(gid)


@legato.step(in_thread=False)
def wf_cancel_hotel_on_loop(gid: str) -> None:
    _svc.hotel.cancel(gid)


@legato.step(in_thread=False)
def wf_book_car_on_loop(gid: str, fail_car: bool) -> None:
    if fail_car:
        raise legato.Failure("no car available")
    _svc.car.book(gid)


@legato.step(in_thread=False)
def wf_cancel_car_on_loop(gid: str, fail_car: bool) -> None:
    _svc.car.cancel(gid)


IN_THREADS = SimpleNamespace(
    book_flight=wf_book_flight,
    cancel_flight=wf_cancel_flight,
    book_hotel=wf_book_hotel,
    cancel_hotel=wf_cancel_hotel,
    book_car=wf_book_car,
    cancel_car=wf_cancel_car,
)
ON_LOOP = SimpleNamespace(
    book_flight=wf_book_flight_on_loop,
    cancel_flight=wf_cancel_flight_on_loop,
    book_hotel=wf_book_hotel_on_loop,
    cancel_hotel=wf_cancel_hotel_on_loop,
    book_car=wf_book_car_on_loop,
    cancel_car=wf_cancel_car_on_loop,
)
_steps = IN_THREADS  # set in run(), before any workflow starts


@legato.workflow("travel")
async def travel_workflow(wf: legato.Workflow, fail_car: bool) -> str:
    """The saga's three steps, as plain Python: a failure raised out of the body (the
    car's refusal) compensates the steps that succeeded, in reverse; the workflow fails."""
    s = _steps
    gid = wf.gid
    await wf.step(s.book_flight, gid, name="flight", compensate=s.cancel_flight)
    await wf.step(s.book_hotel, gid, name="hotel", compensate=s.cancel_hotel)
    await wf.step(s.book_car, gid, fail_car, name="car", compensate=s.cancel_car)
    return "booked"


@legato.workflow("asleep")
async def asleep_workflow(wf: legato.Workflow, seconds: float) -> str:
    """One step (the flight), then a durable sleep: for the memory measurement."""
    s = _steps
    await wf.step(s.book_flight, wf.gid, name="flight", compensate=s.cancel_flight)
    await wf.sleep(seconds)
    return "woke"


async def _run(cfg: dict[str, Any]) -> dict[str, Any]:
    global _svc, _steps
    backend = Backend(cfg["backend"], cfg["workdir"])
    _svc = Services(backend)
    in_thread = backend.name != "sqlite"
    _steps = IN_THREADS if in_thread else ON_LOOP
    kind = cfg.get("kind", "saga")
    if kind == "asleep":
        return await _asleep(cfg, backend)
    if kind == "inflight":
        return await _inflight(cfg, backend, in_thread)
    saga = travel_saga(in_thread)
    booked = 0
    expected = {False: legato.TxStatus.SUCCEEDED, True: legato.TxStatus.FAILED}

    framework = "legato-workflow" if kind == "workflow" else "legato"
    out: dict[str, Any] = {"framework": framework, "backend": backend.name}
    threads = cfg.get("step_threads")
    async with legato.Coordinator(backend.legato_log_url, step_threads=threads) as coordinator:
        coordinator.register(travel_workflow if kind == "workflow" else saga)

        async def run_saga(fail_car: bool) -> None:
            nonlocal booked
            handle = await coordinator.submit(saga, {"fail_car": fail_car}, gid=uuid.uuid4().hex)
            outcome = await handle.result()
            if outcome.status is not expected[fail_car]:
                raise RuntimeError(f"{handle.gid}: {outcome}")
            booked += not fail_car

        async def run_workflow(fail_car: bool) -> None:
            nonlocal booked
            handle = await coordinator.start_workflow(
                travel_workflow, fail_car, gid=uuid.uuid4().hex
            )
            outcome = await handle.result()
            if outcome.status is not expected[fail_car]:
                raise RuntimeError(f"{handle.gid}: {outcome}")
            booked += not fail_car

        run_one = run_workflow if kind == "workflow" else run_saga

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
            tput = await throughput_async(
                run_one, c, cfg["duration"], run_cpu(backend, backend.legato_log_url)
            )
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
    out["durability"] = _log_durability(backend) + _where_steps(kind, in_thread)
    return out


def _log_durability(backend: Backend) -> str:
    if backend.name == "sqlite":
        return "log: SQLite WAL, synchronous=FULL (Legato's setting)"
    return "log: PostgreSQL (server settings)"


def _where_steps(kind: str, in_thread: bool) -> str:
    if kind == "saga":
        if in_thread:
            return "; steps in the step threads"
        return "; steps on the event loop (in_thread=False)"
    if in_thread:
        return "; sync step functions, in the step threads"
    return "; steps marked @legato.step(in_thread=False): on the event loop, inline"


# -- memory: many workflows asleep at once ------------------------------------------


def rss_mb() -> float:
    """This process's resident set size, in MB (psutil if installed, else /proc)."""
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return float(psutil.Process().memory_info().rss) / 2**20
    return _proc_status_kb("VmRSS") / 1024


def peak_rss_mb() -> float:
    return _proc_status_kb("VmHWM") / 1024


def _proc_status_kb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def _body_tasks() -> int:
    """Workflow bodies alive in this process (their tasks are named legato-wf-<gid>)."""
    return sum(1 for t in asyncio.all_tasks() if t.get_name().startswith("legato-wf-"))


async def _asleep(cfg: dict[str, Any], backend: Backend) -> dict[str, Any]:
    """Start ``cfg["asleep"]`` workflows that each make one step and then sleep an
    hour; once every one is let go (lease released, body task dropped), how much more
    memory the coordinator's process holds than before they started."""
    n, seconds = int(cfg["asleep"]), 3600.0
    in_flight_cap = int(cfg.get("asleep_in_flight", 256))
    out: dict[str, Any] = {"framework": "legato-workflow", "backend": backend.name, "n": n}
    threads = cfg.get("step_threads")
    async with legato.Coordinator(backend.legato_log_url, step_threads=threads) as coordinator:
        coordinator.register(asleep_workflow)

        async def start_some(count: int, sleep_s: float, wait: bool, width: int) -> None:
            todo = iter(range(count))

            async def starter() -> None:
                for _ in todo:
                    # polled: the coordinator has no event for its count
                    while coordinator.in_flight >= in_flight_cap:  # noqa: ASYNC110
                        await asyncio.sleep(0.002)
                    handle = await coordinator.start_workflow(
                        asleep_workflow, sleep_s, gid=uuid.uuid4().hex
                    )
                    if wait:
                        outcome = await handle.result()
                        if outcome.status is not legato.TxStatus.SUCCEEDED:
                            raise RuntimeError(f"{handle.gid}: {outcome}")

            await asyncio.gather(*(starter() for _ in range(width)))

        # warm-up: the same workflow with a sleep of 0 (it runs to its end): the log's
        # connections, the step threads, the code paths, the caches are there before
        # "before" is read
        warm = max(10, min(200, n // 20))
        await start_some(warm, 0.0, wait=True, width=16)
        gc.collect()
        await asyncio.sleep(0.2)
        blocks0, before = sys.getallocatedblocks(), rss_mb()

        t0 = time.perf_counter()
        await start_some(n, seconds, wait=False, width=64)
        started_s = time.perf_counter() - t0
        # let go: no runner drives any of them and no body task is left
        deadline = time.monotonic() + float(cfg.get("asleep_timeout", 300))
        while (coordinator.in_flight or _body_tasks()) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        let_go_s = time.perf_counter() - t0
        held, tasks = coordinator.in_flight, _body_tasks()
        gc.collect()
        await asyncio.sleep(0.5)
        after, blocks1 = rss_mb(), sys.getallocatedblocks()

        # what the log says: every one of them asleep (submitted, leased by no one)
        rows = await coordinator.list(legato.TxQuery(name=asleep_workflow.key, limit=n + warm + 10))
        asleep = sum(
            1
            for r in rows
            if r.status is legato.TxStatus.SUBMITTED
            and r.lease_owner is None
            and r.next_attempt_at is not None
            and r.next_attempt_at > time.time() + seconds / 2
        )
        out.update(
            warmup=warm,
            rss_before_mb=before,
            rss_after_mb=after,
            growth_mb=after - before,
            per_workflow_kb=(after - before) * 1024 / n if n else 0.0,
            peak_rss_mb=peak_rss_mb(),
            python_blocks_growth=blocks1 - blocks0,
            start_s=started_s,
            started_per_s=n / started_s if started_s else 0.0,
            let_go_s=let_go_s,
            still_driven=held,
            body_tasks=tasks,
            asleep_in_log=asleep,
            in_flight_cap=in_flight_cap,
            rss_source="psutil" if _has_psutil() else "/proc/self/status VmRSS",
        )
    counts = _svc.counts()
    _svc.close()
    out["check"] = {
        "booked_sagas": n + warm,
        "rows": counts,
        "ok": counts["flight"] == n + warm and asleep == n and not held and not tasks,
    }
    out["durability"] = _log_durability(backend) + _where_steps(
        "workflow", backend.name != "sqlite"
    )
    return out


# -- memory: many sagas in flight at once ---------------------------------------------


class Gate:
    """Holds the sagas' first step until opened, and counts the steps waiting in it."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.waiting = 0

    async def wait(self) -> None:
        self.waiting += 1
        try:
            await self.open.wait()
        finally:
            self.waiting -= 1


def held_saga(gate: Gate, in_thread: bool) -> legato.Saga:
    """The travel saga whose first step (an async one, on the event loop) waits at
    ``gate`` before it books the flight: while the gate is shut, every saga submitted
    is in flight (leased, its runner and its step's task alive) and stays there."""

    async def book_flight_held(ctx: legato.StepContext) -> None:
        await gate.wait()
        if in_thread:
            await asyncio.to_thread(_svc.flight.book, ctx.gid)
        else:
            _svc.flight.book(ctx.gid)

    return (
        legato.Saga("travel-held")
        .step("flight", action=book_flight_held, compensate=cancel_flight)
        .step("hotel", action=book_hotel, compensate=cancel_hotel, in_thread=in_thread)
        .step("car", action=book_car, compensate=cancel_car, in_thread=in_thread)
    )


async def _inflight(cfg: dict[str, Any], backend: Backend, in_thread: bool) -> dict[str, Any]:
    """Submit ``cfg["inflight"]`` sagas whose first step waits at a shut gate; once all
    are in flight, how much more memory the coordinator's process holds than before
    they started. Then open the gate: every one must end, booked everywhere."""
    n = int(cfg["inflight"])
    out: dict[str, Any] = {"framework": "legato", "backend": backend.name, "n": n}
    gate = Gate()
    saga = held_saga(gate, in_thread)
    threads = cfg.get("step_threads")
    async with legato.Coordinator(backend.legato_log_url, step_threads=threads) as coordinator:
        coordinator.register(saga)

        async def submit_all(count: int, width: int) -> None:
            # the handles are dropped: what is measured is the coordinator's own memory,
            # and the log says how each saga ended
            todo = iter(range(count))

            async def submitter() -> None:
                for _ in todo:
                    await coordinator.submit(saga, {"fail_car": False}, gid=uuid.uuid4().hex)

            await asyncio.gather(*(submitter() for _ in range(width)))

        async def all_ended(timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while coordinator.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        # warm-up, the gate open: the log's connections, the step threads, the code
        # paths and the caches are there before "before" is read
        warm = max(10, min(200, n // 10))
        gate.open.set()
        await submit_all(warm, 16)
        await all_ended(60)
        gate.open.clear()
        gc.collect()
        await asyncio.sleep(0.2)
        blocks0, before = sys.getallocatedblocks(), rss_mb()

        t0 = time.perf_counter()
        await submit_all(n, 64)
        started_s = time.perf_counter() - t0
        deadline = time.monotonic() + float(cfg.get("inflight_timeout", 120))
        while gate.waiting < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        held, driven = gate.waiting, coordinator.in_flight
        gc.collect()
        await asyncio.sleep(0.2)
        during, blocks1 = rss_mb(), sys.getallocatedblocks()
        # what the log says: every one of them submitted and leased by this coordinator
        rows = await coordinator.list(
            legato.TxQuery(name=saga.name, status=[legato.TxStatus.SUBMITTED], limit=n + 10)
        )
        leased = sum(1 for r in rows if r.lease_owner is not None)

        t1 = time.perf_counter()
        gate.open.set()
        await all_ended(float(cfg.get("inflight_timeout", 120)))
        drain_s = time.perf_counter() - t1
        left = coordinator.in_flight
        gc.collect()
        await asyncio.sleep(0.2)
        after = rss_mb()
        ended = await coordinator.list(
            legato.TxQuery(name=saga.name, status=[legato.TxStatus.SUCCEEDED], limit=n + warm + 10)
        )
    out.update(
        warmup=warm,
        rss_before_mb=before,
        rss_during_mb=during,
        rss_after_mb=after,
        growth_mb=during - before,
        per_saga_kb=(during - before) * 1024 / n if n else 0.0,
        peak_rss_mb=peak_rss_mb(),
        python_blocks_growth=blocks1 - blocks0,
        start_s=started_s,
        held=held,
        driven=driven,
        leased_in_log=leased,
        drain_s=drain_s,
        drained_per_s=n / drain_s if drain_s else 0.0,
        rss_source="psutil" if _has_psutil() else "/proc/self/status VmRSS",
    )
    counts = _svc.counts()
    _svc.close()
    out["check"] = {
        "booked_sagas": n + warm,
        "rows": counts,
        "succeeded": len(ended),
        "ok": all(counts[s] == n + warm for s in SERVICES)
        and len(ended) == n + warm
        and held == driven == leased == n
        and not left,
    }
    out["durability"] = _log_durability(backend) + (
        "; first step async, waiting at the gate, the others "
        + ("in the step threads" if in_thread else "on the event loop")
    )
    return out


def _has_psutil() -> bool:
    try:
        import psutil  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(_run(cfg))
