"""Two-phase commit under SIGKILL: a process moving money between a PostgreSQL ledger
and a MariaDB ledger is killed at a named point, then run again. Afterwards the
money adds up, every transfer took effect in both ledgers or in neither, and no
Legato branch is left prepared in either database.

Points: after every branch prepared, before the decision (``xa.before_decision``);
after the decision, before any phase 2 (``before_op.commit``); between phase-2
commits (``after_op.commit``); and after a decision was logged (``after_log_write``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import xa_worker
from tests.support.invariants import ops_left_running

from conftest import PG_ADMIN, xa_databases
from legato import Coordinator, TxStatus
from legato.participant import create_table
from legato.participant import xa as xa_kit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(200)]

WORKER = Path(__file__).with_name("xa_worker.py")
N = 40
ACCOUNTS = 4
START = 100


@dataclass
class Bank:
    pg: str
    maria: str
    name: str

    def maria_conn(self) -> Any:
        return pymysql.connect(host="127.0.0.1", user="root", database=self.name, autocommit=True)

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
        out = []
        for conn in (psycopg.connect(self.pg, autocommit=True), self.maria_conn()):
            try:
                for xid in xa_kit.recover(conn):
                    if xid.gid.startswith("xfer-"):
                        out.append(str(xid))
                        if roll_back:
                            xa_kit.rollback(conn, xid)
            finally:
                conn.close()
        return out


@pytest.fixture
def bank() -> Iterator[Bank]:
    with xa_databases("xabank") as (pg, maria):
        b = Bank(pg, maria, maria.rsplit("/", 1)[1])
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


def run_worker(bank: Bank, log: str, mode: str, faults: str = "") -> int:
    env = {**os.environ, "LEGATO_FAULTS": faults}
    args = [sys.executable, str(WORKER), "--log", log, "--pg", bank.pg, "--maria", bank.maria]
    args += ["--n", str(N), "--mode", mode]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=150)
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


def _restart_postgres() -> None:
    versions = os.listdir("/etc/postgresql") if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        pytest.skip("this test restarts the local PostgreSQL cluster with pg_ctlcluster")
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "restart"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(PG_ADMIN, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            assert time.monotonic() < deadline, "PostgreSQL did not come back"
            time.sleep(0.2)


async def test_a_postgres_restart_with_branches_prepared_loses_nothing(
    bank: Bank, tmp_path: Path
) -> None:
    resources = {"pg": bank.pg, "maria": bank.maria}
    log = f"sqlite:///{tmp_path / 'legato.db'}"
    async with Coordinator(log, poll_interval=0.05, resources=resources) as c:
        gid = await c.begin_xa("xfer-restart", timeout_to_fail=120)
        for branch, resource, connect, delta in (
            ("01", "pg", lambda: psycopg.connect(bank.pg, autocommit=True), "-"),
            ("02", "maria", bank.maria_conn, "+"),
        ):
            await c.register_xa_branch(gid, branch, resource)
            conn = connect()
            try:
                fn = xa_worker.move(delta, 0, 25)
                await asyncio.to_thread(xa_kit.prepare_branch, conn, gid, branch, fn)
            finally:
                conn.close()
        await asyncio.to_thread(_restart_postgres)
        assert sorted(bank.prepared()) == sorted(
            str(xa_kit.xid_for(gid, b)) for b in ("01", "02")
        ), "a prepared branch must survive the restart"
        await c.submit_tcc(gid)
        outcome = await c.handle(gid).result(timeout=60)
    assert outcome.status is TxStatus.SUCCEEDED
    pg, maria = bank.committed()
    assert pg == maria == {gid}
    assert bank.total() == 2 * ACCOUNTS * START
    assert bank.prepared() == []
    assert await ops_left_running(log) == []
