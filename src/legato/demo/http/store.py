"""A travel service's own database, reached through a SQLAlchemy URL.

SQLite (``sqlite:///flights.db``, the demo's default), PostgreSQL
(``postgresql+psycopg://...``) and MariaDB / MySQL (``mysql+pymysql://...``) all
work: the tables are declared once below and SQLAlchemy writes each dialect's
DDL; the business SQL in ``apps.py`` is plain SQL that the three share.

>>> store = Store.open("sqlite:///demo/cars.db")  # doctest: +SKIP
>>> store.stock_items([Item("LIS-cars", "LIS", 12, 45_00)])  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    text,
)

from legato.participant import create_table

from ..workload import MERCHANT, Item

metadata = MetaData()

# one unit (a seat, a room, a car) per trip; prices are cents
inventory = Table(
    "inventory",
    metadata,
    Column("item", String(64), primary_key=True),
    Column("city", String(16), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("free", Integer, nullable=False),
    Column("price", BigInteger, nullable=False),
    # table constraints: MariaDB refuses a named CHECK on a column
    CheckConstraint("free >= 0", name="free_not_negative"),
)
# not unique on gid on purpose: the barrier is what keeps a trip to one
# reservation, and the consistency check counts them to prove it
reservations = Table(
    "reservations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gid", String(128), nullable=False, index=True),
    Column("item", String(64), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    CheckConstraint("state IN ('held', 'cancelled')", name="state_known"),
)
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("balance", BigInteger, nullable=False),
    CheckConstraint("balance >= 0", name="balance_not_negative"),
)
payments = Table(
    "payments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gid", String(128), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("customer", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("kind IN ('charge', 'refund')", name="kind_known"),
    CheckConstraint("amount > 0", name="amount_positive"),
)
# what was paid into the accounts when they were opened: the balances must add up to it
funding = Table(
    "funding",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("total", BigInteger, nullable=False),
)


def _sqlite_setup(engine: Engine) -> None:
    """SQLAlchemy's recipe for real SQLite transactions, plus the demo's pragmas.

    The driver's own implicit BEGIN is turned off, and every transaction begins
    IMMEDIATE: it takes the write lock at once, so two requests never both read
    and then fail to upgrade to writing.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 10000")
        cur.execute("PRAGMA journal_mode = WAL")
        # a participant survives its own crash with NORMAL in WAL mode; only a
        # power cut could lose its last commits
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


@dataclass
class Store:
    """One service's database: its engine, and who may write when."""

    engine: Engine
    _lock: threading.Lock | None = None

    @staticmethod
    def open(url: str) -> Store:
        """Connect to ``url`` and create the tables (and the barrier's) where missing."""
        # as many connections as Starlette's thread pool has threads (40), no more
        engine = create_engine(url, pool_size=8, max_overflow=32)
        lock = None
        if engine.dialect.name == "sqlite":
            _sqlite_setup(engine)
            # SQLite has one writer anyway; a Python lock hands over at once where
            # SQLite's busy handler would sleep and poll under 30 concurrent requests
            lock = threading.Lock()
        store = Store(engine, lock)
        metadata.create_all(engine)
        with engine.connect() as conn:
            create_table(conn)
        return store

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def writing(self) -> AbstractContextManager[object]:
        """Hold this around a write transaction (a real lock on SQLite only)."""
        return self._lock if self._lock is not None else nullcontext()

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def stock_items(self, items: Sequence[Item]) -> bool:
        """Stock the inventory if it is empty; whether it was."""
        with self.writing(), self.engine.begin() as conn:
            if conn.execute(text("SELECT count(*) FROM inventory")).scalar_one():
                return False
            conn.execute(
                inventory.insert(),
                [
                    {
                        "item": i.id,
                        "city": i.city,
                        "capacity": i.capacity,
                        "free": i.capacity,
                        "price": i.price,
                    }
                    for i in items
                ],
            )
        return True

    def open_accounts(self, balances: Mapping[str, int]) -> bool:
        """Open the customers' accounts and the merchant's (at 0) if none are open yet."""
        with self.writing(), self.engine.begin() as conn:
            if conn.execute(text("SELECT count(*) FROM funding")).scalar_one():
                return False
            rows = [{"id": k, "balance": v} for k, v in balances.items()]
            conn.execute(accounts.insert(), [*rows, {"id": MERCHANT, "balance": 0}])
            conn.execute(funding.insert(), {"id": 1, "total": sum(balances.values())})
        return True


def reset(url: str) -> None:
    """Drop the demo's tables and the barrier's (a fresh run), on any database."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS legato_barrier"))
        metadata.drop_all(engine)
    finally:
        engine.dispose()
