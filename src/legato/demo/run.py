"""`legato demo`: book trips through four in-process services while faults are injected,
then check, from the services' own databases, that every trip is all or nothing."""

from __future__ import annotations

import argparse
import asyncio
import functools
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..coordinator import Coordinator
from ..log.sqlite import path_from_url
from .check import BOOKED, MANIFEST, ROLLED_BACK, STUCK, UNSETTLED, Report, check, write_manifest
from .faults import Faults
from .services import DATABASES, Services
from .trip import trip_saga
from .workload import Trip, make_trips, plan_inventory

RESULT_TIMEOUT = 60.0  # per trip; a trip not settled by then is reported, not waited for


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a rate is a fraction between 0 and 1, not {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _service_db(text: str) -> tuple[str, str]:
    kind, _, url = text.partition("=")
    kinds = ("flights", "hotels", "cars", "payments")
    if kind not in kinds or "://" not in url:
        raise argparse.ArgumentTypeError(f"expected KIND=URL, KIND one of {kinds}, not {text}")
    return kind, url


class _Merge(argparse.Action):
    """Collect repeated KIND=URL options into one dict."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        merged: dict[str, str] = dict(getattr(namespace, self.dest) or {})
        assert isinstance(values, tuple)
        merged[str(values[0])] = str(values[1])
        setattr(namespace, self.dest, merged)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        nargs="?",
        choices=("travel", "shop"),
        default="travel",
        help="travel (default): the saga of four services; shop: a choreographed saga "
        "over a broker (--broker)",
    )
    parser.add_argument(
        "--broker",
        choices=("rabbitmq", "nats", "redis"),
        default="redis",
        help="shop: the broker the services talk through (default redis, on its local port)",
    )
    parser.add_argument("--n", type=_positive, default=200, help="trips to book (default 200)")
    parser.add_argument(
        "--orders", type=_positive, default=60, help="shop: orders to place (default 60)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for trips and faults (default 1)")
    parser.add_argument(
        "--concurrency", type=_positive, default=32, help="trips in flight at once (default 32)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("legato-demo"),
        help="where the services' databases go (default ./legato-demo)",
    )
    parser.add_argument(
        "--log", metavar="URL", help="the coordinator's log (default sqlite:///DIR/legato.db)"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the databases and log of earlier runs (default: start afresh)",
    )
    parser.add_argument(
        "--http",
        action="store_true",
        help="run the services and the coordinator (legato serve) as separate processes, "
        "talking HTTP",
    )
    parser.add_argument(
        "--service-db",
        metavar="KIND=URL",
        type=_service_db,
        action=_Merge,
        help="with --http: a service's database as a SQLAlchemy URL, e.g. "
        "payments=postgresql+psycopg://localhost/pay (default: a SQLite file in --dir)",
    )
    parser.add_argument(
        "--check-only",
        action="store_true",
        help="book nothing: check the databases an earlier run left in --dir",
    )
    faults = parser.add_argument_group("faults (rates are fractions, 0 to 1)")
    faults.add_argument(
        "--sold-out",
        type=_rate,
        default=0.15,
        help="how far short of the demand each city's car fleet is (default 0.15)",
    )
    faults.add_argument(
        "--flaky",
        type=_rate,
        default=0.2,
        help="payment calls that fail before reaching the service (default 0.2)",
    )
    faults.add_argument(
        "--lost-reply",
        type=_rate,
        default=0.05,
        help="payment calls that take effect but whose reply is lost (default 0.05)",
    )
    faults.add_argument(
        "--slow",
        type=_rate,
        default=0.05,
        help="payment calls held up past the step's timeout (default 0.05)",
    )
    faults.add_argument(
        "--decline", type=_rate, default=0.05, help="trips whose card is declined (default 0.05)"
    )
    faults.add_argument(
        "--stuck-rate",
        type=_rate,
        default=0.0,
        help="trips declined whose hotel then refuses to cancel: they stay "
        "stuck for an operator (default 0)",
    )


@dataclass(frozen=True, slots=True)
class Tally:
    outcomes: Counter[str]
    reasons: Counter[str]
    retries: int
    elapsed: float


def main(args: argparse.Namespace) -> int:
    if args.scenario == "shop":
        from .shop.show import main as shop

        return shop(args)
    if args.http:
        from .http.demo import main as over_http

        return over_http(args)
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    directory: Path = args.dir.resolve()
    if args.check_only:
        if not (directory / MANIFEST).exists():
            console.print(f"[bold red]nothing to check:[/] no demo run in {directory}")
            return 2
        report = await check(directory)
        _show_checks(console, report)
        _verdict(console, report)
        return 0 if report.ok else 1
    log_url = _absolute(args.log or f"sqlite:///{directory / 'legato.db'}")
    if log_url.startswith("memory:"):
        console.print(
            "[bold red]--log:[/] the check reads the log after the run: "
            "use sqlite:///... or postgresql://..."
        )
        return 2
    fresh = not args.keep and _wipe(directory, log_url)
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
    services = Services.open(directory, faults, plan_inventory(trips, args.seed, args.sold_out))
    write_manifest(
        directory,
        log_url,
        [t.gid for t in trips],
        [t.gid for t in trips if faults.stuck_trip(t.gid)],
    )
    try:
        tally = await _book(console, log_url, services, trips, args.concurrency)
    finally:
        # attempts the coordinator gave up on (timeouts) may still be running: let them
        # land before the databases are read, to show that they change nothing
        services.wait_idle()
        services.close()
    report = await check(directory)
    _show(console, args, tally, faults, report, log_url, directory)
    return 0 if report.ok else 1


def _absolute(log_url: str) -> str:
    """A SQLite URL with an absolute path: the check may run from another directory."""
    if not log_url.startswith("sqlite:"):
        return log_url
    return f"sqlite:///{Path(path_from_url(log_url)).resolve()}"


def _wipe(directory: Path, log_url: str) -> bool:
    """Delete the services' databases, and the log if it is a SQLite file of this
    directory. Whether the log was wiped (a log elsewhere is never deleted)."""
    files = [directory / name for name in (*DATABASES.values(), MANIFEST)]
    log_path = Path(path_from_url(log_url)).resolve() if log_url.startswith("sqlite:") else None
    ours = log_path is not None and log_path.parent == directory
    if ours and log_path is not None:
        files.append(log_path)
    for f in files:
        for extra in ("", "-wal", "-shm", "-journal"):
            Path(f"{f}{extra}").unlink(missing_ok=True)
    return ours


def booking_progress(console: Console) -> Progress:
    """The bar both demos show while trips are booked (a tally beside the count)."""
    return Progress(
        TextColumn("[bold]booking trips"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tally]}"),
        TimeElapsedColumn(),
        console=console,
    )


async def _book(
    console: Console, log_url: str, services: Services, trips: list[Trip], concurrency: int
) -> Tally:
    saga = trip_saga(services)
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    gate = asyncio.Semaphore(concurrency)
    progress = booking_progress(console)
    task = progress.add_task("trips", total=len(trips), tally="")

    async def book(coordinator: Coordinator, trip: Trip) -> None:
        async with gate:
            handle = await coordinator.submit(saga, trip.payload, gid=trip.gid)
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
            reasons[_why(outcome.reason)] += 1
        progress.update(task, tally=", ".join(f"{n} {what}" for what, n in outcomes.items()))

    async with Coordinator(log_url) as coordinator:
        started = time.perf_counter()
        with progress:
            await asyncio.gather(*(book(coordinator, t) for t in trips))
        elapsed = time.perf_counter() - started
        retries = 0
        for t in trips:
            _, ops = await coordinator.get(t.gid)
            retries += sum(max(0, o.attempts - 1) for o in ops)
    return Tally(outcomes, reasons, retries, elapsed)


def _why(reason: str | None) -> str:
    """A short cause for a rolled-back trip, from the reason in the log."""
    text = reason or "unknown"
    step = text.split(" ", 1)[0].split(".", 1)[0]
    if "sold out" in text:
        return f"{step} sold out"
    if "declined" in text:
        return "card declined"
    if "insufficient funds" in text:
        return "insufficient funds"
    if "gave up" in text:
        return f"{step} gave up after retries"
    return text


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
    trips = Table(title=f"Legato demo: {n} trips, seed {args.seed}", show_header=False)
    trips.add_column(no_wrap=True)
    trips.add_column(justify="right", no_wrap=True)
    trips.add_column(style="dim")

    def detail(label: str, count: int, note: str = "") -> None:
        trips.add_row(f"[dim]  {label}[/]", f"[dim]{count}[/]", note)

    trips.add_row("[bold]booked", str(tally.outcomes[BOOKED]), "")
    trips.add_row("[bold]rolled back", str(tally.outcomes[ROLLED_BACK]), "undone in reverse order")
    for why, count in tally.reasons.most_common():
        detail(why, count)
    stuck = tally.outcomes[STUCK]
    trips.add_row("[bold]stuck", str(stuck), "waiting for an operator" if stuck else "")
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

    _show_checks(console, report)
    # whole lines, never wrapped: they are meant to be copied
    say = functools.partial(console.print, soft_wrap=True)
    say(f"services: {directory}/{{{','.join(DATABASES.values())}}}")
    say(f"log:      {log_url}")
    cli = _cli_name()
    say(f"inspect:  {cli} tx list --log {log_url}")
    for status in (STUCK, ROLLED_BACK, BOOKED):
        example = next((g for g, s in report.trips.items() if s == status), None)
        if example is not None:
            say(f"          {cli} tx show {example} --log {log_url}   # {status}")
    _verdict(console, report)


def _show_checks(console: Console, report: Report) -> None:
    checks = Table(title="Consistency, read from the four services' databases")
    checks.add_column("check", no_wrap=True)
    checks.add_column("")
    checks.add_column("detail", style="dim")
    for c in report.checks:
        checks.add_row(c.name, "[green]ok[/]" if c.ok else "[bold red]FAILED[/]", c.detail)
    console.print(checks)


def _verdict(console: Console, report: Report) -> None:
    if report.ok:
        console.print("[bold green]all checks passed[/]")
    else:
        failed = ", ".join(c.name for c in report.checks if not c.ok)
        console.print(f"[bold red]consistency check failed:[/] {failed}")


def _cli_name() -> str:
    """How this process was started (``.venv/bin/legato``), so the hint can be pasted."""
    import sys

    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if argv0.endswith("legato") and "/" in argv0 else "legato"
