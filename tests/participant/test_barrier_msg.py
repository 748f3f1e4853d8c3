"""The msg mode's query_prepared: the barrier row tells a committed local transaction
from one that never committed, through every driver."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from legato import Failure
from legato.participant import Barrier, BarrierOutcome
from tests.support.barrier import Hold, Participant


def new_gid() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


async def test_query_prepared_after_the_local_transaction_committed_says_committed(
    participant: Participant,
) -> None:
    gid = new_gid()
    local = await participant.run(Barrier.for_msg(gid), "order")

    assert local.ran
    assert await participant.query_prepared(gid) == "committed"
    assert await participant.query_prepared(gid) == "committed"
    assert participant.db.ledger(gid) == ["order"]


async def test_query_prepared_before_the_local_transaction_rolls_it_back_for_good(
    participant: Participant,
) -> None:
    gid = new_gid()

    assert await participant.query_prepared(gid) == "rolled_back"
    late = await participant.run(Barrier.for_msg(gid), "order")
    assert await participant.query_prepared(gid) == "rolled_back"

    assert late.outcome is BarrierOutcome.HANGING
    assert participant.db.ledger(gid) == []
    assert participant.db.barrier_rows(gid) == [("00", "msg", "01", "rollback")]


async def test_query_prepared_waits_for_a_local_transaction_in_flight(
    participant: Participant,
) -> None:
    gid = new_gid()
    hold = Hold()
    local = asyncio.create_task(participant.run(Barrier.for_msg(gid), "order", hold=hold))
    await hold.wait_entered()

    asking = asyncio.create_task(participant.query_prepared(gid))
    await asyncio.sleep(0.3)
    blocked = not asking.done()
    hold.release.set()

    assert (await local).ran
    assert await asking == "committed"
    assert blocked, "query_prepared answered before the local transaction ended"
    assert participant.db.ledger(gid) == ["order"]


async def test_query_prepared_after_a_local_transaction_that_failed_says_rolled_back(
    participant: Participant,
) -> None:
    gid = new_gid()
    with pytest.raises(Failure):
        await participant.run(Barrier.for_msg(gid), "order", fail=True)

    assert await participant.query_prepared(gid) == "rolled_back"
    assert participant.db.ledger(gid) == []
