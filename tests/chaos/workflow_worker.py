"""A coordinator process running the chaos tests' trip workflow
(``tests.support.trip_workflow``), run from the repository as
``python -m tests.chaos.workflow_worker ...``.

``--mode start`` starts the workflows ``wf-0`` .. ``wf-{n-1}`` (idempotent by gid:
the ones already in the log just return handles), signals the ones that wait for a
signal, waits for every one of them, then until the log holds nothing unfinished.
``--mode resume`` starts nothing: it signals the waiting workflows the log holds (a
signal has an id: one kept already is not kept twice) and drives what the log holds
until nothing is unfinished.

Started with ``LEGATO_FAULTS`` set, the process kills itself at that fault point;
the test then starts it again under the same ``--owner``, and the new coordinator
takes its predecessor's leases back at once.

Exit status: 0 when every workflow has ended, 3 when some are stuck, 2 past the
deadline. A JSON summary of the log's counts goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import legato
from tests.support import trip_workflow as wf

_UNFINISHED = ("prepared", "submitted", "aborting")
T = TypeVar("T")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--log", required=True, help="the log URL")
    p.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="SERVICE=LOCATION",
        help="a service's database: a SQLite path or a PostgreSQL URL",
    )
    p.add_argument("--n", type=int, required=True, help="how many workflows")
    p.add_argument("--owner", required=True, help="the coordinator's stable owner name")
    p.add_argument("--mode", choices=("start", "resume"), default="start")
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=8, help="step threads")
    p.add_argument("--concurrency", type=int, default=0, help="started at once (0: all)")
    p.add_argument("--reverse", action="store_true", help="start the gids last to first")
    p.add_argument("--track", action="store_true", help="record each run's interval")
    p.add_argument("--hold", type=float, default=0.03, help="tracked runs take this long")
    p.add_argument("--deadline", type=float, default=60.0, help="give up after (seconds)")
    return p.parse_args(argv)


async def _retrying(what: Callable[[], Awaitable[T]]) -> T:
    """Await ``what()`` until the log answers (it may be away for a moment)."""
    while True:
        try:
            return await what()
        except legato.LogError:
            await asyncio.sleep(0.2)


async def _signal(coordinator: legato.Coordinator, i: int) -> bool:
    """Send workflow ``i`` its signal (its id makes a second send change nothing); False
    if it was kept already."""
    try:
        kept = await _retrying(
            lambda: coordinator.signal(wf.gid_of(i), "go", wf.signal_of(i), id="go")
        )
    except legato.IllegalStateChange:  # it has ended: it had its signal
        return False
    return kept


async def run(args: argparse.Namespace) -> int:
    locations = dict(s.split("=", 1) for s in args.service)
    wf.configure(locations, args.owner if args.track else None, hold=args.hold)
    coordinator = legato.Coordinator(
        args.log,
        owner=args.owner,
        lease=args.lease,
        poll_interval=0.1,
        step_threads=args.threads,
    )
    coordinator.register(wf.trip)  # before start: the first claim already resumes it
    deadline = time.monotonic() + args.deadline
    async with coordinator:
        return await _drive(coordinator, args, deadline)


async def _one(
    coordinator: legato.Coordinator, i: int, deadline: float, signalled: list[bool]
) -> None:
    """Start workflow ``i`` (or find it started), signal it if it waits for one, and wait
    until it has ended."""
    handle = await _retrying(lambda: coordinator.start_workflow(wf.trip, i, gid=wf.gid_of(i)))
    if wf.kind_of(i) == "signal":
        await asyncio.sleep(wf.signal_delay(i))
        signalled.append(await _signal(coordinator, i))
    await handle.result(timeout=max(1.0, deadline - time.monotonic()), poll=0.1)


async def _drive(coordinator: legato.Coordinator, args: argparse.Namespace, deadline: float) -> int:
    signalled: list[bool] = []
    if args.mode == "start":
        order = range(args.n - 1, -1, -1) if args.reverse else range(args.n)
        gate = asyncio.Semaphore(args.concurrency or args.n)

        async def one(i: int) -> None:
            async with gate:
                await _one(coordinator, i, deadline, signalled)

        with contextlib.suppress(TimeoutError):  # reported below, from the log
            await asyncio.gather(*(one(i) for i in order))
    else:
        txs = await _retrying(lambda: coordinator.list(legato.TxQuery(limit=10_000)))
        for tx in txs:
            if wf.kind_of(i := wf.index_of(tx.gid)) == "signal":
                signalled.append(await _signal(coordinator, i))
    while True:
        try:
            counts = await coordinator.log.counts()
        except legato.LogError:
            await asyncio.sleep(0.2)
            continue
        unfinished = sum(counts.get(s, 0) for s in _UNFINISHED)
        stuck = counts.get("stuck", 0)
        if unfinished == stuck or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    signals = {"kept": signalled.count(True), "kept_already": signalled.count(False)}
    summary = {"owner": args.owner, "mode": args.mode, "counts": counts, "signals": signals}
    print(json.dumps(summary), flush=True)
    if unfinished:
        return 3 if unfinished == stuck else 2
    return 0


def main() -> None:
    sys.exit(asyncio.run(run(_parse(sys.argv[1:]))))


if __name__ == "__main__":
    main()
