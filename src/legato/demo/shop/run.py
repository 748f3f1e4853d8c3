"""``legato demo shop --broker rabbitmq|nats|redis``: the choreographed shop, with faults.

Orders are placed; the services react to each other's events over a real broker
(see ``services``); each service's outbox is relayed by its own relay; a consumer
sometimes "crashes" after its effect committed but before its ack (the broker
delivers again, the inbox skips it), and some payments and reservations fail so
that compensations run. Then every service's database is read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legato import Log, TxQuery, TxStatus, open_log
from legato.brokers import Broker, broker_from_url
from legato.flow import FlowRecorder
from legato.participant.outbox import Relay

from .services import ALL, Event, Inventory, Orders, Payments, Service, open_db

logger = logging.getLogger("legato.demo.shop")

BROKERS = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/",
    "nats": "nats://127.0.0.1:4222",
    "redis": "redis://127.0.0.1:6379/0",
}
COMPENSATING = {
    ("payments", "inventory.failed"),  # the refund
    ("orders", "inventory.failed"),  # the order cancelled
    ("orders", "payment.failed"),
    ("notify", "payment.refunded"),  # the refund's e-mail
}
"""The hops that undo what an order did: drawn on its compensation path."""
ITEMS = {"lamp": 25, "desk": 8, "chair": 30}
PRICES = {"lamp": 40, "desk": 300, "chair": 120}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class ShopReport:
    orders: int = 0
    confirmed: int = 0
    cancelled: int = 0
    redelivered: int = 0  # deliveries the inbox skipped
    crashes: int = 0  # consumers that "crashed" before their ack
    checks: list[Check] = field(default_factory=list)
    examples: dict[str, str] = field(default_factory=dict)  # an order's status -> its gid

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


class Shop:
    def __init__(self, directory: Path, broker: Broker, log: Log, run: str, seed: int) -> None:
        self.services: dict[str, Service] = {}
        for make in ALL:
            svc = make(directory, run)
            self.services[svc.name] = svc
        self.broker = broker
        self.recorder = FlowRecorder(log)
        self.run = run
        self.random = random.Random(seed)
        self.report = ShopReport()
        self.balances = {f"c{i}": 900 for i in range(12)}

    def topic(self, name: str) -> str:
        return f"{self.run}-{name}"

    @property
    def orders(self) -> Orders:
        return self.services["orders"]  # type: ignore[return-value]

    async def consume(self, svc: Service, topic: str, crash_rate: float) -> None:
        while True:
            try:
                await self._consume(svc, topic, crash_rate)
            except Exception as exc:  # a failed effect: what was not acked comes again
                logger.warning("%s on %s: %r; consuming again", svc.name, topic, exc)
                await asyncio.sleep(0.2)

    async def _consume(self, svc: Service, topic: str, crash_rate: float) -> None:
        while True:
            sub = await self.broker.subscribe(self.topic(topic), svc.name, f"{svc.name}-{topic}")
            try:
                async for d in sub:
                    event = Event.of(d.message)
                    ran = svc.consume(d.message)
                    end, reason = self._end(svc, event)
                    # recorded on a redelivery too: the first delivery may have committed
                    # its effect and died before it could record the hop
                    detail = {} if ran else {"redelivered": True}
                    await self.recorder.hop(
                        event.gid,
                        svc.name,
                        event.name,
                        detail=detail,
                        end=end,
                        reason=reason,
                        compensation=(svc.name, event.name) in COMPENSATING,
                    )
                    if not ran:
                        self.report.redelivered += 1
                        await d.ack()
                        continue
                    if self.random.random() < crash_rate:
                        self.report.crashes += 1
                        break  # committed, not acked: the broker delivers it again
                    await d.ack()
            finally:
                await sub.close()

    @staticmethod
    def _end(svc: Service, event: Event) -> tuple[TxStatus | None, str | None]:
        if svc.name != "orders":
            return None, None
        if event.name == "inventory.reserved":
            return TxStatus.SUCCEEDED, None
        if event.name in ("inventory.failed", "payment.failed"):
            return TxStatus.FAILED, str(event.data.get("reason", event.name))
        return None, None


async def run_shop(
    directory: Path,
    broker_name: str,
    *,
    n: int = 60,
    seed: int = 7,
    crash_rate: float = 0.1,
    log_url: str | None = None,
    timeout: float = 120,
    progress: Callable[[int, int], None] | None = None,
) -> ShopReport:
    """Run the shop once in ``directory`` (made afresh) and check every database."""
    await asyncio.to_thread(_fresh, directory)
    url = BROKERS[broker_name]
    options: dict[str, Any] = {} if broker_name == "rabbitmq" else {"redeliver_after": 1.0}
    broker = broker_from_url(url, **options)
    await broker.connect()
    log = open_log(log_url or f"sqlite:///{directory / 'legato.db'}")
    await log.open()
    run = f"shop{uuid.uuid4().hex[:8]}"
    shop = Shop(directory, broker, log, run, seed)
    groups = [(t, svc.name) for svc in shop.services.values() for t in svc.subscribes]
    for topic, group in groups:
        await broker.declare(shop.topic(topic), group)
    tasks: list[asyncio.Task[None]] = []
    for svc in shop.services.values():
        tasks.append(asyncio.create_task(_relay(svc, broker, shop)))
        for topic in svc.subscribes:
            tasks.append(asyncio.create_task(shop.consume(svc, topic, crash_rate)))
    try:
        payments: Payments = shop.services["payments"]  # type: ignore[assignment]
        inventory: Inventory = shop.services["inventory"]  # type: ignore[assignment]
        payments.open_accounts(shop.balances)
        inventory.stock(ITEMS)
        draw = random.Random(seed)
        for i in range(n):
            gid = f"{run}-order-{i:03d}"
            item = draw.choice(list(ITEMS))
            qty = draw.randint(1, 3)
            customer = draw.choice(list(shop.balances))
            shop.orders.place(gid, customer, item, qty, qty * PRICES[item])
            await shop.recorder.hop(
                gid, "orders", "order.placed", name=f"order: {qty} {item}, {customer}"
            )
        await _settle(shop, n, timeout, progress)
    finally:
        for t in tasks:
            t.cancel()
        # bounded: a consumer that did not end on its cancel is reported, not waited for
        # for ever (the broker's close below ends what it reads)
        _, stuck = await asyncio.wait(tasks, timeout=10)
        for t in stuck:
            logger.warning("the shop's task %s did not end within 10 s of its cancel", t)
        for t in tasks:
            if t.done() and not t.cancelled():
                t.exception()  # retrieved: a consumer's or relay's last error is moot now
        for topic, group in groups:
            with contextlib.suppress(Exception):
                await broker.delete(shop.topic(topic), [group])
        await broker.close()
    report = shop.report
    report.orders = n
    await _check(shop, log, report)
    await log.close()
    for svc in shop.services.values():
        svc.close()
    return report


def _fresh(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)


async def _relay(svc: Service, broker: Broker, shop: Shop) -> None:
    relay = Relay(lambda: open_db(svc.path, threads=True), broker, poll_interval=0.05)
    await relay.run()


async def _settle(
    shop: Shop, n: int, timeout: float, progress: Callable[[int, int], None] | None
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        done = shop.orders.conn.execute(
            "SELECT count(*) FROM orders WHERE status != 'placed'"
        ).fetchone()[0]
        shop.orders.conn.commit()
        if progress:
            progress(done, n)
        pending = sum(
            s.conn.execute("SELECT count(*) FROM legato_outbox WHERE sent_at IS NULL").fetchone()[0]
            for s in shop.services.values()
        )
        flows = await shop.recorder.log.list(
            TxQuery(status=(TxStatus.SUCCEEDED, TxStatus.FAILED), mode="flow", limit=100_000)
        )
        ended = sum(1 for t in flows if t.gid.startswith(shop.run))
        # every order ends with one e-mail, and every delivery a consumer died on before
        # its ack comes back: a broker redelivers only after its ack wait (NATS's may come
        # well after a second), so these are waited for, not guessed at
        emails = shop.services["notify"].conn.execute("SELECT count(*) FROM email").fetchone()[0]
        shop.services["notify"].conn.commit()
        redelivered = shop.report.redelivered >= shop.report.crashes
        if done == n and pending == 0 and ended == n and emails >= n and redelivered:
            await asyncio.sleep(1.5)  # the last notifications and refunds land
            return
        if asyncio.get_running_loop().time() > deadline:
            return  # the checks say what is missing
        await asyncio.sleep(0.1)


def _rows(svc: Service, sql: str) -> list[tuple[Any, ...]]:
    rows = svc.conn.execute(sql).fetchall()
    svc.conn.commit()
    return rows


async def _check(shop: Shop, log: Log, report: ShopReport) -> None:
    s = shop.services
    orders = dict(_rows(s["orders"], "SELECT gid, status FROM orders"))
    report.confirmed = sum(1 for v in orders.values() if v == "confirmed")
    report.cancelled = sum(1 for v in orders.values() if v == "cancelled")
    for gid, status in sorted(orders.items()):
        report.examples.setdefault(status, gid)
    payments = dict(_rows(s["payments"], "SELECT gid, status FROM payment"))
    reserved = {
        g: (i, q) for g, i, q in _rows(s["inventory"], "SELECT gid, item, qty FROM reservation")
    }
    emails = _rows(s["notify"], "SELECT gid, kind FROM email")
    confirmed = {g for g, v in orders.items() if v == "confirmed"}
    cancelled = {g for g, v in orders.items() if v == "cancelled"}
    c = report.checks
    c.append(
        Check(
            "every order ended",
            not (set(orders) - confirmed - cancelled),
            f"{len(confirmed)} confirmed, {len(cancelled)} cancelled of {len(orders)}",
        )
    )
    charged = {g for g, v in payments.items() if v == "charged"}
    refunded = {g for g, v in payments.items() if v == "refunded"}
    c.append(
        Check(
            "confirmed = charged = reserved",
            confirmed == charged == set(reserved),
            f"{len(confirmed)} / {len(charged)} / {len(reserved)}",
        )
    )
    c.append(
        Check(
            "a cancelled order holds no money and no stock",
            not (cancelled & (charged | set(reserved))),
            f"{len(refunded)} refunded, {len(cancelled - refunded)} never charged",
        )
    )
    balance = sum(v for (v,) in _rows(s["payments"], "SELECT balance FROM account"))
    kept = sum(
        a for (a,) in _rows(s["payments"], "SELECT amount FROM payment WHERE status = 'charged'")
    )
    total = sum(shop.balances.values())
    c.append(
        Check(
            "money adds up",
            balance + kept == total,
            f"{balance} in accounts + {kept} charged = {total}",
        )
    )
    left = dict(_rows(s["inventory"], "SELECT item, qty FROM stock"))
    stock_ok = all(
        left[i] + sum(q for it, q in reserved.values() if it == i) == ITEMS[i] for i in ITEMS
    )
    c.append(Check("stock adds up", stock_ok, f"left {left}"))
    want = {(g, "confirmation") for g in confirmed} | {(g, "refund") for g in refunded}
    declined = cancelled - refunded
    want |= {(g, "payment declined") for g in declined}
    c.append(
        Check(
            "one e-mail per outcome",
            set(emails) == want and len(emails) == len(want),
            f"{len(emails)} sent, {len(want)} due",
        )
    )
    unsent = sum(
        _rows(v, "SELECT count(*) FROM legato_outbox WHERE sent_at IS NULL")[0][0]
        for v in s.values()
    )
    c.append(Check("every outbox relayed", unsent == 0, f"{unsent} unsent"))
    flows_ok, bad = True, []
    for gid, status in orders.items():
        loaded = await log.load(gid)
        want_status = {"confirmed": TxStatus.SUCCEEDED, "cancelled": TxStatus.FAILED}.get(status)
        if loaded is None or loaded[0].status is not want_status:
            flows_ok = False
            bad.append(gid)
    c.append(
        Check(
            "each order is one flow in the log, ended as the order",
            flows_ok,
            f"{len(orders) - len(bad)} of {len(orders)}",
        )
    )
    crashes = f"{report.crashes} crashes before an ack, {report.redelivered} skipped by the inbox"
    c.append(
        Check("each crash's redelivery skipped", report.redelivered >= report.crashes, crashes)
    )
