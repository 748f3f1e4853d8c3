"""The table ``legato demo --http`` prints: trips, retries, faults, barrier skips, timing."""

from __future__ import annotations

import argparse
import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from ..check import BOOKED, ROLLED_BACK, STUCK, UNSETTLED, Report
from ..report import cli_name, show_checks, show_log, verdict
from .faults import FLAKY, LOST_REPLY, SLOW


@dataclass
class Booking:
    """What the demo saw of the trips, through the coordinator's API."""

    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    elapsed: float = 0.0
    errors: list[str] = field(default_factory=list)  # calls to the coordinator that failed


def _merged(stats: dict[str, dict[str, Any]], name: str) -> Counter[str]:
    total: Counter[str] = Counter()
    for s in stats.values():
        total.update(s.get(name, {}))
    return total


def show(
    console: Console,
    args: argparse.Namespace,
    booking: Booking,
    stats: dict[str, dict[str, Any]],
    report: Report,
    *,
    log: str,
    databases: dict[str, str],
    startup: float,
    total: float,
) -> None:
    n = sum(booking.outcomes.values())
    table = Table(title=f"Legato demo over HTTP: {n} trips, seed {args.seed}", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(style="dim")

    def row(label: str, count: int | str, note: str = "") -> None:
        table.add_row(f"[bold]{label}", str(count), note)

    def detail(label: str, count: int, note: str = "") -> None:
        table.add_row(f"[dim]  {label}[/]", f"[dim]{count}[/]", note)

    row("booked", booking.outcomes[BOOKED])
    row("rolled back", booking.outcomes[ROLLED_BACK], "undone in reverse order")
    for why, count in booking.reasons.most_common():
        detail(why, count)
    stuck = booking.outcomes[STUCK]
    row("stuck", stuck, "waiting for an operator" if stuck else "")
    if booking.outcomes[UNSETTLED]:
        row("not settled", booking.outcomes[UNSETTLED], "in time, or the API call failed")
    row("retries", booking.retries, "op attempts after the first")
    faults = _merged(stats, "faults")
    row(
        "faults injected",
        faults[FLAKY] + faults[SLOW] + faults[LOST_REPLY],
        "by the payment service",
    )
    detail("answered 503", faults[FLAKY], "did nothing; retried")
    detail("held past the timeout", faults[SLOW], "abandoned and retried; landed late")
    detail("reply lost (500)", faults[LOST_REPLY], "took effect; retried")
    barrier = _merged(stats, "barrier")
    skips = barrier["duplicate"] + barrier["null_compensation"] + barrier["hanging"]
    row("barrier skips", skips, "calls the services' barriers made no-ops")
    detail("duplicate", barrier["duplicate"], "delivered again")
    detail("null compensation", barrier["null_compensation"], "undo of what never ran")
    detail("hanging", barrier["hanging"], "action after its undo: refused")
    rate = n / booking.elapsed if booking.elapsed else 0.0
    row("elapsed", f"{booking.elapsed:.1f} s", f"{rate:.0f} trips/s over HTTP")
    detail_text = f"{startup:.1f} s to start 5 processes"
    table.add_row("[dim]  in all[/]", f"[dim]{total:.1f} s[/]", detail_text)
    console.print(table)

    show_checks(console, report)
    say = functools.partial(console.print, soft_wrap=True)
    for error in booking.errors[:3]:
        say(f"[red]coordinator call failed:[/] {error}")
    say(f"services: {', '.join(databases.values())}")
    show_log(console, report, log)
    say(f"again:    {cli_name()} demo --http --check-only --dir {args.dir.resolve()}")
    verdict(console, report)
