"""A transfer between a PostgreSQL ledger and a MariaDB ledger: XA beside a saga.

    .venv/bin/python bench/xa_transfer.py                     # SQLite and PostgreSQL logs
    .venv/bin/python bench/xa_transfer.py --log sqlite --quick

Each transfer takes an amount from an account in one ledger and adds it to an
account in the other (each ledger its own database: ``bench_xa_*`` in PostgreSQL
and in MariaDB, 2000 accounts each, made and dropped here). Four ways:

* **XA in-process**: ``async with coordinator.xa() as t`` with one branch per
  database (``t.branch(conn, fn, resource=...)``), timed until phase 2 is done.
* **saga in-process**: the same two changes as saga steps (sync functions in the
  coordinator's step threads, each inside Legato's barrier), timed to the end.
* **XA over HTTP**: ``legato serve`` and two ledger services
  (``legato.demo.bank.service``); the client runs DTM's XA flow (prepare, each
  service's ``op=action``, which prepares and registers its branch, then
  ``submit`` with ``wait_result``).
* **saga over HTTP**: the same services' saga endpoint (barrier), submitted as a
  DTM saga with ``wait_result``.

Printed per log backend: sequential p50/p99 and throughput with 16 transfers
in flight, and the ratio saga/XA. Afterwards the money in both ledgers must add
up and nothing may be left prepared. Durability is on everywhere.

The PostgreSQL ledger needs prepared transactions (``max_prepared_transactions``
above 0, which PostgreSQL's default is not): ``LEGATO_BENCH_XA_PG`` names such a
server; without it, ``LEGATO_BENCH_PG`` serves if it has them on, and otherwise
the bench starts a throwaway server of its own (durable settings: fsync on). It
never changes a server's settings. The Legato log on PostgreSQL is on
``LEGATO_BENCH_PG`` either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg
import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import summarise

import legato
from legato.demo.bank.service import Ledger, move
from legato.demo.bank.transfer import saga_transfer, xa_transfer
from legato.demo.http.processes import Child, coordinator_args, free_port, stop_all
from legato.participant import Barrier, xa

PG_ADMIN = os.environ.get("LEGATO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ROOT = Path(__file__).resolve().parent.parent
ACCOUNTS = 2000
BALANCE = 1_000_000
Run = Callable[[int], Awaitable[None]]


def _prepared_transactions(admin: str) -> int:
    with psycopg.connect(admin) as c:
        row = c.execute("SHOW max_prepared_transactions").fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def xa_pg_admin() -> Iterator[str]:
    """The admin URL of a PostgreSQL server that takes prepared transactions, for the
    PostgreSQL ledger (see the module docstring)."""
    given = os.environ.get("LEGATO_BENCH_XA_PG")
    admin = given or PG_ADMIN
    if _prepared_transactions(admin) > 0:
        yield admin
        return
    if given:
        raise SystemExit(
            f"LEGATO_BENCH_XA_PG: {admin} has max_prepared_transactions = 0: the PostgreSQL "
            "ledger's XA branches need a server with it above 0"
        )
    sys.path.insert(0, str(ROOT))
    from tests.support.servers import PgServer

    print(f"(max_prepared_transactions is 0 on {admin}: the PostgreSQL ledger is on a "
          "throwaway server)", flush=True)  # fmt: skip
    durable = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
    with PgServer(settings={"max_prepared_transactions": "64", **durable}) as pg:
        yield pg.url()


@contextlib.contextmanager
def ledgers(pg_admin: str) -> Iterator[tuple[str, str]]:
    name = f"bench_xa_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    admin = pymysql.connect(host="127.0.0.1", user="root", autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    urls = (pg_admin.rsplit("/", 1)[0] + f"/{name}", f"mysql://root@127.0.0.1:3306/{name}")
    for url in urls:
        Ledger(url).setup(ACCOUNTS, BALANCE)
    try:
        yield urls
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.close()


def draw(i: int) -> tuple[int, int, int]:
    """Transfer i: (account in PostgreSQL, account in MariaDB, amount to MariaDB; negative:
    from MariaDB)."""
    r = random.Random(i)
    return r.randrange(ACCOUNTS), r.randrange(ACCOUNTS), r.choice((-1, 1)) * r.randint(1, 9)


def check(urls: tuple[str, str]) -> str:
    """The money adds up and nothing is prepared (raises otherwise)."""
    total = 0
    for url in urls:
        with Ledger(url).conn(fresh=True) as c:
            with c.cursor() as cur:
                cur.execute("SELECT sum(balance) FROM account")
                total += int(cur.fetchone()[0])
            # the coordinator's branches and the services' are in namespaces of their own
            listed = xa.recover(c, namespace=xa.EVERY_NAMESPACE)
            left = [x for x in listed if x.gid.startswith("bx-")]
            if left:
                raise AssertionError(f"left prepared in {url}: {left[:5]}")
    if total != 2 * ACCOUNTS * BALANCE:
        raise AssertionError(f"the money does not add up: {total}")
    return "money adds up, nothing prepared"


# --- in-process ----------------------------------------------------------------------


def saga(pg: Ledger, maria: Ledger) -> legato.Saga:
    def step(ledger: Ledger, sign: int) -> Callable[[legato.StepContext], None]:
        def run(ctx: legato.StepContext) -> None:
            p = ctx.payload
            assert isinstance(p, dict)
            account = int(p["pg"] if ledger is pg else p["maria"])
            amount = sign * int(p["amount"]) * (1 if ctx.op == legato.OpName.ACTION else -1)
            barrier = Barrier("saga", ctx.gid, ctx.step, str(ctx.op))
            with ledger.conn() as c:
                barrier.call(c, move(account, amount))

        return run

    s = legato.Saga("xfer")
    s.step("pg", action=step(pg, -1), compensate=step(pg, -1))
    s.step("maria", action=step(maria, 1), compensate=step(maria, 1))
    return s


@contextlib.asynccontextmanager
async def in_process(log: str, urls: tuple[str, str]) -> AsyncIterator[dict[str, Run]]:
    pg, maria = Ledger(urls[0]), Ledger(urls[1])
    pool: asyncio.Queue[Any] = asyncio.Queue()
    for _ in range(16):
        pool.put_nowait(await asyncio.to_thread(pg.connect))
    resources = {"pg": urls[0], "maria": urls[1]}
    transfer = saga(pg, maria)
    async with legato.Coordinator(log, resources=resources) as c:

        async def xa_run(i: int) -> None:
            a, b, amount = draw(i)
            conn = await pool.get()
            try:
                async with c.xa(f"bx-x{i}-{uuid.uuid4().hex[:6]}") as t:
                    await t.branch(conn, move(a, -amount), resource="pg")
                    m = await asyncio.to_thread(maria.connect)
                    try:
                        await t.branch(m, move(b, amount), resource="maria")
                    finally:  # MariaDB lets phase 2 have the branch once this session ends
                        await asyncio.to_thread(m.close)
            finally:
                pool.put_nowait(conn)
            assert t.handle is not None
            out = await t.handle.result(timeout=60)
            assert out.status is legato.TxStatus.SUCCEEDED, out

        async def saga_run(i: int) -> None:
            a, b, amount = draw(i)
            payload = {"pg": a, "maria": b, "amount": amount}
            h = await c.submit(transfer, payload, gid=f"bx-s{i}-{uuid.uuid4().hex[:6]}")
            out = await h.result(timeout=60)
            assert out.status is legato.TxStatus.SUCCEEDED, out

        yield {"XA in-process": xa_run, "saga in-process": saga_run}
    while not pool.empty():
        pool.get_nowait().close()


# --- over HTTP -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def over_http(log: str, urls: tuple[str, str], tmp: Path) -> AsyncIterator[dict[str, Run]]:
    port = free_port()
    serve = Child.spawn("serve", coordinator_args(log, port), port, tmp / "serve.log")
    children = [serve]
    dtm = f"{serve.url}/api/dtmsvr"
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        httpx.AsyncClient(timeout=30) as probe,
        aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=64)) as http,
    ):
        try:
            await serve.ready(probe)
            services = []
            for kind, url in zip(("pg", "maria"), urls, strict=True):
                p = free_port()
                args = ["-m", "legato.demo.bank.service", "--db", url, "--dtm", dtm]
                args += ["--port", str(p), "--accounts", "0"]
                child = Child.spawn(kind, args, p, tmp / f"{kind}.log")
                children.append(child)
                await child.ready(probe)
                services.append(child.url)
            pg_url, maria_url = services

            def legs(i: int) -> list[tuple[str, int, int]]:
                a, b, amount = draw(i)
                return [(pg_url, a, -amount), (maria_url, b, amount)]

            async def xa_run(i: int) -> None:
                gid = f"bx-hx{i}-{uuid.uuid4().hex[:6]}"
                got = await xa_transfer(http, dtm, gid, legs(i), wait=True)
                assert got == "committed", (gid, got)

            async def saga_run(i: int) -> None:
                gid = f"bx-hs{i}-{uuid.uuid4().hex[:6]}"
                assert await saga_transfer(http, dtm, gid, legs(i), wait=True), gid

            yield {"XA over HTTP": xa_run, "saga over HTTP": saga_run}
        finally:
            stop_all(children)


# --- timing --------------------------------------------------------------------------


async def sequential(run: Run, n: int, start: int) -> dict[str, float]:
    for i in range(5):
        await run(start - 1 - i)  # warm-up
    lat = []
    for i in range(n):
        t = time.perf_counter()
        await run(start + i)
        lat.append(time.perf_counter() - t)
    return summarise(lat)


async def throughput(run: Run, concurrency: int, duration: float, start: int) -> float:
    counter = iter(range(start, start + 10_000_000))
    done = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await run(next(counter))
            done += 1

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - t)


async def measure(runs: dict[str, Run], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    out = {}
    for k, (name, run) in enumerate(runs.items()):
        base = (k + 1) * 1_000_000
        row = await sequential(run, args.n, base)
        row["tput"] = await throughput(run, args.concurrency, args.duration, base + 500_000)
        out[name] = row
        print(
            f"  {name:<16} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
            f"@{args.concurrency} {row['tput']:6.0f}/s",
            flush=True,
        )
    return out


def table(rows: dict[str, dict[str, float]], concurrency: int) -> str:
    lines = [
        f"| transfer | seq p50 | seq p99 | @{concurrency} |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        p50, p99, tput = r["p50_ms"], r["p99_ms"], r["tput"]
        lines.append(f"| {name} | {p50:.2f} ms | {p99:.2f} ms | {tput:.0f}/s |")
    for where in ("in-process", "over HTTP"):
        x, s = rows.get(f"XA {where}"), rows.get(f"saga {where}")
        if x and s:
            lines.append(
                f"| saga/XA {where} | {s['p50_ms'] / x['p50_ms']:.2f}x | "
                f"{s['p99_ms'] / x['p99_ms']:.2f}x | {s['tput'] / x['tput']:.2f}x |"
            )
    return "\n".join(lines)


def log_url(backend: str, tmp: Path) -> tuple[str, Callable[[], None]]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'legato.db'}", lambda: None
    name = f"bench_xalog_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]

    def drop() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", drop


async def main(args: argparse.Namespace) -> None:
    with xa_pg_admin() as pg_admin:
        for backend in ("sqlite", "postgres") if args.log == "both" else (args.log,):
            print(f"== log on {backend}", flush=True)
            await one_log(backend, pg_admin, args)


async def one_log(backend: str, pg_admin: str, args: argparse.Namespace) -> None:
    """The table of one log backend, on ledgers of its own."""
    with tempfile.TemporaryDirectory() as d, ledgers(pg_admin) as urls:
        tmp = Path(d)
        rows: dict[str, dict[str, float]] = {}
        if args.only in ("all", "inproc"):
            log, drop = log_url(backend, tmp / "in")
            (tmp / "in").mkdir()
            try:
                async with in_process(log, urls) as runs:
                    rows |= await measure(runs, args)
            finally:
                drop()
        if args.only in ("all", "http"):
            (tmp / "http").mkdir()
            log, drop = log_url(backend, tmp / "http")
            try:
                async with over_http(log, urls, tmp / "http") as runs:
                    rows |= await measure(runs, args)
            finally:
                drop()
        print(table(rows, args.concurrency))
        print(f"check: {check(urls)}\n", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--log", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument("--only", choices=("all", "inproc", "http"), default="all")
    p.add_argument("--n", type=int, default=200, help="sequential transfers per way")
    p.add_argument("--duration", type=float, default=8.0, help="seconds of each throughput run")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--quick", action="store_true", help="--n 40 --duration 3")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.duration = 40, 3.0
    return args


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
