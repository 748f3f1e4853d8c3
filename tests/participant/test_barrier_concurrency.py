"""Racing requests on two connections: the database's unique-key lock orders them.

A sync driver's two requests run in two threads, an asyncio driver's in two
tasks; each request has a connection of its own.
"""

from __future__ import annotations

import asyncio
import uuid

from legato.participant import Barrier, BarrierOutcome
from tests.support.barrier import Hold, Participant


def _deadlock(exc: BaseException) -> bool:
    code = exc.args[0] if exc.args else None
    return code == 1213 or getattr(exc, "sqlstate", None) == "40P01"


def tcc(gid: str, op: str) -> Barrier:
    return Barrier.from_request("tcc", gid, "01", op)


async def test_cancel_arriving_while_its_try_runs_waits_for_it_then_undoes_it(
    participant: Participant,
) -> None:
    gid = f"g-{uuid.uuid4().hex[:10]}"
    hold = Hold()
    trying = asyncio.create_task(participant.run(tcc(gid, "try"), "try", hold=hold))
    await hold.wait_entered()

    cancelling = asyncio.create_task(participant.run(tcc(gid, "cancel"), "cancel"))
    await asyncio.sleep(0.3)
    blocked = not cancelling.done()
    hold.release.set()
    tried, cancelled = await asyncio.gather(trying, cancelling)

    assert blocked, "the cancel did not wait for the try's transaction"
    assert tried.ran and cancelled.ran
    assert participant.db.ledger(gid) == ["try", "cancel"]


async def test_try_and_cancel_racing_end_in_one_consistent_outcome(
    participant: Participant,
) -> None:
    for round_ in range(6):
        gid = f"g-{uuid.uuid4().hex[:10]}"
        # stagger the starts a little, so that either side may get there first
        try_delay, cancel_delay = (0.0, 0.005) if round_ % 2 else (0.005, 0.0)

        async def op(name: str, delay: float, gid: str = gid) -> BarrierOutcome:
            await asyncio.sleep(delay)
            for attempt in range(5):
                try:
                    return (await participant.run(tcc(gid, name), name)).outcome
                except Exception as exc:
                    # InnoDB may pick one of the two as a deadlock victim (its gap locks on
                    # the unique key); the op failed as a whole, and the coordinator would
                    # call it again, as this does
                    if not _deadlock(exc) or attempt == 4:
                        raise
            raise AssertionError("unreachable")

        tried, cancelled = await asyncio.gather(op("try", try_delay), op("cancel", cancel_delay))

        ledger = participant.db.ledger(gid)
        if tried is BarrierOutcome.RAN:
            assert cancelled is BarrierOutcome.RAN
            assert ledger == ["try", "cancel"]
        else:
            assert (tried, cancelled) == (
                BarrierOutcome.HANGING,
                BarrierOutcome.NULL_COMPENSATION,
            )
            assert ledger == []
