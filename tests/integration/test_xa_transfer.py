"""Two-phase commit in process: money moves between a ledger in PostgreSQL and one in
MariaDB, all or nothing, and nothing is left prepared in either database."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

import legato
from conftest import xa_databases
from legato import Coordinator, TxStatus
from legato.log import TxWrite
from legato.participant import create_table
from legato.participant import xa as xa_kit

IN_CI = os.environ.get("CI", "").lower() == "true"


@dataclass
class Ledgers:
    pg: str  # postgresql://...
    maria: str  # mysql://root@127.0.0.1:3306/db
    maria_db: str

    def pg_conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.pg, autocommit=True)

    def maria_conn(self) -> Any:
        return pymysql.connect(
            host="127.0.0.1", user="root", database=self.maria_db, autocommit=True
        )

    def balances(self) -> tuple[int, int]:
        with self.pg_conn() as c:
            row = c.execute("SELECT balance FROM account WHERE id = 1").fetchone()
        m = self.maria_conn()
        try:
            with m.cursor() as cur:
                cur.execute("SELECT balance FROM account WHERE id = 1")
                (mb,) = cur.fetchone()
        finally:
            m.close()
        assert row is not None
        return int(row[0]), int(mb)

    def left_prepared(self, roll_back: bool = False) -> list[str]:
        """Legato's xids still prepared in either database (rolled back if asked)."""
        out = []
        for connect in (self.pg_conn, self.maria_conn):
            conn = connect()
            try:
                for xid in xa_kit.recover(conn):
                    out.append(str(xid))
                    if roll_back:
                        xa_kit.rollback(conn, xid)
            finally:
                conn.close()
        return out


@pytest.fixture
def ledgers() -> Iterator[Ledgers]:
    with xa_databases("xa") as (pg, maria):
        led = Ledgers(pg, maria, maria.rsplit("/", 1)[1])
        with led.pg_conn() as c:
            c.execute(
                "CREATE TABLE account "
                "(id int PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0))"
            )
            c.execute("INSERT INTO account VALUES (1, 100)")
            create_table(c)
        m = led.maria_conn()
        with m.cursor() as cur:
            cur.execute(
                "CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL) ENGINE=InnoDB"
            )
            cur.execute("INSERT INTO account VALUES (1, 100)")
        create_table(m)
        m.close()
        try:
            yield led
        finally:
            # nothing of ours may stay prepared; clean up anyway so the servers stay usable
            leftover = led.left_prepared(roll_back=True)
        assert leftover == []


@pytest.fixture
async def coordinator_xa(log_url: str, ledgers: Ledgers) -> Any:
    resources = {"pg": ledgers.pg, "maria": ledgers.maria}
    async with Coordinator(log_url, poll_interval=0.05, resources=resources) as c:
        yield c


def debit(amount: int) -> Any:
    def run(conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT balance FROM account WHERE id = 1 FOR UPDATE")
            (balance,) = cur.fetchone()
            if balance < amount:
                raise legato.Failure("insufficient funds")
            cur.execute("UPDATE account SET balance = balance - %s WHERE id = 1", (amount,))

    return run


def credit(amount: int) -> Any:
    def run(conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("UPDATE account SET balance = balance + %s WHERE id = 1", (amount,))

    return run


async def test_a_transfer_commits_on_both_databases(
    coordinator_xa: Coordinator, ledgers: Ledgers
) -> None:
    pg, maria = ledgers.pg_conn(), ledgers.maria_conn()
    try:
        async with coordinator_xa.xa() as t:
            await t.branch(pg, debit(30), resource="pg")
            await t.branch(maria, credit(30), resource="maria")
    finally:
        pg.close()
        maria.close()
    assert t.handle is not None
    outcome = await t.handle.result(timeout=15)
    assert outcome.status is TxStatus.SUCCEEDED
    assert ledgers.balances() == (70, 130)
    assert ledgers.left_prepared() == []


async def test_a_branch_that_fails_rolls_both_back(
    coordinator_xa: Coordinator, ledgers: Ledgers
) -> None:
    pg, maria = ledgers.pg_conn(), ledgers.maria_conn()
    try:
        with pytest.raises(legato.Failure, match="insufficient"):
            async with coordinator_xa.xa() as t:
                await t.branch(maria, credit(500), resource="maria")
                await t.branch(pg, debit(500), resource="pg")  # would go negative
    finally:
        pg.close()
        maria.close()
    assert t.handle is not None
    outcome = await t.handle.result(timeout=15)
    assert outcome.status is TxStatus.FAILED
    assert ledgers.balances() == (100, 100)
    assert ledgers.left_prepared() == []


async def test_branches_prepared_by_an_initiator_that_died_are_rolled_back_at_the_timeout(
    coordinator_xa: Coordinator, ledgers: Ledgers
) -> None:
    gid = await coordinator_xa.begin_xa(timeout_to_fail=0.5)
    for branch, resource, conn_of, fn in (
        ("01", "pg", ledgers.pg_conn, debit(10)),
        ("02", "maria", ledgers.maria_conn, credit(10)),
    ):
        await coordinator_xa.register_xa_branch(gid, branch, resource)
        conn = conn_of()
        try:
            await asyncio.to_thread(xa_kit.prepare_branch, conn, gid, branch, fn)
        finally:
            conn.close()  # a prepared branch outlives its connection
    assert len(ledgers.left_prepared()) == 2
    # ... and the initiator is gone: no submit, no abort
    outcome = await coordinator_xa.handle(gid).result(timeout=15)
    assert outcome.status is TxStatus.FAILED
    assert ledgers.balances() == (100, 100)
    assert ledgers.left_prepared() == []


async def test_recovery_rolls_back_a_prepared_branch_the_log_never_decided(
    log_url: str, ledgers: Ledgers
) -> None:
    # recover=False: no pass of the coordinator's own at start, which could roll the
    # orphan back first (it lists the resources while this test prepares it)
    resources = {"pg": ledgers.pg, "maria": ledgers.maria}
    async with Coordinator(log_url, recover=False, resources=resources) as c:
        orphan = f"orphan-{uuid.uuid4().hex[:8]}"  # prepared, but unknown to the log
        conn = ledgers.pg_conn()
        try:
            xa_kit.prepare_branch(conn, orphan, "01", debit(5))
        finally:
            conn.close()
        assert len(ledgers.left_prepared()) == 1
        report = await c.recover_xa()
    assert report.rolled_back == [f"pg:{orphan}/01"]
    assert ledgers.balances() == (100, 100)
    assert ledgers.left_prepared() == []


async def test_recovery_commits_a_branch_whose_decision_to_commit_is_logged(
    log_url: str, ledgers: Ledgers
) -> None:
    resources = {"pg": ledgers.pg, "maria": ledgers.maria}
    async with Coordinator(log_url, recover=False, resources=resources, owner="a") as c:
        gid = await c.begin_xa(timeout_to_fail=60)
        await c.register_xa_branch(gid, "01", "maria")
        conn = ledgers.maria_conn()
        try:
            xa_kit.prepare_branch(conn, gid, "01", credit(7))
        finally:
            conn.close()
        # the decision to commit is logged, as a runner logs it before any phase 2 ...
        now = time.time()
        await c.log.request(gid, "submit", now)
        assert [x.gid for x in await c.log.claim("a", now, now + 30, 10, None)] == [gid]
        await c.log.write(
            TxWrite(
                gid, "a", now, TxStatus.SUBMITTED, None, None, now, release=True, handled="submit"
            )
        )
        # ... and the coordinator dies before phase 2: the branch is in doubt
        assert ledgers.balances() == (100, 100)
        report = await c.recover_xa()
    assert report.committed == [f"maria:{gid}/01"]
    assert ledgers.balances() == (100, 107)
    # the transaction itself is driven to its end by any coordinator: the branch's commit
    # finds it committed already, which the database confirms (its barrier row)
    async with Coordinator(log_url, poll_interval=0.05, resources=resources) as d:
        outcome = await d.handle(gid).result(timeout=15)
    assert outcome.status is TxStatus.SUCCEEDED
    assert ledgers.balances() == (100, 107)
    assert ledgers.left_prepared() == []


def test_sqlite_is_no_xa_resource(tmp_path: Path) -> None:
    with pytest.raises(legato.DefinitionError, match="SQLite has no two-phase commit"):
        Coordinator(f"sqlite:///{tmp_path / 'l.db'}", resources={"s": f"sqlite:///{tmp_path}/x.db"})
