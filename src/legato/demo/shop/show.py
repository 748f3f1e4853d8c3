"""``legato demo shop``'s output: the run, then the consistency table."""

from __future__ import annotations

import argparse
import asyncio
import time

from rich.console import Console
from rich.table import Table
from rich.text import Text

from legato.log import absolute_url

from ..report import next_steps
from .run import run_shop


def main(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    directory = args.dir.resolve() / "shop"
    log_url = absolute_url(args.log)
    n = args.orders
    console.print(
        f"[bold]The shop[/]: {n} orders through four services (orders, payments, inventory, "
        f"notify), each with its own database, talking only through {args.broker}; "
        "consumers crash before their ack at random."
    )
    started = time.perf_counter()
    try:
        report = asyncio.run(run_shop(directory, args.broker, n=n, seed=args.seed, log_url=log_url))
    except Exception as exc:  # a broker that is not there, say
        console.print(f"[bold red]the shop could not run:[/] {exc}")
        return 2
    elapsed = time.perf_counter() - started
    console.print(
        f"{report.confirmed} confirmed, {report.cancelled} cancelled (payment declined, or sold "
        f"out and refunded) in {elapsed:.1f} s; {report.crashes} consumer crashes before an "
        f"ack, {report.redelivered} redeliveries skipped by the inboxes"
    )
    table = Table(
        title=f"Consistency, read from the four services' databases ({directory})",
        box=None,
        pad_edge=False,
        title_justify="left",
        show_header=False,
    )  # two columns, so that each check fits a narrow terminal (its detail wraps under it)
    table.add_column("", no_wrap=True)
    table.add_column("check")
    for c in report.checks:
        outcome = "[green]ok[/]" if c.ok else "[bold red]FAILED[/]"
        table.add_row(outcome, Text.assemble(c.name, (f": {c.detail}", "dim")))
    console.print(table)
    # each order is one flow in the log: one of each outcome, by its gid
    next_steps(console, log_url, [(gid, f"order {s}") for s, gid in report.examples.items()])
    if report.ok:
        console.print("[bold green]all checks passed[/]")
        return 0
    console.print("[bold red]consistency check failed[/]")
    return 1
