"""The travel saga over HTTP: `legato serve` driving three participant services.

    .venv/bin/python bench/travel_http.py                       # SQLite and PostgreSQL logs
    .venv/bin/python bench/travel_http.py --backend postgres --workers 2
    .venv/bin/python bench/travel_http.py --quick

Every part is its own process on this machine: the coordinator service (`legato
serve`, one or more workers), three participant services (flight, hotel, car:
uvicorn + Starlette, each step a row in its own database inside Legato's
barrier), and this script as the client, submitting each saga with
``POST /v1/sagas`` (``wait: true``) and timing it to its end.

Printed per log backend: sequential p50/p99 of variant A (three bookings) and B
(the car refuses, hotel and flight compensated); the coordinator's own overhead
per saga (the saga's time minus the time the participants' handlers took, as
they report it), with and without the time its log commits took (read from its
``/metrics`` around each saga); throughput at 16 and 64 sagas in flight; and
where the CPU went during each throughput run, per process, per saga. Durability
is on everywhere (SQLite WAL + synchronous=FULL; PostgreSQL fsync=on,
synchronous_commit=on).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import CpuMeter, cpu_busy, descendants, fsync_us
from _measure import percentile

from legato.participant import create_table

HERE = Path(__file__).resolve().parent
PG_ADMIN = os.environ.get("LEGATO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
STEPS = ("flight", "hotel", "car")
TABLE = (
    "CREATE TABLE IF NOT EXISTS booking "
    "(gid TEXT NOT NULL, step TEXT NOT NULL, PRIMARY KEY (gid, step))"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_up(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not come up at {url}")


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def pg_admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


def prepare_databases(backend: str, tmp: Path, run: str) -> tuple[str, dict[str, str]]:
    """The log URL and each participant's database."""
    dbs: dict[str, str] = {}
    if backend == "postgres":
        base = PG_ADMIN.rsplit("/", 1)[0]
        for name in ("log", *STEPS):
            db = f"bench_http_{run}_{name}"
            pg_admin(f"DROP DATABASE IF EXISTS {db}")
            pg_admin(f"CREATE DATABASE {db}")
            dbs[name] = f"{base}/{db}"
        for step in STEPS:
            with psycopg.connect(dbs[step], autocommit=True) as conn:
                conn.execute(TABLE)  # type: ignore[arg-type]
                create_table(conn)
        return dbs.pop("log"), dbs
    for step in STEPS:
        path = tmp / f"{step}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(TABLE)
        create_table(conn)
        conn.close()
        dbs[step] = str(path)
    return f"sqlite:///{tmp / 'legato.db'}", dbs


def drop_databases(backend: str, run: str) -> None:
    if backend == "postgres":
        for name in ("log", *STEPS):
            pg_admin(f"DROP DATABASE IF EXISTS bench_http_{run}_{name} WITH (FORCE)")


def saga_body(urls: dict[str, str], fail: bool) -> dict[str, Any]:
    retry = {"max_attempts": 5, "backoff": 0.05, "jitter": 0.2}
    return {
        "gid": uuid.uuid4().hex,
        "steps": [
            {
                "name": step,
                "action": f"{urls[step]}/action",
                "compensate": f"{urls[step]}/compensate",
                "payload": {"fail": fail},
                "retry": retry,
                "timeout": 10,
            }
            for step in STEPS
        ],
        "wait": True,
        "wait_timeout": 60,
    }


async def one(
    client: aiohttp.ClientSession, api: str, urls: dict[str, str], fail: bool
) -> tuple[float, float, str]:
    """(seconds the saga took, of which the participants' handlers took, its gid)."""
    body = saga_body(urls, fail)
    started = time.perf_counter()
    async with client.post(api, json=body) as r:
        out = await r.json()
    took = time.perf_counter() - started
    want = "failed" if fail else "succeeded"
    if r.status != 200 or out.get("status") != want:
        raise SystemExit(f"saga ended {out.get('status')!r} ({r.status}), not {want}: {out}")
    handlers = sum(float(v.get("took_ms", 0)) for v in (out.get("outputs") or {}).values())
    return took, handlers / 1000, body["gid"]


async def calls_took(client: aiohttp.ClientSession, api_base: str, gid: str) -> float:
    """Seconds the coordinator spent waiting on its participants' answers (its events)."""
    async with client.get(f"{api_base}/v1/transactions/{gid}") as r:
        tx = await r.json()
    return sum(e["detail"].get("took_ms", 0) for e in tx["events"]) / 1000


async def log_commits(client: aiohttp.ClientSession, api_base: str) -> tuple[float, float]:
    """(commits, seconds spent committing) by the coordinator's log so far: its
    group commit's histogram on ``/metrics`` (every worker's, summed)."""
    async with client.get(f"{api_base}/metrics") as r:
        text = await r.text()
    found = {"legato_log_batch_seconds_count": 0.0, "legato_log_batch_seconds_sum": 0.0}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found["legato_log_batch_seconds_count"], found["legato_log_batch_seconds_sum"]


async def sequential(
    client: aiohttp.ClientSession, api: str, urls: dict[str, str], fail: bool, n: int, warmup: int
) -> dict[str, float]:
    for _ in range(warmup):
        await one(client, api, urls, fail)
    api_base = api.rsplit("/v1/", 1)[0]
    lat, overhead, bare, own, gids = [], [], [], [], []
    commits = commit_s = 0.0
    before = await log_commits(client, api_base)
    for _ in range(n):
        took, handlers, gid = await one(client, api, urls, fail)
        # read between sagas, outside the timed window: one saga's commits alone
        after = await log_commits(client, api_base)
        waited = after[1] - before[1]
        commits += after[0] - before[0]
        commit_s += waited
        before = after
        lat.append(took)
        overhead.append(took - handlers)
        bare.append(took - handlers - waited)
        gids.append((gid, took))
    for gid, took in gids:  # read back after the timed loop
        own.append(took - await calls_took(client, api_base, gid))
    for values in (lat, overhead, bare, own):
        values.sort()
    return {
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
        "overhead_p50_ms": percentile(overhead, 50) * 1e3,
        "bare_p50_ms": percentile(bare, 50) * 1e3,
        "own_p50_ms": percentile(own, 50) * 1e3,
        "commits": commits / n,
        "commit_ms": commit_s / n * 1e3,
    }


async def throughput(
    client: aiohttp.ClientSession,
    api: str,
    urls: dict[str, str],
    concurrency: int,
    seconds: float,
    meter: Callable[[], CpuMeter],
) -> tuple[float, dict[str, float]]:
    """(sagas/s, CPU ms per saga of each group of processes ``meter`` watches)."""
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await one(client, api, urls, False)
            done += 1

    # a short warm-up at this concurrency, then the measured window
    warm = time.perf_counter() + min(1.0, seconds / 5)
    await asyncio.gather(*(_until(client, api, urls, warm) for _ in range(concurrency)))
    cpu = meter()  # after the warm-up: the pools have grown to this load
    stop = time.perf_counter() + seconds
    cpu.start()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    used = cpu.stop()
    return done / elapsed, {name: s / max(done, 1) * 1e3 for name, s in used.items()}


async def _until(client: aiohttp.ClientSession, api: str, urls: dict[str, str], t: float) -> None:
    while time.perf_counter() < t:
        await one(client, api, urls, False)


def pg_backends(run: str) -> dict[str, list[int]]:
    """The PostgreSQL server processes serving this run's log and its services."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid, datname FROM pg_stat_activity WHERE datname LIKE %s",
            (f"bench_http_{run}_%",),
        ).fetchall()
    log = [pid for pid, db in rows if db.endswith("_log")]
    return {"postgres (log)": log, "postgres (services)": [p for p, _ in rows if p not in log]}


def check_rows(backend: str, dbs: dict[str, str]) -> dict[str, int]:
    rows = {}
    for step, db in dbs.items():
        if backend == "postgres":
            with psycopg.connect(db) as conn:
                row = conn.execute("SELECT count(*) FROM booking").fetchone()
        else:
            conn2 = sqlite3.connect(db)
            row = conn2.execute("SELECT count(*) FROM booking").fetchone()
            conn2.close()
        rows[step] = int(row[0]) if row else -1
    return rows


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    tmp = Path(tempfile.mkdtemp(prefix="legato-bench-http-"))
    log, dbs = prepare_databases(backend, tmp, run)
    result: dict[str, Any] = {"backend": backend, "workers": args.workers}
    result["busy"] = cpu_busy()  # cores other processes kept busy just before
    result["fsync_us"] = fsync_us(str(tmp))  # where the SQLite files are
    try:
        with processes() as procs:
            urls = {}
            for step in STEPS:
                port = free_port()
                p = subprocess.Popen(
                    [sys.executable, str(HERE / "_http_participant.py"), "--step", step,
                     "--db", dbs[step], "--port", str(port)]
                )  # fmt: skip
                procs.append(p)
                urls[step] = f"http://127.0.0.1:{port}"
            port = free_port()
            serve = subprocess.Popen(
                [sys.executable, "-m", "legato.cli", "serve", "--log", log, "--port", str(port),
                 "--workers", str(args.workers), "--log-level", "warning"]
            )  # fmt: skip
            procs.append(serve)
            api_base = f"http://127.0.0.1:{port}"
            wait_up(api_base + "/health", serve, "legato serve")
            for step in STEPS:
                wait_up(urls[step] + "/action", procs[STEPS.index(step)], step)
            api = api_base + "/v1/sagas"
            serve_pids = descendants(serve.pid)  # with --workers N, uvicorn's children

            def meter() -> CpuMeter:
                groups = {"legato serve": serve_pids}
                for step, p in zip(STEPS, procs[: len(STEPS)], strict=True):
                    groups[step] = descendants(p.pid)
                groups["client (this script)"] = [os.getpid()]
                if backend == "postgres":
                    groups.update(pg_backends(run))
                return CpuMeter(groups)

            async def measure() -> None:
                # aiohttp: the load generator shares the two cores; keep its CPU small
                connector = aiohttp.TCPConnector(limit=256)
                timeout = aiohttp.ClientTimeout(total=120)
                async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
                    result["A"] = await sequential(client, api, urls, False, args.n, args.warmup)
                    result["B"] = await sequential(client, api, urls, True, args.n, args.warmup)
                    for c in args.concurrency:
                        tput, cpu = await throughput(client, api, urls, c, args.duration, meter)
                        result[f"tput@{c}"], result[f"cpu@{c}"] = tput, cpu

            asyncio.run(measure())
        rows = check_rows(backend, dbs)
        result["rows"] = rows
        result["rows_ok"] = len(set(rows.values())) == 1
    finally:
        drop_databases(backend, run)
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--workers", type=int, default=1, help="legato serve processes")
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--concurrency", default="16,64")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    if args.quick:
        args.n, args.warmup, args.duration = 50, 10, 2.0
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(
        f"travel saga over HTTP: legato serve ({args.workers} worker(s)) + 3 participant services"
    )
    print(f"machine: {os.cpu_count()} cores; sequential: {args.n} sagas per variant; "
          f"throughput: {args.duration:.0f} s per concurrency, variant A")  # fmt: skip
    results = [run_backend(b, args) for b in backends]
    print()
    print(render(results, args.concurrency))
    for r in results:
        ok = "ok" if r["rows_ok"] else "MISMATCH"
        print(f"check {r['backend']}: booking rows per service {r['rows']} ({ok})")
    for r in results:
        if r["backend"] == "postgres" and 64 in args.concurrency:
            tput = r["tput@64"]
            verdict = "PASS" if tput >= 500 else "MISS"
            print(f"target: >= 500 sagas/s @64 on PostgreSQL: {tput:.0f} {verdict}")
        if r["backend"] == "sqlite":
            bare = r["A"]["bare_p50_ms"]
            verdict = "PASS" if bare <= 2 else "MISS"
            print(f"target: overhead p50 minus log commits <= 2 ms (sqlite): {bare:.2f} {verdict}")


def render(results: list[dict[str, Any]], concurrency: list[int]) -> str:
    def table(head: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
        return [
            "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                      enumerate(zip(line, widths, strict=True)))
            for line in (head, *rows)
        ]  # fmt: skip

    out = table(
        ["log", "seq p50 A", "seq p99 A", "seq p50 B", "seq p99 B"]
        + [f"tput@{c}" for c in concurrency],
        [
            [r["backend"]]
            + [f"{r[v][k]:.2f}" for v in "AB" for k in ("p50_ms", "p99_ms")]
            + [f"{r[f'tput@{c}']:.0f}/s" for c in concurrency]
            for r in results
        ],
    )
    out += ["(ms; sagas/s)", "", "the coordinator's overhead, variant A, one saga at a time:"]
    out += table(
        ["log", "overhead p50", "minus commits p50", "own p50", "commits/saga",
         "commit ms/saga", "fsync", "busy cores"],
        [
            [r["backend"], f"{r['A']['overhead_p50_ms']:.2f}", f"{r['A']['bare_p50_ms']:.2f}",
             f"{r['A']['own_p50_ms']:.2f}", f"{r['A']['commits']:.1f}",
             f"{r['A']['commit_ms']:.2f}", f"{r['fsync_us']:.0f} us", f"{r['busy']:.2f}"]
            for r in results
        ],
    )  # fmt: skip
    out += [
        "(ms; overhead = a saga's time minus its participants' handler time, as they report it;",
        " minus commits = also minus the time the coordinator's log commits took during it;",
        " own = minus the whole participant calls as the coordinator timed them, HTTP included;",
        " fsync = one small write + fsync where the SQLite files are; busy cores = other load",
        " just before the run)",
        "",
        "where the CPU goes, ms of CPU per saga during the throughput runs:",
    ]
    runs = [(r, c) for r in results for c in concurrency]
    names: list[str] = []
    for r, c in runs:
        names += [n for n in r[f"cpu@{c}"] if n not in names]
    rows = [
        [name] + [f"{r[f'cpu@{c}'][name]:.2f}" if name in r[f"cpu@{c}"] else "-" for r, c in runs]
        for name in names
    ]
    rows.append(["total"] + [f"{sum(r[f'cpu@{c}'].values()):.2f}" for r, c in runs])
    out += table(["process"] + [f"{r['backend']}@{c}" for r, c in runs], rows)
    return "\n".join(out)


if __name__ == "__main__":
    main()
