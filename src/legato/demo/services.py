"""The four travel services: flights, hotels, cars and payments.

Each owns a SQLite file with real inventory (seats, rooms, cars, account
balances) and a barrier table (see ``service.py``). Their entry points are
plain synchronous functions of a ``legato.StepContext``: a saga step calls
them directly, in the coordinator's step threads (``reserve``, ``charge``,
``confirm_trip`` read what they need from the saga's payload and outputs); a
workflow's step passes it explicitly (``hold``, ``charge_card``,
``confirm_holds``, with ``legato.current_step()``).

>>> services = Services.open(Path("demo"), Faults(seed=1), inventory)  # doctest: +SKIP
>>> flights = services.flights  # doctest: +SKIP
>>> trip.step("flight", action=flights.reserve, compensate=flights.cancel)  # doctest: +SKIP
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from legato import Failure, Json, StepContext

from .faults import Faults, Unavailable
from .service import Service
from .workload import MERCHANT, Inventory, Item, car_item

RESERVATION_SCHEMA = """
CREATE TABLE IF NOT EXISTS inventory (
    item     TEXT    PRIMARY KEY,
    city     TEXT    NOT NULL,
    capacity INTEGER NOT NULL,
    free     INTEGER NOT NULL CHECK (free >= 0),
    price    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    id         INTEGER PRIMARY KEY,
    gid        TEXT    NOT NULL,
    item       TEXT    NOT NULL REFERENCES inventory (item),
    units      INTEGER NOT NULL,
    price      INTEGER NOT NULL,
    state      TEXT    NOT NULL CHECK (state IN ('held', 'confirmed', 'cancelled')),
    created_at REAL    NOT NULL,
    updated_at REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_by_gid ON reservations (gid);
"""

PAYMENT_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id      TEXT    PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS payments (
    id       INTEGER PRIMARY KEY,
    gid      TEXT    NOT NULL,
    kind     TEXT    NOT NULL CHECK (kind IN ('charge', 'refund')),
    customer TEXT    NOT NULL,
    amount   INTEGER NOT NULL CHECK (amount > 0),
    at       REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_gid ON payments (gid);
-- what was paid into the accounts when they were opened: the balances must add up to it
CREATE TABLE IF NOT EXISTS funding (total INTEGER NOT NULL);
"""


class ReservationService(Service):
    """Holds a unit of inventory for a trip; confirms or cancels the hold.

    A reservation is ``held`` by the saga's action, ``confirmed`` once the trip
    is paid for, ``cancelled`` by the compensation (which frees the unit).
    """

    unit = "unit"
    schema = RESERVATION_SCHEMA

    def __init__(self, path: Path, faults: Faults, items: Sequence[Item]) -> None:
        super().__init__(path)
        self.faults = faults
        with self._transaction() as db:
            if db.execute("SELECT count(*) FROM inventory").fetchone()[0] == 0:
                db.executemany(
                    "INSERT INTO inventory (item, city, capacity, free, price)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(i.id, i.city, i.capacity, i.capacity, i.price) for i in items],
                )

    def item_for(self, payload: dict[str, Json]) -> tuple[str, int]:
        """Which inventory line a trip wants, and for how many price units."""
        raise NotImplementedError

    def reserve(self, ctx: StepContext) -> Json:
        """The saga's step: hold one unit of what the trip wants (its payload says)."""
        return self.hold(ctx, *self.item_for(ctx.payload))

    def hold(self, ctx: StepContext, item: str, units: int) -> Json:
        """Hold one unit of ``item`` for ``units`` price units; ``Failure`` when none
        is left."""

        def hold(db: sqlite3.Connection) -> Json:
            row = db.execute("SELECT free, price FROM inventory WHERE item = ?", (item,)).fetchone()
            if row is None:
                raise Failure(f"no such {self.unit}: {item}")
            if row[0] == 0:
                raise Failure(f"sold out: no {self.unit} left at {item}")
            now = time.time()
            db.execute("UPDATE inventory SET free = free - 1 WHERE item = ?", (item,))
            cur = db.execute(
                "INSERT INTO reservations (gid, item, units, price, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'held', ?, ?)",
                (ctx.gid, item, units, row[1] * units, now, now),
            )
            return {"reservation": cur.lastrowid, "item": item, "price": row[1] * units}

        with self.call():
            return self._action(ctx, hold)

    def cancel(self, ctx: StepContext) -> Json:
        """Compensation: cancel the hold and free the unit (nothing if it was never held)."""

        def release(db: sqlite3.Connection, held: Json) -> None:
            changed = db.execute(
                "UPDATE reservations SET state = 'cancelled', updated_at = ?"
                " WHERE id = ? AND state != 'cancelled'",
                (time.time(), held["reservation"]),
            ).rowcount
            if changed:
                db.execute("UPDATE inventory SET free = free + 1 WHERE item = ?", (held["item"],))

        with self.call():
            return self._compensate(ctx, release)

    def confirm(self, ctx: StepContext, reservation: int) -> Json:
        """Turn the trip's hold into a booking, once the trip is paid for."""

        def confirm(db: sqlite3.Connection) -> Json:
            changed = db.execute(
                "UPDATE reservations SET state = 'confirmed', updated_at = ?"
                " WHERE id = ? AND gid = ? AND state = 'held'",
                (time.time(), reservation, ctx.gid),
            ).rowcount
            if not changed:
                raise Failure(f"reservation {reservation} of {ctx.gid} is not held")
            return reservation

        with self.call():
            return self._action(ctx, confirm)


class FlightService(ReservationService):
    name = "flights"
    unit = "seat"

    def item_for(self, payload: dict[str, Json]) -> tuple[str, int]:
        return str(payload["flight"]), 1


class HotelService(ReservationService):
    name = "hotels"
    unit = "room"

    def item_for(self, payload: dict[str, Json]) -> tuple[str, int]:
        return str(payload["hotel"]), int(payload["nights"])

    def cancel(self, ctx: StepContext) -> Json:
        if self.faults.stuck_trip(ctx.gid):
            raise Unavailable("the hotel's cancellation desk is not answering")
        return super().cancel(ctx)


class CarService(ReservationService):
    name = "cars"
    unit = "car"

    def item_for(self, payload: dict[str, Json]) -> tuple[str, int]:
        return car_item(str(payload["city"])), int(payload["nights"])


class PaymentService(Service):
    """Moves money between a customer's account and the merchant's.

    A charge moves the sum of the prices the trip's earlier steps quoted from the
    customer to the merchant; a refund moves it back. Money is neither made nor
    lost: the balances always add up to what was paid in.
    """

    name = "payments"
    schema = PAYMENT_SCHEMA

    def __init__(self, path: Path, faults: Faults, accounts: dict[str, int]) -> None:
        super().__init__(path)
        self.faults = faults
        with self._transaction() as db:
            if db.execute("SELECT count(*) FROM funding").fetchone()[0] == 0:
                db.executemany(
                    "INSERT INTO accounts (id, balance) VALUES (?, ?)",
                    [*accounts.items(), (MERCHANT, 0)],
                )
                db.execute("INSERT INTO funding (total) VALUES (?)", (sum(accounts.values()),))

    def charge(self, ctx: StepContext) -> Json:
        """The saga's step: charge the trip's customer the prices its holds quoted."""
        customer = str(ctx.payload["customer"])
        amount = sum(int(out["price"]) for out in ctx.outputs.values() if isinstance(out, dict))
        return self.charge_card(ctx, customer, amount)

    def charge_card(self, ctx: StepContext, customer: str, amount: int) -> Json:
        """Move ``amount`` cents from ``customer`` to the merchant; ``Failure`` when the
        card is declined or the account is short."""

        def pay(db: sqlite3.Connection) -> Json:
            if self.faults.declined(ctx.gid):
                self.faults.count("decline")
                raise Failure("card declined")
            row = db.execute("SELECT balance FROM accounts WHERE id = ?", (customer,)).fetchone()
            if row is None or row[0] < amount:
                raise Failure(f"insufficient funds: {customer} cannot pay {amount / 100:.2f}")
            _move(db, customer, MERCHANT, amount)
            cur = db.execute(
                "INSERT INTO payments (gid, kind, customer, amount, at)"
                " VALUES (?, 'charge', ?, ?, ?)",
                (ctx.gid, customer, amount, time.time()),
            )
            return {"payment": cur.lastrowid, "customer": customer, "amount": amount}

        with self.call():
            self.faults.network(ctx)
            out = self._action(ctx, pay)
            self.faults.reply(ctx)
            return out

    def refund(self, ctx: StepContext) -> Json:
        def pay_back(db: sqlite3.Connection, charged: Json) -> None:
            customer, amount = str(charged["customer"]), int(charged["amount"])
            _move(db, MERCHANT, customer, amount)
            db.execute(
                "INSERT INTO payments (gid, kind, customer, amount, at)"
                " VALUES (?, 'refund', ?, ?, ?)",
                (ctx.gid, customer, amount, time.time()),
            )

        with self.call():
            self.faults.network(ctx)
            out = self._compensate(ctx, pay_back)
            self.faults.reply(ctx)
            return out


def _move(db: sqlite3.Connection, source: str, target: str, amount: int) -> None:
    db.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, source))
    db.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, target))


DATABASES = {
    "flights": "flights.db",
    "hotels": "hotels.db",
    "cars": "cars.db",
    "payments": "payments.db",
}


@dataclass
class Services:
    """The four services of one demo directory."""

    flights: FlightService
    hotels: HotelService
    cars: CarService
    payments: PaymentService

    @staticmethod
    def open(directory: Path, faults: Faults, inventory: Inventory) -> Services:
        """Open the services' databases in ``directory``, stocking any that are new."""
        directory.mkdir(parents=True, exist_ok=True)
        return Services(
            FlightService(directory / DATABASES["flights"], faults, inventory.flights),
            HotelService(directory / DATABASES["hotels"], faults, inventory.hotels),
            CarService(directory / DATABASES["cars"], faults, inventory.cars),
            PaymentService(directory / DATABASES["payments"], faults, inventory.accounts),
        )

    def __iter__(self) -> Iterator[Service]:
        return iter((self.flights, self.hotels, self.cars, self.payments))

    def confirm_trip(self, ctx: StepContext) -> Json:
        """The saga's step, after payment: confirm the holds its steps made."""
        holds = {}
        for step in ("flight", "hotel", "car"):
            held = ctx.outputs[step]
            assert isinstance(held, dict)
            holds[step] = int(held["reservation"])
        return self.confirm_holds(ctx, holds)

    def confirm_holds(self, ctx: StepContext, holds: Mapping[str, int]) -> Json:
        """Confirm the flight, hotel and car holds (``holds``: their reservations), each
        once, by the barrier."""
        for service, step in ((self.flights, "flight"), (self.hotels, "hotel"), (self.cars, "car")):
            service.confirm(ctx, holds[step])
        return {"confirmed": ["flight", "hotel", "car"]}

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait for calls still running, e.g. late ones the coordinator gave up on."""
        return all(s.wait_idle(timeout) for s in self)

    def close(self) -> None:
        for s in self:
            s.close()
