"""A coordinator whose log is out of reach stops its step before its lease can expire,
and, with nobody to take the transaction over, drives it on once the log answers.

The coordinator reaches a throwaway PostgreSQL through a TCP proxy that the test cuts
and mends; the lease's end is read from the server directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import legato
from legato.engine.fence import margin
from legato.observe.metrics import Metrics
from tests.support.proxy import CuttingProxy
from tests.support.servers import PgServer

LEASE = 2.0


async def until(what: str, ok: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.02)


async def test_a_step_in_flight_is_cancelled_at_the_fence_and_run_again_once_the_log_answers(
    throwaway_pg: PgServer, throwaway_database: str
) -> None:
    seen: list[tuple[int, str, float]] = []  # (attempt, what, time.time())

    async def ship(ctx: legato.StepContext) -> str:
        seen.append((ctx.attempt, "began", time.time()))
        try:
            if ctx.attempt == 1:
                await asyncio.sleep(3600)  # the first call outlasts any lease
        except asyncio.CancelledError:
            seen.append((ctx.attempt, "cancelled", time.time()))
            raise
        return "shipped"

    saga = legato.Saga("ship_order").step("ship", action=ship)
    metrics = Metrics()
    dbname = throwaway_database.rsplit("/", 1)[1]
    with CuttingProxy(throwaway_pg.port) as proxy:
        url = throwaway_database.replace(f":{throwaway_pg.port}/", f":{proxy.port}/")
        coordinator = legato.Coordinator(
            url, owner="pod-a", lease=LEASE, poll_interval=0.1, hooks=[metrics]
        )
        coordinator.register(saga)
        async with coordinator:
            await coordinator.submit(saga, {"order": 1}, gid="order-1")
            await until("the first attempt began", lambda: len(seen) == 1)

            proxy.cut()
            await asyncio.sleep(0.3)  # a statement on its way at the cut has landed now
            [(lease_end,)] = throwaway_pg.execute(
                "SELECT lease_expires_at FROM legato_tx WHERE gid = 'order-1'", dbname
            )
            await until("the step is cancelled", lambda: len(seen) == 2, timeout=LEASE * 2)
            cancelled_at = seen[1][2]
            assert seen[1][:2] == (1, "cancelled")
            # the fence fell the margin before the lease's end (give or take the timer)
            assert lease_end - cancelled_at > margin(LEASE) / 2, lease_end - cancelled_at
            assert coordinator.fenced == 1
            assert metrics.registry.get_sample_value("legato_lease_fenced_total") == 1

            await asyncio.sleep(LEASE)  # past the lease: nobody else claims it here
            assert len(seen) == 2, "no attempt starts while the log is out of reach"

            proxy.mend()
            outcome = await coordinator.handle("order-1").result(timeout=30)
            assert outcome.succeeded, outcome
            assert [(a, what) for a, what, _ in seen] == [
                (1, "began"),
                (1, "cancelled"),
                (2, "began"),
            ]
            assert coordinator.fenced == 0
