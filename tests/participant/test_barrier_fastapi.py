"""The FastAPI dependency for the barrier, in a real FastAPI app on real databases.

The app is a bank: ``/debit`` takes money from an account (a saga action, which fails
definitely when the balance is short) and ``/debit-undo`` gives it back (its
compensation). It runs with asyncpg and with psycopg's AsyncConnection on PostgreSQL
(async handlers), and with sqlite3 from a plain ``def`` handler. Requests go through
httpx's ASGI transport; the last tests serve the app with uvicorn and let Legato's
coordinator run sagas against it, then read the bank's rows.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

import legato
from legato import Failure
from legato.participant import Barrier, create_table
from legato.participant.fastapi import (
    BarrierParam,
    MsgGid,
    answer_query_prepared,
    answer_query_prepared_sync,
    run_in_barrier,
    run_in_barrier_sync,
)
from legato.transports.http import HttpCall
from tests.support.scripted_participant import serve
from tests.support.services import new_pg_database

ACCOUNTS = "CREATE TABLE account (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)"


class Move(BaseModel):
    account: int
    amount: int


# --- the app, three ways ------------------------------------------------------------------


def async_bank(connect: Callable[[], AbstractAsyncContextManager[Any]], numeric: bool) -> FastAPI:
    """Async handlers; ``numeric``: asyncpg's $1 placeholders, else psycopg's %s."""
    a, b = ("$1", "$2") if numeric else ("%(amount)s", "%(account)s")
    debit_sql = f"UPDATE account SET balance = balance - {a} WHERE id = {b} AND balance >= {a}"
    credit_sql = f"UPDATE account SET balance = balance + {a} WHERE id = {b}"
    app = FastAPI()

    async def run(conn: Any, sql: str, move: Move) -> int:
        if numeric:  # asyncpg: a command tag, "UPDATE 1"
            tag: str = await conn.execute(sql, move.amount, move.account)
            return int(tag.rsplit(" ", 1)[-1])
        cur = await conn.execute(sql, {"amount": move.amount, "account": move.account})
        return int(cur.rowcount)

    @app.post("/debit")
    async def debit(move: Move, barrier: BarrierParam) -> JSONResponse:
        async def business(conn: Any) -> None:
            if await run(conn, debit_sql, move) == 0:
                raise Failure(f"account {move.account} has less than {move.amount}")

        async with connect() as conn:
            return await run_in_barrier(barrier, conn, business)

    @app.post("/debit-undo")
    async def debit_undo(move: Move, barrier: BarrierParam) -> JSONResponse:
        async def business(conn: Any) -> None:
            await run(conn, credit_sql, move)

        async with connect() as conn:
            return await run_in_barrier(barrier, conn, business)

    @app.get("/query-prepared")
    async def prepared(gid: MsgGid) -> JSONResponse:
        async with connect() as conn:
            return await answer_query_prepared(gid, conn)

    return app


def sqlite_bank(path: str) -> FastAPI:
    """Plain ``def`` handlers (FastAPI runs them in its thread pool) on sqlite3."""
    app = FastAPI()

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, isolation_level=None, timeout=10)

    @app.post("/debit")
    def debit(move: Move, barrier: BarrierParam) -> JSONResponse:
        def business(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE account SET balance = balance - ? WHERE id = ? AND balance >= ?",
                (move.amount, move.account, move.amount),
            )
            if cur.rowcount == 0:
                raise Failure(f"account {move.account} has less than {move.amount}")

        with closing(connect()) as conn:
            return run_in_barrier_sync(barrier, conn, business)

    @app.post("/debit-undo")
    def debit_undo(move: Move, barrier: BarrierParam) -> JSONResponse:
        with closing(connect()) as conn:
            return run_in_barrier_sync(
                barrier,
                conn,
                lambda c: c.execute(
                    "UPDATE account SET balance = balance + ? WHERE id = ?",
                    (move.amount, move.account),
                ),
            )

    @app.get("/query-prepared")
    def prepared(gid: MsgGid) -> JSONResponse:
        with closing(connect()) as conn:
            return answer_query_prepared_sync(gid, conn)

    return app


class Bank:
    """The app and a way to read (and seed) its database."""

    def __init__(
        self,
        app: FastAPI,
        sql: Callable[..., list[tuple[Any, ...]]],
        ph: str,
        connect: Callable[[], Any],
    ) -> None:
        self.app, self.sql, self.ph, self.connect = app, sql, ph, connect

    def balance(self, account: int = 1) -> int:
        return int(self.sql(f"SELECT balance FROM account WHERE id = {self.ph}", account)[0][0])

    def barrier_rows(self, gid: str) -> list[tuple[str, str, str]]:
        rows = self.sql(
            f"SELECT branch_id, op, reason FROM legato_barrier WHERE gid = {self.ph} "
            "ORDER BY branch_id, op",
            gid,
        )
        return [(str(b), str(o), str(r)) for b, o, r in rows]


def _pg_sql(url: str) -> Callable[..., list[tuple[Any, ...]]]:
    def sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    return sql


@pytest.fixture(params=["asyncpg", "psycopg-async", "sqlite3-sync"])
def bank(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite3-sync":
        path = str(tmp_path / "bank.db")

        def sqlite_sql(query: str, *params: Any) -> list[tuple[Any, ...]]:
            with closing(sqlite3.connect(path, isolation_level=None)) as conn:
                return conn.execute(query, params).fetchall()

        sqlite_sql(ACCOUNTS)
        sqlite_sql("INSERT INTO account VALUES (1, 100), (2, 0)")
        with closing(sqlite3.connect(path)) as conn:
            create_table(conn)
        yield Bank(sqlite_bank(path), sqlite_sql, "?", lambda: sqlite3.connect(path))
        return
    with new_pg_database("fastapi_bank") as url:
        sql = _pg_sql(url)
        sql(ACCOUNTS)
        sql("INSERT INTO account VALUES (1, 100), (2, 0)")
        with psycopg.connect(url) as conn:
            create_table(conn)

        if request.param == "asyncpg":

            @asynccontextmanager
            async def connect() -> AsyncIterator[Any]:
                conn = await asyncpg.connect(url)
                try:
                    yield conn
                finally:
                    await conn.close()

            yield Bank(async_bank(connect, numeric=True), sql, "%s", lambda: psycopg.connect(url))
        else:

            @asynccontextmanager
            async def connect() -> AsyncIterator[Any]:
                async with await psycopg.AsyncConnection.connect(url) as conn:
                    yield conn

            yield Bank(async_bank(connect, numeric=False), sql, "%s", lambda: psycopg.connect(url))


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bank")


def _q(gid: str, op: str = "action", branch: str = "01") -> dict[str, str]:
    return {"gid": gid, "trans_type": "saga", "branch_id": branch, "op": op}


# --- the answers --------------------------------------------------------------------------


async def test_an_action_runs_once_and_a_duplicate_answers_success_without_running(
    bank: Bank,
) -> None:
    gid = uuid.uuid4().hex
    async with _client(bank.app) as client:
        first = await client.post("/debit", params=_q(gid), json={"account": 1, "amount": 30})
        again = await client.post("/debit", params=_q(gid), json={"account": 1, "amount": 30})
    assert (first.status_code, first.json()) == (200, {"dtm_result": "SUCCESS", "barrier": "ran"})
    assert (again.status_code, again.json()["barrier"]) == (200, "duplicate")
    assert bank.balance() == 70
    assert bank.barrier_rows(gid) == [("01", "action", "action")]


async def test_a_business_failure_is_a_409_and_leaves_no_row(bank: Bank) -> None:
    gid = uuid.uuid4().hex
    async with _client(bank.app) as client:
        short = await client.post("/debit", params=_q(gid), json={"account": 2, "amount": 5})
    assert short.status_code == 409
    assert short.json() == {"dtm_result": "FAILURE", "message": "account 2 has less than 5"}
    assert bank.balance(2) == 0
    assert bank.barrier_rows(gid) == []  # rolled back with the business change


async def test_a_compensation_before_its_action_is_a_null_one_and_the_action_then_hangs(
    bank: Bank,
) -> None:
    gid = uuid.uuid4().hex
    async with _client(bank.app) as client:
        undo = await client.post(
            "/debit-undo", params=_q(gid, "compensate"), json={"account": 1, "amount": 30}
        )
        late = await client.post("/debit", params=_q(gid), json={"account": 1, "amount": 30})
    assert undo.json() == {"dtm_result": "SUCCESS", "barrier": "null_compensation"}
    assert late.json() == {"dtm_result": "SUCCESS", "barrier": "hanging"}
    assert bank.balance() == 100  # neither the credit nor the late debit ran
    assert bank.barrier_rows(gid) == [
        ("01", "action", "compensate"),
        ("01", "compensate", "compensate"),
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"trans_type": "saga", "branch_id": "01", "op": "action"}, "gid"),
        ({"gid": "g1", "trans_type": "saga", "branch_id": "01", "op": "try"}, "op"),
        ({"gid": "g1", "trans_type": "payment", "branch_id": "01", "op": "action"}, "trans_type"),
        ({"gid": "", "trans_type": "saga", "branch_id": "01", "op": "action"}, "gid"),
        ({"gid": "g1", "trans_type": "saga", "branch_id": "x" * 200, "op": "action"}, "branch_id"),
    ],
)
async def test_a_query_string_that_names_no_valid_barrier_is_a_422_naming_the_field(
    bank: Bank, params: dict[str, str], field: str
) -> None:
    async with _client(bank.app) as client:
        answer = await client.post("/debit", params=params, json={"account": 1, "amount": 1})
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"] == ["query", field]
    assert bank.balance() == 100


async def test_the_barrier_fields_are_in_the_openapi_schema(bank: Bank) -> None:
    async with _client(bank.app) as client:
        schema = (await client.get("/openapi.json")).json()
    params = schema["paths"]["/debit"]["post"]["parameters"]
    assert {(p["name"], p["in"], p["required"]) for p in params} == {
        (name, "query", True) for name in ("gid", "trans_type", "branch_id", "op")
    }


async def test_query_prepared_answers_for_a_msg_local_transaction(bank: Bank) -> None:
    committed, never = uuid.uuid4().hex, uuid.uuid4().hex
    with closing(bank.connect()) as conn:  # the msg initiator's local transaction
        Barrier.for_msg(committed).call(
            conn, lambda c: c.execute("DELETE FROM account WHERE id = 2")
        )
    async with _client(bank.app) as client:
        done = await client.get("/query-prepared", params={"gid": committed})
        lost = await client.get("/query-prepared", params={"gid": never})
        empty = await client.get("/query-prepared", params={"gid": ""})
    assert (done.status_code, done.json()) == (200, {"dtm_result": "SUCCESS"})
    assert (lost.status_code, lost.json()["dtm_result"]) == (409, "FAILURE")
    assert (empty.status_code, empty.json()["detail"][0]["loc"]) == (422, ["query", "gid"])
    assert bank.barrier_rows(never) == [("00", "msg", "rollback")]


# --- served by uvicorn, called by Legato's coordinator ------------------------------------


def _trip(url: str, second_account: int) -> legato.Saga:
    saga = legato.Saga("fastapi_bank")
    for name, account, amount in (("first", 1, 30), ("second", second_account, 5)):
        body = {"account": account, "amount": amount}
        saga.step(
            name,
            action=HttpCall(f"{url}/debit", body=body),
            compensate=HttpCall(f"{url}/debit-undo", body=body),
        )
    return saga


async def test_a_saga_through_a_served_app_commits_each_step_once(
    bank: Bank, tmp_path: Path
) -> None:
    bank.sql(f"UPDATE account SET balance = 10 WHERE id = {bank.ph}", 2)
    with serve(bank.app) as url:
        async with legato.Coordinator(f"sqlite:///{tmp_path / 'log.db'}") as coordinator:
            handle = await coordinator.submit(_trip(url, 2), {})
            outcome = await handle.result()
    assert outcome.status == "succeeded", outcome.reason
    assert (bank.balance(1), bank.balance(2)) == (70, 5)
    rows = bank.barrier_rows(handle.gid)
    # a native saga's branch ids are its step names
    assert rows == [("first", "action", "action"), ("second", "action", "action")]


async def test_a_saga_whose_step_fails_compensates_and_its_failed_step_is_a_null_compensation(
    bank: Bank, tmp_path: Path
) -> None:
    with serve(bank.app) as url:
        async with legato.Coordinator(f"sqlite:///{tmp_path / 'log.db'}") as coordinator:
            handle = await coordinator.submit(_trip(url, 2), {})  # account 2 holds 0
            outcome = await handle.result()
    assert outcome.status == "failed"
    assert "account 2 has less than 5" in str(outcome.reason)
    assert (bank.balance(1), bank.balance(2)) == (100, 0)  # the first debit given back
    assert bank.barrier_rows(handle.gid) == [
        ("first", "action", "action"),
        ("first", "compensate", "compensate"),  # ran: the credit
        ("second", "action", "compensate"),  # written by the compensation: no action ran
        ("second", "compensate", "compensate"),  # a null compensation: nothing credited
    ]
