"""The processes of the outbox crash tests, run from the repository::

    python -m tests.chaos.outbox_worker publish --db URL --topic T --n N [--start S]
    python -m tests.chaos.outbox_worker consume --db URL --broker URL --topic T --group G --n N

``publish`` places orders ``S..S+N-1`` in the service database, one business
transaction each (an ``orders`` row and its event in the outbox); started with
``LEGATO_FAULTS=publisher.after_commit@K`` it kills itself right after the K-th
commit, before any relay could have published it. ``consume`` takes events from
the broker and applies each one's effect (a ``payments`` row) through the inbox,
then acks; with ``consumer.before_ack@K`` it dies after the K-th commit, before
its ack. It exits once the payments table holds N rows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from legato._dburl import connect
from legato._faults import fault_point
from legato.brokers import broker_from_url
from legato.participant import create_table, inbox, outbox


def ph(url: str) -> str:
    return "?" if url.startswith("sqlite") else "%s"


def publish(args: argparse.Namespace) -> int:
    conn = connect(args.db)
    cur = conn.cursor()
    for i in range(args.start, args.start + args.n):
        order = f"o{i}"
        cur.execute("BEGIN")
        cur.execute(f"INSERT INTO orders VALUES ({ph(args.db)})", (order,))
        outbox.add(conn, args.topic, f"k{i % 3}", {"order": order}, headers={"gid": order})
        cur.execute("COMMIT")
        fault_point("publisher.after_commit")
    conn.close()
    return 0


def count(conn: Any) -> int:
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM payments")
    n = int(cur.fetchone()[0])
    cur.close()
    return n


async def consume(args: argparse.Namespace) -> int:
    conn = connect(args.db)
    create_table(conn)
    broker = (
        broker_from_url(args.broker, redeliver_after=1.0)
        if not args.broker.startswith("amqp")
        else broker_from_url(args.broker)
    )
    await broker.connect()
    sub = await broker.subscribe(args.topic, args.group, args.consumer)
    try:
        if count(conn) >= args.n:
            return 0
        async for d in sub:
            order = d.message.headers["gid"]

            def pay(c: Any, order: str = order) -> None:
                cur = c.cursor()
                cur.execute(f"INSERT INTO payments VALUES ({ph(args.db)})", (order,))
                cur.close()

            inbox.consume(conn, d.message, args.group, pay)
            fault_point("consumer.before_ack")
            await d.ack()
            if count(conn) >= args.n:
                return 0
    finally:
        await sub.close()
        await broker.close()
        conn.close()
    return 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("publish", "consume"))
    p.add_argument("--db", required=True)
    p.add_argument("--broker", default="")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", default="payments")
    p.add_argument("--consumer", default="c1")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    args = p.parse_args(argv)
    if args.what == "publish":
        return publish(args)
    return asyncio.run(consume(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
