"""The numbered migrations build exactly the reference schema, and the schema is checked.

Each backend has one reference ``schema.sql``. A fresh database migrated by the
adapter is compared with a fresh database where that file is run, through the
catalogue (columns, constraints, indexes), never through the SQL text of the
migrations. The ``legato_migrations`` bookkeeping table is left out.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
import pytest

from legato import SchemaMismatch, open_log
from legato.log import Log
from legato.log._queries import migrations
from legato.log.postgres import PostgresLog
from legato.log.sqlite import SqliteLog

BOOKKEEPING = "legato_migrations"


def reference_sql(backend: str) -> str:
    return resources.files("legato.log").joinpath("sql", backend, "schema.sql").read_text()


async def close(log: Log) -> None:
    await log.close()


async def open_and_close(url: str, *, auto_migrate: bool = True) -> None:
    log = open_log(url, auto_migrate=auto_migrate)
    try:
        await log.open()
    finally:
        await close(log)


# -- SQLite ------------------------------------------------------------------------------


def _squash(sql: str | None) -> str | None:
    return None if sql is None else re.sub(r"\s+", " ", sql).strip()


def sqlite_schema(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name != ? ORDER BY name",
                (BOOKKEEPING,),
            )
        ]
        out: dict[str, Any] = {}
        for t in tables:
            # (cid, name, type, notnull, default, pk)
            columns = [tuple(r) for r in conn.execute(f"PRAGMA table_info({t})")]
            foreign_keys = [tuple(r) for r in conn.execute(f"PRAGMA foreign_key_list({t})")]
            indexes = {}
            # (seq, name, unique, origin, partial)
            for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({t})"):
                cols = [(r[2], r[3], r[4]) for r in conn.execute(f"PRAGMA index_xinfo({name})")]
                sql = conn.execute(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)
                ).fetchone()[0]
                indexes[name] = (unique, origin, partial, cols, _squash(sql))
            out[t] = {"columns": columns, "foreign_keys": foreign_keys, "indexes": indexes}
        out["triggers and views"] = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('trigger', 'view')"
        ).fetchall()
        return out
    finally:
        conn.close()


async def test_sqlite_migrations_build_exactly_the_reference_schema(tmp_path: Path) -> None:
    migrated, reference = tmp_path / "migrated.db", tmp_path / "reference.db"
    await open_and_close(f"sqlite:///{migrated}")
    conn = sqlite3.connect(reference)
    conn.executescript(reference_sql("sqlite"))
    conn.close()

    built = sqlite_schema(migrated)
    assert set(built) >= {"legato_tx", "legato_op", "legato_event"}
    assert built["legato_tx"]["indexes"]["legato_tx_due"][2] == 1  # partial index kept
    assert built == sqlite_schema(reference)


async def test_sqlite_records_every_migration_it_applied(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    await open_and_close(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    rows = conn.execute(f"SELECT version, name FROM {BOOKKEEPING} ORDER BY version").fetchall()
    conn.close()
    assert rows == [(number, name) for number, name, _ in migrations("sqlite")]


# -- PostgreSQL --------------------------------------------------------------------------


def pg_schema(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            """
            SELECT table_name, column_name, ordinal_position, data_type, is_nullable,
                column_default, character_maximum_length, numeric_precision, is_identity
            FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name != %s
            ORDER BY table_name, ordinal_position
            """,
            (BOOKKEEPING,),
        ).fetchall()
        constraints = conn.execute(
            """
            SELECT rel.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
            FROM pg_constraint con
            JOIN pg_class rel ON rel.oid = con.conrelid
            JOIN pg_namespace ns ON ns.oid = rel.relnamespace
            WHERE ns.nspname = 'public' AND rel.relname != %s
            ORDER BY rel.relname, con.conname
            """,
            (BOOKKEEPING,),
        ).fetchall()
        indexes = conn.execute(
            """
            SELECT tablename, indexname, indexdef FROM pg_indexes
            WHERE schemaname = 'public' AND tablename != %s
            ORDER BY tablename, indexname
            """,
            (BOOKKEEPING,),
        ).fetchall()
        sequences = conn.execute(
            """
            SELECT sequence_name, data_type, start_value, increment
            FROM information_schema.sequences WHERE sequence_schema = 'public'
            ORDER BY sequence_name
            """
        ).fetchall()
        others = conn.execute(
            """
            SELECT c.relname, c.relkind FROM pg_class c
            JOIN pg_namespace ns ON ns.oid = c.relnamespace
            WHERE ns.nspname = 'public' AND c.relkind NOT IN ('r', 'i', 'S')
            ORDER BY c.relname
            """
        ).fetchall()
    return {
        "columns": columns,
        "constraints": constraints,
        "indexes": indexes,
        "sequences": sequences,
        "views and others": others,
    }


@pytest.fixture
def second_empty_pg_database(empty_pg_database: str) -> Iterator[str]:
    """Another fresh, empty database on the same server, dropped after."""
    name = f"legato_e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(empty_pg_database, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    yield f"{empty_pg_database.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(empty_pg_database, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


async def test_postgres_migrations_build_exactly_the_reference_schema(
    empty_pg_database: str, second_empty_pg_database: str
) -> None:
    await open_and_close(empty_pg_database)
    with psycopg.connect(second_empty_pg_database, autocommit=True) as conn:
        conn.execute(reference_sql("postgres"))  # type: ignore[arg-type]

    built = pg_schema(empty_pg_database)
    assert {c[0] for c in built["columns"]} == {
        "legato_tx",
        "legato_op",
        "legato_event",
        "legato_session",
        "legato_deployment",
    }
    assert any("WHERE (ended_at IS NULL)" in i[2] for i in built["indexes"])
    assert built == pg_schema(second_empty_pg_database)


async def test_postgres_records_every_migration_it_applied(empty_pg_database: str) -> None:
    await open_and_close(empty_pg_database)
    with psycopg.connect(empty_pg_database) as conn:
        rows = conn.execute(f"SELECT version, name FROM {BOOKKEEPING} ORDER BY version")
        assert rows.fetchall() == [(number, name) for number, name, _ in migrations("postgres")]


# -- checking and migrating, on both backends ------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def empty_log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQL log's URL on a fresh, empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return str(request.getfixturevalue("empty_pg_database"))


def applied(url: str) -> list[int]:
    """The migration numbers the database records, in order."""
    sql = f"SELECT version FROM {BOOKKEEPING} ORDER BY version"
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        rows = conn.execute(sql).fetchall()
        conn.close()
    else:
        with psycopg.connect(url) as pg:
            rows = pg.execute(sql).fetchall()  # type: ignore[arg-type]
    return [r[0] for r in rows]


def _execute(url: str, sql: str, *params: Any) -> None:
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        conn.execute(sql.replace("%s", "?"), params)
        conn.commit()
        conn.close()
    else:
        with psycopg.connect(url) as pg:
            pg.execute(sql, params)  # type: ignore[arg-type]


async def test_opening_an_empty_database_without_auto_migrate_raises_schema_mismatch(
    empty_log_url: str,
) -> None:
    with pytest.raises(SchemaMismatch):
        await open_and_close(empty_log_url, auto_migrate=False)
    # nothing was built: asking again still refuses
    with pytest.raises(SchemaMismatch):
        await open_and_close(empty_log_url, auto_migrate=False)


async def test_a_database_migrated_by_a_newer_legato_raises_schema_mismatch_naming_versions(
    empty_log_url: str,
) -> None:
    await open_and_close(empty_log_url)
    ours = migrations("sqlite" if empty_log_url.startswith("sqlite:") else "postgres")[-1][0]
    _execute(
        empty_log_url,
        f"INSERT INTO {BOOKKEEPING} (version, name, applied_at) VALUES (%s, %s, %s)",
        ours + 98,
        f"{ours + 98:04}_from_the_future.sql",
        0.0,
    )

    for auto_migrate in (True, False):
        with pytest.raises(SchemaMismatch) as caught:
            await open_and_close(empty_log_url, auto_migrate=auto_migrate)
        message = str(caught.value)
        assert str(ours + 98) in message and str(ours) in message


async def test_migrate_applies_what_is_missing_once_then_nothing(empty_log_url: str) -> None:
    backend = "sqlite" if empty_log_url.startswith("sqlite:") else "postgres"
    log = open_log(empty_log_url, auto_migrate=False)
    try:
        assert isinstance(log, SqliteLog | PostgresLog)
        assert await log.migrate() == [name for _, name, _ in migrations(backend)]
        assert await log.migrate() == []
        await log.open()  # the schema is now the one this Legato needs
        assert await log.migrate() == []
        assert await log.counts() == {"stuck": 0}
    finally:
        await close(log)


async def test_reopening_a_migrated_log_migrates_nothing(empty_log_url: str) -> None:
    await open_and_close(empty_log_url)
    log = open_log(empty_log_url, auto_migrate=False)
    try:
        await log.open()
        assert isinstance(log, SqliteLog | PostgresLog)
        assert await log.migrate() == []
    finally:
        await close(log)


@pytest.mark.parametrize("round", range(3))
async def test_logs_opening_one_empty_database_at_once_all_migrate_it_and_succeed(
    empty_log_url: str, round: int
) -> None:
    logs = [open_log(empty_log_url) for _ in range(3)]
    try:
        await asyncio.gather(*(log.open() for log in logs))
        assert [await log.migrate() for log in logs] == [[], [], []]  # type: ignore[attr-defined]
    finally:
        for log in logs:
            await close(log)
    backend = "sqlite" if empty_log_url.startswith("sqlite:") else "postgres"
    assert applied(empty_log_url) == [number for number, _, _ in migrations(backend)]


async def test_two_postgres_logs_running_migrate_at_once_apply_each_migration_once(
    empty_pg_database: str,
) -> None:
    logs = [PostgresLog(empty_pg_database, auto_migrate=False) for _ in range(2)]
    try:
        done = await asyncio.gather(*(log.migrate() for log in logs))
    finally:
        for log in logs:
            await close(log)
    names = [name for _, name, _ in migrations("postgres")]
    assert sorted(done, key=len) == [[], names]
