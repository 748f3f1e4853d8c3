"""The outbox, end to end: business commit -> relay -> broker -> consumer effect.

    .venv/bin/python bench/outbox.py                       # every broker, 1 and 16 producers
    .venv/bin/python bench/outbox.py --broker redis --duration 3

Producers (threads, each with its own PostgreSQL connection) commit an order row and
its event (``outbox.add``) in one transaction, as fast as they can, for
``--duration`` seconds. One ``outbox.Relay`` publishes the committed rows to the
broker (publisher-confirmed: RabbitMQ's confirms, JetStream's acks, Redis's XADD
reply). One consumer applies each event through the inbox (its effect and its
inbox row in one transaction of its own SQLite database, WAL, synchronous=FULL) and
acks it. Durability is on everywhere (PostgreSQL fsync=on, synchronous_commit=on).

Printed per broker and producer count: events/s from the first commit to the last
effect, and the p50 / p99 latency from an event's business commit to its effect.
Afterwards every committed order must have exactly one effect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import percentile

from legato.brokers import Broker, broker_from_url
from legato.participant import create_table, inbox, outbox

PG_ADMIN = os.environ.get("LEGATO_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "nats": "nats://127.0.0.1:4222",
    "redis": "redis://127.0.0.1:6379/0",
}


@contextlib.contextmanager
def service_db() -> Any:
    name = f"bench_outbox_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE orders (id text PRIMARY KEY)")
        outbox.create_table(c)
    try:
        yield url
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


def produce(url: str, topic: str, deadline: float, committed: dict[str, float], k: int) -> int:
    n = 0
    with psycopg.connect(url) as conn:
        while time.perf_counter() < deadline:
            order = f"p{k}-{n}"
            conn.execute("INSERT INTO orders VALUES (%s)", (order,))
            mid = outbox.add(conn, topic, order, {"order": order}, message_id=order)
            conn.commit()
            committed[mid] = time.perf_counter()
            n += 1
    return n


async def consume(broker: Broker, topic: str, db: str, effects: dict[str, float]) -> None:
    """Apply events until cancelled."""
    conn = sqlite3.connect(db)
    sub = await broker.subscribe(topic, "bench", "c1")
    try:
        async for d in sub:
            msg = d.message

            def effect(c: sqlite3.Connection, order: str = msg.id) -> None:
                c.execute("INSERT INTO effect VALUES (?)", (order,))

            inbox.consume(conn, msg, "bench", effect)
            effects[msg.id] = time.perf_counter()
            await d.ack()
    finally:
        await sub.close()
        conn.close()


async def settle(effects: dict[str, float], made: int, timeout: float) -> None:
    """Until every committed event has had its effect (or the timeout)."""
    deadline = time.perf_counter() + timeout
    while len(effects) < made and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def one(broker_name: str, producers: int, duration: float, tmp: Path) -> dict[str, float]:
    url = BROKERS[broker_name]
    options: dict[str, Any] = {} if broker_name == "rabbitmq" else {"redeliver_after": 30.0}
    broker = broker_from_url(url, **options)
    await broker.connect()
    topic = f"bench{uuid.uuid4().hex[:10]}"
    await broker.declare(topic, "bench")
    db = str(tmp / f"{topic}.db")
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE effect (id TEXT NOT NULL)")
        create_table(c)
    committed: dict[str, float] = {}
    effects: dict[str, float] = {}
    try:
        with service_db() as svc:
            relay = outbox.Relay(lambda: psycopg.connect(svc), broker, poll_interval=0.002)
            relay_task = asyncio.create_task(relay.run())
            consumer = asyncio.create_task(consume(broker, topic, db, effects))
            start = time.perf_counter()
            deadline = start + duration
            threads = [
                asyncio.to_thread(produce, svc, topic, deadline, committed, k)
                for k in range(producers)
            ]
            made = sum(await asyncio.gather(*threads))
            await settle(effects, made, 60)
            for task in (relay_task, consumer):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with sqlite3.connect(db) as c:
                rows = c.execute("SELECT count(*), count(DISTINCT id) FROM effect").fetchone()
            if rows != (made, made):
                raise AssertionError(f"{made} committed, effects (all, distinct): {rows}")
    finally:
        await broker.delete(topic, ["bench"])
        await broker.close()
    lat = sorted(effects[m] - committed[m] for m in effects)
    elapsed = max(effects.values()) - start
    return {
        "events": made,
        "rate": made / elapsed,
        "p50_ms": percentile(lat, 50) * 1e3,
        "p99_ms": percentile(lat, 99) * 1e3,
    }


async def main(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.broker or sorted(BROKERS):
            for producers in (1, 16):
                r = await one(name, producers, args.duration, Path(d))
                rows.append((name, producers, r))
                print(
                    f"  {name:<9} producers {producers:>2}: {r['events']:>6} events, "
                    f"{r['rate']:7.0f}/s, commit-to-effect p50 {r['p50_ms']:6.1f} ms "
                    f"p99 {r['p99_ms']:6.1f} ms",
                    flush=True,
                )
    print("\n| broker | producers | events/s | p50 commit-to-effect | p99 |")
    print("|---|---|---|---|---|")
    for name, producers, r in rows:
        print(
            f"| {name} | {producers} | {r['rate']:.0f} | {r['p50_ms']:.1f} ms | "
            f"{r['p99_ms']:.1f} ms |"
        )
    print("check: every committed order has exactly one effect")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--broker", action="append", choices=sorted(BROKERS))
    p.add_argument("--duration", type=float, default=5.0, help="seconds of producing")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))
