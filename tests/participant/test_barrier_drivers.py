"""What the barrier accepts as a connection, and what it refuses with a clear error."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing

import psycopg
import pytest

import legato.participant
from legato import Failure
from legato.participant import (
    Barrier,
    BarrierOutcome,
    BarrierRequestError,
    TransactionInProgress,
    create_table,
)
from tests.support.barrier import Db

INSERT_PG = "INSERT INTO ledger (gid, entry) VALUES (%s, %s)"


def new_gid() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def ready(db: Db) -> None:
    from tests.support.barrier import LEDGER

    db.execute(LEDGER[db.dialect])
    with closing(db.connect()) as conn:
        create_table(conn)


# --- requests ---------------------------------------------------------------------------

QUERY = {"gid": "g-1", "trans_type": "saga", "branch_id": "01", "op": "action"}


@pytest.mark.parametrize("field", ["gid", "trans_type", "branch_id", "op"])
def test_a_query_string_missing_a_field_is_refused_naming_it(field: str) -> None:
    params = {k: v for k, v in QUERY.items() if k != field}

    with pytest.raises(BarrierRequestError, match=f"^{field}: missing") as caught:
        Barrier.from_query(params)

    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("trans_type", "workflow-ish"),
        ("op", "try"),  # not an op of a saga
        ("gid", "g" * 129),
        ("branch_id", " 01"),
        ("gid", "g\n1"),
    ],
)
def test_a_query_string_with_an_invalid_field_is_refused_naming_it(field: str, value: str) -> None:
    with pytest.raises(BarrierRequestError) as caught:
        Barrier.from_query({**QUERY, field: value})

    assert caught.value.field == field


def test_a_barrier_from_a_query_string_is_the_one_the_request_names() -> None:
    barrier = Barrier.from_query(QUERY)

    assert (barrier.trans_type, barrier.gid, barrier.branch_id, barrier.op) == (
        "saga",
        "g-1",
        "01",
        "action",
    )


# --- connections ------------------------------------------------------------------------


class NotAConnection:
    pass


def test_an_unknown_connection_type_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match="NotAConnection"):
        Barrier.from_query(QUERY).call(NotAConnection(), lambda c: None)


async def test_a_sync_connection_given_to_acall_is_refused() -> None:
    async def nothing(conn: sqlite3.Connection) -> None:
        return None

    with closing(sqlite3.connect(":memory:")) as conn, pytest.raises(TypeError, match="sync"):
        await Barrier.from_query(QUERY).acall(conn, nothing)


async def test_an_asyncio_connection_given_to_call_is_refused(fresh_pg: Db) -> None:
    conn = await psycopg.AsyncConnection.connect(fresh_pg.url)
    try:
        with pytest.raises(TypeError, match="asyncio"):
            Barrier.from_query(QUERY).call(conn, lambda c: None)
    finally:
        await conn.close()


def test_a_sqlite3_connection_inside_a_transaction_is_refused(fresh_sqlite: Db) -> None:
    ready(fresh_sqlite)
    gid = new_gid()
    with closing(sqlite3.connect(fresh_sqlite.url.removeprefix("sqlite:///"))) as conn:
        conn.execute("INSERT INTO ledger (gid, entry) VALUES (?, 'theirs')", (gid,))

        with pytest.raises(TransactionInProgress, match="already inside a transaction"):
            Barrier.from_request("saga", gid, "01", "action").call(conn, lambda c: None)
        conn.rollback()

    assert fresh_sqlite.ledger(gid) == []
    assert fresh_sqlite.barrier_rows(gid) == []


def test_a_psycopg_connection_inside_a_transaction_is_refused(fresh_pg: Db) -> None:
    ready(fresh_pg)
    with closing(psycopg.connect(fresh_pg.url)) as conn:
        conn.execute("SELECT 1")

        with pytest.raises(TransactionInProgress):
            Barrier.from_query(QUERY).call(conn, lambda c: None)


async def test_an_asyncpg_connection_inside_a_transaction_is_refused(fresh_pg: Db) -> None:
    import asyncpg

    ready(fresh_pg)
    conn = await asyncpg.connect(fresh_pg.url)
    try:
        async with conn.transaction():

            async def nothing(c: object) -> None:
                return None

            with pytest.raises(TransactionInProgress):
                await Barrier.from_query(QUERY).acall(conn, nothing)
    finally:
        await conn.close()


def test_a_pymysql_connection_that_wrote_without_committing_is_refused(
    fresh_mariadb: Db,
) -> None:
    ready(fresh_mariadb)
    gid = new_gid()
    with closing(fresh_mariadb.connect()) as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO ledger (gid, entry) VALUES (%s, 'theirs')", (gid,))

        with pytest.raises(TransactionInProgress):
            Barrier.from_request("saga", gid, "01", "action").call(conn, lambda c: None)
        conn.rollback()

    assert fresh_mariadb.ledger(gid) == []


def test_a_sqlalchemy_session_inside_a_transaction_is_refused(fresh_sqlite: Db) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    ready(fresh_sqlite)
    engine = create_engine(fresh_sqlite.url)
    try:
        with Session(engine) as session:
            session.execute(text("SELECT 1"))

            with pytest.raises(TransactionInProgress):
                Barrier.from_query(QUERY).call(session, lambda s: None)
    finally:
        engine.dispose()


def test_a_psycopg_autocommit_connection_gets_a_real_transaction(fresh_pg: Db) -> None:
    ready(fresh_pg)
    gid = new_gid()

    def fail_after_insert(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute(INSERT_PG, (gid, "action"))
        raise Failure("refused")

    with closing(psycopg.connect(fresh_pg.url, autocommit=True)) as conn:
        with pytest.raises(Failure):
            Barrier.from_request("saga", gid, "01", "action").call(conn, fail_after_insert)
        ran = Barrier.from_request("saga", gid, "01", "compensate").call(conn, lambda c: "undo")

    assert ran.outcome is BarrierOutcome.NULL_COMPENSATION
    assert fresh_pg.ledger(gid) == []


def test_a_sqlite3_connection_in_autocommit_mode_gets_a_real_transaction(
    fresh_sqlite: Db,
) -> None:
    ready(fresh_sqlite)
    gid = new_gid()
    path = fresh_sqlite.url.removeprefix("sqlite:///")

    def fail_after_insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO ledger (gid, entry) VALUES (?, 'action')", (gid,))
        raise Failure("refused")

    with closing(sqlite3.connect(path, isolation_level=None)) as conn, pytest.raises(Failure):
        Barrier.from_request("saga", gid, "01", "action").call(conn, fail_after_insert)

    assert fresh_sqlite.ledger(gid) == []
    assert fresh_sqlite.barrier_rows(gid) == []


async def test_an_asyncpg_pool_connection_works(fresh_pg: Db) -> None:
    import asyncpg

    ready(fresh_pg)
    gid = new_gid()

    async def insert(conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO ledger (gid, entry) VALUES ($1, 'action')", gid)

    pool = await asyncpg.create_pool(fresh_pg.url, min_size=1, max_size=2)
    try:
        for _ in range(2):
            async with pool.acquire() as conn:
                await Barrier.from_request("saga", gid, "01", "action").acall(conn, insert)
    finally:
        await pool.close()

    assert fresh_pg.ledger(gid) == ["action"]


def test_gids_differing_only_in_case_are_different_transactions_on_mariadb(
    fresh_mariadb: Db,
) -> None:
    ready(fresh_mariadb)

    with closing(fresh_mariadb.connect()) as conn:
        results = [
            Barrier.from_request("saga", gid, "01", "action").call(conn, lambda c: None)
            for gid in ("g-case", "G-CASE")
        ]

    assert [r.outcome for r in results] == ["ran", "ran"]


# --- the module -------------------------------------------------------------------------


def test_importing_the_participant_kit_imports_no_database_driver() -> None:
    code = (
        "import sys, legato.participant, legato.participant.starlette; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'psycopg', 'asyncpg', 'pymysql', 'aiomysql', 'sqlalchemy', 'starlette'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


def test_importing_the_framework_helpers_imports_no_database_driver() -> None:
    code = (
        "import sys, legato.participant.fastapi, legato.participant.django; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'psycopg', 'asyncpg', 'pymysql', 'aiomysql', 'sqlalchemy', 'MySQLdb'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert out.stdout.strip() == "[]"


def test_the_public_api_is_what_all_lists_sorted_and_complete() -> None:
    names = legato.participant.__all__

    assert names == sorted(names)
    assert all(hasattr(legato.participant, n) for n in names)
    public = {n for n in vars(legato.participant) if not n.startswith("_")}
    submodules = {"barrier", "starlette", "fastapi", "django", "tracing"}
    assert public - set(names) <= submodules
