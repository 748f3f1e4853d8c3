"""A coordinator process for the chaos tests, run from the repository as
``python -m tests.chaos.worker ...``.

``--mode submit`` submits the sagas ``saga-0`` .. ``saga-{n-1}`` (idempotent by
gid: the ones already in the log just return handles), waits for every one of
them, then until the log holds nothing unfinished. ``--mode resume`` submits
nothing: it only drives what the log holds until nothing is unfinished.

Started with ``LEGATO_FAULTS`` set, the process kills itself at that fault
point; the test then starts it again under the same ``--owner``, and the new
coordinator takes its predecessor's leases back at once.

Exit status: 0 when every saga has ended, 3 when some are stuck, 2 past the
deadline. A JSON summary of the log's counts goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

import legato
from tests.support.travel import build_saga, gid_of, payload_of

_UNFINISHED = ("prepared", "submitted", "aborting")


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--log", required=True, help="the log URL")
    p.add_argument(
        "--service",
        action="append",
        default=[],
        metavar="STEP=LOCATION",
        help="a service's database: a SQLite path or a PostgreSQL URL",
    )
    p.add_argument("--n", type=int, required=True, help="how many sagas")
    p.add_argument("--owner", required=True, help="the coordinator's stable owner name")
    p.add_argument("--mode", choices=("submit", "resume"), default="submit")
    p.add_argument("--lease", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=8, help="step threads")
    p.add_argument("--concurrency", type=int, default=20, help="sagas submitted at once")
    p.add_argument("--reverse", action="store_true", help="submit the gids last to first")
    p.add_argument("--track", action="store_true", help="count runs of each op in flight")
    p.add_argument("--hold", type=float, default=0.03, help="tracked ops take this long")
    p.add_argument(
        "--stop-after",
        type=float,
        metavar="SECONDS",
        help="stop the coordinator gracefully after this long and exit 0 (a rolling deploy)",
    )
    p.add_argument("--deadline", type=float, default=120.0, help="give up after (seconds)")
    return p.parse_args(argv)


async def _unfinished(coordinator: legato.Coordinator) -> tuple[int, int, dict[str, int]]:
    counts = await coordinator.log.counts()
    return sum(counts.get(s, 0) for s in _UNFINISHED), counts.get("stuck", 0), counts


async def run(args: argparse.Namespace) -> int:
    locations = dict(s.split("=", 1) for s in args.service)
    saga = build_saga(locations, args.owner if args.track else None, hold=args.hold)
    coordinator = legato.Coordinator(
        args.log,
        owner=args.owner,
        lease=args.lease,
        poll_interval=0.1,
        step_threads=args.threads,
    )
    coordinator.register(saga)  # before start: the first claim already resumes it
    deadline = time.monotonic() + args.deadline
    async with coordinator:
        if args.stop_after is None:
            return await _drive(coordinator, saga, args, deadline)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.stop_after):
                await _drive(coordinator, saga, args, deadline)
        print(json.dumps({"owner": args.owner, "stopping_at": time.time()}), flush=True)
    print(json.dumps({"owner": args.owner, "stopped_at": time.time()}), flush=True)
    return 0


async def _drive(
    coordinator: legato.Coordinator, saga: legato.Saga, args: argparse.Namespace, deadline: float
) -> int:
    if args.mode == "submit":
        gate = asyncio.Semaphore(args.concurrency)
        order = range(args.n - 1, -1, -1) if args.reverse else range(args.n)

        async def one(i: int) -> None:
            async with gate:
                while True:
                    try:
                        handle = await coordinator.submit(saga, payload_of(i), gid=gid_of(i))
                        await handle.result(timeout=max(1.0, deadline - time.monotonic()), poll=0.1)
                        return
                    except legato.LogError:  # the log is away for a moment: ask again
                        await asyncio.sleep(0.2)

        with contextlib.suppress(TimeoutError):  # reported below, from the log
            await asyncio.gather(*(one(i) for i in order))
    while True:
        try:
            unfinished, stuck, counts = await _unfinished(coordinator)
        except legato.LogError:
            await asyncio.sleep(0.2)
            continue
        if unfinished == stuck or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    print(json.dumps({"owner": args.owner, "mode": args.mode, "counts": counts}), flush=True)
    if unfinished:
        return 3 if unfinished == stuck else 2
    return 0


def main() -> None:
    sys.exit(asyncio.run(run(_parse(sys.argv[1:]))))


if __name__ == "__main__":
    main()
