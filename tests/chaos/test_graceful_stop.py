"""Two ``legato serve`` processes share one PostgreSQL log under load; one gets
SIGTERM. The other has taken over all of its unfinished transactions within a second
of its exit (its leases were released, not left to expire: the lease here is 15 s),
nothing is lost (every transaction ends, the participant's rows agree with each
outcome), no op ever runs on both at once (the participant's own record of each call,
with the coordinator that made it), the stopped one's waits were answered at once,
well within its grace, and it exited 0.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from legato.log import TxQuery, open_log
from tests.support.processes import REPOSITORY, Served, answers, start_serve, stop_serve
from tests.support.servers import free_port
from tests.support.services import new_pg_database

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

GRACE = 8.0
SAGAS = 90  # submitted over about three seconds, the stop in the middle
RETRY = {"max_attempts": 5, "backoff": 0.05, "jitter": 0}


@pytest.fixture
def participant_db() -> Iterator[str]:
    with new_pg_database("legato_part") as url:
        yield url


@pytest.fixture
def recording(participant_db: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.chaos.recording_participant", "--db", participant_db,
         "--port", str(port), "--delay", "0.3"],
        cwd=REPOSITORY,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    assert answers(url + "/health", process), "no participant"
    try:
        yield url
    finally:
        process.terminate()
        process.wait(10)


def saga(url: str, gid: str, *, wait: bool) -> dict[str, Any]:
    return {
        "gid": gid,
        "steps": [
            {"name": "debit", "action": f"{url}/debit", "compensate": f"{url}/refund",
             "retry": RETRY},
            {"name": "credit", "action": f"{url}/credit", "retry": RETRY},
        ],
        "wait": wait,
        "wait_timeout": 30,
    }  # fmt: skip


class Client:
    """A client behind a load balancer: it sends to the first coordinator that takes
    the call, and asks the others while one is stopping (or gone)."""

    def __init__(self, http: httpx.AsyncClient, coordinators: list[Served]) -> None:
        self.http = http
        self.coordinators = coordinators
        self.answered_waits: list[tuple[float, dict[str, Any]]] = []  # by the stopping one

    async def submit(self, first: Served, body: dict[str, Any]) -> None:
        order = [first, *(c for c in self.coordinators if c is not first)]
        for _ in range(50):
            for c in order:
                try:
                    r = await self.http.post(c.url + "/v1/sagas", json=body)
                except httpx.HTTPError:
                    continue  # gone: the next one
                if r.status_code == 200:
                    if body["wait"] and not r.json()["settled"]:
                        self.answered_waits.append((time.monotonic(), r.json()))
                    return
                assert r.status_code == 503, r.text  # stopping: the next one
            await asyncio.sleep(0.1)
        raise AssertionError(f"no coordinator took {body['gid']}")


async def test_a_sigterm_hands_the_work_over_at_once_and_nothing_runs_twice_at_once(
    pg_database: str, participant_db: str, recording: str
) -> None:
    alpha = start_serve(pg_database, owner="alpha", env={"LEGATO_GRACE": str(GRACE)})
    beta = start_serve(pg_database, owner="beta", env={"LEGATO_GRACE": str(GRACE)})
    try:
        pids = {"alpha": alpha.process.pid, "beta": beta.process.pid}
        async with httpx.AsyncClient(timeout=60) as http:
            assert (await http.put(recording + "/coordinators", json=pids)).status_code == 200
            client = Client(http, [alpha, beta])
            submits: list[asyncio.Task[None]] = []

            async def load() -> None:
                for i in range(SAGAS):
                    gid = f"pay-{i:03}" + ("-fail" if i % 5 == 4 else "")
                    body = saga(recording, gid, wait=i % 2 == 0)  # half wait for their end
                    first = alpha if i % 3 else beta  # alpha takes two thirds
                    submits.append(asyncio.create_task(client.submit(first, body)))
                    await asyncio.sleep(3.0 / SAGAS)

            async def stop_alpha() -> tuple[float, tuple[int, float, float]]:
                await asyncio.sleep(1.5)
                alpha.process.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                return signalled, await asyncio.to_thread(_wait_exit, alpha, GRACE + 5)

            _, (signalled, (code, exited_at, exited)) = await asyncio.gather(load(), stop_alpha())
            await asyncio.gather(*submits)
            gids = [f"pay-{i:03}" + ("-fail" if i % 5 == 4 else "") for i in range(SAGAS)]
            ended = await _all_ended(beta, http, gids)
        lines = alpha.lines()
    finally:
        stop_serve(alpha)
        stop_serve(beta)
    assert code == 0, lines[-3000:]
    assert exited - signalled < GRACE
    # the waits alpha held were answered at once, not settled: the client asked beta
    late = [round(at - signalled, 2) for at, _ in client.answered_waits if at >= signalled]
    assert late and max(late) < 1.0, late
    assert set(ended.values()) <= {"succeeded", "failed"} and len(ended) == SAGAS
    assert {g for g, s in ended.items() if s == "failed"} == {g for g in gids if "fail" in g}
    calls, ledger = _participant(participant_db)
    assert {who for *_, who, _, _ in calls} == {"alpha", "beta"}
    by: dict[str, set[str]] = {}
    for gid, *_, who, _, _ in calls:
        by.setdefault(gid, set()).add(who)
    handed = {gid for gid, whos in by.items() if whos == {"alpha", "beta"}}
    assert handed  # beta finished some of what alpha had begun
    await _taken_over_at_once(pg_database, exited_at, {g for g, w in by.items() if "alpha" in w})
    assert _overlapping(calls) == []
    assert _inconsistent(ended, ledger) == []


def _wait_exit(served: Served, timeout: float) -> tuple[int, float, float]:
    """Its exit status, and when it exited (wall clock, monotonic)."""
    code = served.process.wait(timeout)
    return code, time.time(), time.monotonic()


async def _all_ended(served: Served, http: httpx.AsyncClient, gids: list[str]) -> dict[str, str]:
    deadline = time.monotonic() + 60
    out: dict[str, str] = {}
    while len(out) < len(gids):
        assert time.monotonic() < deadline, sorted(set(gids) - set(out))
        for gid in gids:
            if gid in out:
                continue
            r = await http.get(f"{served.url}/v1/transactions/{gid}", params={"events": False})
            if r.status_code == 200 and r.json()["status"] in ("succeeded", "failed"):
                out[gid] = r.json()["status"]
        await asyncio.sleep(0.2)
    return out


async def _taken_over_at_once(log_url: str, exited_at: float, alphas: set[str]) -> None:
    """Each transaction alpha drove (``alphas``: a call of it came from alpha) and had
    not ended when alpha exited was resumed by beta (its claim's "resumed" event)
    within a second of that exit."""
    log = open_log(log_url)
    await log.open()
    try:
        late = []
        for tx in await log.list(TxQuery(limit=1000)):
            if tx.gid not in alphas or (tx.ended_at is not None and tx.ended_at <= exited_at):
                continue
            resumed = [e.at for e in await log.events(tx.gid) if e.kind == "resumed"]
            if not resumed or min(resumed) > exited_at + 1.0:
                late.append((tx.gid, [round(at - exited_at, 2) for at in resumed]))
        assert late == []
    finally:
        await log.close()


Call = tuple[str, str, str, int, str, float, float]


def _participant(db: str) -> tuple[list[Call], dict[str, list[str]]]:
    with psycopg.connect(db) as conn:
        calls = conn.execute(
            "SELECT gid, branch_id, op, attempt, coordinator, started, ended FROM calls"
        ).fetchall()
        ledger: dict[str, list[str]] = {}
        for gid, entry in conn.execute("SELECT gid, entry FROM ledger ORDER BY id"):
            ledger.setdefault(gid, []).append(entry)
    return [tuple(c) for c in calls], ledger  # type: ignore[misc]


def _overlapping(calls: list[Call]) -> list[str]:
    """Calls of one op (gid, branch, op) by both coordinators whose intervals overlap."""
    by_op: dict[tuple[str, str, str], list[tuple[float, float, str]]] = {}
    for gid, branch, op, _, who, start, end in calls:
        by_op.setdefault((gid, branch, op), []).append((start, end, who))
    out = []
    for key, spans in by_op.items():
        for (s1, e1, w1), (s2, e2, w2) in itertools.combinations(sorted(spans), 2):
            if w1 != w2 and s2 < e1:
                out.append(f"{key}: {w1} {s1:.3f}-{e1:.3f}, {w2} {s2:.3f}-{e2:.3f}")
    return out


def _inconsistent(ended: dict[str, str], ledger: dict[str, list[str]]) -> list[str]:
    """Each saga's rows in the participant's ledger, as its outcome says they must be."""
    want = {"succeeded": ["credit", "debit"], "failed": ["debit", "refund"]}
    return [
        f"{gid} {status}: {sorted(ledger.get(gid, []))}"
        for gid, status in ended.items()
        if sorted(ledger.get(gid, [])) != want[status]
    ]


def test_the_recording_participant_finds_no_process_for_an_unknown_port() -> None:
    from tests.chaos.recording_participant import _inode, _owner

    assert _inode(1, 2) is None
    assert _owner("0", {"me": os.getpid()}) is None
