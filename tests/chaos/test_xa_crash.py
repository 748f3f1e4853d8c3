"""Two-phase commit under SIGKILL: a process moving money between a PostgreSQL ledger
and a MariaDB ledger is killed at a named point, then run again. Afterwards the
money adds up, every transfer took effect in both ledgers or in neither, and no
Legato branch is left prepared in either database.

Points: after every branch prepared, before the decision (``xa.before_decision``);
after the decision, before any phase 2 (``before_op.commit``); between phase-2
commits (``after_op.commit``); and after a decision was logged (``after_log_write``).

The PostgreSQL ledger is on the session's throwaway server that takes prepared
transactions; the restart test restarts a throwaway server of its own. Each test's
coordinators prepare in an XA namespace of the test's own: the gids (``xfer-i``)
are the same in every run, and another run may share the MariaDB server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from legato import Coordinator, TxStatus
from legato.participant import create_table
from legato.participant import xa as xa_kit
from tests.support import xa as support_xa
from tests.support.invariants import ops_left_running
from tests.support.processes import REPOSITORY
from tests.support.servers import PgServer
from tests.support.xa import PREPARED, XaDatabases, maria_connect, move, prepared_xids

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]

WORKER = "tests.chaos.xa_worker"
N = 40
ACCOUNTS = 4
START = 100


@dataclass
class Bank:
    pg: str
    maria: str
    namespace: str  # the XA namespace of the test's coordinators

    def maria_conn(self) -> Any:
        return maria_connect(self.maria)

    def total(self) -> int:
        with psycopg.connect(self.pg) as c:
            row = c.execute("SELECT sum(balance) FROM account").fetchone()
        m = self.maria_conn()
        try:
            with m.cursor() as cur:
                cur.execute("SELECT sum(balance) FROM account")
                (maria,) = cur.fetchone()
        finally:
            m.close()
        assert row is not None
        return int(row[0]) + int(maria)

    def committed(self) -> tuple[set[str], set[str]]:
        """The gids whose branch committed, in each ledger (its barrier row is there)."""
        sql = "SELECT gid FROM legato_barrier WHERE op = 'action' AND reason = 'action'"
        with psycopg.connect(self.pg) as c:
            pg = {r[0] for r in c.execute(sql).fetchall()}  # type: ignore[arg-type]
        m = self.maria_conn()
        try:
            with m.cursor() as cur:
                cur.execute(sql)
                maria = {r[0] for r in cur.fetchall()}
        finally:
            m.close()
        return pg, maria

    def prepared(self, roll_back: bool = False) -> list[str]:
        return prepared_xids(self.pg, self.maria, self.namespace, roll_back=roll_back)


@contextlib.contextmanager
def open_bank(databases: XaDatabases) -> Iterator[Bank]:
    with databases("xabank") as (pg, maria):
        b = Bank(pg, maria, f"xc-{uuid.uuid4().hex[:8]}")
        rows = [(i, START) for i in range(ACCOUNTS)]
        with psycopg.connect(b.pg, autocommit=True) as c:
            c.execute("CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)")
            with c.cursor() as cur:
                cur.executemany("INSERT INTO account VALUES (%s, %s)", rows)
            create_table(c)
        m = b.maria_conn()
        with m.cursor() as cur:
            cur.execute(
                "CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL) ENGINE=InnoDB"
            )
            cur.executemany("INSERT INTO account VALUES (%s, %s)", rows)
        create_table(m)
        m.close()
        try:
            yield b
        finally:
            leftover = b.prepared(roll_back=True)
        assert leftover == [], "a branch was left prepared"


@pytest.fixture
def bank(xa_databases: XaDatabases) -> Iterator[Bank]:
    with open_bank(xa_databases) as b:
        yield b


@pytest.fixture
def own_pg() -> Iterator[PgServer]:
    """A throwaway PostgreSQL server of the test's own, which it may restart."""
    with PgServer(settings=PREPARED) as pg:
        yield pg


def run_worker(bank: Bank, log: str, mode: str, faults: str = "") -> int:
    env = {**os.environ, "LEGATO_FAULTS": faults}
    args = [sys.executable, "-m", WORKER, "--log", log, "--pg", bank.pg, "--maria", bank.maria]
    args += ["--n", str(N), "--mode", mode, "--xa-namespace", bank.namespace]
    proc = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=150, cwd=REPOSITORY
    )
    if proc.returncode not in (0, -9):
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
    return proc.returncode


@pytest.mark.parametrize(
    "fault",
    [
        "xa.before_decision@6",
        "before_op.commit@6",
        "after_op.commit@9",
        "after_log_write@25",
    ],
)
def test_killed_at_any_point_no_transfer_is_half_applied_and_money_adds_up(
    bank: Bank, tmp_path: Path, fault: str
) -> None:
    log = f"sqlite:///{tmp_path / 'legato.db'}"
    assert run_worker(bank, log, "transfer", fault) == -9, "the fault point was not reached"
    assert run_worker(bank, log, "transfer") == 0
    pg, maria = bank.committed()
    assert pg == maria, f"half-applied: {sorted(pg ^ maria)}"
    assert len(pg) > N // 2
    assert bank.total() == 2 * ACCOUNTS * START
    assert bank.prepared() == []
    assert asyncio.run(ops_left_running(log)) == []


async def test_a_postgres_restart_with_branches_prepared_loses_nothing(
    own_pg: PgServer, tmp_path: Path
) -> None:
    with open_bank(functools.partial(support_xa.xa_databases, own_pg)) as bank:
        await _transfer_across_a_restart(bank, own_pg, tmp_path)


async def _transfer_across_a_restart(bank: Bank, server: PgServer, tmp_path: Path) -> None:
    resources = {"pg": bank.pg, "maria": bank.maria}
    log = f"sqlite:///{tmp_path / 'legato.db'}"
    async with Coordinator(
        log, poll_interval=0.05, resources=resources, xa_namespace=bank.namespace
    ) as c:
        gid = await c.begin_xa("xfer-restart", timeout_to_fail=120)
        for branch, resource, connect, delta in (
            ("01", "pg", lambda: psycopg.connect(bank.pg, autocommit=True), "-"),
            ("02", "maria", bank.maria_conn, "+"),
        ):
            xid = await c.register_xa_branch(gid, branch, resource)
            conn = connect()
            try:
                fn = move(delta, 0, 25)
                prepare = functools.partial(xa_kit.prepare_branch, namespace=xid.namespace)
                await asyncio.to_thread(prepare, conn, gid, branch, fn)
            finally:
                conn.close()
        await asyncio.to_thread(server.restart)
        assert sorted(bank.prepared()) == sorted(
            str(xa_kit.xid_for(gid, b, bank.namespace)) for b in ("01", "02")
        ), "a prepared branch must survive the restart"
        await c.submit_tcc(gid)
        outcome = await c.handle(gid).result(timeout=60)
    assert outcome.status is TxStatus.SUCCEEDED
    pg, maria = bank.committed()
    assert pg == maria == {gid}
    assert bank.total() == 2 * ACCOUNTS * START
    assert bank.prepared() == []
    assert await ops_left_running(log) == []
