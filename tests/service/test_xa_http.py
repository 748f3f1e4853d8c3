"""DTM's XA flow over HTTP against ``legato serve``: the initiator prepares the
transaction, each service runs and prepares its own branch and registers its URL,
then submit (or abort) makes the coordinator call every branch's URL with
``op=commit`` (or ``op=rollback``). The service's ledger is read back, and no
branch may stay prepared. The ledger is on the session's throwaway PostgreSQL
server that takes prepared transactions (``prepared_pg``); the service's branches
are in its database's XA namespace, the kit's default."""

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
from tests.support.processes import Served
from tests.support.scripted_participant import serve
from tests.support.servers import PgServer, free_port


def ledger_service(db: str, dtm: str, native: str | None = None) -> Starlette:
    """One service with a PostgreSQL ledger, written the way DTM's XA services are;
    with ``native`` (the server's URL), it registers through Legato's own API."""

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
                if native is None:
                    reg = {"gid": gid, "branch_id": branch_id, "trans_type": "xa", "url": url}
                    r = httpx.post(f"{dtm}/registerBranch", json=reg)
                else:
                    reg = {"branch_id": branch_id, "url": url}
                    r = httpx.post(f"{native}/v1/xa/{gid}/branches", json=reg)
                return JSONResponse(r.json(), r.status_code)
            try:
                if op == "commit":
                    xa.commit_branch(conn, gid, branch_id)
                else:
                    xa.rollback_branch(conn, gid, branch_id)
            except Exception as exc:  # answered 503: the coordinator retries
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, 503)
        return JSONResponse({"dtm_result": "SUCCESS"})

    async def endpoint(request: Request) -> JSONResponse:
        body = await request.json() if await request.body() else {}
        url = str(request.url).split("?")[0]
        return await run_in_threadpool(branch, dict(request.query_params), body, url)

    return Starlette(routes=[Route("/xa", endpoint, methods=["POST"])])


@pytest.fixture
def ledger(prepared_pg: PgServer) -> Iterator[str]:
    name = f"ledger_{uuid.uuid4().hex[:12]}"
    url = prepared_pg.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE account (id int PRIMARY KEY, balance int NOT NULL)")
        conn.execute("INSERT INTO account VALUES (1, 100), (2, 100)")
        create_table(conn)
    yield url
    with psycopg.connect(url, autocommit=True) as conn:
        left = xa.recover(conn, namespace=xa.EVERY_NAMESPACE)
        for xid in left:
            xa.rollback(conn, xid)
    prepared_pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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


def _prepare_alone(db: str, gid: str, branch: str) -> None:
    """A branch prepared by a service that died before it could register it: it takes
    5 from the ledger in a new row (a prepared branch keeps its row locks)."""
    row = int(uuid.uuid4().int % 1_000_000) + 10
    with psycopg.connect(db, autocommit=True) as conn:
        xa.prepare_branch(
            conn, gid, branch, lambda c: c.execute("INSERT INTO account VALUES (%s, -5)", (row,))
        )


def test_a_service_resolves_the_branches_it_prepared_but_never_registered(
    server: Served, ledger: str
) -> None:
    unknown = f"xa-orphan-1-{uuid.uuid4().hex[:8]}"  # the initiator died before prepare
    pending = f"xa-orphan-2-{uuid.uuid4().hex[:8]}"  # still prepared in the coordinator
    submitted = f"xa-orphan-3-{uuid.uuid4().hex[:8]}"  # decided without this branch
    for gid in (pending, submitted):
        body = {"gid": gid, "trans_type": "xa"}
        assert httpx.post(server.dtm + "/prepare", json=body).status_code == 200
    for gid in (unknown, pending, submitted):
        _prepare_alone(ledger, gid, "01")
    body = {"gid": submitted, "trans_type": "xa"}
    assert httpx.post(server.dtm + "/submit", json=body).status_code == 200
    assert wait_end(server, submitted) == "succeed"

    with psycopg.connect(ledger, autocommit=True) as conn:
        report = xa.resolve(conn, server.dtm)
    assert sorted(report.rolled_back) == sorted([f"{unknown}/01", f"{submitted}/01"])
    assert report.left == [f"{pending}/01"] and report.committed == report.failed == []
    assert balance(ledger) == 200  # both locks released, the money untouched

    # the initiator gives up: the branch it never registered is rolled back
    assert (
        httpx.post(server.dtm + "/abort", json={"gid": pending, "trans_type": "xa"}).status_code
        == 200
    )
    assert wait_end(server, pending) == "failed"
    with psycopg.connect(ledger, autocommit=True) as conn:
        report = xa.resolve(conn, server.dtm)
    assert report.rolled_back == [f"{pending}/01"]
    assert balance(ledger) == 200


async def test_aresolve_commits_a_registered_branch_of_a_committed_transaction(
    server: Served, ledger: str
) -> None:
    """The coordinator's phase 2 cannot reach the service (its URL is gone): the service
    commits the branch itself when it comes back."""
    gid = f"xa-orphan-4-{uuid.uuid4().hex[:8]}"
    body = {"gid": gid, "trans_type": "xa"}
    async with httpx.AsyncClient() as http:
        assert (await http.post(server.dtm + "/prepare", json=body)).status_code == 200
        _prepare_alone(ledger, gid, "01")
        port = free_port()  # the service's address, nobody listening there yet
        reg = {**body, "branch_id": "01", "url": f"http://127.0.0.1:{port}/xa"}
        assert (await http.post(server.dtm + "/registerBranch", json=reg)).status_code == 200
        assert (await http.post(server.dtm + "/submit", json=body)).status_code == 200
    async with await psycopg.AsyncConnection.connect(ledger, autocommit=True) as conn:
        report = await xa.aresolve(conn, server.dtm)
    assert report.committed == [f"{gid}/01"]
    assert balance(ledger) == 195
    # the coordinator calls the URL until the service answers there: then it ends, and the
    # second commit changes nothing (the barrier row confirms the first)
    with serve(ledger_service(ledger, server.dtm), port):
        assert wait_end(server, gid) == "succeed"
    assert balance(ledger) == 195


def test_the_native_api_runs_an_xa_transaction_to_commit_and_to_rollback(
    server: Served, ledger: str
) -> None:
    with serve(ledger_service(ledger, server.dtm, native=server.url)) as base:
        # the commit moves 30 out; the rollback moves nothing
        for end, expected, total in (("submit", "succeeded", 170), ("abort", "failed", 170)):
            r = httpx.post(f"{server.url}/v1/xa", json={"timeout_to_fail": 30})
            assert r.status_code == 200, r.text
            gid = r.json()["gid"]
            for branch, amount in (("01", 10), ("02", 20)):
                q = {"gid": gid, "trans_type": "xa", "branch_id": branch, "op": "action"}
                assert (
                    httpx.post(f"{base}/xa", params=q, json={"amount": amount}).status_code == 200
                )
            r = httpx.post(f"{server.url}/v1/xa/{gid}/{end}", json={"wait": True}, timeout=30)
            assert r.status_code == 200 and r.json()["status"] == expected, r.text
            tx = httpx.get(f"{server.url}/v1/transactions/{gid}").json()
            assert tx["mode"] == "xa"
            done = {(o["branch"], o["op"]) for o in tx["ops"] if o["status"] == "succeeded"}
            op = "commit" if end == "submit" else "rollback"
            assert done == {("01", op), ("02", op)}
            assert balance(ledger) == total


def test_the_native_xa_api_refuses_bad_input_naming_it(server: Served) -> None:
    gid = httpx.post(f"{server.url}/v1/xa", json={}).json()["gid"]
    r = httpx.post(f"{server.url}/v1/xa/{gid}/branches", json={"url": "ftp://bank/xa"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "url"], r.text
    r = httpx.post(f"{server.url}/v1/xa/{gid}/branches", json={"url": "http://b/xa", "x": 1})
    assert r.status_code == 422 and "x" in r.json()["detail"][0]["loc"], r.text
    r = httpx.post(f"{server.url}/v1/xa", json={"timeout_to_fail": -1})
    assert r.status_code == 422 and "timeout_to_fail" in r.json()["detail"][0]["loc"]
    r = httpx.post(f"{server.url}/v1/xa/no-such-gid/submit")
    assert r.status_code == 404, r.text
    # a TCC transaction is not an XA one, and the other way round
    tcc = httpx.post(f"{server.url}/v1/tcc", json={}).json()["gid"]
    r = httpx.post(f"{server.url}/v1/xa/{tcc}/branches", json={"url": "http://b/xa"})
    assert r.status_code == 409 and "tcc" in r.json()["detail"], r.text
    assert httpx.post(f"{server.url}/v1/xa/{tcc}/submit").status_code == 409
    r = httpx.post(
        f"{server.url}/v1/tcc/{gid}/branches",
        json={"confirm": "http://b/c", "cancel": "http://b/x"},
    )
    assert r.status_code == 409, r.text
    # nothing was registered by any of it
    assert httpx.get(f"{server.url}/v1/transactions/{gid}").json()["ops"] == []
    assert httpx.post(f"{server.url}/v1/xa/{gid}/abort").status_code == 200
