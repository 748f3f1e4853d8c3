"""Two-phase commit in process: money moves between a ledger in PostgreSQL and one in
MariaDB, all or nothing, and nothing is left prepared in either database.

The PostgreSQL ledger is on the session's throwaway server that takes prepared
transactions (``prepared_pg``). Each test's coordinators share an XA namespace of
the test's own, so that what the test finds prepared is its own, whatever else
the shared MariaDB holds."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

import legato
from legato import Coordinator, TxStatus
from legato._model import OpName, OpRecord
from legato.log import TxWrite
from legato.participant import create_table
from legato.participant import xa as xa_kit
from tests.support.xa import XaDatabases, maria_connect, prepared_xids


@dataclass
class Ledgers:
    pg: str  # postgresql://...
    maria: str  # mysql://root@127.0.0.1:3306/db
    namespace: str  # the XA namespace of the test's coordinators

    def pg_conn(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.pg, autocommit=True)

    def maria_conn(self) -> Any:
        return maria_connect(self.maria)

    def coordinator(self, log_url: str, **options: Any) -> Coordinator:
        resources = {"pg": self.pg, "maria": self.maria}
        return Coordinator(log_url, resources=resources, xa_namespace=self.namespace, **options)

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
        """The test's xids still prepared in either database (rolled back if asked)."""
        return prepared_xids(self.pg, self.maria, self.namespace, roll_back=roll_back)


@pytest.fixture
def ledgers(xa_databases: XaDatabases) -> Iterator[Ledgers]:
    with xa_databases("xa") as (pg, maria):
        led = Ledgers(pg, maria, f"it-{uuid.uuid4().hex[:8]}")
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
    async with ledgers.coordinator(log_url, poll_interval=0.05) as c:
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
        xid = await coordinator_xa.register_xa_branch(gid, branch, resource)
        conn = conn_of()
        try:
            ns = xid.namespace
            await asyncio.to_thread(xa_kit.prepare_branch, conn, gid, branch, fn, namespace=ns)
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
    async with ledgers.coordinator(log_url, recover=False) as c:
        orphan = f"orphan-{uuid.uuid4().hex[:8]}"  # prepared, but unknown to the log
        conn = ledgers.pg_conn()
        try:
            xa_kit.prepare_branch(conn, orphan, "01", debit(5), namespace=c.xa_namespace)
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
    async with ledgers.coordinator(log_url, recover=False, owner="a") as c:
        gid = await c.begin_xa(timeout_to_fail=60)
        xid = await c.register_xa_branch(gid, "01", "maria")
        conn = ledgers.maria_conn()
        try:
            xa_kit.prepare_branch(conn, gid, "01", credit(7), namespace=xid.namespace)
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
    async with ledgers.coordinator(log_url, poll_interval=0.05) as d:
        outcome = await d.handle(gid).result(timeout=15)
    assert outcome.status is TxStatus.SUCCEEDED
    assert ledgers.balances() == (100, 107)
    assert ledgers.left_prepared() == []


async def test_a_branch_prepared_before_namespaces_ends_by_its_old_xid_and_recovery_skips_it(
    log_url: str, ledgers: Ledgers
) -> None:
    """An upgrade with a transaction in flight: its branch was registered (no namespace in
    its ops) and prepared under the old form of xid, before namespaces."""
    async with ledgers.coordinator(log_url, recover=False, poll_interval=0.05) as c:
        gid = await c.begin_xa(timeout_to_fail=60)
        now = time.time()
        old_ops = [
            OpRecord(gid, "01", op, 0, f"xa {op} on pg", updated_at=now, payload={"resource": "pg"})
            for op in (OpName.COMMIT, OpName.ROLLBACK)
        ]
        await c.log.register(gid, old_ops, now)
        with ledgers.pg_conn() as conn:  # as the previous release prepared it
            conn.autocommit = False
            conn.execute("UPDATE account SET balance = balance - 9 WHERE id = 1")
            conn.execute(f"PREPARE TRANSACTION 'lgx:{gid}:01'")  # type: ignore[arg-type]
        old = xa_kit.Xid(gid, "01", None)

        report = await c.recover_xa()
        assert report.rolled_back == report.committed == report.left == []
        with ledgers.pg_conn() as conn:
            assert old in xa_kit.recover(conn, namespace=xa_kit.EVERY_NAMESPACE)

        outcome = await (await c.submit_tcc(gid)).result(timeout=15)
    assert outcome.status is TxStatus.SUCCEEDED
    assert ledgers.balances() == (91, 100)
    with ledgers.pg_conn() as conn:
        assert old not in xa_kit.recover(conn, namespace=xa_kit.EVERY_NAMESPACE)


def test_sqlite_is_no_xa_resource(tmp_path: Path) -> None:
    with pytest.raises(legato.DefinitionError, match="SQLite has no two-phase commit"):
        Coordinator(f"sqlite:///{tmp_path / 'l.db'}", resources={"s": f"sqlite:///{tmp_path}/x.db"})


# -- XA branches as workflow steps ---------------------------------------------------------


def wf_debit(conn: Any, amount: int) -> int:
    debit(amount)(conn)
    return amount


def wf_credit(conn: Any, amount: int) -> int:
    credit(amount)(conn)
    return amount


@legato.workflow("xa_transfer")
async def xa_transfer(wf: legato.Workflow, amount: int, refuse_after: bool) -> int:
    await wf.xa("maria", wf_credit, amount)
    moved = await wf.xa("pg", wf_debit, amount)  # a Failure past the balance
    if refuse_after:
        raise legato.Failure("refused after both were prepared")
    return int(moved)


@pytest.mark.parametrize(
    ("amount", "refuse_after", "status", "balances"),
    [
        (30, False, TxStatus.SUCCEEDED, (70, 130)),
        (500, False, TxStatus.FAILED, (100, 100)),
        (30, True, TxStatus.FAILED, (100, 100)),
    ],
)
async def test_a_workflows_xa_branches_commit_when_it_succeeds_and_roll_back_when_it_fails(
    coordinator_xa: Coordinator,
    ledgers: Ledgers,
    amount: int,
    refuse_after: bool,
    status: TxStatus,
    balances: tuple[int, int],
) -> None:
    h = await coordinator_xa.start_workflow(xa_transfer, amount, refuse_after)
    outcome = await h.result(timeout=15)
    assert outcome.status is status, outcome
    assert ledgers.balances() == balances
    assert ledgers.left_prepared() == []


@legato.workflow("xa_then_wait")
async def xa_then_wait(wf: legato.Workflow, amount: int) -> str:
    await wf.xa("maria", wf_credit, amount)
    await wf.xa("pg", wf_debit, amount)
    go = await wf.wait_for("go")
    if go != "yes":
        raise legato.Failure("not approved")
    return "moved"


@pytest.mark.parametrize(("answer", "status", "balances"), [
    ("yes", TxStatus.SUCCEEDED, (70, 130)),
    ("no", TxStatus.FAILED, (100, 100)),
])  # fmt: skip
async def test_xa_recovery_leaves_a_waiting_workflows_branches_to_the_workflow(
    coordinator_xa: Coordinator,
    ledgers: Ledgers,
    answer: str,
    status: TxStatus,
    balances: tuple[int, int],
) -> None:
    h = await coordinator_xa.start_workflow(xa_then_wait, 30)
    for _ in range(200):  # both branches prepared, and the workflow let go while it waits
        tx, _ = await coordinator_xa.get(h.gid)
        if tx.lease_owner is None and len(ledgers.left_prepared()) == 2:
            break
        await asyncio.sleep(0.05)
    report = await coordinator_xa.recover_xa()
    assert report.committed == [] and report.rolled_back == [] and len(report.left) == 2
    assert len(ledgers.left_prepared()) == 2
    await coordinator_xa.signal(h.gid, "go", answer)
    outcome = await h.result(timeout=15)
    assert outcome.status is status, outcome
    assert ledgers.balances() == balances
    assert ledgers.left_prepared() == []
