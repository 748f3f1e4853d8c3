"""``legato relay``: publish a service database's outbox to a broker, for ever."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from functools import partial

from .._dburl import check_url, connect


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    relay = sub.add_parser(
        "relay",
        help="publish a database's transactional outbox to a broker",
        description=(
            "Publish the rows committed to legato_outbox in DB (each key's in commit "
            "order), mark them sent, and retry while the broker or the database is "
            "away. Run one relay per database."
        ),
    )
    relay.add_argument("--db", required=True, help="sqlite:///path, postgresql://..., mysql://...")
    relay.add_argument(
        "--broker", required=True, help="amqp://... (RabbitMQ), nats://... or redis://..."
    )
    relay.add_argument("--batch", type=int, default=500, help="rows per pass (%(default)s)")
    relay.add_argument(
        "--poll-interval", type=float, default=0.2, help="seconds between idle passes"
    )
    relay.set_defaults(func=run)


async def _main(args: argparse.Namespace) -> int:
    from ..brokers import broker_from_url
    from ..participant.outbox import Relay

    broker = broker_from_url(args.broker)
    await broker.connect()
    relay = Relay(
        partial(connect, args.db), broker, batch=args.batch, poll_interval=args.poll_interval
    )
    task = asyncio.create_task(relay.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await broker.close()
    logging.getLogger("legato.outbox").info("relay stopped; %d published", relay.published)
    return 0


def run(args: argparse.Namespace) -> int:
    check_url(args.db, what="--db")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return asyncio.run(_main(args))
