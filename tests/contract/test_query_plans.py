"""The queries that run however long the log is (the coordinator's, the dashboard's header
and front page, /health) read an index, never every row: their cost stays flat as ended
transactions pile up. Checked on SQLite, whose plans do not depend on statistics
(Legato never runs ANALYZE), and PostgreSQL's fenced write, whose plan did depend on
them; bench/log_growth.py --explain shows both backends' plans on a log of a million
ended transactions.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from pathlib import Path

import pytest

from legato import open_log
from legato.log._queries import queries

PRIMARY_KEY = "sqlite_autoindex_legato_tx_1"

# query -> the index its plan must read
EXPECTED = {
    "claim": "legato_tx_due",
    "claim_take": PRIMARY_KEY,
    "renew": PRIMARY_KEY,
    "release_owner": "legato_tx_due",
    "write_tx": PRIMARY_KEY,
    "get_tx": PRIMARY_KEY,
    "get_txs": PRIMARY_KEY,
    "count_unfinished": "legato_tx_due",
    "count_stuck": "legato_tx_stuck",
    "oldest_unfinished": "legato_tx_due",
    "unclaimed": "legato_tx_due",
    "count_started_since": "legato_tx_created",
    "count_ended_since": "legato_tx_ended",
    "list_tx": "legato_tx_created",
    "list_stuck": "legato_tx_stuck",
    "purgeable": "legato_tx_ended",
}


@pytest.fixture(scope="module")
def log_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "log.db"

    async def make() -> None:
        log = open_log(f"sqlite:///{path}")
        await log.open()
        await log.close()

    asyncio.run(make())
    return path


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_query_that_runs_whatever_the_logs_size_reads_its_index(log_db: Path, name: str) -> None:
    sql = queries("sqlite")[name]
    params = dict.fromkeys(re.findall(r"(?<![:\w]):(\w+)", sql))
    conn = sqlite3.connect(log_db)
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    finally:
        conn.close()
    on_tx = [step for step in plan if re.search(r"\blegato_tx\b", step)]
    assert on_tx, plan
    assert all(f"INDEX {EXPECTED[name]}" in step for step in on_tx), plan


def test_a_postgres_fenced_write_finds_its_row_by_gid_even_on_a_small_log(
    pg_database: str,
) -> None:
    """PostgreSQL plans jsonb_array_elements as 100 rows: told nothing else, it preferred a
    sequential scan of legato_tx to 100 lookups by gid, for every write to a log of under
    some 25,000 transactions (the fenced writes look their gids up with "= ANY")."""
    import psycopg

    from legato.log.postgres import PostgresLog

    sql = PostgresLog(pg_database).q["write_all"]
    write = {
        "gid": "g7",
        "owner": "alpha",
        "at": 1.0,
        "status": "submitted",
        "reason": None,
        "stuck": None,
        "next_attempt_at": None,
        "ended_at": None,
        "release": False,
        "handled": None,
        "ops": [],
        "events": [],
    }
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO legato_tx (gid, mode, name, fingerprint, status, created_at, "
            "updated_at, lease_owner, version) SELECT 'g' || i, 'saga', 'trip', 'f', "
            "'succeeded', 0, 0, 'alpha', 1 FROM generate_series(1, 15000) AS i"
        )
        conn.execute("ANALYZE legato_tx")
        params = {"writes": json.dumps([write]), "creates": "[]"}
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, params))
    assert "Seq Scan on legato_tx" not in plan, plan
    assert "legato_tx_pkey" in plan, plan
