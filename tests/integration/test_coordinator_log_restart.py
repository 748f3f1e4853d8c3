"""A coordinator whose PostgreSQL log goes away under a running saga drives it again
as soon as the log is back, with the lease it still holds (issue 12, item 8).

The log is a database on a PostgreSQL server of the module's own, which the
test stops and starts: never the shared server.
"""

from __future__ import annotations

import asyncio

from legato import Coordinator, Saga, StepContext, TxStatus
from tests.support.servers import PgServer

LEASE = 60.0  # long: a saga driven again before it expires was taken back, not reclaimed


async def test_a_saga_stopped_by_its_log_going_away_is_driven_again_before_its_lease_expires(
    throwaway_pg: PgServer, throwaway_database: str
) -> None:
    attempts: list[int] = []
    answer = asyncio.Event()

    async def book(ctx: StepContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) == 1:
            await answer.wait()  # the first answer comes while the log is down
        return "booked"

    saga = Saga("trip").step("hotel", action=book)
    async with Coordinator(throwaway_database, lease=LEASE, poll_interval=0.1) as c:
        handle = await c.submit(saga, gid="trip-1")
        tx, _ = await c.get("trip-1")
        leased_until = tx.lease_expires_at
        assert leased_until is not None
        while not attempts:
            await asyncio.sleep(0.01)

        await asyncio.to_thread(throwaway_pg.stop)
        answer.set()  # its result cannot be logged: the runner stops, holding the lease
        while c.in_flight:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(throwaway_pg.start)

        outcome = await handle.result(timeout=LEASE)
        tx, _ = await c.get("trip-1")
        kinds = [e.kind for e in await c.events("trip-1")]

    assert outcome.status is TxStatus.SUCCEEDED
    assert outcome.outputs == {"hotel": "booked"}
    assert tx.ended_at is not None and tx.ended_at < leased_until
    assert attempts == [1, 2]  # the answer never logged is asked for again (at least once)
    assert kinds.count("resumed") == 1
