"""The four travel services as Starlette apps: flights, hotels, cars and payments.

Each branch handler answers the coordinator's call (DESIGN section 5) and runs
its business SQL inside Legato's barrier, in one local transaction of the
service's own database::

    POST /reserve?gid=trip-1-7&trans_type=saga&branch_id=car&op=action   {"city": "LIS", ...}
    200 {"dtm_result": "SUCCESS", "barrier": "ran", "result": {"item": "LIS-cars", ...}}
    409 {"dtm_result": "FAILURE", "message": "sold out: no car left at LIS-cars"}

A repeated delivery, a compensation whose action never ran, and an action that
arrives after its compensation are all answered 200 with the barrier's
``duplicate`` / ``null_compensation`` / ``hanging``, and change nothing.

>>> app = create_app("cars", "sqlite:///demo/cars.db")  # doctest: +SKIP
>>> uvicorn.run(app, port=8003)                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from legato import Failure, Json
from legato.participant import Barrier, BarrierResult

from ..faults import Faults
from ..workload import MERCHANT, car_item
from .faults import DECLINE, Attempt, ServiceFaults
from .store import Store

Business = Callable[[Connection], Json]
KINDS = ("flights", "hotels", "cars", "payments")
RESERVATION_KINDS = ("flights", "hotels", "cars")
UNITS = {"flights": "seat", "hotels": "room", "cars": "car"}


class BadPayload(ValueError):
    """The op's body is not what this endpoint takes."""


def _field(payload: Mapping[str, Any], name: str, kind: type) -> Any:
    value = payload.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadPayload(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


def _item(kind: str, payload: Mapping[str, Any]) -> tuple[str, int]:
    """The inventory item a trip asks of this service, and how many nights/seats it prices."""
    if kind == "flights":
        return _field(payload, "flight", str), 1
    nights = _field(payload, "nights", int)
    if kind == "hotels":
        return _field(payload, "hotel", str), nights
    return car_item(_field(payload, "city", str)), nights


# -- the business SQL, one function per op -----------------------------------------------


def hold(kind: str, gid: str, payload: Mapping[str, Any]) -> Business:
    """Action: take one unit of the item the trip asks for, at its price."""
    item, units = _item(kind, payload)

    def run(conn: Connection) -> Json:
        price = conn.execute(
            text("SELECT price FROM inventory WHERE item = :item"), {"item": item}
        ).scalar_one_or_none()
        if price is None:
            raise Failure(f"no such {UNITS[kind]}: {item}")
        # the guard in the UPDATE, not a read before it: two trips racing for the last
        # car on PostgreSQL or MariaDB cannot both see it free
        taken = conn.execute(
            text("UPDATE inventory SET free = free - 1 WHERE item = :item AND free > 0"),
            {"item": item},
        ).rowcount
        if not taken:
            raise Failure(f"sold out: no {UNITS[kind]} left at {item}")
        conn.execute(
            text(
                "INSERT INTO reservations (gid, item, price, state)"
                " VALUES (:gid, :item, :price, 'held')"
            ),
            {"gid": gid, "item": item, "price": price * units},
        )
        return {"item": item, "price": price * units}

    return run


def release(gid: str) -> Business:
    """Compensation: cancel the trip's hold and free the unit.

    It undoes what this service recorded, never what the request says: after a
    lost reply the coordinator never saw what the action did.
    """

    def run(conn: Connection) -> Json:
        row = conn.execute(
            text("SELECT id, item FROM reservations WHERE gid = :gid AND state = 'held'"),
            {"gid": gid},
        ).first()
        if row is None:
            return None
        conn.execute(
            text("UPDATE reservations SET state = 'cancelled' WHERE id = :id"), {"id": row[0]}
        )
        conn.execute(
            text("UPDATE inventory SET free = free + 1 WHERE item = :item"), {"item": row[1]}
        )
        return {"cancelled": row[1]}

    return run


def _move(conn: Connection, source: str, target: str, amount: int) -> bool:
    """Move money; False if ``source`` cannot pay it (the caller then raises, and the
    transaction rolls back whatever was already moved).

    The two rows are updated in one order (by account id) whichever way the money
    goes, so a charge and a refund of one customer at once cannot deadlock on
    PostgreSQL or MariaDB.
    """
    for account in sorted((source, target)):
        if account == source:
            debited = conn.execute(
                text(
                    "UPDATE accounts SET balance = balance - :amount"
                    " WHERE id = :id AND balance >= :amount"
                ),
                {"amount": amount, "id": source},
            ).rowcount
            if not debited:
                return False
        else:
            conn.execute(
                text("UPDATE accounts SET balance = balance + :amount WHERE id = :id"),
                {"amount": amount, "id": target},
            )
    return True


def _record(conn: Connection, gid: str, kind: str, customer: str, amount: int) -> None:
    conn.execute(
        text(
            "INSERT INTO payments (gid, kind, customer, amount)"
            " VALUES (:gid, :kind, :customer, :amount)"
        ),
        {"gid": gid, "kind": kind, "customer": customer, "amount": amount},
    )


def charge(gid: str, payload: Mapping[str, Any], faults: ServiceFaults) -> Business:
    """Action: move the trip's price from the customer to the merchant."""
    customer = _field(payload, "customer", str)
    amount = _field(payload, "amount", int)
    if amount <= 0:
        raise BadPayload(f"amount: must be positive, not {amount}")

    def run(conn: Connection) -> Json:
        if faults.declined(gid):
            faults.faults.count(DECLINE)
            raise Failure("card declined")
        if not _move(conn, customer, MERCHANT, amount):
            raise Failure(f"insufficient funds: {customer} cannot pay {amount / 100:.2f}")
        _record(conn, gid, "charge", customer, amount)
        return {"customer": customer, "amount": amount}

    return run


def refund(gid: str) -> Business:
    """Compensation: pay back what this service charged the trip (read from its own table)."""

    def run(conn: Connection) -> Json:
        row = conn.execute(
            text("SELECT customer, amount FROM payments WHERE gid = :gid AND kind = 'charge'"),
            {"gid": gid},
        ).first()
        if row is None:
            return None
        customer, amount = str(row[0]), int(row[1])
        if not _move(conn, MERCHANT, customer, amount):
            # the merchant got this money from this very charge: it cannot be short
            raise RuntimeError(f"the merchant cannot refund {amount} to {customer}")
        _record(conn, gid, "refund", customer, amount)
        return {"refunded": amount}

    return run


# -- the HTTP side -------------------------------------------------------------------------


def _answer(status: int, body: dict[str, Json]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


@dataclass
class Participant:
    """One service: its store, its faults, and what /stats reports."""

    kind: str
    store: Store
    faults: ServiceFaults
    in_flight: int = 0  # requests being handled, late ones included
    barrier: Counter[str] = field(default_factory=Counter)
    # when each op's database work ran (wall clock, for crash tests to compare across
    # processes): two runs of one op at once would mean two drivers of one transaction
    calls: list[dict[str, Json]] = field(default_factory=list)

    def _in_barrier(self, barrier: Barrier, business: Business) -> BarrierResult[Json]:
        with self.store.writing(), self.store.connect() as conn:
            return barrier.call(conn, business)

    async def handle(self, request: Request, build: Callable[[str, Any], Business]) -> JSONResponse:
        """Answer one op: faults, then ``build(gid, payload)``'s SQL inside the barrier."""
        self.in_flight += 1
        try:
            return await self._handle(request, build)
        finally:
            self.in_flight -= 1

    async def _handle(
        self, request: Request, build: Callable[[str, Any], Business]
    ) -> JSONResponse:
        try:
            barrier = Barrier.from_query(request.query_params)
            attempt = Attempt(
                barrier.gid,
                barrier.branch_id,
                barrier.op,
                int(request.headers.get("Legato-Attempt", "1")),
            )
            body = await request.body()
            payload = await request.json() if body else {}
            if not isinstance(payload, dict):
                raise BadPayload("the body must be a JSON object")
            business = build(barrier.gid, payload)
        except ValueError as exc:  # BarrierRequestError, BadPayload, bad JSON or header
            # not a business failure: no dtm_result, so the coordinator does not roll back
            return _answer(400, {"error": str(exc)})
        refused = await self._before(barrier, attempt)
        if refused is not None:
            return refused
        started = time.time()
        try:
            result = await run_in_threadpool(self._in_barrier, barrier, business)
        except Failure as exc:
            answer = _answer(409, {"dtm_result": "FAILURE", "message": str(exc)})
        else:
            self.barrier[result.outcome.value] += 1
            answer = _answer(
                200,
                {"dtm_result": "SUCCESS", "barrier": result.outcome.value, "result": result.value},
            )
        finally:
            call = {"gid": barrier.gid, "branch_id": barrier.branch_id, "op": barrier.op}
            self.calls.append({**call, "start": started, "end": time.time()})
        if self.kind == "payments" and self.faults.reply_lost(attempt):
            return _answer(500, {"error": "reply lost after the change was committed (injected)"})
        return answer

    async def _before(self, barrier: Barrier, attempt: Attempt) -> JSONResponse | None:
        """The faults that strike before the op reaches the database; their answer, if any."""
        if self.kind == "payments":
            late = self.faults.slow(attempt)
            if late:
                await asyncio.sleep(late)  # the coordinator gives up on this call meanwhile
            if self.faults.flaky(attempt):
                return _answer(503, {"error": "payment service unavailable (injected)"})
        stuck = self.kind == "hotels" and barrier.op == "compensate"
        if stuck and self.faults.stuck_trip(barrier.gid):
            return _answer(503, {"error": "the cancellation desk is not answering (injected)"})
        return None

    async def health(self, request: Request) -> JSONResponse:
        def ping() -> None:
            with self.store.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception as exc:  # any database problem means unhealthy
            return _answer(503, {"status": "unhealthy", "db": str(exc)})
        return _answer(200, {"status": "ok", "kind": self.kind, "db": self.store.dialect})

    async def stats(self, request: Request) -> JSONResponse:
        return _answer(
            200,
            {
                "kind": self.kind,
                "in_flight": self.in_flight,
                "barrier": dict(self.barrier),
                "faults": dict(self.faults.injected),
                "calls": self.calls if request.query_params.get("calls") else len(self.calls),
            },
        )


def _routes(p: Participant) -> list[Route]:
    def op(build: Callable[[str, Any], Business]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            return await p.handle(request, build)

        return endpoint

    routes = [
        Route("/health", p.health, methods=["GET"]),
        Route("/stats", p.stats, methods=["GET"]),
    ]
    if p.kind == "payments":
        return [
            *routes,
            Route("/charge", op(lambda gid, body: charge(gid, body, p.faults)), methods=["POST"]),
            Route("/refund", op(lambda gid, body: refund(gid)), methods=["POST"]),
        ]
    return [
        *routes,
        Route("/reserve", op(lambda gid, body: hold(p.kind, gid, body)), methods=["POST"]),
        Route("/cancel", op(lambda gid, body: release(gid)), methods=["POST"]),
    ]


def create_app(kind: str, db_url: str, faults: Faults | None = None) -> Starlette:
    """The ``kind`` service (flights, hotels, cars, payments) on its database ``db_url``.

    The tables are created now, empty; stock them with ``Store.stock_items`` /
    ``Store.open_accounts`` (the ``service`` command does, from ``--stock``).
    Faults are drawn from ``faults`` (none by default).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    none = Faults(flaky=0, lost_reply=0, slow=0, decline=0, stuck=0)
    participant = Participant(kind, Store.open(db_url), ServiceFaults(faults or none))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            participant.store.close()

    app = Starlette(routes=_routes(participant), lifespan=lifespan)
    app.state.participant = participant
    return app
