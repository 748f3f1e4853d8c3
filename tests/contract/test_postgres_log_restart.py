"""The PostgreSQL log outlives its server restarting or crashing (issue 12, item 8).

Each test has a database of its own on a PostgreSQL server of the module's own,
which it restarts, kills or stops: never the shared server. A connection cut
off mid-statement is made two ways: ``pg_terminate_backend`` on a statement
waiting for a row lock the test holds (cut before its commit), and a proxy
that swallows the server's answer (cut after its commit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest

from legato import LogError, LogUnavailable, TxQuery, TxStatus
from legato.log.postgres import PostgresLog
from tests.support.proxy import CuttingProxy
from tests.support.records import LEASE, T0, change, new
from tests.support.servers import PgServer

DOWN = "PostgreSQL log"  # every LogUnavailable of this log says whose it is


@pytest.fixture
async def log(throwaway_database: str) -> AsyncIterator[PostgresLog]:
    log = PostgresLog(throwaway_database)
    await log.open()
    try:
        yield log
    finally:
        await log.close()


@pytest.fixture
def proxy(throwaway_pg: PgServer) -> Iterator[CuttingProxy]:
    with CuttingProxy(throwaway_pg.port) as proxy:
        yield proxy


@pytest.fixture
async def proxied_log(throwaway_database: str, proxy: CuttingProxy) -> AsyncIterator[PostgresLog]:
    """The log, reaching its server through ``proxy``; its event loop's connection is
    open and idle, so that a cut answer is a statement's, never a connection's greeting."""
    port = proxy.target
    log = PostgresLog(throwaway_database.replace(f":{port}/", f":{proxy.port}/"))
    await log.open()
    try:
        assert await log.create(new("warm-up")) is None
        yield log
    finally:
        await log.close()


def bounce(pg: PgServer, how: str) -> None:
    if how == "restart":
        pg.restart()
    else:
        pg.kill()
        pg.start()


def sql(url: str, query: str, *params: Any) -> list[Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


async def terminate_when_waiting(url: str) -> None:
    """Terminate the log's backend once it waits for a row lock."""
    query = (
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'legato-writer' "
        "AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while not (waiting := sql(url, query)):
        assert time.monotonic() < deadline, "the log's write never waited for the lock"
        await asyncio.sleep(0.02)
    sql(url, "SELECT pg_terminate_backend(%s)", waiting[0][0])


def kinds(url: str, gid: str) -> list[str]:
    return [r[0] for r in sql(url, "SELECT kind FROM legato_event WHERE gid = %s ORDER BY id", gid)]


@pytest.mark.parametrize("how", ["restart", "crash"])
async def test_every_connection_of_an_idle_log_is_replaced_once_its_server_is_back(
    throwaway_pg: PgServer, log: PostgresLog, how: str
) -> None:
    # each of the log's connections is open: the event loop's (create), the reader's
    # (load) and the writer thread's (claim)
    assert await log.create(new("g1")) is None
    assert await log.load("g1") is not None
    assert await log.claim("beta", T0 + LEASE + 1, T0 + 2 * LEASE, 10, None) != []

    bounce(throwaway_pg, how)

    # the first call of each kind succeeds: no stale connection is used
    assert await log.create(new("g2")) is None
    loaded = await log.load("g1")
    assert loaded is not None and loaded[0].lease_owner == "beta"
    assert await log.renew("beta", ["g1"], T0 + LEASE + 2, T0 + 3 * LEASE) == {"g1": None}
    await log.write(change("g2", status=TxStatus.SUCCEEDED, next_attempt_at=None, release=True))
    assert [tx.gid for tx in await log.list(TxQuery(status=[TxStatus.SUCCEEDED]))] == ["g2"]
    assert (await log.summary(T0)).counts == {"submitted": 1}


async def test_while_its_server_is_down_every_call_is_log_unavailable_and_nothing_is_written(
    throwaway_pg: PgServer, throwaway_database: str, log: PostgresLog
) -> None:
    assert await log.create(new("g1")) is None
    throwaway_pg.stop()
    try:
        calls = {
            "load": log.load("g1"),
            "events": log.events("g1"),
            "list": log.list(TxQuery()),
            "summary": log.summary(T0),
            "create": log.create(new("g2")),
            "write": log.write(change("g1", status=TxStatus.SUCCEEDED, release=True)),
            "claim": log.claim("beta", T0 + LEASE + 1, T0 + 2 * LEASE, 10, None),
            "renew": log.renew("alpha", ["g1"], T0 + 1, T0 + LEASE),
            "release": log.release("alpha", "g1", T0),
            "request": log.request("g1", "retry", T0 + 1),
        }
        for what, call in calls.items():
            with pytest.raises(LogUnavailable, match=DOWN):
                await call
                pytest.fail(f"{what} succeeded with the server down")
    finally:
        throwaway_pg.start()

    assert await log.load("g2") is None  # the create never happened
    assert await log.create(new("g2")) is None
    tx = (await log.load("g1") or pytest.fail("g1 is lost"))[0]
    assert (tx.status, tx.lease_owner, tx.requested, tx.version) == (
        TxStatus.SUBMITTED,
        "alpha",
        None,
        1,
    )
    assert kinds(throwaway_database, "g1") == ["submitted", "op_started"]


async def test_a_write_cut_off_before_its_commit_runs_once_more_on_a_fresh_connection(
    throwaway_database: str, log: PostgresLog
) -> None:
    assert await log.create(new("g1", lease_owner=None, lease_expires_at=None)) is None
    with psycopg.connect(throwaway_database) as locker:
        locker.execute("SELECT 1 FROM legato_tx WHERE gid = 'g1' FOR UPDATE")
        request = asyncio.create_task(log.request("g1", "retry", T0 + 1, by="cli"))
        await terminate_when_waiting(throwaway_database)
        locker.commit()  # the repeat, waiting for the lock in turn, goes on

    tx = await request
    assert tx.gid == "g1"
    assert sql(throwaway_database, "SELECT requested FROM legato_tx WHERE gid = 'g1'") == [
        ("retry",)
    ]
    assert kinds(throwaway_database, "g1").count("requested") == 1


async def test_a_fenced_write_cut_off_mid_flight_is_reported_unknown_never_done(
    throwaway_database: str, log: PostgresLog
) -> None:
    assert await log.create(new("g1")) is None
    with psycopg.connect(throwaway_database) as locker:
        locker.execute("SELECT 1 FROM legato_tx WHERE gid = 'g1' FOR UPDATE")
        write = asyncio.create_task(
            log.write(change("g1", status=TxStatus.SUCCEEDED, next_attempt_at=None, release=True))
        )
        await terminate_when_waiting(throwaway_database)
        locker.commit()
        with pytest.raises(LogUnavailable, match="whether the write was committed is unknown"):
            await write

    # it had not committed (the server rolled it back): the log holds the truth, which
    # recovery reads
    tx = (await log.load("g1") or pytest.fail("g1 is lost"))[0]
    assert (tx.status, tx.version, tx.lease_owner) == (TxStatus.SUBMITTED, 1, "alpha")


async def test_a_fenced_write_committed_but_unheard_is_reported_unknown_never_failed(
    throwaway_database: str, proxy: CuttingProxy, proxied_log: PostgresLog
) -> None:
    assert await proxied_log.create(new("g1")) is None
    proxy.cut_next_answer()
    with pytest.raises(LogUnavailable, match="whether the write was committed is unknown"):
        await proxied_log.write(
            change("g1", status=TxStatus.SUCCEEDED, next_attempt_at=None, release=True)
        )

    assert proxy.cuts == 1
    tx = (await proxied_log.load("g1") or pytest.fail("g1 is lost"))[0]
    assert (tx.status, tx.version, tx.lease_owner) == (TxStatus.SUCCEEDED, 2, None)


async def test_a_create_committed_but_unheard_knows_its_own_row_when_it_runs_again(
    throwaway_database: str, proxy: CuttingProxy, proxied_log: PostgresLog
) -> None:
    proxy.cut_next_answer()
    assert await proxied_log.create(new("g1")) is None  # created: the caller drives it

    assert proxy.cuts == 1
    assert sql(throwaway_database, "SELECT count(*) FROM legato_op WHERE gid = 'g1'") == [(4,)]
    assert kinds(throwaway_database, "g1") == ["submitted", "op_started"]  # written once


async def test_a_create_run_again_never_takes_another_submits_row_for_its_own(
    throwaway_database: str, proxy: CuttingProxy, proxied_log: PostgresLog
) -> None:
    theirs = new("g1", lease_owner="beta", created_at=T0 - 5)
    assert await proxied_log.create(theirs) is None
    proxy.cut_next_answer()
    existing = await proxied_log.create(new("g1"))

    assert proxy.cuts == 1
    assert existing is not None
    assert (existing.lease_owner, existing.created_at) == ("beta", T0 - 5)


async def test_a_refused_write_is_a_log_error_and_its_connection_stays(
    throwaway_database: str, log: PostgresLog
) -> None:
    assert await log.create(new("g1")) is None
    with pytest.raises(LogError) as refused:
        await log.create(new("g\x00"))  # PostgreSQL's text cannot hold a NUL
    assert not isinstance(refused.value, LogUnavailable)
    assert await log.load("g1") is not None
