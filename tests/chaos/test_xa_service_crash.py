"""DTM's XA flow over HTTP with the participant services killed: ``legato serve`` and
two ledger services (``legato.demo.bank.service``: one on PostgreSQL, one on MariaDB),
each a real process, and random transfers between them, four at a time.

A service kills itself with SIGKILL at a named point: after it prepared its branch
but before it registered it (no one but the service can end that branch: it
resolves it when it comes back), after it registered but before it answered, and
as the coordinator asks it to commit. A watcher restarts every service that dies,
arming its next fault. At the end, every transaction has ended, each ledger's
committed branches are exactly the transactions that succeeded, the money adds
up, and nothing is left prepared in either database.

The services prepare their branches in their databases' XA namespaces (the kit's
default), and what the test finds prepared is listed in those: the PostgreSQL
ledger is on the session's throwaway server that takes prepared transactions, and
another run may share the MariaDB server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import psycopg
import pytest

from legato.demo.bank.transfer import xa_transfer
from legato.demo.http.processes import Child, coordinator_args, free_port, stop_all
from legato.participant import xa
from tests.support.invariants import ops_left_running
from tests.support.xa import XaDatabases, maria_connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ACCOUNTS = 4
START = 100


@dataclass
class Ledger:
    kind: str  # "pg" or "maria"
    url: str
    port: int
    faults: list[str]  # armed in turn, one per start
    child: Child | None = None
    deaths: int = 0

    def connect(self) -> Any:
        if self.kind == "pg":
            return psycopg.connect(self.url, autocommit=True)
        return maria_connect(self.url)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            return list(cur.fetchall())
        finally:
            conn.close()

    def total(self) -> int:
        return int(self.query("SELECT sum(balance) FROM account")[0][0])

    def committed(self) -> set[str]:
        sql = "SELECT gid FROM legato_barrier WHERE op = 'action' AND reason = 'action'"
        return {str(r[0]) for r in self.query(sql)}

    def prepared(self, prefix: str) -> list[str]:
        conn = self.connect()
        try:
            return [str(x) for x in xa.recover(conn) if x.gid.startswith(prefix)]
        finally:
            conn.close()


@dataclass
class Rig:
    tmp: Path
    prefix: str
    serve: Child
    ledgers: list[Ledger]
    log: str
    restarts: list[str] = field(default_factory=list)

    @property
    def dtm(self) -> str:
        return f"{self.serve.url}/api/dtmsvr"

    def start(self, ledger: Ledger) -> Child:
        faults = ledger.faults.pop(0) if ledger.faults else ""
        args = ["-m", "legato.demo.bank.service", "--db", ledger.url, "--dtm", self.dtm]
        args += ["--port", str(ledger.port), "--accounts", str(ACCOUNTS)]
        args += ["--balance", str(START), "--resolve-interval", "1"]
        env = {**os.environ, "LEGATO_FAULTS": faults}
        log = self.tmp / f"{ledger.kind}.log"
        ledger.child = Child.spawn(ledger.kind, args, ledger.port, log, env)
        return ledger.child

    async def watch(self, http: httpx.AsyncClient) -> None:
        """Restart every service that dies, with its next fault armed."""
        while True:
            for ledger in self.ledgers:
                assert ledger.child is not None
                code = ledger.child.process.poll()
                if code is not None:
                    ledger.child.wait()
                    ledger.deaths += 1
                    self.restarts.append(f"{ledger.kind} exited {code}")
                    await self.start(ledger).ready(http)
            await asyncio.sleep(0.1)


@pytest.fixture
def databases(xa_databases: XaDatabases) -> Iterator[tuple[str, str]]:
    with xa_databases("xasvc") as urls:
        yield urls


@contextlib.asynccontextmanager
async def rig(
    tmp: Path, dbs: tuple[str, str], pg_faults: list[str], maria_faults: list[str]
) -> AsyncIterator[Rig]:
    port = free_port()
    log = f"sqlite:///{tmp / 'legato.db'}"
    serve = Child.spawn("serve", coordinator_args(log, port), port, tmp / "serve.log")
    ledgers = [
        Ledger("pg", dbs[0], free_port(), list(pg_faults)),
        Ledger("maria", dbs[1], free_port(), list(maria_faults)),
    ]
    r = Rig(tmp, f"xs{uuid.uuid4().hex[:6]}-", serve, ledgers, log)
    async with httpx.AsyncClient(timeout=60) as http:
        try:
            await serve.ready(http)
            for ledger in ledgers:
                await r.start(ledger).ready(http)
            yield r
        finally:
            stop_all([serve, *(lg.child for lg in ledgers if lg.child is not None)])
            leftover = [p for lg in ledgers for p in lg.prepared(r.prefix)]
            for lg in ledgers:  # leave nothing prepared behind, whatever happened
                conn = lg.connect()
                try:
                    for xid in xa.recover(conn):
                        if xid.gid.startswith(r.prefix):
                            xa.rollback(conn, xid)
                finally:
                    conn.close()
            assert leftover == [], "a branch was left prepared"


async def run_transfers(r: Rig, n: int, seed: int) -> int:
    """Run ``n`` transfers; one that finds a service down is tried again under a new gid
    once it is back, as a client would. The number of transactions begun."""
    draw = random.Random(seed)
    pg, maria = (f"http://127.0.0.1:{lg.port}" for lg in r.ledgers)
    plan = []
    for i in range(n):
        amount, to_maria = draw.randint(1, 60), draw.random() < 0.5
        a, b = draw.randrange(ACCOUNTS), draw.randrange(ACCOUNTS)
        legs = [(pg, a, -amount), (maria, b, amount)] if to_maria else [
            (maria, b, -amount), (pg, a, amount)
        ]  # fmt: skip
        plan.append((f"{r.prefix}{i}", legs))
    sem = asyncio.Semaphore(4)
    begun = 0
    timeout = aiohttp.ClientTimeout(total=60)
    async with httpx.AsyncClient(timeout=60) as http, aiohttp.ClientSession(timeout=timeout) as ah:
        watcher = asyncio.create_task(r.watch(http))

        async def one(gid: str, legs: Any) -> None:
            nonlocal begun
            async with sem:  # the coordinator is never killed here: it always answers
                for attempt in range(100):
                    begun += 1
                    got = await xa_transfer(ah, r.dtm, f"{gid}.{attempt}", legs, wait=False)
                    if got != "unreachable":
                        return
                    await asyncio.sleep(0.2)
                raise AssertionError(f"{gid}: a service stayed unreachable")

        try:
            await asyncio.gather(*(one(g, legs) for g, legs in plan))
            await settle(r, http, begun)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    return begun


async def settle(r: Rig, http: httpx.AsyncClient, n: int, timeout: float = 90) -> None:
    """Until every transaction has ended and no branch is left prepared."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        txs = (await http.get(f"{r.serve.url}/v1/transactions", params={"limit": 1000})).json()
        mine = [t for t in txs["transactions"] if t["gid"].startswith(r.prefix)]
        open_ = [t["gid"] for t in mine if t["status"] not in ("succeeded", "failed")]
        prepared = [p for lg in r.ledgers for p in lg.prepared(r.prefix)]
        if len(mine) == n and not open_ and not prepared:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not settled: open {open_[:5]}, prepared {prepared[:5]}")
        await asyncio.sleep(0.3)


async def check(r: Rig) -> dict[str, int]:
    async with httpx.AsyncClient() as http:
        txs = (await http.get(f"{r.serve.url}/v1/transactions", params={"limit": 1000})).json()
    succeeded = {t["gid"] for t in txs["transactions"] if t["status"] == "succeeded"}
    failed = {t["gid"] for t in txs["transactions"] if t["status"] == "failed"}
    pg, maria = (lg.committed() for lg in r.ledgers)
    assert pg == maria, f"half-applied: {sorted(pg ^ maria)[:10]}"
    assert pg == succeeded, f"ledgers and log disagree: {sorted(pg ^ succeeded)[:10]}"
    assert sum(lg.total() for lg in r.ledgers) == 2 * ACCOUNTS * START
    assert await ops_left_running(r.log) == []
    return {"succeeded": len(succeeded), "failed": len(failed)}


@pytest.mark.parametrize(
    ("pg_faults", "maria_faults"),
    [
        (["bank.after_prepare@5"], []),  # prepared, never registered: the service resolves it
        ([], ["bank.after_prepare@7"]),
        (["bank.after_register@6"], []),  # registered, no answer: the initiator aborts
        ([], ["bank.before_phase2@9"]),  # killed as it is asked to commit: asked again
    ],
    ids=["pg-after-prepare", "maria-after-prepare", "pg-after-register", "maria-phase2"],
)
async def test_a_service_killed_around_its_prepare_leaves_nothing_half_done(
    tmp_path: Path, databases: tuple[str, str], pg_faults: list[str], maria_faults: list[str]
) -> None:
    async with rig(tmp_path, databases, pg_faults, maria_faults) as r:
        begun = await run_transfers(r, 40, seed=len(pg_faults))
        counts = await check(r)
        assert sum(lg.deaths for lg in r.ledgers) == 1, r.restarts
    assert counts["succeeded"] > 20 and sum(counts.values()) == begun, counts


async def test_the_bank_run_hundreds_of_transfers_under_repeated_kills(
    tmp_path: Path, databases: tuple[str, str]
) -> None:
    """The bank invariant over 240 random transfers, each service killed three times."""
    pg = ["bank.after_prepare@20", "bank.before_phase2@30", "bank.after_register@25"]
    maria = ["bank.before_phase2@35", "bank.after_register@15", "bank.after_prepare@30"]
    async with rig(tmp_path, databases, pg, maria) as r:
        begun = await run_transfers(r, 240, seed=11)
        counts = await check(r)
        assert sum(lg.deaths for lg in r.ledgers) == 6, r.restarts
    assert counts["succeeded"] > 120 and sum(counts.values()) == begun, counts
