"""Recovery: a coordinator killed (kill -9) with N unfinished travel sagas, and another
taking them over, against the same work submitted fresh.

    .venv/bin/python bench/recovery.py                          # both backends, 10,000
    .venv/bin/python bench/recovery.py --backend sqlite --sagas 2000

Per backend, each part a process of its own on the participants of ``_services.py``:

1. **fresh** (on a fresh log): N travel sagas submitted at once (``submit`` +
   ``result()`` each, all started together), timed from the first submit to the last
   end: the rate of fresh work with N in flight.
2. **killed** (on another fresh log): a coordinator with a short lease (``--lease``)
   submits N sagas whose flight step books its row and then hangs. Once every
   flight is booked (all N in the log, unfinished, each flight booked and not
   answered), the process is killed with SIGKILL.
3. **takeover**: once the dead coordinator's leases have all expired (that wait is
   printed apart: it is the lease, not the recovery), a new coordinator process
   opens the same log with the ordinary travel saga and resumes them all (its flight
   step books again: ``_services`` books once per gid, ``INSERT ... ON CONFLICT DO
   NOTHING``). Printed, from its start: the first claim, all N claimed (resumed) and
   all N ended, and the drain rate (N over the time to all ended).
4. **fresh** again, on a fresh log: the mean of the two fresh runs is the reference.

One saga in ``--failed-every`` is variant B (the car refuses; hotel and flight are
compensated). At the end, every service holds exactly one row per variant-A saga
of all the parts, none for variant B, and the recovered log holds N ended (A
succeeded, B failed) and none unfinished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _legato_worker as lw  # noqa: E402
import _services  # noqa: E402
import _workers  # noqa: E402
from _measure import throughput_async  # noqa: E402
from _services import SERVICES, Backend, Services  # noqa: E402
from travel_saga import cpu_busy, cpu_model, fsync_us, wait_idle  # noqa: E402

import legato  # noqa: E402

READY_MARK = "READY"
PREFIX = "bench_recovery"
SCRIPT = str(Path(__file__).resolve())  # its PostgreSQL databases: other benches may run meanwhile


# -- the workers (subprocesses) ------------------------------------------------------


def _variant_b(i: int, every: int) -> bool:
    return every > 0 and i % every == every - 1


def _setup(cfg: dict[str, Any]) -> tuple[Backend, legato.Saga]:
    backend = Backend(cfg["backend"], cfg["workdir"], PREFIX)
    lw._svc = Services(backend)
    return backend, lw.travel_saga(in_thread=backend.name != "sqlite")


async def _fresh(cfg: dict[str, Any]) -> dict[str, Any]:
    """N sagas submitted at once on a fresh log; the time until all have ended."""
    _, saga = _setup(cfg)
    n, every = cfg["sagas"], cfg["failed_every"]
    async with legato.Coordinator(cfg["log_url"]) as coordinator:
        coordinator.register(saga)

        async def one(i: int) -> legato.TxStatus:
            fail = _variant_b(i, every)
            handle = await coordinator.submit(saga, {"fail_car": fail})  # Legato's gids
            return (await handle.result()).status

        t0 = time.perf_counter()
        statuses = await asyncio.gather(*(one(i) for i in range(n)))
        took = time.perf_counter() - t0

        looped = 0

        async def run_a(fail_car: bool) -> None:
            nonlocal looped
            outcome = await (await coordinator.submit(saga, {"fail_car": False})).result()
            if outcome.status is not legato.TxStatus.SUCCEEDED:
                raise RuntimeError(f"{outcome.gid}: {outcome}")
            looped += 1

        # and the bench's usual measure of fresh work: 64 in flight, each a loop
        loop64 = await throughput_async(run_a, 64, cfg["duration"])
    lw._svc.close()
    booked = sum(1 for s in statuses if s is legato.TxStatus.SUCCEEDED)
    failed = sum(1 for s in statuses if s is legato.TxStatus.FAILED)
    expect_failed = sum(_variant_b(i, every) for i in range(n))
    return {
        "seconds": took,
        "per_s": n / took,
        "per_s_64": loop64["per_s"],
        "booked": booked + looped,
        "ok": booked == n - expect_failed and failed == expect_failed,
    }


async def hang_flight(ctx: legato.StepContext) -> None:
    """Book the flight, then never answer: the killed coordinator's flight step."""
    await asyncio.to_thread(lw._svc.flight.book, ctx.gid)
    hanging.add(ctx.gid)
    await asyncio.Event().wait()


hanging: set[str] = set()


async def _killed(cfg: dict[str, Any]) -> None:
    """Submit N sagas whose flight hangs once booked; say READY once every flight is
    booked, and wait to be killed."""
    _setup(cfg)
    hung = (
        legato.Saga("travel")  # the travel saga's steps, the flight's action replaced
        .step("flight", action=hang_flight, compensate=lw.cancel_flight)
        .step("hotel", action=lw.book_hotel, compensate=lw.cancel_hotel)
        .step("car", action=lw.book_car, compensate=lw.cancel_car)
    )
    n, every = cfg["sagas"], cfg["failed_every"]
    coordinator = legato.Coordinator(cfg["log_url"], lease=cfg["lease"])
    await coordinator.start()
    coordinator.register(hung)
    todo = iter(range(n))

    async def submitter() -> None:
        for i in todo:
            fail = _variant_b(i, every)
            await coordinator.submit(hung, {"fail_car": fail})

    await asyncio.gather(*(submitter() for _ in range(64)))
    while len(hanging) < n:  # noqa: ASYNC110 - polled: a count, no event to wait on
        await asyncio.sleep(0.01)
    print(READY_MARK, flush=True)
    await asyncio.Event().wait()  # until SIGKILL


class _Watch(legato.Hooks):
    """When the takeover's coordinator resumed and ended each transaction."""

    def __init__(self) -> None:
        self.resumed: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.takeovers = 0

    def on_resumed(self, tx: Any, previous: str | None) -> None:
        self.resumed.setdefault(tx.gid, time.perf_counter())
        self.takeovers += previous is not None

    def after_write(self, tx: Any, state: Any, before: Any) -> None:
        if state.status.ended:
            self.ended.setdefault(tx.gid, time.perf_counter())


async def _takeover(cfg: dict[str, Any]) -> dict[str, Any]:
    """Open the killed coordinator's log and drive what it left to an end."""
    _, saga = _setup(cfg)
    n = cfg["sagas"]
    watch = _Watch()
    profiler = None
    if cfg.get("profile"):
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    coordinator = legato.Coordinator(cfg["log_url"], hooks=[watch])
    coordinator.register(saga)
    await coordinator.start()
    opened = time.perf_counter()
    deadline = time.monotonic() + cfg["timeout"]
    while len(watch.ended) < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(cfg["profile"])
    await coordinator.stop()
    lw._svc.close()
    resumed = sorted(watch.resumed.values())
    ended = sorted(watch.ended.values())
    return {
        "open_s": opened - t0,
        "first_claim_s": resumed[0] - t0 if resumed else None,
        "all_claimed_s": resumed[-1] - t0 if len(resumed) >= n else None,
        "all_ended_s": ended[-1] - t0 if len(ended) >= n else None,
        "resumed": len(resumed),
        "takeovers": watch.takeovers,
        "ended": len(ended),
        "per_s": n / (ended[-1] - t0) if len(ended) >= n else 0.0,
    }


def worker_main(kind: str, cfg: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.WARNING)
    if kind == "killed":
        asyncio.run(_killed(cfg))
        return
    _workers.report(asyncio.run(_fresh(cfg) if kind == "fresh" else _takeover(cfg)))


def spawn(kind: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    return _workers.spawn(SCRIPT, kind, cfg, timeout)


def kill_when_ready(cfg: dict[str, Any], timeout: float) -> float:
    """Start the coordinator that hangs, SIGKILL it once it says READY; when it was killed."""
    err = open(Path(cfg["workdir"]) / "killed.stderr", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        _workers.command(SCRIPT, "killed", cfg),
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
        cwd=cfg["workdir"],
    )
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == READY_MARK:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the coordinator to kill never got ready")
        else:
            raise RuntimeError(f"the coordinator to kill exited first (exit {proc.wait()})")
        proc.send_signal(signal.SIGKILL)
        killed = time.time()
        proc.wait()
        return killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()


# -- the log, read directly -----------------------------------------------------------


def log_state(url: str) -> dict[str, Any]:
    """Transactions by status, and the latest lease expiry of the unended ones."""
    sql_counts = "SELECT status, count(*) FROM legato_tx GROUP BY status"
    sql_lease = "SELECT max(lease_expires_at) FROM legato_tx WHERE ended_at IS NULL"
    if url.startswith("sqlite:"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            counts = dict(conn.execute(sql_counts).fetchall())
            lease = conn.execute(sql_lease).fetchone()[0]
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as pg:
            counts = dict(pg.execute(sql_counts).fetchall())  # type: ignore[arg-type]
            lease = pg.execute(sql_lease).fetchone()[0]  # type: ignore[index]
    return {"counts": counts, "lease_until": lease}


def fresh_log(backend: Backend, name: str) -> str:
    if backend.name == "sqlite":
        path = Path(backend.workdir) / f"{name}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    _services.pg_recreate(backend.db(name))
    return _services.PG_URL.format(db=backend.db(name))


# -- orchestration ----------------------------------------------------------------------


def run_backend(backend: Backend, args: argparse.Namespace) -> dict[str, Any]:
    _services.prepare(backend, "legato")
    n, every = args.sagas, args.failed_every
    base = {
        "backend": backend.name,
        "workdir": backend.workdir,
        "sagas": n,
        "failed_every": every,
        "lease": args.lease,
        "timeout": args.timeout,
        "duration": args.duration,
    }
    out: dict[str, Any] = {}
    expect_b = sum(_variant_b(i, every) for i in range(n))

    def fresh(label: str) -> dict[str, Any]:
        busy = wait_idle(args.idle_wait) if args.idle_wait > 0 else cpu_busy()
        res = spawn("fresh", {**base, "log_url": fresh_log(backend, f"fresh_{label}")}, 900)
        res["busy"] = busy
        print(
            f"  fresh ({label}): {n:,} submitted at once, all ended in {res['seconds']:.2f} s: "
            f"{res['per_s']:.0f} sagas/s; then 64 in flight: {res['per_s_64']:.0f} sagas/s "
            f"(other load {busy:.2f} cores)",
            flush=True,
        )
        return res

    skip = {"per_s": float("nan"), "per_s_64": float("nan"), "booked": 0, "ok": True}
    out["fresh_before"] = skip if args.skip_fresh else fresh("before")

    log_url = fresh_log(backend, "legato_log")
    busy = wait_idle(args.idle_wait) if args.idle_wait > 0 else cpu_busy()
    killed_at = kill_when_ready({**base, "log_url": log_url}, 900)
    before = log_state(log_url)
    unfinished = sum(v for k, v in before["counts"].items() if k not in ("succeeded", "failed"))
    lease_wait = max(0.0, (before["lease_until"] or killed_at) - killed_at)
    print(
        f"  killed (SIGKILL) with {unfinished:,} unfinished in the log, every flight booked and "
        f"unanswered; its leases ({args.lease:g} s) all expired {lease_wait:.2f} s later",
        flush=True,
    )
    time.sleep(lease_wait + 0.1)
    profile = str(Path(args.profile).resolve()) + f".{backend.name}" if args.profile else None
    res = spawn("takeover", {**base, "log_url": log_url, "profile": profile}, args.timeout + 120)
    res.update(killed_unfinished=unfinished, lease_wait_s=lease_wait, busy=busy)
    after = log_state(log_url)
    res["log_after"] = after["counts"]
    out["takeover"] = res
    print(
        f"  takeover: coordinator open in {res['open_s'] * 1e3:.0f} ms; first claim at "
        f"{res['first_claim_s']:.2f} s, all {res['resumed']:,} claimed at "
        f"{_s(res['all_claimed_s'])}, all ended at {_s(res['all_ended_s'])}: "
        f"{res['per_s']:.0f} sagas/s ({res['takeovers']:,} taken over from the dead owner)",
        flush=True,
    )
    for ln in res["logged"][:3]:
        print(f"    logged: {ln[:160]}")

    out["fresh_after"] = skip if args.skip_fresh else fresh("after")

    fresh_rate = (out["fresh_before"]["per_s"] + out["fresh_after"]["per_s"]) / 2
    loop_rate = (out["fresh_before"]["per_s_64"] + out["fresh_after"]["per_s_64"]) / 2
    ratio = res["per_s"] / fresh_rate
    booked = (n - expect_b) + out["fresh_before"]["booked"] + out["fresh_after"]["booked"]
    svc = Services(backend)
    rows = svc.counts()
    svc.close()
    log_ok = after["counts"] == {"succeeded": n - expect_b, "failed": expect_b}
    ok = (
        all(rows[s] == booked for s in SERVICES)
        and log_ok
        and out["fresh_before"]["ok"]
        and out["fresh_after"]["ok"]
    )
    out["check"] = {"booked": booked, "rows": rows, "log": after["counts"], "ok": ok}
    out["ratio"] = ratio
    verdict = "PASS" if ratio >= 1.0 else "MISS"
    print(
        f"drain {res['per_s']:.0f}/s vs fresh {fresh_rate:.0f}/s with as many in flight (mean "
        f"of the two): {ratio:.2f}x; target at least as fast: {verdict} (fresh with 64 in "
        f"flight: {loop_rate:.0f}/s, {res['per_s'] / loop_rate:.2f}x)"
    )
    print(
        f"check: {'ok' if ok else 'MISMATCH'}: rows {rows} ({booked:,} variant-A sagas in all); "
        f"recovered log {after['counts']}"
    )
    return out


def _s(v: float | None) -> str:
    return "never" if v is None else f"{v:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--sagas", type=int, default=10_000, help="unfinished at the kill (10,000)")
    ap.add_argument("--failed-every", type=int, default=10, help="one in this many is variant B")
    ap.add_argument("--lease", type=float, default=3.0, help="the killed coordinator's lease (s)")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds the takeover may take")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of the fresh @64 loop")
    ap.add_argument("--idle-wait", type=float, default=20.0, metavar="S")
    ap.add_argument(
        "--profile", metavar="FILE", help="cProfile the takeover's event loop into FILE.<backend>"
    )
    ap.add_argument("--skip-fresh", action="store_true", help="the takeover alone, no reference")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--keep", action="store_true", help="keep the SQLite files and bench_* DBs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker_main(args.worker, json.loads(args.config))
        return 0
    workdir = tempfile.mkdtemp(prefix="legato-recovery-")
    print(
        f"recovery: kill -9 with {args.sagas:,} unfinished travel sagas (1 in {args.failed_every} "
        f"variant B), a new coordinator takes over; against {args.sagas:,} submitted fresh"
    )
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; fsync {fsync_us(workdir):.0f} us")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    results, ok = _workers.per_backend(
        backends, workdir, PREFIX, lambda b: run_backend(b, args), drop, args.keep
    )
    _workers.finish(workdir, PREFIX, args.keep, args.json, results, started)
    return 0 if ok else 1


def drop(backend: Backend) -> None:
    _services.cleanup(backend)
    _services.pg_drop(*(backend.db(f"fresh_{x}") for x in ("before", "after")))


if __name__ == "__main__":
    sys.exit(main())
