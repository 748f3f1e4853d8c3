"""``legato replay``: run the current code of a workflow against the journals stored in
a log (or in a file exported from one) without calling any step, and fail at the first
divergence: the check to put in CI before deploying a change to a workflow.

    legato replay shop.workflows:book_trip --log postgresql://...
    legato replay shop.workflows:book_trip --log ... --export journals.json
    legato replay shop.workflows:book_trip --from journals.json
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from .._errors import LegatoError
from .._model import Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from ..log import Log, TxQuery
from ..workflow import Replayed, WorkflowDefinition, replay
from .log_access import add_log_argument, run_on_log

Journal = tuple[TxRecord, list[OpRecord]]


def load_definition(path: str) -> WorkflowDefinition:
    """The workflow at ``module:attribute`` (the module found from the current folder too)."""
    module, _, attr = path.partition(":")
    if not module or not attr:
        raise LegatoError(f"name the workflow as module:attribute, not {path!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    try:
        found: Any = importlib.import_module(module)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise LegatoError(f"cannot find the workflow {path}: {exc}") from exc
    if not isinstance(found, WorkflowDefinition):
        raise LegatoError(f"{path} is not a @legato.workflow but {type(found).__name__}")
    return found


async def journals_in(log: Log, name: str, gids: list[str], limit: int) -> list[Journal]:
    if gids:
        wanted = gids
    else:
        rows = await log.list(TxQuery(mode=str(Mode.WORKFLOW), name=name, limit=limit))
        wanted = [t.gid for t in rows]
    out = []
    for gid in wanted:
        loaded = await log.load(gid)
        if loaded is None:
            raise LegatoError(f"no transaction has gid {gid!r}")
        tx, ops = loaded
        if tx.mode is not Mode.WORKFLOW:
            raise LegatoError(f"{gid} is a {tx.mode}, not a workflow")
        out.append((tx, ops))
    return out


def _plain(record: Any) -> dict[str, Any]:
    return {
        k: (str(v) if hasattr(v, "value") else v) for k, v in dataclasses.asdict(record).items()
    }


def export(journals: list[Journal], path: Path) -> None:
    doc = {
        "journals": [{"tx": _plain(tx), "ops": [_plain(o) for o in ops]} for tx, ops in journals]
    }
    path.write_text(json.dumps(doc, indent=1))


def read_export(path: Path) -> list[Journal]:
    try:
        doc = json.loads(path.read_text())
        out = []
        for j in doc["journals"]:
            t = dict(j["tx"])
            t["mode"], t["status"] = Mode(t["mode"]), TxStatus(t["status"])
            ops = []
            for o in j["ops"]:
                o = dict(o)
                o["op"], o["status"] = OpName(o["op"]), OpStatus(o["status"])
                ops.append(OpRecord(**o))
            out.append((TxRecord(**t), ops))
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        what = "a journal export of `legato replay --export`"
        raise LegatoError(f"{path} is not {what}: {exc}") from None


def cmd_replay(args: argparse.Namespace) -> int:
    definition = load_definition(args.workflow)
    name = f"{definition.name}@{args.version or definition.version}"
    if args.source is not None:
        journals = [
            (tx, ops)
            for tx, ops in read_export(Path(args.source))
            if tx.name == name and (not args.gid or tx.gid in args.gid)
        ]
    else:
        journals = run_on_log(args.log, lambda log: journals_in(log, name, args.gid, args.limit))
    if args.export:
        export(journals, Path(args.export))

    async def check() -> list[Replayed]:
        return [await replay(definition, tx, ops) for tx, ops in journals]

    results = asyncio.run(check())
    console = Console(highlight=False, soft_wrap=True)
    where = args.source or args.log
    bad = [r for r in results if not r.ok]
    for r in bad:
        console.print(f"[red]DIVERGES[/red] {r.gid} at position {r.entries}: {r.detail}")
    if args.verbose:
        for r in results:
            if r.ok:
                console.print(f"ok {r.gid}: {r.detail}")
    console.print(
        f"{len(results)} journal(s) of {name} in {where} replayed: "
        f"{len(results) - len(bad)} match, {len(bad)} diverge"
        + (f"; exported to {args.export}" if args.export else "")
    )
    return 1 if bad else 0


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="check a workflow's current code against its journals, calling no step",
        description=(
            "Run the current code of a workflow against the journals stored in a log (or in "
            "a file exported from one) without calling any step; exit 1 at a divergence, "
            "naming its position and both records."
        ),
    )
    p.add_argument("workflow", help="the workflow, as module:attribute (e.g. shop.flows:book_trip)")
    add_log_argument(p)
    p.add_argument("--from", dest="source", help="read the journals from this export instead")
    p.add_argument("--export", help="also write the journals read to this file (JSON)")
    p.add_argument("--gid", action="append", help="only this workflow (repeatable)")
    p.add_argument(
        "--version", help="replay the journals of this version (default: the code's own)"
    )
    p.add_argument("--limit", type=int, default=1000, help="newest journals read (%(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="list the matching ones too")
    p.set_defaults(func=cmd_replay)
