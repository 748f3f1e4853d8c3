"""What both travel demos print, in process and over HTTP: the booking bar, the table of
checks, the verdict, why a trip was rolled back; and what every demo ends with, the
commands to run next on its own gids."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from legato.log import absolute_url, default_url

from .check import BOOKED, ROLLED_BACK, STUCK, Report


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


@dataclass(frozen=True, slots=True)
class Line:
    """A row of the demo's table: a count, and what it means (``detail``: a row about
    the one above it, indented)."""

    label: str
    count: int
    note: str = ""
    detail: bool = False


UNITS = {"seat": "flight", "room": "hotel", "car": "car"}


def why(reason: str | None) -> str:
    """A short cause for a rolled-back trip, from the reason in the log: a saga's
    (``car failed: sold out: no car left at ...``) or a workflow's (the failure its body
    raised, or its step's: ``sold out: no car left at ...``, ``step pay gave up ...``)."""
    text = reason or "unknown"
    step = text.split(" ", 1)[0].split(".", 1)[0]
    gave_up = re.match(r"step (\S+) gave up", text)
    if gave_up:
        step = gave_up[1]
    if "sold out" in text:
        unit = re.search(r"no (\w+) left", text)
        return f"{UNITS.get(unit[1], unit[1]) if unit else step} sold out"
    if "declined" in text:
        return "card declined"
    if "insufficient funds" in text:
        return "insufficient funds"
    if "gave up" in text:
        return f"{step} gave up after retries"
    return text


def show_checks(console: Console, report: Report) -> None:
    checks = Table(title="Consistency, read from the four services' databases")
    checks.add_column("check", no_wrap=True)
    checks.add_column("")
    checks.add_column("detail", style="dim")
    for c in report.checks:
        checks.add_row(c.name, "[green]ok[/]" if c.ok else "[bold red]FAILED[/]", c.detail)
    console.print(checks)


def show_log(console: Console, report: Report, log_url: str) -> None:
    """A travel demo's next commands: every trip, and one of each outcome."""
    examples = []
    for status in (STUCK, ROLLED_BACK, BOOKED):
        example = next((g for g, s in report.trips.items() if s == status), None)
        if example is not None:
            examples.append((example, status))
    next_steps(console, log_url, examples)


def next_steps(console: Console, log_url: str, examples: Iterable[tuple[str, str]]) -> None:
    """Where the log is, and the commands to run next: every transaction, each of
    ``examples`` (a gid of this run, and what became of it), and the dashboard. ``--log``
    is named unless the commands read this log without it. Whole lines, never wrapped:
    they are meant to be copied."""
    say = functools.partial(console.print, soft_wrap=True)
    cli = cli_name()
    flag = "" if log_url == absolute_url(default_url()) else f" --log {log_url}"
    say(f"log:      {log_url}")
    say(f"next:     {cli} tx list{flag}")
    for gid, what in examples:
        say(f"          {cli} tx show {gid}{flag}   # {what}")
    say(f"          {cli} serve{flag}   # then the dashboard: http://127.0.0.1:36789/")


def verdict(console: Console, report: Report) -> None:
    if report.ok:
        console.print("[bold green]all checks passed[/]")
    else:
        failed = ", ".join(c.name for c in report.checks if not c.ok)
        console.print(f"[bold red]consistency check failed:[/] {failed}")


def cli_name() -> str:
    """How this process was started (``.venv/bin/legato``), so the hint can be pasted."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if argv0.endswith("legato") and "/" in argv0 else "legato"
