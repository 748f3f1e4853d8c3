"""Cost as the log grows: the travel saga on an empty log and on one holding N ended ones.

    .venv/bin/python bench/log_growth.py                       # both backends, 1,000,000
    .venv/bin/python bench/log_growth.py --backend sqlite --fill 100000 --quick
    .venv/bin/python bench/log_growth.py --backend postgres --explain   # and the plans

Two logs per backend, side by side: "empty" (only what the bench itself runs on it)
and "full" (the same, plus ``--fill`` ended transactions copied in bulk SQL from two
real ones: see ``_log_fill.py``). Each part runs in a subprocess of its own. First,
on each log while it is quiet, the queries that run however busy the log is: the
dashboard's header (``summary`` over the last minute, with the unclaimed names;
``legato stats`` sends the same, and the metrics' gauges nearly), ``/health``'s
(``summary`` of now), a claim that finds nothing due, and the dashboard's front page
(the newest 51, and the stuck ones). Then, alternating empty, full, empty, full for
``--rounds`` rounds (so that a machine getting busier weighs on both alike), Legato's
travel saga (``_legato_worker.travel_saga``, the participants of ``_services.py``,
gids made by Legato unless ``--random-gids``) sequentially (variant A, p50) and at
16 and 64 in flight, with the CPU and the bytes written per saga. Printed: the mean
of the rounds per log, full/empty, and PASS/MISS against 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _legato_worker as lw  # noqa: E402
import _log_fill  # noqa: E402
import _services  # noqa: E402
import _workers  # noqa: E402
from _measure import sequential_async, throughput_async  # noqa: E402
from _services import SERVICES, Backend, Services  # noqa: E402
from travel_saga import cpu_busy, cpu_model, fsync_us, wait_idle  # noqa: E402

import legato  # noqa: E402
from legato.log import UNCLAIMED_GRACE, Log, TxQuery  # noqa: E402

TARGET = 0.10  # throughput on the full log within 10% of the empty log's
# a query within 10%, or this many ms, of the empty log's time is flat (below a millisecond,
# one process's timing moves by more than that from one run to the next)
FLAT_MS = 0.5
PREFIX = "bench_growth"  # its PostgreSQL databases: other benches may run meanwhile

# -- the worker (a subprocess per log and round) ------------------------------------


def _probes() -> dict[str, Callable[[Log, float], Awaitable[Any]]]:
    """The log's queries that run on a schedule or a page view, as their callers send them."""
    return {
        "header": lambda log, now: log.summary(now - 60, unclaimed_before=now - UNCLAIMED_GRACE),
        "health": lambda log, now: log.summary(now),
        "claim": lambda log, now: log.claim("bench-probe", now, now + 15, 64, ["travel"]),
        "list": lambda log, now: log.list(TxQuery(limit=51)),
        "list stuck": lambda log, now: log.list(TxQuery(stuck=True, limit=50)),
    }


async def time_queries(log: Log, repeats: int) -> dict[str, float]:
    """Median milliseconds of each probe, after a few warm-up calls."""
    out = {}
    for name, probe in _probes().items():
        times = []
        for i in range(repeats + 3):
            t = time.perf_counter()
            await probe(log, time.time())
            if i >= 3:
                times.append(time.perf_counter() - t)
        out[name] = statistics.median(times) * 1e3
    return out


def written(log_url: str) -> int:
    """Bytes this process has written so far (``wchar`` of /proc/self/io): on SQLite, the
    log's WAL and checkpoints (and the participants' files, alike on both logs)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def server_cpu(log_url: str) -> dict[int, float]:
    """PostgreSQL: CPU seconds so far of each server process connected to the log's
    database (read from /proc: the server runs on this machine), by pid; on SQLite,
    nothing (the log is in the coordinator's process)."""
    if log_url.startswith("sqlite:"):
        return {}
    import psycopg

    with psycopg.connect(log_url, autocommit=True) as pg:
        pids = [
            r[0]
            for r in pg.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return out


async def _measure(cfg: dict[str, Any]) -> dict[str, Any]:
    backend = Backend(cfg["backend"], cfg["workdir"], PREFIX)
    lw._svc = Services(backend)
    saga = lw.travel_saga(in_thread=backend.name != "sqlite")
    booked = 0
    out: dict[str, Any] = {"log": cfg["which"]}
    t0 = time.perf_counter()
    async with legato.Coordinator(cfg["log_url"]) as coordinator:
        out["open_ms"] = (time.perf_counter() - t0) * 1e3
        coordinator.register(saga)
        if cfg.get("queries"):
            # alone, on a log quiet for a minute: the header counts the last minute's
            # sagas, which a throughput run puts there by the ten thousand
            out["queries"] = await time_queries(coordinator.log, cfg["repeats"])
            lw._svc.close()
            return out

        async def run_saga(fail_car: bool) -> None:
            nonlocal booked
            # Legato's own gids (time-ordered), or random ones (as travel_saga.py gives)
            gid = uuid.uuid4().hex if cfg["random_gids"] else None
            handle = await coordinator.submit(saga, {"fail_car": fail_car}, gid=gid)
            outcome = await handle.result()
            if outcome.status is not legato.TxStatus.SUCCEEDED:
                raise RuntimeError(f"{handle.gid}: {outcome}")
            booked += 1

        out["seq_a"] = await sequential_async(run_saga, False, cfg["n"], cfg["warmup"])
        for c in cfg["concurrency"]:
            url = cfg["log_url"]
            before = (booked, time.process_time(), written(url), server_cpu(url))
            out[f"tput_{c}"] = tput = await throughput_async(run_saga, c, cfg["duration"])
            # per saga, warm-up included (booked counts every one): the coordinator's
            # CPU (all its threads; the participants' calls too, alike on both logs), the
            # log server's CPU (PostgreSQL), the bytes written (SQLite; see ``written``)
            sagas = booked - before[0]
            tput["cpu_ms"] = (time.process_time() - before[1]) / sagas * 1e3
            tput["written_kb"] = (written(url) - before[2]) / sagas / 1024
            after = server_cpu(url)
            spent = sum(t - before[3].get(pid, 0.0) for pid, t in after.items())
            tput["server_cpu_ms"] = spent / sagas * 1e3
    lw._svc.close()
    out["booked"] = booked
    return out


def spawn(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    return _workers.spawn(str(Path(__file__).resolve()), "measure", cfg, timeout)


# -- setting the two logs up ------------------------------------------------------------


SEEDED = 100  # variant-A sagas run on each log before the fill


async def seed(url: str, backend: Backend) -> int:
    """Make the log's schema and run the fill's two templates through a coordinator, and
    ``SEEDED`` more (so that the empty log too has a front page of 51 to list); returns
    how many were booked."""
    lw._svc = Services(backend)
    saga = lw.travel_saga(in_thread=backend.name != "sqlite")
    async with legato.Coordinator(url) as coordinator:
        coordinator.register(saga)
        runs: list[tuple[str | None, bool]] = [
            (_log_fill.TEMPLATE_OK, False),
            (_log_fill.TEMPLATE_FAILED, True),
        ]
        runs += [(None, False) for _ in range(SEEDED)]
        for gid, fail_car in runs:
            handle = await coordinator.submit(saga, {"fail_car": fail_car}, gid=gid)
            await handle.result()
    lw._svc.close()
    return SEEDED


def log_urls(backend: Backend) -> dict[str, str]:
    if backend.name == "sqlite":
        full = f"sqlite:///{Path(backend.workdir) / 'legato-log-full.db'}"
    else:
        full = _services.PG_URL.format(db=backend.db("legato_log_full"))
    return {"empty": backend.legato_log_url, "full": full}


def prepare(backend: Backend) -> dict[str, str]:
    _services.prepare(backend, "legato")  # the participants, and the empty log
    urls = log_urls(backend)
    if backend.name == "postgres":
        _services.pg_recreate(backend.db("legato_log_full"))
    else:
        Path(urls["full"][len("sqlite:///") :]).unlink(missing_ok=True)
    return urls


def cleanup(backend: Backend) -> None:
    _services.cleanup(backend)
    _services.pg_drop(backend.db("legato_log_full"))


# -- the table -------------------------------------------------------------------------


def _mean(runs: list[dict[str, Any]], pick: Callable[[dict[str, Any]], float]) -> float:
    return statistics.fmean(pick(r) for r in runs)


def summarise(runs: list[dict[str, Any]], concurrency: list[int]) -> dict[str, float]:
    out = {"seq p50 A ms": _mean(runs, lambda r: r["seq_a"]["p50_ms"])}
    for c in concurrency:
        out[f"tput@{c} /s"] = _mean(runs, lambda r, c=c: r[f"tput_{c}"]["per_s"])
        out[f"cpu@{c} ms"] = _mean(runs, lambda r, c=c: r[f"tput_{c}"]["cpu_ms"])
        out[f"srv cpu@{c} ms"] = _mean(runs, lambda r, c=c: r[f"tput_{c}"]["server_cpu_ms"])
        out[f"written@{c} KB"] = _mean(runs, lambda r, c=c: r[f"tput_{c}"]["written_kb"])
    out["open ms"] = _mean(runs, lambda r: r["open_ms"])
    for q in _probes():
        out[f"{q} ms"] = _mean(runs, lambda r, q=q: r["queries"][q])
    return out


def render(backend: str, per: dict[str, list[dict[str, Any]]], concurrency: list[int]) -> str:
    empty, full = summarise(per["empty"], concurrency), summarise(per["full"], concurrency)
    lines = [f"{'':<16}{'empty':>12}{'full':>12}{'full/empty':>12}"]
    verdicts = []
    for key, e in empty.items():
        f = full[key]
        if not e and not f:
            continue  # not measured on this backend
        ratio = f / max(e, 1e-9)
        lines.append(f"{key:<16}{e:>12.2f}{f:>12.2f}{ratio:>11.2f}x")
        if key.startswith("tput"):
            ok = ratio >= 1 - TARGET
            verdicts.append(f"{key[:-3]} within {TARGET:.0%}: {_verdict(ok)} ({ratio:.2f}x)")
        elif key.endswith(" ms") and not key.startswith(("seq", "open", "cpu", "srv")):
            ok = ratio <= 1 + TARGET or f - e <= FLAT_MS
            verdicts.append(f"{key[:-3]} flat: {_verdict(ok)} ({e:.2f} -> {f:.2f} ms)")
    p50_ok = full["seq p50 A ms"] <= empty["seq p50 A ms"] * (1 + TARGET)
    lines.append(f"seq p50 A within {TARGET:.0%}: {_verdict(p50_ok)}")
    lines += verdicts
    for which in ("empty", "full"):
        logged = [ln for r in per[which] for ln in r["logged"]]
        for ln in logged[:3]:
            lines.append(f"  {which} log's worker logged: {ln[:160]}")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- orchestration -----------------------------------------------------------------------


def run_backend(backend: Backend, args: argparse.Namespace, cfg: dict[str, Any]) -> dict[str, Any]:
    urls = prepare(backend)
    out: dict[str, Any] = {"urls": urls}
    seeded = sum(asyncio.run(seed(url, backend)) for url in urls.values())
    print(f"filling the full log with {args.fill:,} ended transactions ...", flush=True)
    took = _log_fill.fill(urls["full"], args.fill, args.span, 600.0, _quiet(args))
    rows = _log_fill.row_counts(urls["full"])
    out["fill"] = {"seconds": took, "rows": rows, "mb": _log_fill.size_mb(urls["full"])}
    print(
        f"  {took:.0f} s; full log: {', '.join(f'{t} {n:,}' for t, n in rows.items())} rows, "
        f"{out['fill']['mb']:.0f} MB",
        flush=True,
    )
    per: dict[str, list[dict[str, Any]]] = {"empty": [], "full": []}
    noise = []

    def run(which: str, queries: bool) -> dict[str, Any]:
        # what autovacuum does as the bench's own sagas churn the log (this server runs
        # without it: dead row versions then weigh on the smaller log the most)
        _log_fill.analyze(urls[which])
        busy = wait_idle(args.idle_wait) if args.idle_wait > 0 else cpu_busy()
        noise.append(f"{which} {busy:.2f}")
        job = {**cfg, "which": which, "log_url": urls[which], "queries": queries}
        return spawn(job, timeout=900)

    # the query passes first, while both logs are quiet, alternating as the rounds do
    queries = [{w: run(w, queries=True) for w in ("empty", "full")} for _ in range(args.rounds)]
    for i in range(args.rounds):
        for which in ("empty", "full"):
            res = run(which, queries=False)
            res["queries"] = queries[i][which]["queries"]
            per[which].append(res)
            tputs = ", ".join(f"@{c} {res[f'tput_{c}']['per_s']:.0f}/s" for c in cfg["concurrency"])
            print(f"  {which}: seq p50 A {res['seq_a']['p50_ms']:.2f} ms, {tputs}", flush=True)
    out["runs"] = per
    # + the succeeded template, one gid in both logs: one booking
    booked = 1 + seeded + sum(r.get("booked", 0) for runs in per.values() for r in runs)
    svc = Services(backend)
    counts = svc.counts()
    svc.close()
    out["check"] = {
        "booked": booked,
        "rows": counts,
        "ok": all(counts[s] == booked for s in SERVICES),
    }
    print(f"other load: cores busy just before each worker: {', '.join(noise)}")
    print(render(backend.name, per, cfg["concurrency"]))
    chk = out["check"]
    print(
        f"check: {'ok' if chk['ok'] else 'MISMATCH'}: {booked} variant-A sagas booked "
        f"(templates included), rows {counts}"
    )
    if args.explain:
        out["plans"] = _log_fill.explain(urls["full"])
        print(f"\nquery plans on the full log ({backend.name}):")
        for name, plan in out["plans"]:
            print(f"-- {name}\n{plan}")
    return out


def _quiet(args: argparse.Namespace) -> Callable[[str], None]:
    return (lambda s: print(s, flush=True)) if args.verbose else (lambda s: None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--fill", type=int, help="ended transactions in the full log (1,000,000)")
    ap.add_argument("--span", type=float, default=86400.0, help="seconds the fill spreads over")
    ap.add_argument("--quick", action="store_true", help="a smoke run (fill 100,000, one round)")
    ap.add_argument("--rounds", type=int, help="empty/full pairs of runs (default 2)")
    ap.add_argument("--n", type=int, help="sequential sagas (default 200)")
    ap.add_argument("--duration", type=float, help="seconds per throughput run (default 5)")
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--repeats", type=int, default=30, help="calls per timed query")
    ap.add_argument("--explain", action="store_true", help="print the hot queries' plans")
    ap.add_argument(
        "--random-gids",
        action="store_true",
        help="give each saga a random gid (uuid4, as travel_saga.py does) instead of "
        "letting Legato make one (time-ordered)",
    )
    ap.add_argument("--idle-wait", type=float, default=20.0, metavar="S")
    ap.add_argument("--verbose", action="store_true", help="report the fill's progress")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--keep", action="store_true", help="keep the SQLite files and bench_* DBs")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        logging.basicConfig(level=logging.WARNING)
        _workers.report(asyncio.run(_measure(json.loads(args.config))))
        return 0
    args.fill = args.fill if args.fill is not None else (100_000 if args.quick else 1_000_000)
    args.rounds = args.rounds or (1 if args.quick else 2)
    workdir = tempfile.mkdtemp(prefix="legato-growth-")
    cfg = {
        "workdir": workdir,
        "n": args.n or (40 if args.quick else 200),
        "warmup": 10 if args.quick else 20,
        "duration": args.duration or (1.5 if args.quick else 5.0),
        "concurrency": [int(c) for c in args.concurrency.split(",") if c],
        "repeats": args.repeats,
        "random_gids": args.random_gids,
    }
    print(
        f"log growth: the travel saga on an empty log and on one with {args.fill:,} ended "
        f"transactions (spread over the {args.span / 3600:g} h before the last 10 min); "
        f"{args.rounds} round(s) of empty, full; gids: "
        + ("random (uuid4)" if args.random_gids else "Legato's own (time-ordered)")
    )
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; fsync {fsync_us(workdir):.0f} us; "
        f"sequential {cfg['n']} (variant A), throughput {cfg['duration']:g} s per concurrency"
    )
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    started = time.perf_counter()
    results, ok = _workers.per_backend(
        backends,
        workdir,
        PREFIX,
        lambda b: run_backend(b, args, {**cfg, "backend": b.name, "workdir": b.workdir}),
        cleanup,
        args.keep,
    )
    _workers.finish(workdir, PREFIX, args.keep, args.json, results, started)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
