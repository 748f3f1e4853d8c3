"""Log records as a test writes them: a two-step saga leased by 'alpha', and its changes;
and as it reads them back. And ``make_overdue``, which ages a row of a real log.

Times are fixed numbers from ``T0``, never the wall clock (but for ``make_overdue``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from legato import Log, TxStatus
from legato._model import EventRecord, Mode, OpName, OpRecord, TxRecord
from legato.log import NewTransaction, TxWrite

T0 = 1_700_000_000.0
LEASE = 30.0


def new(gid: str, **tx: Any) -> NewTransaction:
    """A saga of two steps as the coordinator first writes it: leased by 'alpha', due at T0."""
    fields: dict[str, Any] = {
        "gid": gid,
        "mode": Mode.SAGA,
        "name": "trip",
        "fingerprint": "f1",
        "status": TxStatus.SUBMITTED,
        "payload": {"city": "Lisbon", "nights": 3},
        "options": {"timeout_to_fail": 60.0},
        "created_at": T0,
        "updated_at": T0,
        "timeout_at": T0 + 60,
        "next_attempt_at": T0,
        "lease_owner": "alpha",
        "lease_expires_at": T0 + LEASE,
    }
    fields.update(tx)
    at = fields["created_at"]
    ops = [
        OpRecord(gid, "flight", OpName.ACTION, 0, "book_flight", updated_at=at),
        OpRecord(gid, "flight", OpName.COMPENSATE, 1, "cancel_flight", budget=20, updated_at=at),
        OpRecord(gid, "hotel", OpName.ACTION, 2, "book_hotel", updated_at=at),
        OpRecord(gid, "hotel", OpName.COMPENSATE, 3, "cancel_hotel", budget=20, updated_at=at),
    ]
    events = [
        EventRecord(gid, at, "submitted", detail={"by": "alpha"}),
        EventRecord(gid, at, "op_started", "flight", "action", 1),
    ]
    return NewTransaction(TxRecord(**fields), ops, events)


def change(gid: str, owner: str = "alpha", **fields: Any) -> TxWrite:
    base: dict[str, Any] = {
        "at": T0 + 1,
        "status": TxStatus.SUBMITTED,
        "reason": None,
        "stuck": None,
        "next_attempt_at": T0 + 1,
    }
    base.update(fields)
    return TxWrite(gid=gid, owner=owner, **base)


async def loaded(log: Log, gid: str) -> tuple[TxRecord, list[OpRecord]]:
    found = await log.load(gid)
    assert found is not None, f"{gid} is not in the log"
    return found


async def tx_of(log: Log, gid: str) -> TxRecord:
    return (await loaded(log, gid))[0]


async def ops_of(log: Log, gid: str) -> list[OpRecord]:
    return (await loaded(log, gid))[1]


def make_overdue(log_url: str, gid: str, seconds: float = 3600.0) -> None:
    """Age ``gid`` in a SQLite or PostgreSQL log as if it had been due, with no
    coordinator holding it, for ``seconds``: its next attempt moved back, its lease
    dropped (in SQL, not by sleeping)."""
    import time

    sql = (
        "UPDATE legato_tx SET next_attempt_at = {p}, lease_owner = NULL, "
        "lease_expires_at = NULL WHERE gid = {p} AND ended_at IS NULL"
    )
    params = (time.time() - seconds, gid)
    if log_url.startswith("sqlite:"):
        import sqlite3

        from legato.log.sqlite import path_from_url

        with contextlib.closing(sqlite3.connect(path_from_url(log_url))) as conn, conn:
            changed = conn.execute(sql.format(p="?"), params).rowcount
    else:
        import psycopg

        with psycopg.connect(log_url) as conn:
            changed = conn.execute(sql.format(p="%s"), params).rowcount
    assert changed == 1, f"{gid} is not an unended transaction of {log_url}"
