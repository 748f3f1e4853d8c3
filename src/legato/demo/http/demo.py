"""``legato demo --http``: book trips through four service processes and ``legato serve``.

The same trips, inventory, faults and consistency check as the in-process demo,
but every hop is real: the demo submits each trip to the coordinator's native
API (``POST /v1/sagas``), the coordinator calls the services over HTTP, and each
service runs its SQL in the barrier of its own database. Afterwards the demo
stops every process and reads the verdict from the databases they left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from legato import open_log
from legato.log import outlives_process

from ..check import BOOKED, MANIFEST, ROLLED_BACK, STUCK, UNSETTLED, write_manifest
from ..directory import absolute_log_url, ready_for_run
from ..faults import Faults
from ..report import booking_progress, show_checks, verdict, why
from ..services import DATABASES
from ..workload import Inventory, Trip, make_trips, plan_inventory
from . import store
from .apps import KINDS
from .check import SERVICES, check, write_services
from .processes import Child, StartError, coordinator_args, free_port, service_args, stop_all
from .saga import SLOW_SECONDS, prices, saga_body
from .service import stock_of
from .show import Booking, show

RESULT_TIMEOUT = 60.0  # per trip; a trip not settled by then is reported, not waited for
IDLE_TIMEOUT = SLOW_SECONDS * 3 + 5  # for calls still on their way once every trip settled


@dataclass(frozen=True, slots=True)
class Plan:
    """One run, ready to start: where everything goes, and what is booked."""

    directory: Path
    log_url: str
    databases: dict[str, str]  # kind -> SQLAlchemy URL
    trips: list[Trip]
    inventory: Inventory
    faults: Faults


def main(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    directory: Path = args.dir.resolve()
    if args.check_only:
        if not (directory / MANIFEST).exists() or not (directory / SERVICES).exists():
            console.print(f"[bold red]nothing to check:[/] no --http demo run in {directory}")
            return 2
        report = asyncio.run(check(directory))
        show_checks(console, report)
        verdict(console, report)
        return 0 if report.ok else 1
    log_url = absolute_log_url(args.log)
    if not outlives_process(log_url):
        console.print("[bold red]--log:[/] the coordinator is its own process: use a database")
        return 2
    try:
        return asyncio.run(_run(console, args, prepare(args, directory, log_url)))
    except StartError as exc:
        console.print(f"[bold red]could not start:[/] {exc}", soft_wrap=True)
        return 2


def prepare(args: argparse.Namespace, directory: Path, log_url: str) -> Plan:
    """Wipe the last run (unless ``--keep``), plan the trips, write what the services
    start with and what the check will read."""
    directory.mkdir(parents=True, exist_ok=True)
    databases = {kind: f"sqlite:///{directory / DATABASES[kind]}" for kind in KINDS}
    databases.update(args.service_db or {})
    fresh = ready_for_run(directory, log_url, args.keep)
    if not args.keep:
        for url in databases.values():
            store.reset(url)  # a SQLite file is gone already: this makes it empty
    # gids must be new to the log: on a log kept from earlier runs, tag this run's
    prefix = f"trip-{args.seed}" if fresh else f"trip-{args.seed}-{secrets.token_hex(3)}"
    faults = Faults(
        seed=args.seed,
        flaky=args.flaky,
        lost_reply=args.lost_reply,
        slow=args.slow,
        decline=args.decline,
        stuck=args.stuck_rate,
        slow_seconds=SLOW_SECONDS,
    )
    trips = make_trips(args.n, args.seed, prefix)
    inventory = plan_inventory(trips, args.seed, args.sold_out)
    for kind in KINDS:
        (directory / f"{kind}.stock.json").write_text(json.dumps(stock_of(inventory, kind)))
    write_manifest(
        directory,
        log_url,
        [t.gid for t in trips],
        [t.gid for t in trips if faults.stuck_trip(t.gid)],
    )
    write_services(directory, databases)
    return Plan(directory, log_url, databases, trips, inventory, faults)


def _start(plan: Plan) -> list[Child]:
    """Start the four services, then the coordinator (the last of the list)."""
    children: list[Child] = []
    try:
        for kind in KINDS:
            port = free_port()
            stock = plan.directory / f"{kind}.stock.json"
            options = _fault_options(kind, plan.faults)
            command = service_args(kind, plan.databases[kind], port, stock, options)
            children.append(Child.spawn(kind, command, port, plan.directory / f"{kind}.log"))
        port = free_port()
        command = coordinator_args(plan.log_url, port)
        log = plan.directory / "legato-serve.log"
        children.append(Child.spawn("legato serve", command, port, log))
    except BaseException:
        stop_all(children)
        raise
    return children


async def _run(console: Console, args: argparse.Namespace, plan: Plan) -> int:
    started = time.perf_counter()
    children = _start(plan)
    try:
        async with httpx.AsyncClient() as client:
            await asyncio.gather(*(c.ready(client) for c in children))
        up = time.perf_counter() - started
        coordinator = children[-1].url
        services = {c.name: c.url for c in children[:-1]}
        booking = await _book(console, coordinator, services, plan, args.concurrency)
        stats = await _settle(services)
    finally:
        stop_all(children)
    booking.retries = await _retries(plan.log_url, [t.gid for t in plan.trips])
    report = await check(plan.directory)
    total = time.perf_counter() - started
    show(
        console,
        args,
        booking,
        stats,
        report,
        log=plan.log_url,
        databases=plan.databases,
        startup=up,
        total=total,
    )
    return 0 if report.ok else 1


def _fault_options(kind: str, faults: Faults) -> list[str]:
    """The fault rates each service is started with (the seed makes them strike alike)."""
    seed = ["--seed", str(faults.seed)]
    if kind == "payments":
        return [
            *seed,
            *("--flaky", str(faults.flaky), "--lost-reply", str(faults.lost_reply)),
            *("--slow", str(faults.slow), "--slow-seconds", str(faults.slow_seconds)),
            *("--decline", str(faults.decline), "--stuck-rate", str(faults.stuck)),
        ]
    if kind == "hotels":
        return [*seed, "--stuck-rate", str(faults.stuck)]
    return []


async def _book(
    console: Console,
    coordinator: str,
    services: dict[str, str],
    plan: Plan,
    concurrency: int,
) -> Booking:
    """Submit every trip (``concurrency`` at a time) and wait for each to settle."""
    price = prices(plan.inventory)
    trips = plan.trips
    booking = Booking()
    gate = asyncio.Semaphore(concurrency)
    progress = booking_progress(console)
    task = progress.add_task("trips", total=len(trips), tally="")

    async def book(client: httpx.AsyncClient, trip: Trip) -> None:
        body = saga_body(trip, services, price, RESULT_TIMEOUT)
        async with gate:
            try:
                outcome = await _submit(client, body)
            except httpx.HTTPError as exc:
                booking.errors.append(f"{trip.gid}: {type(exc).__name__} {exc}")
                outcome = None
            finally:
                progress.advance(task)
        _tally(booking, outcome)
        tally = ", ".join(f"{n} {what}" for what, n in booking.outcomes.items())
        progress.update(task, tally=tally)

    limits = httpx.Limits(max_connections=concurrency * 2)
    timeout = httpx.Timeout(RESULT_TIMEOUT + 10, connect=10)
    async with httpx.AsyncClient(base_url=coordinator, limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        with progress:
            await asyncio.gather(*(book(client, t) for t in trips))
        booking.elapsed = time.perf_counter() - started
    return booking


async def _submit(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any] | None:
    """Submit one trip and wait for it; its outcome, or None if it did not settle in time."""
    response = await client.post("/v1/sagas", json=body)
    response.raise_for_status()
    outcome: dict[str, Any] = response.json()
    return outcome if outcome.get("settled") else None


async def _retries(log_url: str, gids: list[str]) -> int:
    """Op attempts after the first, read from the log once the coordinator has stopped
    (asking its API for each trip would load it while it books the others)."""
    log = open_log(log_url, auto_migrate=False)
    await log.open()
    try:
        total = 0
        for gid in gids:
            loaded = await log.load(gid)
            total += sum(max(0, o.attempts - 1) for o in loaded[1]) if loaded else 0
        return total
    finally:
        await log.close()


def _tally(booking: Booking, outcome: dict[str, Any] | None) -> None:
    if outcome is None:
        booking.outcomes[UNSETTLED] += 1
    elif outcome["status"] == "succeeded":
        booking.outcomes[BOOKED] += 1
    elif outcome["status"] == "failed":
        booking.outcomes[ROLLED_BACK] += 1
        booking.reasons[why(outcome.get("reason"))] += 1
    else:
        booking.outcomes[STUCK] += 1


async def _settle(services: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Wait for calls the coordinator gave up on (held up by a fault) to land, then read
    each service's counts: the check should see what the late calls did (nothing)."""
    stats: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + IDLE_TIMEOUT
    async with httpx.AsyncClient(timeout=5) as client:
        for kind, url in services.items():
            while True:
                try:
                    stats[kind] = (await client.get(f"{url}/stats")).json()
                except httpx.HTTPError:
                    stats[kind] = {}
                    break
                if stats[kind].get("in_flight", 0) == 0 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.05)
    return stats
