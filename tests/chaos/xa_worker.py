"""A process moving money between a PostgreSQL ledger and a MariaDB ledger by XA,
for the crash tests: ``python -m tests.chaos.xa_worker --log URL --pg URL --maria URL
--n N --xa-namespace NS``, run from the repository (the servers are the test's: the URLs
carry their ports).

Transfer i moves an amount between account ``i % 4`` of one ledger and the same
account of the other (direction and amount drawn from i), as XA transaction
``xfer-i``. With ``--mode transfer`` it runs the transfers not in the log yet,
four at a time; with ``--mode settle`` it only drives what the log holds (and
recovers prepared branches) until nothing is unfinished. Started with
``LEGATO_FAULTS``, it kills itself at that point.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time

import psycopg

import legato
from legato.log import TxQuery
from tests.support.xa import maria_connect, move


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--log", required=True)
    p.add_argument("--pg", required=True)
    p.add_argument("--maria", required=True, help="mysql://root@127.0.0.1:3306/db")
    p.add_argument("--xa-namespace", required=True, help="the test's: what it finds is its own")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--owner", default="xa-worker")
    p.add_argument("--mode", choices=("transfer", "settle"), default="transfer")
    p.add_argument("--deadline", type=float, default=90)
    return p.parse_args(argv)


async def transfer(c: legato.Coordinator, args: argparse.Namespace, i: int) -> None:
    draw = random.Random(i)
    account, amount, to_maria = i % 4, draw.randint(1, 60), draw.random() < 0.5
    pg, maria = psycopg.connect(args.pg, autocommit=True), maria_connect(args.maria)
    try:
        async with c.xa(f"xfer-{i}", timeout_to_fail=5) as t:
            await t.branch(pg, move("-" if to_maria else "+", account, amount), resource="pg")
            await t.branch(maria, move("+" if to_maria else "-", account, amount), resource="maria")
    except legato.Failure:
        pass  # an overdraft: rolled back, as it should be
    finally:
        pg.close()
        maria.close()  # MariaDB detaches a prepared branch once its connection closes


async def main(args: argparse.Namespace) -> int:
    resources = {"pg": args.pg, "maria": args.maria}
    async with legato.Coordinator(
        args.log, owner=args.owner, lease=2.0, poll_interval=0.1, resources=resources,
        xa_recovery_interval=1.0, xa_namespace=args.xa_namespace,
    ) as c:  # fmt: skip
        if args.mode == "transfer":
            known = {t.gid for t in await c.list(TxQuery(limit=100_000))}
            todo = [i for i in range(args.n) if f"xfer-{i}" not in known]
            sem = asyncio.Semaphore(4)

            async def one(i: int) -> None:
                async with sem:
                    await transfer(c, args, i)

            await asyncio.gather(*(one(i) for i in todo))
        deadline = time.monotonic() + args.deadline
        while time.monotonic() < deadline:
            counts = await c.log.counts()
            open_ = sum(counts.get(s, 0) for s in ("prepared", "submitted", "aborting"))
            report = await c.recover_xa()
            if open_ == 0 and not report.left and not report.failed:
                return 0
            await asyncio.sleep(0.3)
    return 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main(_parse(sys.argv[1:]))))
