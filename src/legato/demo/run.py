"""`legato demo`: book trips through four in-process services while faults are injected,
then check, from the services' own databases, that every trip is all or nothing. The
trips are sagas, or with ``--workflow`` workflows (``booking`` has both ways)."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from legato import Coordinator
from legato.log import outlives_process

from .approver import Approver
from .booking import Booking, SagaBooking, WorkflowBooking
from .check import BOOKED, MANIFEST, ROLLED_BACK, STUCK, UNSETTLED, Report, check, write_manifest
from .directory import absolute_log_url, ready_for_run
from .faults import Faults
from .report import Line, booking_progress, show_checks, show_log, verdict, why
from .services import DATABASES, Services
from .trip import trip_saga
from .workload import Trip, make_trips, plan_inventory

RESULT_TIMEOUT = 60.0  # per trip; a trip not settled by then is reported, not waited for


@dataclass(frozen=True, slots=True)
class Tally:
    outcomes: Counter[str]
    reasons: Counter[str]
    retries: int
    elapsed: float
    lines: list[Line]  # the booking's own rows (the workflow's fall-backs and approvals)


def main(args: argparse.Namespace) -> int:
    """Book the trips of ``args`` (``legato demo``'s, see ``command``) and check them."""
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    directory: Path = args.dir.resolve()
    if args.check_only:
        if not (directory / MANIFEST).exists():
            console.print(f"[bold red]nothing to check:[/] no demo run in {directory}")
            return 2
        report = await check(directory)
        show_checks(console, report)
        verdict(console, report)
        return 0 if report.ok else 1
    log_url = absolute_log_url(args.log)
    if not outlives_process(log_url):
        console.print(
            "[bold red]--log:[/] the check reads the log after the run: "
            "use sqlite:///... or postgresql://..."
        )
        return 2
    fresh = ready_for_run(directory, log_url, args.keep)
    # gids must be new to the log: on a log kept from earlier runs, tag this run's
    prefix = f"trip-{args.seed}" if fresh else f"trip-{args.seed}-{secrets.token_hex(3)}"
    faults = Faults(
        seed=args.seed,
        flaky=args.flaky,
        lost_reply=args.lost_reply,
        slow=args.slow,
        decline=args.decline,
        stuck=args.stuck_rate,
    )
    trips = make_trips(args.n, args.seed, prefix)
    inventory = plan_inventory(
        trips, args.seed, args.sold_out, "hotels" if args.workflow else "cars"
    )
    services = Services.open(directory, faults, inventory)
    write_manifest(
        directory,
        log_url,
        [t.gid for t in trips],
        [t.gid for t in trips if faults.stuck_trip(t.gid)],
    )
    booking: Booking = SagaBooking(trip_saga(services))
    if args.workflow:
        approver = Approver(faults.draw, args.refuse, args.unanswered)
        over = round(args.approve_over * 100)
        booking = WorkflowBooking(services, str(directory), approver, over, args.approval_wait)
    try:
        tally = await _book(console, log_url, booking, trips, args.concurrency)
    finally:
        # attempts the coordinator gave up on (timeouts) may still be running: let them
        # land before the databases are read, to show that they change nothing
        services.wait_idle()
        services.close()
    report = await check(directory)
    _show(console, args, tally, faults, report, log_url, directory)
    return 0 if report.ok else 1


async def _book(
    console: Console, log_url: str, booking: Booking, trips: list[Trip], concurrency: int
) -> Tally:
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)
    progress = booking_progress(console)
    task = progress.add_task("trips", total=len(trips), tally="")

    async def book(coordinator: Coordinator, trip: Trip) -> None:
        async with gate:
            handle = await booking.start(coordinator, trip)
            try:
                outcome = await handle.result(timeout=RESULT_TIMEOUT)
            except TimeoutError:
                outcomes[UNSETTLED] += 1
                return
            finally:
                progress.advance(task)
        if outcome.stuck is not None and not outcome.status.ended:
            outcomes[STUCK] += 1
        elif outcome.succeeded:
            outcomes[BOOKED] += 1
        else:
            outcomes[ROLLED_BACK] += 1
            reasons[why(outcome.reason)] += 1
        progress.update(task, tally=", ".join(f"{n} {what}" for what, n in outcomes.items()))

    async with Coordinator(log_url) as coordinator, booking.running(coordinator):
        started = time.perf_counter()
        with progress:
            await asyncio.gather(*(book(coordinator, t) for t in trips))
        elapsed = time.perf_counter() - started
        retries = 0
        ops = {}
        for t in trips:
            _, ops[t.gid] = await coordinator.get(t.gid)
            retries += sum(max(0, o.attempts - 1) for o in ops[t.gid])
    return Tally(outcomes, reasons, retries, elapsed, booking.lines(ops))


def _show(
    console: Console,
    args: argparse.Namespace,
    tally: Tally,
    faults: Faults,
    report: Report,
    log_url: str,
    directory: Path,
) -> None:
    n = sum(tally.outcomes.values())
    how = " as workflows" if args.workflow else ""
    trips = Table(title=f"Legato demo: {n} trips{how}, seed {args.seed}", show_header=False)
    trips.add_column(no_wrap=True)
    trips.add_column(justify="right", no_wrap=True)
    trips.add_column(style="dim")

    def detail(label: str, count: int, note: str = "") -> None:
        trips.add_row(f"[dim]  {label}[/]", f"[dim]{count}[/]", note)

    trips.add_row("[bold]booked", str(tally.outcomes[BOOKED]), "")
    trips.add_row("[bold]rolled back", str(tally.outcomes[ROLLED_BACK]), "undone in reverse order")
    for cause, count in tally.reasons.most_common():
        detail(cause, count)
    stuck = tally.outcomes[STUCK]
    trips.add_row("[bold]stuck", str(stuck), "waiting for an operator" if stuck else "")
    for line in tally.lines:
        if line.detail:
            detail(line.label, line.count, line.note)
        else:
            trips.add_row(f"[bold]{line.label}", str(line.count), line.note)
    if tally.outcomes[UNSETTLED]:
        trips.add_row(
            "[bold]not settled", str(tally.outcomes[UNSETTLED]), f"after {RESULT_TIMEOUT:.0f} s"
        )
    trips.add_row("[bold]retries", str(tally.retries), "op attempts after the first")
    injected = faults.injected
    total = injected["flaky"] + injected["slow"] + injected["lost_reply"]
    trips.add_row("[bold]faults injected", str(total), "into payment calls")
    detail("payment unavailable", injected["flaky"], "retried")
    detail("payment timed out", injected["slow"], "abandoned and retried; lands late")
    detail("reply lost", injected["lost_reply"], "took effect; retried")
    trips.add_row(
        "[bold]repeats absorbed", str(report.repeats), "redeliveries the barriers made no-ops"
    )
    trips.add_row("[bold]elapsed", f"{tally.elapsed:.1f} s", f"{n / tally.elapsed:.0f} trips/s")
    console.print(trips)

    show_checks(console, report)
    # a whole line, never wrapped: it is meant to be copied
    console.print(f"services: {directory}/{{{','.join(DATABASES.values())}}}", soft_wrap=True)
    show_log(console, report, log_url)
    verdict(console, report)
