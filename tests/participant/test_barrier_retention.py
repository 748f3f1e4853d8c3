"""Retention: old barrier rows are deleted in batches; rows are aged in SQL, not by sleeping."""

from __future__ import annotations

import uuid

import pytest

from legato.participant import Barrier, BarrierOutcome
from tests.support.barrier import Participant


async def test_purge_deletes_only_rows_older_than_the_cutoff_in_batches(
    participant: Participant,
) -> None:
    old_one, old_two, fresh = (f"g-{uuid.uuid4().hex[:10]}" for _ in range(3))
    for gid in (old_one, old_two, fresh):
        await participant.run(Barrier.from_request("saga", gid, "01", "action"), "action")
        await participant.run(Barrier.from_request("saga", gid, "01", "compensate"), "undo")
    participant.db.age_two_hours(old_one)
    participant.db.age_two_hours(old_two)

    deleted = await participant.purge(older_than_seconds=3600, limit=3)

    assert deleted == 4
    assert participant.db.barrier_rows(old_one) == []
    assert participant.db.barrier_rows(old_two) == []
    assert len(participant.db.barrier_rows(fresh)) == 2
    assert await participant.purge(older_than_seconds=3600, limit=3) == 0
    # the business tables are never touched
    assert participant.db.ledger(old_one) == ["action", "undo"]


async def test_a_duplicate_still_inside_retention_is_still_refused(
    participant: Participant,
) -> None:
    gid = f"g-{uuid.uuid4().hex[:10]}"
    await participant.run(Barrier.from_request("saga", gid, "01", "action"), "action")

    assert await participant.purge(older_than_seconds=3600, limit=10) == 0
    again = await participant.run(Barrier.from_request("saga", gid, "01", "action"), "action")

    assert again.outcome is BarrierOutcome.DUPLICATE
    assert participant.db.ledger(gid) == ["action"]


@pytest.mark.parametrize(("age", "limit"), [(-1, 10), (60, 0)])
def test_purge_refuses_a_negative_age_or_an_empty_batch(age: float, limit: int) -> None:
    import sqlite3
    from contextlib import closing

    from legato.participant import purge

    with closing(sqlite3.connect(":memory:")) as conn, pytest.raises(ValueError):
        purge(conn, age, limit)
