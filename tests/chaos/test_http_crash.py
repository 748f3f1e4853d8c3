"""The coordinator service and the four travel services as separate processes, with
crashes, an outage and slow answers; each test ends by reading every service's
own database back (the consistency check of ``legato demo --http``).

* ``legato serve`` kills itself with SIGKILL at a named fault point (an action
  ran, its result not logged; a compensation's start logged, not run) and is
  restarted under the same owner: every trip ends all booked or all undone.
* the hotel service is down for 10 s and comes back: the trips ride it out.
* payments answer past the coordinator's timeout: the op is retried while the
  first call is still on its way, and the barrier keeps one effect.
* two ``legato serve`` processes share one PostgreSQL log, one is killed, the
  other takes its work over: no op of any trip runs twice at the same time.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from legato.cli import build_parser
from legato.demo.http.check import check
from legato.demo.http.demo import Plan, prepare
from legato.demo.http.processes import (
    Child,
    coordinator_args,
    free_port,
    service_args,
    stop_all,
)
from legato.demo.http.saga import prices, saga_body
from tests.support.invariants import ops_left_running

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

KINDS = ("flights", "hotels", "cars", "payments")
PATIENT = {"max_attempts": 40, "backoff": 0.1, "max_backoff": 1.0}  # rides out 10 s


@dataclass
class Rig:
    plan: Plan
    services: dict[str, Child]
    urls: dict[str, str]
    coordinators: list[Child]

    def serve(self, *, owner: str, faults: str = "", lease: float = 2.0) -> Child:
        """Start one ``legato serve`` on the plan's log (``faults``: LEGATO_FAULTS)."""
        port = free_port()
        args = [*coordinator_args(self.plan.log_url, port), "--owner", owner]
        args += ["--lease", str(lease)]
        # the child's environment only: this process reads its own settings once
        env = {**os.environ, "LEGATO_FAULTS": faults}
        n = len(self.coordinators)
        log = self.plan.directory / f"serve-{n}.log"
        child = Child.spawn(f"serve-{n}", args, port, log, env=env)
        self.coordinators.append(child)
        return child

    def restart(self, kind: str) -> Child:
        old = self.services[kind]
        port = int(old.url.rsplit(":", 1)[1])
        stock = self.plan.directory / f"{kind}.stock.json"
        args = service_args(kind, self.plan.databases[kind], port, stock, [])
        child = Child.spawn(kind, args, port, self.plan.directory / f"{kind}-2.log")
        self.services[kind] = child
        return child

    def body(self, i: int, **retry: dict[str, Any]) -> dict[str, Any]:
        b = saga_body(self.plan.trips[i], self.urls, prices(self.plan.inventory), 60)
        for step in b["steps"]:
            for field, policy in retry.items():
                step[field] = policy
        return b


def plan(tmp_path: Path, *options: str, log: str | None = None) -> Plan:
    argv = ["demo", "--http", "--dir", str(tmp_path), "--seed", "7", *options]
    if log:
        argv += ["--log", log]
    return prepare(
        build_parser().parse_args(argv), tmp_path, log or f"sqlite:///{tmp_path / 'legato.db'}"
    )


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Any]:
    rigs: list[Rig] = []

    def make(*options: str, log: str | None = None, payments: list[str] = ()) -> Rig:
        p = plan(tmp_path, *options, log=log)
        services: dict[str, Child] = {}
        for kind in KINDS:
            port = free_port()
            stock = tmp_path / f"{kind}.stock.json"
            extra = list(payments) if kind == "payments" else []
            args = service_args(kind, p.databases[kind], port, stock, extra)
            services[kind] = Child.spawn(kind, args, port, tmp_path / f"{kind}.log")
        rig = Rig(p, services, {k: c.url for k, c in services.items()}, [])
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        stop_all([*rig.services.values(), *rig.coordinators])


async def ready(client: httpx.AsyncClient, *children: Child) -> None:
    for child in children:
        await child.ready(client)


async def submit_all(
    client: httpx.AsyncClient, url: str, bodies: list[dict[str, Any]], concurrency: int = 16
) -> dict[str, dict[str, Any] | None]:
    """Submit every body (waiting for its end); a call that fails leaves None."""
    results: dict[str, dict[str, Any] | None] = {}
    queue = list(bodies)

    async def worker() -> None:
        while queue:
            body = queue.pop()
            try:
                r = await client.post(f"{url}/v1/sagas", json=body, timeout=90)
                results[body["gid"]] = r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                results[body["gid"]] = None

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


async def consistent(rig: Rig) -> None:
    report = await check(rig.plan.directory)
    bad = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    assert not bad, bad
    assert await ops_left_running(rig.plan.log_url) == []


def wait_killed(child: Child, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while child.process.poll() is None:
        assert time.monotonic() < deadline, f"{child.name} did not reach its fault point"
        time.sleep(0.05)
    assert child.process.returncode == -signal.SIGKILL


@pytest.mark.parametrize(
    "fault", ["after_op.action@40", "before_op.compensate@4", "after_op.compensate@6"]
)
async def test_a_coordinator_killed_mid_saga_is_restarted_and_every_trip_ends_whole(
    rig_factory: Any, fault: str
) -> None:
    rig = rig_factory("--n", "60")
    async with httpx.AsyncClient() as client:
        await ready(client, *rig.services.values())
        first = rig.serve(owner="crashy", faults=fault)
        await ready(client, first)
        bodies = [rig.body(i) for i in range(len(rig.plan.trips))]
        await submit_all(client, first.url, bodies)  # until the crash
        wait_killed(first)
        second = rig.serve(owner="crashy")  # the same owner: it takes its work back at once
        await ready(client, second)
        results = await submit_all(client, second.url, bodies)  # idempotent by gid
    ended = [r["status"] for r in results.values() if r]
    assert len(ended) == len(bodies)
    assert set(ended) <= {"succeeded", "failed"}
    assert "failed" in ended and "succeeded" in ended
    await consistent(rig)


async def test_a_participant_down_for_ten_seconds_is_waited_for(rig_factory: Any) -> None:
    rig = rig_factory("--n", "30")
    async with httpx.AsyncClient() as client:
        await ready(client, *rig.services.values())
        coordinator = rig.serve(owner="steady")
        await ready(client, coordinator)
        bodies = [rig.body(i, retry=PATIENT, compensate_retry=PATIENT) for i in range(30)]
        hotels = rig.services["hotels"]
        hotels.process.kill()
        hotels.wait()
        went_down = time.monotonic()
        run = asyncio.create_task(submit_all(client, coordinator.url, bodies))
        await asyncio.sleep(10)
        back = rig.restart("hotels")
        await ready(client, back)
        results = await run
        unknown = 0  # hotel calls that found nobody there, over all trips
        for body in bodies:
            tx = (await client.get(f"{coordinator.url}/v1/transactions/{body['gid']}")).json()
            unknown += sum(
                e["kind"] == "op.unknown" and e["branch"] == "hotel" for e in tx["events"]
            )
    assert time.monotonic() - went_down >= 10
    assert all(r and r["status"] in ("succeeded", "failed") for r in results.values()), results
    assert unknown > 0
    await consistent(rig)


async def test_a_payment_answering_past_its_timeout_is_retried_and_charged_once(
    rig_factory: Any,
) -> None:
    rig = rig_factory("--n", "40", payments=["--slow", "0.5", "--seed", "7"])
    async with httpx.AsyncClient() as client:
        await ready(client, *rig.services.values())
        coordinator = rig.serve(owner="patient")
        await ready(client, coordinator)
        bodies = [rig.body(i) for i in range(40)]
        results = await submit_all(client, coordinator.url, bodies)
        stats = (await client.get(f"{rig.urls['payments']}/stats")).json()
        await asyncio.sleep(1.5)  # the late calls land
    assert all(r and r["status"] in ("succeeded", "failed") for r in results.values())
    assert sum(stats["faults"].values()) > 0, stats
    await consistent(rig)  # "payments: one effect per op" reads the charges back


@pytest.fixture
async def pg_log(pg_database: str) -> AsyncIterator[str]:
    yield pg_database


async def test_two_coordinators_on_one_postgres_log_never_run_an_op_twice_at_once(
    rig_factory: Any, pg_log: str
) -> None:
    # no slow answers here: an attempt given up on by its own coordinator may overlap its
    # retry by design (the barrier absorbs it); what must never happen is two drivers
    rig = rig_factory("--n", "60", log=pg_log)
    async with httpx.AsyncClient() as client:
        await ready(client, *rig.services.values())
        a = rig.serve(owner="alpha", faults="after_op.action@60")
        b = rig.serve(owner="beta")
        await ready(client, a, b)
        bodies = [rig.body(i) for i in range(60)]
        half = len(bodies) // 2
        await asyncio.gather(
            submit_all(client, a.url, bodies[:half], 8),
            submit_all(client, b.url, bodies[half:], 8),
        )
        wait_killed(a)  # beta claims alpha's trips once their leases (2 s) expire
        results = await submit_all(client, b.url, bodies)
        overlaps = []
        for kind, url in rig.urls.items():
            calls = (await client.get(f"{url}/stats", params={"calls": 1})).json()["calls"]
            overlaps += _overlapping(kind, calls)
    assert all(r and r["status"] in ("succeeded", "failed") for r in results.values())
    assert overlaps == []
    await consistent(rig)


def _overlapping(kind: str, calls: list[dict[str, Any]]) -> list[str]:
    """Calls of the same op (gid, branch, op) whose [start, end] intervals overlap."""
    by_op: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for c in calls:
        by_op.setdefault((c["gid"], c["branch_id"], c["op"]), []).append((c["start"], c["end"]))
    out = []
    for key, spans in by_op.items():
        spans.sort()
        for (s1, e1), (s2, _) in itertools.pairwise(spans):
            if s2 < e1:
                out.append(f"{kind} {key}: {s1:.3f}-{e1:.3f} and {s2:.3f}")
    return out
