"""The queries that run however long the log is (the coordinator's, the dashboard's header
and front page, /health) read an index, never every row: their cost stays flat as ended
transactions pile up. Checked on SQLite, whose plans do not depend on statistics
(Legato never runs ANALYZE); bench/log_growth.py --explain shows both backends' plans
on a log of a million ended transactions.
"""

from __future__ import annotations

import asyncio
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
