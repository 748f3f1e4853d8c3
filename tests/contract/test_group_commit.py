"""Group commit: concurrent writes share database commits, and one writer's refusal
(a lost lease, an unknown gid) fails only that writer, not the rest of its batch."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from legato import (
    IllegalStateChange,
    LeaseLost,
    LogError,
    TransactionNotFound,
    TxStatus,
    open_log,
)
from legato._model import EventRecord
from legato.log._sql import SqlLog
from tests.support.records import T0, change, new, tx_of

WRITES = 200


@pytest.fixture(params=["sqlite", "postgres"])
def sql_log_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
async def log(sql_log_url: str) -> AsyncIterator[SqlLog]:
    log = open_log(sql_log_url)
    assert isinstance(log, SqlLog)
    await log.open()
    try:
        yield log
    finally:
        await log.close()


def since(log: SqlLog, before: tuple[int, int]) -> tuple[int, int]:
    commits, writes = log.group_stats
    return commits - before[0], writes - before[1]


async def test_concurrent_writes_share_far_fewer_commits_than_writes(log: SqlLog) -> None:
    gids = [f"g{i:03}" for i in range(WRITES)]
    before = log.group_stats
    await asyncio.gather(*(log.create(new(gid)) for gid in gids))
    commits, writes = since(log, before)
    assert writes == WRITES and commits < WRITES / 4

    before = log.group_stats
    await asyncio.gather(
        *(
            log.write(change(gid, at=T0 + 1, events=[EventRecord(gid, T0 + 1, "step")]))
            for gid in gids
        )
    )
    commits, writes = since(log, before)

    assert writes == WRITES
    assert commits < WRITES / 4, f"{commits} commits for {writes} writes"
    for gid in gids[:: WRITES // 10]:
        tx = await tx_of(log, gid)
        assert (tx.version, tx.updated_at) == (2, T0 + 1)
        assert [e.kind for e in await log.events(gid)][-1] == "step"


async def test_a_lost_lease_fails_only_its_own_write_in_a_batch(log: SqlLog) -> None:
    gids = [f"g{i:02}" for i in range(60)]
    for gid in gids:
        await log.create(new(gid))
    intruded = set(gids[::3])

    before = log.group_stats
    results = await asyncio.gather(
        *(
            log.write(
                change(
                    gid,
                    owner="beta" if gid in intruded else "alpha",
                    status=TxStatus.ABORTING,
                    events=[EventRecord(gid, T0 + 1, "abort")],
                )
            )
            for gid in gids
        ),
        return_exceptions=True,
    )
    commits, writes = since(log, before)

    assert (commits, writes) == (1, len(gids)), "the writes did not share one batch"
    for gid, result in zip(gids, results, strict=True):
        tx = await tx_of(log, gid)
        kinds = [e.kind for e in await log.events(gid)]
        if gid in intruded:
            assert isinstance(result, LeaseLost)
            assert (tx.status, tx.version, "abort" in kinds) == (TxStatus.SUBMITTED, 1, False)
        else:
            assert result is None
            assert (tx.status, tx.version, kinds[-1]) == (TxStatus.ABORTING, 2, "abort")


async def test_a_refused_request_fails_only_itself_in_a_batch(log: SqlLog) -> None:
    await log.create(new("done"))
    await log.write(change("done", status=TxStatus.SUCCEEDED, next_attempt_at=None))
    gids = [f"g{i:02}" for i in range(20)]
    for gid in gids:
        await log.create(new(gid))

    before = log.group_stats
    results = await asyncio.gather(
        log.request("ghost", "retry", T0 + 2),
        log.request("done", "abort", T0 + 2),
        *(log.request(gid, "retry", T0 + 2) for gid in gids),
        return_exceptions=True,
    )

    assert since(log, before) == (1, len(gids) + 2)
    assert isinstance(results[0], TransactionNotFound)
    assert isinstance(results[1], IllegalStateChange)
    for gid in gids:
        assert (await tx_of(log, gid)).requested == "retry"


async def test_a_sqlite_write_waits_for_another_process_holding_the_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    log = open_log(f"sqlite:///{path}")
    await log.open()
    try:
        await log.create(new("g1"))
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process, mid-transaction
        threading.Timer(0.3, other.rollback).start()

        await log.write(change("g1", at=T0 + 1))

        assert (await tx_of(log, "g1")).version == 2
        other.close()
    finally:
        await log.close()


async def test_a_write_the_database_refuses_fails_only_itself_in_a_batch(log: SqlLog) -> None:
    twice = new("twice")
    twice.ops.append(twice.ops[0])  # the same op twice: the op table's key refuses it
    gids = [f"g{i:02}" for i in range(20)]
    await log.create(new("odd"))

    before = log.group_stats
    results = await asyncio.gather(
        *(log.create(new(gid)) for gid in gids[:10]),
        log.create(twice),
        log.write(change("odd", reason="lone surrogate \ud800 no encoding can carry")),
        *(log.create(new(gid)) for gid in gids[10:]),
        return_exceptions=True,
    )

    assert since(log, before)[1] == len(gids) + 2
    assert results[:10] + results[12:] == [None] * len(gids)
    assert isinstance(results[10], LogError) and isinstance(results[11], LogError)
    assert await log.load("twice") is None
    assert (await tx_of(log, "odd")).version == 1
    for gid in gids:
        assert (await tx_of(log, gid)).version == 1
