"""DTM's XA flow over HTTP against ``legato serve``: the initiator prepares the
transaction, each service runs and prepares its own branch and registers its URL,
then submit (or abort) makes the coordinator call every branch's URL with
``op=commit`` (or ``op=rollback``). The service's ledger is read back, and no
branch may stay prepared."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from legato import Failure
from legato.participant import create_table, xa

from .conftest import Served, serve


def ledger_service(db: str, dtm: str) -> Starlette:
    """One service with a PostgreSQL ledger, written the way DTM's XA services are."""

    def debit(account: int, amount: int) -> Any:
        # each branch its own account: a prepared branch keeps its row locks until phase 2
        def run(conn: Any) -> None:
            row = conn.execute(
                "SELECT balance FROM account WHERE id = %s FOR UPDATE", (account,)
            ).fetchone()
            if row[0] < amount:
                raise Failure("insufficient funds")
            conn.execute(
                "UPDATE account SET balance = balance - %s WHERE id = %s", (amount, account)
            )

        return run

    def branch(q: dict[str, str], body: dict[str, Any], url: str) -> JSONResponse:
        gid, branch_id, op = q["gid"], q["branch_id"], q["op"]
        with psycopg.connect(db, autocommit=True) as conn:
            if op == "action":
                try:
                    fn = debit(int(branch_id), int(body["amount"]))
                    xa.prepare_branch(conn, gid, branch_id, fn)
                except Failure as exc:
                    return JSONResponse({"dtm_result": "FAILURE", "message": str(exc)}, 409)
                reg = {"gid": gid, "branch_id": branch_id, "trans_type": "xa", "url": url}
                r = httpx.post(f"{dtm}/registerBranch", json=reg)
                return JSONResponse(r.json(), r.status_code)
            try:
                if op == "commit":
                    xa.commit(conn, xa.xid_for(gid, branch_id))
                else:
                    xa.rollback(conn, xa.xid_for(gid, branch_id))
            except Exception as exc:  # answered 503: the coordinator retries
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 503)
        return JSONResponse({"dtm_result": "SUCCESS"})

    async def endpoint(request: Request) -> JSONResponse:
        body = await request.json() if await request.body() else {}
        url = str(request.url).split("?")[0]
        return await run_in_threadpool(branch, dict(request.query_params), body, url)

    return Starlette(routes=[Route("/xa", endpoint, methods=["POST"])])


@pytest.fixture
def ledger(empty_pg_database: str) -> Iterator[str]:
    with psycopg.connect(empty_pg_database, autocommit=True) as conn:
        if int(conn.execute("SHOW max_prepared_transactions").fetchone()[0]) == 0:  # type: ignore[index]
            pytest.skip("max_prepared_transactions is 0 (scripts/services sets it)")
        conn.execute("CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)")
        conn.execute("INSERT INTO account VALUES (1, 100), (2, 100)")
        create_table(conn)
    yield empty_pg_database
    with psycopg.connect(empty_pg_database, autocommit=True) as conn:
        left = xa.recover(conn)
        for xid in left:
            xa.rollback(conn, xid)
    assert left == [], "a branch was left prepared"


def balance(db: str) -> int:
    """Both accounts' money."""
    with psycopg.connect(db) as conn:
        return int(conn.execute("SELECT sum(balance) FROM account").fetchone()[0])  # type: ignore[index]


def wait_end(server: Served, gid: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tx = httpx.get(server.dtm + "/query", params={"gid": gid}).json()["transaction"]
        if tx["status"] in ("succeed", "failed"):
            return str(tx["status"])
        time.sleep(0.05)
    tx = httpx.get(f"{server.url}/v1/transactions/{gid}").json()
    raise AssertionError(f"{gid} did not end: {tx['status']}, {tx['ops']}")


def run_xa(server: Served, url: str, gid: str, amounts: list[int], end: str) -> str:
    assert (
        httpx.post(server.dtm + "/prepare", json={"gid": gid, "trans_type": "xa"}).status_code
        == 200
    )
    ok = True
    for i, amount in enumerate(amounts, start=1):
        q = {"gid": gid, "trans_type": "xa", "branch_id": f"{i:02d}", "op": "action"}
        r = httpx.post(url, params=q, json={"amount": amount}, timeout=30)
        ok = ok and r.status_code == 200
    body = {"gid": gid, "trans_type": "xa"}
    assert httpx.post(f"{server.dtm}/{end if ok else 'abort'}", json=body).status_code == 200
    return wait_end(server, gid)


def test_an_xa_transaction_over_dtm_s_api_commits_every_branch(server: Served, ledger: str) -> None:
    with serve(ledger_service(ledger, server.dtm)) as base:
        assert (
            run_xa(server, base + "/xa", f"xa-http-1-{uuid.uuid4().hex[:8]}", [10, 20], "submit")
            == "succeed"
        )
    assert balance(ledger) == 170


def test_an_aborted_xa_transaction_rolls_every_prepared_branch_back(
    server: Served, ledger: str
) -> None:
    with serve(ledger_service(ledger, server.dtm)) as base:
        assert (
            run_xa(server, base + "/xa", f"xa-http-2-{uuid.uuid4().hex[:8]}", [10, 20], "abort")
            == "failed"
        )
    assert balance(ledger) == 200


def test_a_branch_that_cannot_prepare_aborts_the_rest(server: Served, ledger: str) -> None:
    with serve(ledger_service(ledger, server.dtm)) as base:
        # the second branch finds too little money: the initiator aborts
        assert (
            run_xa(server, base + "/xa", f"xa-http-3-{uuid.uuid4().hex[:8]}", [60, 160], "submit")
            == "failed"
        )
    assert balance(ledger) == 200
