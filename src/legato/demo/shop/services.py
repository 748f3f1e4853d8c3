"""The shop's four services, each with its own SQLite database, talking only through a
broker: every change and the event it emits commit together (the outbox), every
event is applied once (the inbox), and every hop is recorded in Legato's log as one
flow per order (its gid).

    orders     place: an order row + ``order.placed``                 -> topic orders
    payments   order.placed: charge, or ``payment.failed``            -> topic payments
               inventory.failed: refund                              -> topic payments
    inventory  payment.charged: reserve, or ``inventory.failed``      -> topic inventory
    orders     inventory.reserved: confirm; inventory.failed or
               payment.failed: cancel (the flow ends)
    notify     inventory.reserved / payment.failed / payment.refunded: an e-mail row
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from legato.brokers import Message
from legato.participant import create_table, inbox, outbox

TOPICS = ("orders", "payments", "inventory")


def open_db(path: Path, threads: bool = False) -> sqlite3.Connection:
    """``threads``: for the relay, which reaches it from its worker threads, one at a time."""
    conn = sqlite3.connect(path, timeout=30, check_same_thread=not threads)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


@dataclass
class Event:
    name: str
    gid: str
    data: dict[str, Any]

    @staticmethod
    def of(message: Message) -> Event:
        body = json.loads(message.body)
        return Event(body["event"], message.headers.get("gid", message.key), body["data"])


def emit(conn: sqlite3.Connection, topic: str, gid: str, name: str, **data: Any) -> None:
    """An event, in the caller's transaction."""
    outbox.add(conn, topic, gid, {"event": name, "data": data}, headers={"gid": gid})


class Service:
    """One service: its database, the events it consumes (topic, group) and handles."""

    name: str = ""
    schema: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()  # topics, consumed as group <name>

    def __init__(self, directory: Path, prefix: str = "") -> None:
        self.prefix = prefix
        self.path = directory / f"{self.name}.db"
        self.conn = open_db(self.path)
        for sql in self.schema:
            self.conn.execute(sql)
        self.conn.commit()
        create_table(self.conn)
        outbox.create_table(self.conn)

    def topic(self, name: str) -> str:
        """A topic's name on the broker (the run's prefix keeps runs apart)."""
        return f"{self.prefix}-{name}" if self.prefix else name

    def handle(self, event: Event, conn: sqlite3.Connection) -> None:
        raise NotImplementedError

    def consume(self, message: Message) -> bool:
        """Apply ``message`` once (its effect and the events it emits, with its inbox row);
        whether it ran (False: a redelivery, skipped)."""
        event = Event.of(message)
        return inbox.consume(self.conn, message, self.name, lambda c: self.handle(event, c)).ran

    def close(self) -> None:
        self.conn.close()


class Orders(Service):
    name = "orders"
    schema = (
        "CREATE TABLE IF NOT EXISTS orders (gid TEXT PRIMARY KEY, item TEXT NOT NULL, "
        "qty INTEGER NOT NULL, amount INTEGER NOT NULL, customer TEXT NOT NULL, "
        "status TEXT NOT NULL, reason TEXT)",
    )
    subscribes = ("payments", "inventory")

    def place(self, gid: str, customer: str, item: str, qty: int, amount: int) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO orders VALUES (?, ?, ?, ?, ?, 'placed', NULL)",
                (gid, item, qty, amount, customer),
            )
            emit(
                self.conn,
                self.topic("orders"),
                gid,
                "order.placed",
                customer=customer,
                item=item,
                qty=qty,
                amount=amount,
            )

    def handle(self, event: Event, conn: sqlite3.Connection) -> None:
        if event.name == "inventory.reserved":
            conn.execute("UPDATE orders SET status = 'confirmed' WHERE gid = ?", (event.gid,))
        elif event.name in ("inventory.failed", "payment.failed"):
            conn.execute(
                "UPDATE orders SET status = 'cancelled', reason = ? WHERE gid = ?",
                (event.data.get("reason", event.name), event.gid),
            )


class Payments(Service):
    name = "payments"
    schema = (
        "CREATE TABLE IF NOT EXISTS account (customer TEXT PRIMARY KEY, balance INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS payment (gid TEXT PRIMARY KEY, customer TEXT NOT NULL, "
        "amount INTEGER NOT NULL, status TEXT NOT NULL)",
    )
    subscribes = ("orders", "inventory")

    def open_accounts(self, balances: dict[str, int]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO account VALUES (?, ?)", balances.items())

    def handle(self, event: Event, conn: sqlite3.Connection) -> None:
        d = event.data
        if event.name == "order.placed":
            (balance,) = conn.execute(
                "SELECT balance FROM account WHERE customer = ?", (d["customer"],)
            ).fetchone()
            if balance < d["amount"]:
                emit(
                    conn,
                    self.topic("payments"),
                    event.gid,
                    "payment.failed",
                    reason="insufficient funds",
                )
                return
            conn.execute(
                "UPDATE account SET balance = balance - ? WHERE customer = ?",
                (d["amount"], d["customer"]),
            )
            conn.execute(
                "INSERT INTO payment VALUES (?, ?, ?, 'charged')",
                (event.gid, d["customer"], d["amount"]),
            )
            emit(
                conn,
                self.topic("payments"),
                event.gid,
                "payment.charged",
                item=d["item"],
                qty=d["qty"],
            )
        elif event.name == "inventory.failed":
            row = conn.execute(
                "SELECT customer, amount FROM payment WHERE gid = ? AND status = 'charged'",
                (event.gid,),
            ).fetchone()
            if row is not None:  # the compensation: give the money back
                conn.execute(
                    "UPDATE account SET balance = balance + ? WHERE customer = ?", (row[1], row[0])
                )
                conn.execute("UPDATE payment SET status = 'refunded' WHERE gid = ?", (event.gid,))
                emit(conn, self.topic("payments"), event.gid, "payment.refunded", amount=row[1])


class Inventory(Service):
    name = "inventory"
    schema = (
        "CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, qty INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS reservation (gid TEXT PRIMARY KEY, item TEXT NOT NULL, "
        "qty INTEGER NOT NULL)",
    )
    subscribes = ("payments",)

    def stock(self, items: dict[str, int]) -> None:
        with self.conn:
            self.conn.executemany("INSERT OR IGNORE INTO stock VALUES (?, ?)", items.items())

    def handle(self, event: Event, conn: sqlite3.Connection) -> None:
        if event.name != "payment.charged":
            return
        d = event.data
        (left,) = conn.execute("SELECT qty FROM stock WHERE item = ?", (d["item"],)).fetchone()
        if left < d["qty"]:
            emit(
                conn,
                self.topic("inventory"),
                event.gid,
                "inventory.failed",
                reason=f"{d['item']} sold out",
            )
            return
        conn.execute("UPDATE stock SET qty = qty - ? WHERE item = ?", (d["qty"], d["item"]))
        conn.execute("INSERT INTO reservation VALUES (?, ?, ?)", (event.gid, d["item"], d["qty"]))
        emit(
            conn,
            self.topic("inventory"),
            event.gid,
            "inventory.reserved",
            item=d["item"],
            qty=d["qty"],
        )


class Notify(Service):
    name = "notify"
    schema = (
        "CREATE TABLE IF NOT EXISTS email (gid TEXT NOT NULL, kind TEXT NOT NULL, "
        "PRIMARY KEY (gid, kind))",
    )
    subscribes = ("payments", "inventory")
    KINDS: dict[str, str] = {
        "inventory.reserved": "confirmation",
        "payment.failed": "payment declined",
        "payment.refunded": "refund",
    }

    def handle(self, event: Event, conn: sqlite3.Connection) -> None:
        kind = self.KINDS.get(event.name)
        if kind is not None:
            # no primary-key collision to hide a doubled effect: the inbox is what keeps
            # this once; a second insert would fail loudly
            conn.execute("INSERT INTO email VALUES (?, ?)", (event.gid, kind))


ALL: tuple[Callable[[Path, str], Service], ...] = (Orders, Payments, Inventory, Notify)
