"""A coordinator cut off from its log stops calling before its leases can expire.

Two ``legato serve`` processes share a throwaway PostgreSQL log; the first reaches it
through a TCP proxy, the second directly. The first starts sagas whose every call
takes longer than the lease (the participant, its own process, answers each after
``HOLD`` seconds; the steps' request timeout is longer still). With its calls on their
way, the proxy cuts it off from the log, and only from the log: the participant stays
in its reach. Its leases cannot be renewed, so at its fence it cancels its calls; once
the leases expire, the second coordinator claims the sagas and calls the same ops
again, and finishes them. The participant records every call, with when it began,
when it ended (answered, or the caller hung up) and which process made it.

The lease's end for each saga is the one the log holds once the first coordinator is
cut off (read from the server directly): nothing that coordinator writes lands after.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import recording_participant
from tests.support.processes import Served, start_serve, stop_serve
from tests.support.proxy import CuttingProxy
from tests.support.recording_participant import Call
from tests.support.servers import PgServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

LEASE = 3.0
HOLD = 5.0  # every call takes this long: past the lease, so only the fence ends one in time
N = 6


@pytest.fixture
def participant(tmp_path: Path) -> Iterator[recording_participant.Running]:
    with recording_participant.running(tmp_path, hold=HOLD) as running:
        yield running


def saga(url: str, gid: str) -> dict[str, Any]:
    steps = [
        {"name": name, "action": f"{url}/{name}", "compensate": f"{url}/{name}-undo", "timeout": 60}
        for name in ("reserve", "charge")
    ]
    return {"gid": gid, "steps": steps}


async def wait_for(what: str, ok: Callable[[], object], timeout: float = 60) -> None:
    """Until ``ok()`` (run in a thread: it may block) is true."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(ok):
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        await asyncio.sleep(0.1)


async def metric(client: httpx.AsyncClient, served: Served, name: str) -> float:
    text = (await client.get(served.url + "/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def overlapping(calls: list[Call]) -> list[tuple[Call, Call]]:
    """Pairs of calls of one op whose callers were attached at the same time."""
    out = []
    for i, a in enumerate(calls):
        for b in calls[i + 1 :]:
            if (a.gid, a.branch, a.op) != (b.gid, b.branch, b.op):
                continue
            a_end, b_end = a.ended or float("inf"), b.ended or float("inf")
            if a.began < b_end and b.began < a_end:
                out.append((a, b))
    return out


async def test_a_coordinator_cut_off_from_its_log_makes_no_call_past_its_lease(
    throwaway_pg: PgServer,
    throwaway_database: str,
    participant: recording_participant.Running,
) -> None:
    dbname = throwaway_database.rsplit("/", 1)[1]
    gids = [f"fence-{i}" for i in range(N)]
    with CuttingProxy(throwaway_pg.port) as proxy:
        through_proxy = throwaway_database.replace(f":{throwaway_pg.port}/", f":{proxy.port}/")
        lease = ["--lease", str(LEASE)]
        cut_off = start_serve(through_proxy, owner="coord-a", extra=lease)
        try:
            other = start_serve(throwaway_database, owner="coord-b", extra=lease)
            try:
                async with httpx.AsyncClient(timeout=30) as client:
                    for gid in gids:
                        body = saga(participant.url, gid)
                        r = await client.post(cut_off.url + "/v1/sagas", json=body)
                        assert r.status_code < 300, r.text

                    a, b = cut_off.process.pid, other.process.pid
                    await wait_for(
                        "every saga's first call is on its way, from the coordinator to cut off",
                        lambda: len([c for c in participant.calls() if c.pid == a]) == N,
                    )
                    proxy.cut()
                    cut_at = time.time()
                    await asyncio.sleep(0.5)  # a statement on its way at the cut has landed
                    ends = dict(
                        throwaway_pg.execute(
                            "SELECT gid, lease_expires_at FROM legato_tx "
                            "WHERE lease_owner = 'coord-a'",
                            dbname,
                        )
                    )
                    assert set(ends) == set(gids), ends

                    def all_succeeded() -> bool:
                        rows = throwaway_pg.execute(
                            "SELECT count(*) FROM legato_tx WHERE status = 'succeeded'", dbname
                        )
                        return bool(rows[0][0] == N)

                    await wait_for("the other coordinator finishes every saga", all_succeeded)
                    calls = participant.calls()

                    # cut off, it says so: in /health and in its metrics
                    health = await client.get(cut_off.url + "/health")
                    assert health.status_code == 503
                    assert health.json()["leases"]["fenced"] == N
                    assert await metric(client, cut_off, "legato_lease_fenced_total") == N
                    assert await metric(client, cut_off, "legato_transactions_fenced") == N

                    # back in reach of its log, it finds every saga taken over: dropped
                    proxy.mend()

                    def lifted() -> bool:
                        health = httpx.get(cut_off.url + "/health", timeout=10).json()
                        return bool(health["leases"]["fenced"] == 0)

                    await wait_for("the fence lifts once the log answers", lifted)
                told = cut_off.lines()
            finally:
                stop_serve(other)
        finally:
            stop_serve(cut_off)

    unknown = [c for c in calls if c.pid not in (a, b)]
    assert not unknown, f"calls whose caller was not found: {unknown}"
    by_a = [c for c in calls if c.pid == a]
    by_b = [c for c in calls if c.pid == b]

    # the cut-off coordinator hung up on its calls (each would have lasted past the
    # lease's end) before the lease's end, and made none after
    for c in by_a:
        assert c.ended is not None and c.ended < ends[c.gid], (c, ends[c.gid])
        assert c.how == "caller hung up", c
        assert c.began < cut_at, c

    # the other took every saga over after its lease's end, and called every op again
    assert {c.gid for c in by_b} == set(gids)
    for c in by_b:
        assert c.began >= ends[c.gid], (c, ends[c.gid])
        assert c.how == "answered", c
    assert {(c.gid, c.branch, c.op) for c in by_b} == {
        (g, name, "action") for g in gids for name in ("reserve", "charge")
    }

    # never two callers of one op at once
    assert overlapping(calls) == []

    assert "lease renewals have not landed" in told, told[-3000:]
    assert f"of {N} fenced transaction(s), 0 are driven again here and {N} were taken over" in told
