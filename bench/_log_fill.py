"""Filling a Legato log with ended transactions, fast, and reading its query plans.

The fill copies two real transactions (one travel saga that succeeded, one that
failed and was compensated, run through a coordinator on this log first) N times
in bulk SQL, into the log's own tables: every copy keeps its template's rows
(the transaction, its six ops, its events), under a random 32-hex gid (as
``uuid4().hex``, so that the primary keys grow in random order, as real gids
make them), with every time shifted to spread the copies evenly over
``span`` seconds ending ``gap`` seconds ago. One in ten is a failed one.

PostgreSQL: ``generate_series`` and ``INSERT ... SELECT``, then ``VACUUM
ANALYZE`` (what autovacuum does to a table that grew; this server runs with
autovacuum off, so the bench does it). SQLite: a recursive CTE and ``INSERT ...
SELECT``, no ANALYZE (Legato never runs it, so a real log has no statistics).
Both in chunks, one transaction each.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from legato.log import open_log

TEMPLATE_OK = "bench-template-succeeded"
TEMPLATE_FAILED = "bench-template-failed"
FAILED_EVERY = 10  # one fill copy in ten is the failed template
CHUNK = 100_000  # transactions per fill transaction

# the columns whose values are times: a copy's are its template's, shifted
TIME_COLUMNS = {
    "created_at",
    "updated_at",
    "ended_at",
    "timeout_at",
    "next_attempt_at",
    "lease_expires_at",
    "next_at",
    "at",
}
TABLES = ("legato_tx", "legato_op", "legato_event")
ORDER = {"legato_tx": "f.i", "legato_op": "f.i, r.seq, r.op", "legato_event": "f.i, r.id"}


def _copy_sql(table: str, columns: list[str]) -> str:
    """INSERT the rows of each fill copy's template into ``table``, gid and times made the
    copy's (an event's id is left to the table)."""
    cols = [c for c in columns if not (table == "legato_event" and c == "id")]
    picks = []
    for c in cols:
        if c == "gid":
            picks.append("f.gid")
        elif c in TIME_COLUMNS:
            picks.append(f"r.{c} + f.shift")
        else:
            picks.append(f"r.{c}")
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join(picks)} "
        f"FROM fill AS f JOIN {table} AS r ON r.gid = f.tmpl ORDER BY {ORDER[table]}"
    )


def fill(url: str, n: int, span: float, gap: float, report: Callable[[str], None]) -> float:
    """Add ``n`` ended transactions to the log at ``url`` (which holds the two templates);
    returns the seconds it took."""
    start = time.time() - gap - span
    step = span / max(n, 1)
    t0 = time.perf_counter()
    if url.startswith("sqlite:"):
        _fill_sqlite(url[len("sqlite:///") :], n, start, step, report)
    else:
        _fill_postgres(url, n, start, step, report)
    return time.perf_counter() - t0


def _chunk(lo: int, hi: int, start: float, step: float) -> dict[str, Any]:
    """The parameters of the fill's copies ``lo`` to ``hi`` (not included)."""
    return {
        "lo": lo,
        "hi": hi,
        "start": start,
        "step": step,
        "every": FAILED_EVERY,
        "ok": TEMPLATE_OK,
        "bad": TEMPLATE_FAILED,
    }


def _fill_sqlite(
    path: str, n: int, start: float, step: float, report: Callable[[str], None]
) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = FULL")  # as Legato's own: the fill is no cheaper
    columns = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in TABLES}
    conn.execute("CREATE TEMP TABLE fill (i INTEGER PRIMARY KEY, gid TEXT, tmpl TEXT, shift REAL)")
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM fill")
        conn.execute(
            "WITH RECURSIVE s(i) AS (SELECT :lo UNION ALL SELECT i + 1 FROM s WHERE i + 1 < :hi) "
            "INSERT INTO fill (i, gid, tmpl, shift) "
            "SELECT s.i, lower(hex(randomblob(16))), t.gid, :start + s.i * :step - t.created_at "
            "FROM s JOIN legato_tx AS t "
            "ON t.gid = CASE WHEN s.i % :every = :every - 1 THEN :bad ELSE :ok END",
            _chunk(lo, hi, start, step),
        )
        for t in TABLES:
            conn.execute(_copy_sql(t, columns[t]))
        conn.execute("COMMIT")
        report(f"  filled {hi:,} / {n:,}")
    conn.execute("DROP TABLE fill")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _fill_postgres(
    url: str, n: int, start: float, step: float, report: Callable[[str], None]
) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        columns = {
            t: [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position",
                    (t,),
                )
            ]
            for t in TABLES
        }
        conn.execute(
            "CREATE TEMP TABLE fill (i bigint PRIMARY KEY, gid text, tmpl text, "
            "shift double precision)"
        )
        salt = str(time.time())
        for lo in range(0, n, CHUNK):
            hi = min(n, lo + CHUNK)
            with conn.transaction():
                conn.execute("TRUNCATE fill")
                conn.execute(
                    "INSERT INTO fill (i, gid, tmpl, shift) "
                    "SELECT s.i, md5(%(salt)s || s.i), t.gid, "
                    "%(start)s + s.i * %(step)s - t.created_at "
                    "FROM generate_series(%(lo)s, %(hi)s - 1) AS s(i) JOIN legato_tx AS t "
                    "ON t.gid = CASE WHEN mod(s.i, %(every)s) = %(every)s - 1 "
                    "THEN %(bad)s ELSE %(ok)s END",
                    {**_chunk(lo, hi, start, step), "salt": salt},
                )
                conn.execute("ANALYZE fill")
                for t in TABLES:
                    conn.execute(_copy_sql(t, columns[t]))
            report(f"  filled {hi:,} / {n:,}")
        conn.execute("DROP TABLE fill")
    analyze(url)


def analyze(url: str) -> None:
    """PostgreSQL: VACUUM ANALYZE the log's tables (autovacuum's work; it is off here)."""
    if url.startswith("sqlite:"):
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for t in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {t}")


def row_counts(url: str) -> dict[str, int]:
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as pg:
        return {t: pg.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


def size_mb(url: str) -> float:
    if url.startswith("sqlite:"):
        import os

        path = url[len("sqlite:///") :]
        return (
            sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s)) / 2**20
        )
    import psycopg

    with psycopg.connect(url) as pg:
        row = pg.execute("SELECT pg_database_size(current_database())").fetchone()
        return float(row[0]) / 2**20 if row else float("nan")


# -- query plans ---------------------------------------------------------------------


def _hot_queries(now: float, live_gid: str, owner: str) -> list[tuple[str, dict[str, Any]]]:
    """(query name, parameters) of each hot query, as the coordinator and the dashboard
    send them."""
    op = {
        "gid": live_gid,
        "branch": "flight",
        "op": "action",
        "seq": 0,
        "target": "_legato_worker:book_flight",
        "status": "succeeded",
        "attempts": 1,
        "budget": 1,
        "next_at": None,
        "output": None,
        "error": None,
        "completed": 1,
        "updated_at": now,
        "payload": None,
    }
    event = {
        "gid": live_gid,
        "at": now,
        "kind": "op.succeeded",
        "branch": "flight",
        "op": "action",
        "attempt": 1,
        "detail": "{}",
    }
    tx = {
        "gid": live_gid,
        "mode": "saga",
        "name": "travel",
        "fingerprint": "f" * 32,
        "status": "submitted",
        "payload": '{"fail_car": false}',
        "payload_version": 1,
        "options": "{}",
        "reason": None,
        "stuck": None,
        "created_at": now,
        "updated_at": now,
        "timeout_at": None,
        "next_attempt_at": None,
        "lease_owner": owner,
        "lease_expires_at": now + 15,
    }
    write = {
        "gid": live_gid,
        "owner": owner,
        "at": now,
        "status": "succeeded",
        "reason": None,
        "stuck": None,
        "next_attempt_at": None,
        "ended_at": now,
        "release": False,
        "handled": None,
    }
    listing = {
        "any_status": True,
        "mode": None,
        "name": None,
        "stuck": None,
        "since": None,
        "until": None,
        "search": None,
        "limit": 51,
        "offset": 0,
    }
    return [
        ("insert_tx", tx),
        ("create_all", {**tx, "ops": json.dumps([op]), "events": json.dumps([event])}),
        (
            "claim",
            {"owner": "probe", "now": now, "until": now + 15, "limit": 64, "any_name": False},
        ),
        ("claim_take", {"owner": "probe", "until": now + 15}),
        ("renew", {"owner": owner, "until": now + 15}),
        ("write_tx", write),
        ("update_op", op),
        ("insert_event", event),
        (
            "write_all",
            {"creates": "[]", "writes": json.dumps([{**write, "ops": [op], "events": [event]}])},
        ),
        ("get_tx", {"gid": live_gid}),
        ("get_ops", {"gid": live_gid}),
        ("count_unfinished", {}),
        ("count_stuck", {}),
        ("oldest_unfinished", {}),
        ("count_started_since", {"since": now - 60}),
        ("count_ended_since", {"since": now - 60}),
        ("unclaimed", {"before": now - 60, "limit": 50}),
        ("list_tx", {**listing, "statuses": []}),
        ("list_stuck", {**listing, "statuses": [], "limit": 50}),
        ("purgeable", {"before": now - 86400 * 30, "limit": 200}),
    ]


def explain(url: str) -> list[tuple[str, str]]:
    """The plan of every hot query on the log at ``url``: PostgreSQL's EXPLAIN (ANALYZE,
    BUFFERS), run inside a transaction that is rolled back (a live transaction is created
    first, so that the write statements find their row); SQLite's EXPLAIN QUERY PLAN."""
    log: Any = open_log(url)
    queries: dict[str, str] = log.q
    now = time.time()
    live, owner = "bench-explain-live", "bench-explain"
    out: list[tuple[str, str]] = []
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///") :], isolation_level=None)
        for name, params in _hot_queries(now, live, owner):
            sql = queries.get(name.split()[0])
            if sql is None:
                continue  # a PostgreSQL-only statement (create_all, write_all)
            p = _sqlite_params(params)
            plan = conn.execute("EXPLAIN QUERY PLAN " + sql, p).fetchall()
            out.append((name, "\n".join(f"{r[3]}" for r in plan)))
        conn.close()
        return out
    import psycopg

    with psycopg.connect(url) as conn, _rolled_back(conn):
        for name, params in _hot_queries(now, live, owner):
            sql = queries.get(name.split()[0])
            if sql is None:
                continue  # a SQLite-only statement (claim_take)
            p = _pg_params(name, params, live)
            rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, p).fetchall()
            out.append((name, "\n".join(r[0] for r in rows)))
    return out


@contextmanager
def _rolled_back(conn: Any) -> Iterator[None]:
    try:
        yield
    finally:
        conn.rollback()


def _sqlite_params(params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    out.setdefault("names", json.dumps(["travel"]))
    out.setdefault("gids", json.dumps(["bench-explain-live"]))
    if "statuses" in out:
        out["statuses"] = json.dumps(out["statuses"])
    return out


def _pg_params(name: str, params: dict[str, Any], live: str) -> dict[str, Any]:
    out = dict(params)
    out.setdefault("names", ["travel"])
    out.setdefault("gids", [live])
    if name == "insert_tx":
        out["gid"] = live + "-x"  # create_all makes the live one
    return out
