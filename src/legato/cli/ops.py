"""The log's upkeep: ``legato migrate`` (build or upgrade its schema), ``legato stats``
(the dashboard's header in a terminal) and ``legato purge`` (retention: ended
transactions in the log, barrier rows in a participant's database)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from .._model import TxStatus
from ..log import UNCLAIMED_GRACE, Log, LogSummary, open_log
from ..log.base import purge_in_batches
from ..observe.unclaimed import summary_note
from .log_access import add_log_argument, run_on_log
from .times import parse_age


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


_UNENDED = [st for st in TxStatus if not st.ended]  # the summary counts these by status


def summary_json(s: LogSummary, now: float, window: float) -> dict[str, Any]:
    return {
        "counts": {str(st): s.counts.get(str(st), 0) for st in _UNENDED},
        "unfinished": s.unfinished,
        "stuck": s.stuck,
        "oldest_unfinished_age_s": None
        if s.oldest_unfinished_at is None
        else round(now - s.oldest_unfinished_at, 3),
        "window_s": window,
        "started": s.started,
        "ended": {str(st): s.ended.get(str(st), 0) for st in TxStatus if st.ended},
        "started_per_s": round(s.started / window, 3),
        "ended_per_s": round(sum(s.ended.values()) / window, 3),
        "unclaimed": [  # due past the grace, held by no coordinator: by mode and name
            {"mode": u.mode, "name": u.name, "count": u.count, "due_s": round(now - u.due_since, 3)}
            for u in s.unclaimed
        ],
    }


def cmd_migrate(args: argparse.Namespace) -> int:
    applied = _migrate(args.log)
    console = Console()
    if applied:
        for name in applied:
            console.print(f"applied {name}")
    else:
        console.print("the log's schema is up to date")
    return 0


def _migrate(url: str) -> list[str]:
    async def main() -> list[str]:
        log = open_log(url, auto_migrate=False)
        applied = await log.migrate()
        await log.close()
        return applied

    return asyncio.run(main())


def cmd_stats(args: argparse.Namespace) -> int:
    now = time.time()

    async def body(log: Log) -> LogSummary:
        return await log.summary(now - args.window, unclaimed_before=now - UNCLAIMED_GRACE)

    s = run_on_log(args.log, body)
    data = summary_json(s, now, args.window)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    console = Console()
    counts = Table(title=f"unfinished transactions in {args.log}")
    for st in _UNENDED:
        counts.add_column(str(st), justify="right")
    counts.add_column("stuck", justify="right", style="red" if s.stuck else "")
    counts.add_column("waiting for code", justify="right", style="yellow" if s.unclaimed else "")
    counts.add_column("oldest unfinished", justify="right")
    counts.add_row(
        *(str(data["counts"][str(st)]) for st in _UNENDED),
        str(s.stuck),
        str(s.unclaimed_total),
        _age(data["oldest_unfinished_age_s"]),
    )
    console.print(counts)
    for u in s.unclaimed:
        console.print(f"[yellow]{summary_note(u, now)}[/yellow]", highlight=False)
    rates = Table(title=f"the last {_age(args.window)}")
    for col in ("started", "succeeded", "failed", "started/s", "ended/s"):
        rates.add_column(col, justify="right")
    rates.add_row(
        str(s.started),
        str(data["ended"]["succeeded"]),
        str(data["ended"]["failed"]),
        f"{data['started_per_s']:.2f}",
        f"{data['ended_per_s']:.2f}",
    )
    console.print(rates)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    console = Console()
    total = 0
    if args.barrier:
        total = _purge_barrier(args.barrier, args.older_than, args.batch)
        console.print(f"deleted {total} barrier rows older than {_age(args.older_than)}")
        return 0

    cutoff = time.time() - args.older_than
    total = run_on_log(args.log, lambda log: purge_in_batches(log, cutoff, args.batch, args.pause))
    console.print(f"deleted {total} transactions that ended over {_age(args.older_than)} ago")
    return 0


def _purge_barrier(url: str, older_than: float, batch: int) -> int:
    """One transaction per batch (``barrier.purge`` commits each)."""
    from sqlalchemy import create_engine

    from ..participant import barrier

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return barrier.purge(conn, older_than, batch)
    finally:
        engine.dispose()


def add_migrate_command(sub: Any) -> None:
    migrate = sub.add_parser("migrate", help="build or upgrade the log's schema")
    add_log_argument(migrate)
    migrate.set_defaults(func=cmd_migrate)


def add_commands(sub: Any) -> None:
    """``stats`` and ``purge`` (``migrate`` comes first in the command list, on its own)."""
    stats = sub.add_parser("stats", help="counts and rates of the log's transactions")
    add_log_argument(stats)
    stats.add_argument(
        "--window", type=parse_age, default=60.0, help="rates over this span (60s, 5m...)"
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)

    purge = sub.add_parser(
        "purge",
        help="delete old ended transactions from the log, or old barrier rows",
        description=(
            "Retention, in batches with a pause between them so the coordinators' own "
            "writes go in between. Unended transactions are never deleted. With "
            "--barrier URL (a SQLAlchemy URL of a participant's database), delete its "
            "barrier rows instead: keep them longer than any retry of their ops may "
            "arrive."
        ),
    )
    add_log_argument(purge)
    purge.add_argument(
        "--older-than", type=parse_age, required=True, help="an age: 3600, 90m, 12h, 7d"
    )
    purge.add_argument("--barrier", metavar="DB_URL", help="purge this database's barrier rows")
    purge.add_argument("--batch", type=int, default=500)
    purge.add_argument("--pause", type=float, default=0.05, help="seconds between batches")
    purge.set_defaults(func=cmd_purge)
