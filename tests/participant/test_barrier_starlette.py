"""A real Starlette participant service, called as the coordinator calls it (DESIGN section 5).

The service runs once with an asyncio driver (asyncpg on PostgreSQL) and once with
a sync one (sqlite3, used from Starlette's thread pool).
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from legato import Failure
from legato.participant import acreate_table, create_table
from legato.participant.starlette import answer_query_prepared, run_in_barrier
from tests.support.barrier import LEDGER, Db


@dataclass
class Service:
    client: httpx.AsyncClient
    db: Db


def make_app(
    connect: Callable[[], AbstractAsyncContextManager[Any]], debit: Callable[..., Any]
) -> Starlette:
    async def transfer_out(request: Request) -> Response:
        amount = (await request.json())["amount"]
        gid = request.query_params.get("gid", "")
        async with connect() as conn:
            return await run_in_barrier(request, conn, lambda c: debit(c, gid, amount))

    async def query_prepared(request: Request) -> Response:
        async with connect() as conn:
            return await answer_query_prepared(request, conn)

    return Starlette(
        routes=[
            Route("/transfer-out", transfer_out, methods=["POST"]),
            Route("/query-prepared", query_prepared, methods=["GET"]),
        ]
    )


def sqlite_service(db: Db) -> Starlette:
    path = db.url.removeprefix("sqlite:///")

    @asynccontextmanager
    async def connect() -> AsyncIterator[sqlite3.Connection]:
        # the barrier runs a sync connection in Starlette's thread pool
        with closing(sqlite3.connect(path, check_same_thread=False)) as conn:
            yield conn

    def debit(conn: sqlite3.Connection, gid: str, amount: int) -> None:
        conn.execute("INSERT INTO ledger (gid, entry) VALUES (?, ?)", (gid, f"debit {amount}"))
        if amount > 100:
            raise Failure("over the limit")

    with closing(sqlite3.connect(path)) as conn:
        create_table(conn)
    return make_app(connect, debit)


def asyncpg_service(db: Db) -> Starlette:
    import asyncpg

    @asynccontextmanager
    async def connect() -> AsyncIterator[asyncpg.Connection]:
        conn = await asyncpg.connect(db.url)
        try:
            yield conn
        finally:
            await conn.close()

    async def debit(conn: asyncpg.Connection, gid: str, amount: int) -> None:
        sql = "INSERT INTO ledger (gid, entry) VALUES ($1, $2)"
        await conn.execute(sql, gid, f"debit {amount}")
        if amount > 100:
            raise Failure("over the limit")

    return make_app(connect, debit)


@pytest.fixture(params=["asyncpg", "sqlite3"])
async def service(request: pytest.FixtureRequest) -> AsyncIterator[Service]:
    if request.param == "asyncpg":
        import asyncpg

        db: Db = request.getfixturevalue("fresh_pg")
        db.execute(LEDGER[db.dialect])
        conn = await asyncpg.connect(db.url)
        try:
            await acreate_table(conn)
        finally:
            await conn.close()
        app = asyncpg_service(db)
    else:
        db = request.getfixturevalue("fresh_sqlite")
        db.execute(LEDGER[db.dialect])
        app = sqlite_service(db)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://participant") as client:
        yield Service(client, db)


def branch(gid: str, op: str = "action") -> dict[str, str]:
    return {"gid": gid, "trans_type": "saga", "branch_id": "01", "op": op}


async def test_a_branch_request_delivered_twice_debits_once_and_answers_success_both_times(
    service: Service,
) -> None:
    gid = f"g-{uuid.uuid4().hex[:10]}"

    first = await service.client.post("/transfer-out", params=branch(gid), json={"amount": 30})
    again = await service.client.post("/transfer-out", params=branch(gid), json={"amount": 30})

    assert (first.status_code, first.json()) == (200, {"dtm_result": "SUCCESS", "barrier": "ran"})
    assert (again.status_code, again.json()["barrier"]) == (200, "duplicate")
    assert service.db.ledger(gid) == ["debit 30"]


async def test_a_business_failure_answers_409_and_leaves_nothing_behind(service: Service) -> None:
    gid = f"g-{uuid.uuid4().hex[:10]}"

    refused = await service.client.post("/transfer-out", params=branch(gid), json={"amount": 500})
    undo = await service.client.post(
        "/transfer-out", params=branch(gid, "compensate"), json={"amount": 500}
    )

    assert refused.status_code == 409
    assert refused.json() == {"dtm_result": "FAILURE", "message": "over the limit"}
    assert service.db.ledger(gid) == []
    assert (undo.status_code, undo.json()["barrier"]) == (200, "null_compensation")


@pytest.mark.parametrize("missing", ["gid", "trans_type", "branch_id", "op"])
async def test_a_request_missing_a_query_field_answers_400_naming_it(
    service: Service, missing: str
) -> None:
    params = {k: v for k, v in branch("g-400").items() if k != missing}

    answer = await service.client.post("/transfer-out", params=params, json={"amount": 1})

    assert answer.status_code == 400
    assert answer.json()["field"] == missing
    assert "FAILURE" not in answer.text
    assert service.db.ledger("g-400") == []


async def test_query_prepared_answers_409_for_a_local_transaction_that_never_committed(
    service: Service,
) -> None:
    gid = f"g-{uuid.uuid4().hex[:10]}"

    answer = await service.client.get("/query-prepared", params={"gid": gid})

    assert answer.status_code == 409
    assert answer.json()["dtm_result"] == "FAILURE"
    assert service.db.barrier_rows(gid) == [("00", "msg", "01", "rollback")]


async def test_query_prepared_answers_success_for_a_committed_local_transaction(
    service: Service,
) -> None:
    gid = f"g-{uuid.uuid4().hex[:10]}"
    params = {"gid": gid, "trans_type": "msg", "branch_id": "00", "op": "msg"}
    local = await service.client.post("/transfer-out", params=params, json={"amount": 5})

    answer = await service.client.get("/query-prepared", params={"gid": gid})

    assert local.json()["barrier"] == "ran"
    assert (answer.status_code, answer.json()) == (200, {"dtm_result": "SUCCESS"})
    assert service.db.ledger(gid) == ["debit 5"]


async def test_query_prepared_without_a_gid_answers_400(service: Service) -> None:
    answer = await service.client.get("/query-prepared")

    assert (answer.status_code, answer.json()["field"]) == (400, "gid")
