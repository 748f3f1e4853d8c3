"""The barrier's rules, through every driver, read back from the participant's own tables.

Each test runs once per driver (sqlite3, psycopg sync and async, asyncpg, PyMySQL,
aiomysql, SQLAlchemy sessions and connections), on a database of its own.
"""

from __future__ import annotations

import uuid

import pytest

from legato import Failure
from legato.participant import Barrier, BarrierOutcome
from tests.support.barrier import Participant


def new_gid() -> str:
    return f"g-{uuid.uuid4().hex[:10]}"


def saga(gid: str, op: str) -> Barrier:
    return Barrier.from_request("saga", gid, "01", op)


async def test_duplicate_action_takes_effect_once(participant: Participant) -> None:
    gid = new_gid()

    first = await participant.run(saga(gid, "action"), "action")
    again = await participant.run(saga(gid, "action"), "action")

    assert first.ran and first.value == "action"
    assert again.outcome is BarrierOutcome.DUPLICATE and again.value is None
    assert participant.db.ledger(gid) == ["action"]


async def test_duplicate_compensation_changes_nothing(participant: Participant) -> None:
    gid = new_gid()
    await participant.run(saga(gid, "action"), "action")

    first = await participant.run(saga(gid, "compensate"), "compensate")
    again = await participant.run(saga(gid, "compensate"), "compensate")

    assert first.ran
    assert again.outcome is BarrierOutcome.DUPLICATE
    assert participant.db.ledger(gid) == ["action", "compensate"]


async def test_compensation_before_any_action_is_a_null_compensation(
    participant: Participant,
) -> None:
    gid = new_gid()

    result = await participant.run(saga(gid, "compensate"), "compensate")

    assert result.outcome is BarrierOutcome.NULL_COMPENSATION
    assert participant.db.ledger(gid) == []
    assert participant.db.barrier_rows(gid) == [
        ("01", "action", "01", "compensate"),
        ("01", "compensate", "01", "compensate"),
    ]


async def test_action_arriving_after_its_compensation_is_refused_as_hanging(
    participant: Participant,
) -> None:
    gid = new_gid()
    await participant.run(saga(gid, "compensate"), "compensate")

    late = await participant.run(saga(gid, "action"), "action")
    later = await participant.run(saga(gid, "action"), "action")

    assert late.outcome is BarrierOutcome.HANGING
    assert later.outcome is BarrierOutcome.HANGING
    assert participant.db.ledger(gid) == []


async def test_business_failure_rolls_back_its_change_and_the_barrier_row(
    participant: Participant,
) -> None:
    gid = new_gid()

    with pytest.raises(Failure, match="action refused"):
        await participant.run(saga(gid, "action"), "action", fail=True)

    assert participant.db.ledger(gid) == []
    assert participant.db.barrier_rows(gid) == []
    retry = await participant.run(saga(gid, "action"), "action")
    assert retry.ran
    assert participant.db.ledger(gid) == ["action"]


async def test_compensating_an_action_that_failed_is_a_null_compensation(
    participant: Participant,
) -> None:
    gid = new_gid()
    with pytest.raises(Failure):
        await participant.run(saga(gid, "action"), "action", fail=True)

    result = await participant.run(saga(gid, "compensate"), "compensate")

    assert result.outcome is BarrierOutcome.NULL_COMPENSATION
    assert participant.db.ledger(gid) == []


async def test_tcc_try_confirm_each_take_effect_once(participant: Participant) -> None:
    gid = new_gid()

    outcomes = [
        (await participant.run(Barrier.from_request("tcc", gid, "01", op), op)).outcome
        for op in ("try", "try", "confirm", "confirm")
    ]

    assert outcomes == ["ran", "duplicate", "ran", "duplicate"]
    assert participant.db.ledger(gid) == ["try", "confirm"]
    # confirm has no origin row to write: only its own
    assert [row[1] for row in participant.db.barrier_rows(gid)] == ["try", "confirm"]


async def test_tcc_cancel_after_try_undoes_it_and_a_cancel_first_makes_try_hang(
    participant: Participant,
) -> None:
    tried, cancelled_first = new_gid(), new_gid()

    await participant.run(Barrier.from_request("tcc", tried, "01", "try"), "try")
    undo = await participant.run(Barrier.from_request("tcc", tried, "01", "cancel"), "cancel")
    null = await participant.run(
        Barrier.from_request("tcc", cancelled_first, "01", "cancel"), "cancel"
    )
    hanging = await participant.run(
        Barrier.from_request("tcc", cancelled_first, "01", "try"), "try"
    )

    assert (undo.outcome, null.outcome, hanging.outcome) == (
        "ran",
        "null_compensation",
        "hanging",
    )
    assert participant.db.ledger(tried) == ["try", "cancel"]
    assert participant.db.ledger(cancelled_first) == []


async def test_each_call_in_one_handler_gets_the_next_barrier_id(
    participant: Participant,
) -> None:
    gid = new_gid()
    handler = saga(gid, "action")
    first = await participant.run(handler, "first")
    second = await participant.run(handler, "second")

    retried_handler = saga(gid, "action")
    again = [await participant.run(retried_handler, e) for e in ("first", "second")]

    assert first.ran and second.ran
    assert [r.outcome for r in again] == ["duplicate", "duplicate"]
    assert [row[2] for row in participant.db.barrier_rows(gid)] == ["01", "02"]
    assert participant.db.ledger(gid) == ["first", "second"]


async def test_branches_of_one_transaction_have_barriers_of_their_own(
    participant: Participant,
) -> None:
    gid = new_gid()

    one = await participant.run(Barrier.from_request("saga", gid, "01", "action"), "one")
    two = await participant.run(Barrier.from_request("saga", gid, "02", "action"), "two")

    assert one.ran and two.ran
    assert participant.db.ledger(gid) == ["one", "two"]
