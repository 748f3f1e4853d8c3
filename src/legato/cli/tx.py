"""``legato tx ...``: operator commands that read and nudge the log.

They talk to the log directly, never to a running coordinator: requests
(retry, abort, force-end) are written to the transaction's row, and a signal to a
workflow is kept beside it; whichever coordinator drives or next claims it carries
them out.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._bounds import check_branch_id
from .._errors import DefinitionError, LegatoError
from .._model import EventRecord, Json, Mode, OpRecord, TxRecord, TxStatus
from .._redact import shown, shown_tx
from ..flow import operator_request as flow_request
from ..log import Log, TxQuery, unclaimed_since
from ..observe import hops, journal, readable, unclaimed
from ..observe.readable import span
from ..observe.timeline import build
from ..workflow import signal_record
from . import fit
from .log_access import add_log_argument, run_on_log
from .timeline import draw
from .times import parse_time

_FULL = "%Y-%m-%d %H:%M:%S"


def _when(ts: float | None, fmt: str = _FULL) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime(fmt)


def _ended(tx: TxRecord) -> str:
    if tx.ended_at is None:
        return "-"
    return f"after {span(tx.ended_at - tx.created_at)}"


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


def _limit(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 1000:
        raise argparse.ArgumentTypeError(f"a limit is 1 to 1000, not {n}")
    return n


def _json_value(text: str) -> Json:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not JSON ({exc}): {text[:100]!r}; a string is quoted: '\"yes\"'"
        ) from None


def _identifier(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        try:
            return check_branch_id(text, what)
        except DefinitionError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return check


def _tx_json(tx: TxRecord, now: float) -> dict[str, Any]:
    return {
        "gid": tx.gid,
        "mode": str(tx.mode),
        "name": tx.name,
        "title": readable.title(tx),  # its name as a person reads it
        "status": str(tx.status),
        "reason": tx.reason,
        "stuck": tx.stuck,
        "unclaimed_since": unclaimed_since(tx, now),  # due since, held by no coordinator
        "waiting_for_code": unclaimed.note(tx, now),
        "created_at": tx.created_at,
        "ended_at": tx.ended_at,
        "lease_owner": tx.lease_owner,
        "payload": tx.payload,
    }


def _op_json(o: OpRecord) -> dict[str, Any]:
    return {
        "branch": o.branch,
        "op": str(o.op),
        "status": str(o.status),
        "attempts": o.attempts,
        "error": o.error,
        "output": o.output,
        "target": o.target,
        "completed": o.completed,
    }


def _event_json(e: EventRecord) -> dict[str, Any]:
    return {
        "at": e.at,
        "kind": e.kind,
        "branch": e.branch,
        "op": e.op,
        "attempt": e.attempt,
        "detail": e.detail,
    }


# -- commands ---------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    query = TxQuery(
        status=[TxStatus(s) for s in args.status or ()],
        mode=args.mode,
        name=args.name,
        stuck=True if args.stuck else None,
        since=args.since,
        until=args.until,
        search=args.search,
        limit=args.limit,
        offset=args.offset,
    )
    rows = [shown_tx(t) for t in run_on_log(args.log, lambda log: log.list(query))]
    now = time.time()
    if args.json:
        print(json.dumps([_tx_json(t, now) for t in rows], indent=2))
        return 0
    out = fit.console(args.wide)
    cells: list[list[fit.Cell]] = []
    for t in rows:
        note = f"STUCK: {t.stuck}" if t.stuck else (t.reason or "")
        waiting = unclaimed.note(t, now)
        if waiting is not None:
            note = f"{waiting}; {note}" if note else waiting
        status = Text(str(t.status), style=_STATUS_STYLE.get(str(t.status), ""))
        created = _when(t.created_at, _FULL if args.wide else "%m-%d %H:%M:%S")
        cells.append([t.gid, status, str(t.mode), readable.title(t), created, note])
    out.print(
        fit.table(
            _LIST_COLUMNS,
            cells,
            room=fit.room(out, args.wide),
            title=f"transactions in {args.log}",
        )
    )
    if len(rows) == args.limit:
        out.print(f"(first {args.limit} from offset {args.offset}; --offset for more)")
    return 0


_LIST_COLUMNS = (
    fit.Column("gid", keep=True),
    fit.Column("status", keep=True),
    fit.Column("mode", least=4, give=3, drop=True),
    fit.Column("name", least=10, give=1),
    fit.Column("created (UTC)", least=14, give=2, drop=True),
    fit.Column("reason / stuck", least=14, give=0),
)
_STATUS_STYLE = {"succeeded": "green", "failed": "red", "aborting": "magenta", "prepared": "cyan"}


def cmd_show(args: argparse.Namespace) -> int:
    async def body(log: Log) -> tuple[TxRecord, list[OpRecord], list[EventRecord]] | None:
        loaded = await log.load(args.gid)
        if loaded is None:
            return None
        return shown(loaded[0], loaded[1], await log.events(args.gid))

    found = run_on_log(args.log, body)
    console = fit.console(args.wide)
    if found is None:
        console.print(f"[red]no transaction has gid {args.gid!r} in {args.log}[/red]")
        return 1
    tx, ops, events = found
    now = time.time()
    if args.json:
        print(
            json.dumps(
                {
                    **_tx_json(tx, now),
                    "ops": [_op_json(o) for o in ops],
                    "events": [_event_json(e) for e in events],
                },
                indent=2,
            )
        )
        return 0
    room = fit.room(console, args.wide)
    name = readable.title(tx, ops, events)
    console.print(
        f"[bold]{tx.gid}[/bold]  {tx.mode} {name!r}  status [bold]{tx.status}[/bold]",
        highlight=False,
    )
    if tx.reason:
        console.print(f"reason: {tx.reason}", highlight=False)
    if tx.stuck:
        console.print(f"[red]stuck: {tx.stuck}[/red]  (legato tx retry {tx.gid})")
    waiting = unclaimed.note(tx, now)
    if waiting is not None:
        console.print(f"[yellow]{waiting}[/yellow]", markup=True, highlight=False)
    console.print(
        f"created {_when(tx.created_at)} UTC ({readable.relative(tx.created_at, now)})  "
        f"ended {_ended(tx)}  lease {tx.lease_owner or '-'}",
        highlight=False,
    )
    if tx.mode is Mode.WORKFLOW:
        console.print(_journal_table(tx, ops, room))
    elif tx.mode is Mode.FLOW:
        console.print(_hops_table(tx, events, room))
    else:
        console.print(_ops_table(tx, ops, room))
    console.print(draw(build(tx, ops, events, now), room))
    rows = [
        [
            _clock(e.at),
            e.kind,
            f"{e.branch}.{e.op}" if e.branch else "",
            "" if e.attempt is None else str(e.attempt),
            readable.detail_text(e.detail, e.at),
        ]
        for e in events
    ]
    console.print(fit.table(_EVENT_COLUMNS, rows, room=room, title="events"))
    return 0


_EVENT_COLUMNS = (
    fit.Column("at (UTC)", keep=True),
    fit.Column("event", keep=True),
    fit.Column("branch.op", least=12, give=1),
    fit.Column("#", least=1, give=2),
    fit.Column("detail", least=24, give=0),
)
_OP_COLUMNS = (
    fit.Column("branch", least=10, give=3),
    fit.Column("op", least=6, give=4),
    fit.Column("status", keep=True),
    fit.Column("tries", least=5, give=5),
    fit.Column("last error", least=10, give=1),
    fit.Column("calls", least=8, give=0),
)
_JOURNAL_COLUMNS = (
    fit.Column("#", keep=True),
    fit.Column("entry", least=14, give=3),
    fit.Column("status", keep=True),
    fit.Column("tries", least=5, give=4),
    fit.Column("last error", least=10, give=0),
    fit.Column("detail", least=10, give=1),
    fit.Column("calls", least=6, give=2),
)
_HOP_COLUMNS = (
    fit.Column("at (UTC)", keep=True),
    fit.Column("service", least=8, give=2),
    fit.Column("event", least=12, give=3),
    fit.Column("outcome", keep=True),
    fit.Column("took", keep=True, justify="right"),
    fit.Column("detail", least=6, give=0),
)
_OP_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "running": "blue",
    "retry_wait": "yellow",
    readable.NOT_NEEDED: "dim",
    readable.NOT_REACHED: "dim",
    "ok": "green",
    "skipped": "dim",
    "not taken": "bold yellow",
}


def _status(text: str) -> Text:
    return Text(text, style=_OP_STYLE.get(text, ""))


def _ops_table(tx: TxRecord, ops: list[OpRecord], room: int | None) -> Table:
    """The ops; those that will never run (their transaction ended) say so."""
    ended = tx.status.ended
    rows: list[list[fit.Cell]] = [
        [
            o.branch,
            str(o.op),
            _status(readable.op_status(ended, o)),
            str(o.attempts),
            o.error or "",
            o.target,
        ]
        for o in ops
    ]
    return fit.table(_OP_COLUMNS, rows, room=room, title="ops")


def _hops_table(tx: TxRecord, events: list[EventRecord], room: int | None) -> Table:
    """A flow's hops: each service and the event it handled, how it came out and how
    long it took (``observe.hops``); ↩ marks those on the compensation path."""
    rows: list[list[fit.Cell]] = []
    for h in hops.hops(events, tx.created_at):
        detail = readable.detail_text(h.detail, h.at)
        event = Text(("↩ " if h.compensation else "") + h.event)
        if h.compensation:
            event.stylize("magenta")
        rows.append([_clock(h.at), h.service, event, _status(h.outcome), span(h.took), detail])
    return fit.table(_HOP_COLUMNS, rows, room=room, title="hops")


def _journal_table(tx: TxRecord, ops: list[OpRecord], room: int | None) -> Table:
    """A workflow's ops as its journal reads: each entry's position and kind, what it came
    to, then its return value and the signals sent to it (taken, or kept for a wait)."""
    rows: list[list[fit.Cell]] = []
    for e in journal.entries(tx, ops):
        o = e.op
        status = readable.op_status(tx.status.ended, o, e.status)
        rows.append(
            [e.position, e.text, _status(status), str(o.attempts), o.error or "", e.detail,
             o.target]
        )  # fmt: skip
    return fit.table(_JOURNAL_COLUMNS, rows, room=room, title="journal")


def _request(what: str) -> Callable[[argparse.Namespace], int]:
    def cmd(args: argparse.Namespace) -> int:
        request = args.status if what == "force-end" else what

        async def ask(log: Log) -> tuple[TxRecord, bool]:
            ended = await flow_request(log, args.gid, request, by="cli")
            if ended is not None:
                return ended, True
            return await log.request(args.gid, request, time.time(), by="cli"), False

        try:
            tx, done = run_on_log(args.log, ask)
        except LegatoError as exc:
            Console(stderr=True).print(f"[red]{exc}[/red]")
            return 1
        if done:  # a choreographed flow: no coordinator drives it, ended here
            Console().print(f"{tx.gid} (a choreographed flow) ended as {tx.status}")
            return 0
        Console().print(
            f"{request} requested for {tx.gid} ({tx.status}); the coordinator that drives "
            "or next claims it carries it out"
        )
        return 0

    return cmd


def cmd_signal(args: argparse.Namespace) -> int:
    # checked before the log is opened: a bad gid or value is a usage error (exit 2)
    record = signal_record(args.gid, args.name, args.value, id=args.id, now=time.time())
    try:
        tx, new = run_on_log(
            args.log, lambda log: log.signal(args.gid, record, record.updated_at, None, "cli")
        )
    except LegatoError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        return 1
    if not new:
        Console().print(f"signal {record.branch} was already kept for {tx.gid}: nothing changed")
        return 0
    Console().print(
        f"signal {args.name} kept for {tx.gid} ({tx.status}); the coordinator that drives "
        "or next claims it hands it to the workflow"
    )
    return 0


def add_commands(sub: Any) -> None:
    tx = sub.add_parser("tx", help="list, inspect and nudge transactions")
    tx_sub = tx.add_subparsers(dest="tx_command", required=True)

    ls = tx_sub.add_parser("list", help="list transactions, newest first")
    add_log_argument(ls)
    ls.add_argument("--status", action="append", choices=[str(s) for s in TxStatus])
    ls.add_argument("--mode")
    ls.add_argument("--name", help="saga name")
    ls.add_argument("--stuck", action="store_true", help="only stuck transactions")
    ls.add_argument("--since", type=parse_time, help="created at or after (ISO time or 15m, 2h...)")
    ls.add_argument("--until", type=parse_time, help="created before")
    ls.add_argument("--search", help="gids containing this text")
    ls.add_argument("--limit", type=_limit, default=50, help="at most 1000 (%(default)s)")
    ls.add_argument("--offset", type=int, default=0)
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--wide", action="store_true", help="every column whole, however wide")
    ls.set_defaults(func=cmd_list)

    show = tx_sub.add_parser("show", help="one transaction: its ops, attempts, errors, timeline")
    show.add_argument("gid")
    add_log_argument(show)
    show.add_argument("--json", action="store_true")
    show.add_argument("--wide", action="store_true", help="every column whole, however wide")
    show.set_defaults(func=cmd_show)

    for what, command, aliases, help_text in (
        ("retry", "retry", [], "retry a stuck transaction's parked ops"),
        ("abort", "cancel", ["abort"], "roll a transaction back (refused past its pivot)"),
        ("force-end", "force-end", [], "end a transaction by decree, after repairing it by hand"),
    ):
        p = tx_sub.add_parser(command, aliases=aliases, help=help_text)
        p.add_argument("gid")
        add_log_argument(p)
        if what == "force-end":
            p.add_argument("--status", required=True, choices=["succeeded", "failed"])
        p.set_defaults(func=_request(what))

    sig = tx_sub.add_parser("signal", help="send a signal to a workflow (kept until it waits)")
    sig.add_argument("gid")
    sig.add_argument("name", type=_identifier("signal"), help="the signal's name")
    add_log_argument(sig)
    sig.add_argument(
        "--value",
        type=_json_value,
        default=True,
        metavar="JSON",
        help="its value (JSON; default: true)",
    )
    sig.add_argument(
        "--id", type=_identifier("--id"), help="sending the same id again keeps it once"
    )
    sig.set_defaults(func=cmd_signal)
