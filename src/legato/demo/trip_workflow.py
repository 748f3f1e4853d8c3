"""The trip as a workflow: the saga's steps as plain Python, and what a fixed graph of
steps cannot say::

    flight ─> hotel, the trip's first choice ─> car ─> [over the limit: ask, and
              (sold out: the next one;              wait for an approval signal]
               none left: roll back)                 ─> pay ─> (pivot) ─> confirm

Each step is journaled before the workflow goes on, with its compensation; a
failure raised out of the body (no hotel left, the approval refused or never
given, the card declined) undoes the steps that happened, in reverse.

A compensation is kept in the journal as an import path and JSON arguments: it
may run after a restart, on another coordinator. So the steps and compensations
below are module-level functions that find what they act on by a name in their
arguments: the desk (the demo's directory), open in this process while the demo
runs. A real service would find its database by its URL instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import legato
from legato import Json

from .faults import Unavailable
from .services import ReservationService, Services
from .trip import HOLD_RETRY, PAY_RETRY, UNDO_RETRY
from .workload import car_item

WORKFLOW_NAME = "book_trip"
APPROVAL = "approval"
"""The signal a trip over the approval limit waits for: True (approved) or False."""

Ask = Callable[[str, int], None]
"""Who approves: told a trip's gid and amount (cents); answers with a signal."""


@dataclass(frozen=True, slots=True)
class Desk:
    """What the steps of one demo's trips reach: its services, and who approves."""

    services: Services
    ask: Ask


_desks: dict[str, Desk] = {}


@contextmanager
def open_desk(name: str, services: Services, ask: Ask) -> Iterator[None]:
    """Make ``services`` and ``ask`` the desk ``name`` for the workflow's steps, while
    the ``with`` block runs."""
    if name in _desks:
        raise RuntimeError(f"the desk {name!r} is open already")
    _desks[name] = Desk(services, ask)
    try:
        yield
    finally:
        del _desks[name]


def _desk(name: str) -> Desk:
    found = _desks.get(name)
    if found is None:
        # an unknown outcome: retried, and past its attempts the trip is stuck
        raise Unavailable(f"the travel desk {name!r} is not open in this process")
    return found


def _reservations(desk: str, service: str) -> ReservationService:
    services = _desk(desk).services
    found: ReservationService = {
        "flights": services.flights,
        "hotels": services.hotels,
        "cars": services.cars,
    }[service]
    return found


# -- the steps, and their compensations ---------------------------------------------------


def reserve(desk: str, service: str, item: str, units: int) -> Json:
    """Hold one ``item`` (a seat, a room, a car) for ``units`` price units."""
    return _reservations(desk, service).hold(legato.current_step(), item, units)


def cancel(desk: str, service: str, item: str, units: int) -> Json:
    """Compensation of ``reserve`` (called with its arguments): free what it held."""
    return _reservations(desk, service).cancel(legato.current_step())


async def ask_for_approval(desk: str, amount: int) -> None:
    """Tell whoever approves that this trip waits for them."""
    _desk(desk).ask(legato.current_step().gid, amount)


def charge(desk: str, customer: str, amount: int) -> Json:
    return _desk(desk).services.payments.charge_card(legato.current_step(), customer, amount)


def refund(desk: str, customer: str, amount: int) -> Json:
    """Compensation of ``charge``: pay back what it took."""
    return _desk(desk).services.payments.refund(legato.current_step())


def confirm(desk: str, holds: dict[str, int]) -> Json:
    return _desk(desk).services.confirm_holds(legato.current_step(), holds)


# -- the workflow ---------------------------------------------------------------------------


def price(held: Json) -> int:
    assert isinstance(held, dict)
    return int(held["price"])


def reservation(held: Json) -> int:
    assert isinstance(held, dict)
    return int(held["reservation"])


@legato.workflow(WORKFLOW_NAME, retry=HOLD_RETRY, compensate_retry=UNDO_RETRY)
async def book_trip(
    wf: legato.Workflow, desk: str, order: dict[str, Json], approval: dict[str, Json]
) -> dict[str, Json]:
    """Book ``order`` (a trip's payload, with its ``hotels`` best first). A trip over
    ``approval["over"]`` cents waits ``approval["within"]`` seconds for approval."""
    nights = int(order["nights"])
    flight = await wf.step(
        reserve, desk, "flights", order["flight"], 1, name="flight", compensate=cancel
    )
    hotels = order["hotels"]
    assert isinstance(hotels, list)
    for hotel in hotels:
        try:
            room = await wf.step(
                reserve, desk, "hotels", hotel, nights, name="hotel", compensate=cancel
            )
            break
        except legato.Failure:
            continue  # sold out: the next hotel of the trip
    else:
        raise legato.Failure(f"hotel sold out: none left of {', '.join(map(str, hotels))}")
    car = await wf.step(
        reserve,
        desk,
        "cars",
        car_item(str(order["city"])),
        nights,
        name="car",
        compensate=cancel,
    )
    amount = price(flight) + price(room) + price(car)
    if amount > int(approval["over"]):
        await wf.step(ask_for_approval, desk, amount, name="ask")
        within = float(approval["within"])
        approved = await wf.wait_for(APPROVAL, timeout=within)
        if approved is None:
            raise legato.Failure(f"no approval in {within:g} s")
        if not approved:
            raise legato.Failure("approval refused")
    customer = str(order["customer"])
    await wf.step(charge, desk, customer, amount, name="pay", compensate=refund, retry=PAY_RETRY)
    await wf.pivot()  # charged: from here on the trip only goes forward
    holds = {"flight": reservation(flight), "hotel": reservation(room), "car": reservation(car)}
    await wf.step(confirm, desk, holds, name="confirm")
    assert isinstance(room, dict)
    return {"hotel": room["item"], "paid": amount}
