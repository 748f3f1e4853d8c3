"""Book trips with a workflow: the trip of travel_booking.py as plain Python, which can
do what a fixed graph of steps cannot: fall back to another hotel, and wait for a person.

    python examples/travel_workflow.py

The steps call the four small services that ``legato demo`` uses, each with its
own SQLite database; in your code they would call your own services. What to
look at: a trip whose first hotel is full takes the next one; a trip over 1,000
waits for the manager's approval, sent by this script as a signal (a trip over
1,500 is refused, and rolled back: its holds cancelled, newest first); a flaky
payment service is retried and still charges once.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import legato
from legato.demo.faults import Faults
from legato.demo.services import Services
from legato.demo.workload import Inventory, Item

APPROVAL_OVER = 1_000_00  # cents: a dearer trip waits for the manager
FAST = legato.RetryPolicy(max_attempts=6, backoff=0.01, timeout=1.0)

# A compensation may have to run after a crash, in another process: the journal keeps
# it as an import path and JSON arguments. So the steps below are module-level
# functions, and find the services by a name in their arguments (the directory), as
# yours would find a database by its URL. (Run as a script, their path begins with
# __main__: in your code, put them in a module that every coordinator can import.)
OPEN: dict[str, Services] = {}
MANAGER: asyncio.Queue[tuple[str, int]] = asyncio.Queue()


def reserve(desk: str, service: str, item: str, units: int) -> Any:
    """Hold a seat, a room or a car; ``legato.Failure`` if none is left."""
    return getattr(OPEN[desk], service).hold(legato.current_step(), item, units)


def cancel(desk: str, service: str, item: str, units: int) -> None:
    """Undo ``reserve``: called with the same arguments, if the trip rolls back."""
    getattr(OPEN[desk], service).cancel(legato.current_step())


def charge(desk: str, customer: str, amount: int) -> Any:
    return OPEN[desk].payments.charge_card(legato.current_step(), customer, amount)


def refund(desk: str) -> None:
    """Undo ``charge`` (the service knows what it charged this step)."""
    OPEN[desk].payments.refund(legato.current_step())


def confirm(desk: str, holds: dict[str, int]) -> Any:
    return OPEN[desk].confirm_holds(legato.current_step(), holds)


async def ask_manager(amount: int) -> None:
    """Tell the manager that this trip waits for them (yours: an email, a ticket)."""
    await MANAGER.put((legato.current_step().gid, amount))


@legato.workflow("travel_workflow")
async def book_trip(wf: legato.Workflow, desk: str, order: dict[str, Any]) -> dict[str, Any]:
    nights = order["nights"]
    flight = await wf.step(
        reserve, desk, "flights", order["flight"], 1, name="flight", compensate=cancel
    )
    for hotel in order["hotels"]:  # best first
        try:
            room = await wf.step(
                reserve, desk, "hotels", hotel, nights, name="hotel", compensate=cancel
            )
            break
        except legato.Failure:
            continue  # sold out: try the next one
    else:
        raise legato.Failure("no hotel left")  # rolls back: the flight is cancelled
    car = await wf.step(reserve, desk, "cars", order["car"], nights, name="car", compensate=cancel)
    amount = flight["price"] + room["price"] + car["price"]
    if amount > APPROVAL_OVER:
        await wf.step(ask_manager, amount)
        approved = await wf.wait_for("approval", timeout=30)  # None once 30 s have passed
        if not approved:
            raise legato.Failure("not approved")  # rolls back the car, the room, the flight
    await wf.step(
        charge,
        desk,
        order["customer"],
        amount,
        name="pay",
        compensate=legato.call(refund, desk),  # a compensation with arguments of its own
        retry=FAST,
    )
    await wf.pivot()  # paid: from here on the trip only goes forward
    holds = {"flight": flight["reservation"], "hotel": room["reservation"]}
    await wf.step(confirm, desk, {**holds, "car": car["reservation"]}, name="confirm")
    return {"hotel": room["item"], "paid": amount}


async def manager(coordinator: legato.Coordinator) -> None:
    """Reads the requests, and answers each with a signal: up to 1,500, approved."""
    while True:
        gid, amount = await MANAGER.get()
        await asyncio.sleep(0.3)  # reading the request
        approved = amount <= 1_500_00
        print(f"  manager: {'approves' if approved else 'refuses'} {gid} ({amount / 100:.2f})")
        await coordinator.signal(gid, "approval", approved)


INVENTORY = Inventory(  # prices in cents
    flights=(Item("LIS-1", "LIS", capacity=100, price=320_00),),
    hotels=(
        Item("LIS-harbour", "LIS", capacity=2, price=140_00),  # two rooms for five trips
        Item("LIS-old-town", "LIS", capacity=40, price=110_00),
    ),
    cars=(Item("LIS-cars", "LIS", capacity=10, price=45_00),),
    accounts={"ana": 3_000_00, "ben": 3_000_00, "cai": 3_000_00},
)


def trip(customer: str, nights: int, hotels: list[str]) -> dict[str, Any]:
    return {
        "customer": customer,
        "flight": "LIS-1",
        "hotels": hotels,
        "car": "LIS-cars",
        "nights": nights,
    }


async def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="legato-example-"))
    # one payment call in three fails before it reaches the service, and one reply
    # in ten is lost after the charge was made: both are retried, neither charges twice
    faults = Faults(seed=7, flaky=0.3, lost_reply=0.1, slow=0.0, decline=0.0)
    desk = str(directory)
    OPEN[desk] = Services.open(directory, faults, INVENTORY)
    log = f"sqlite:///{directory / 'legato.db'}"
    both = ["LIS-harbour", "LIS-old-town"]
    trips = [
        trip("ana", 2, both),  # the harbour
        trip("ben", 1, both),  # the harbour's last room
        trip("cai", 5, both),  # the harbour is full: the old town; over 1,000: approved
        trip("ana", 9, both),  # over 1,500: refused, rolled back
        trip("ben", 2, ["LIS-harbour"]),  # only the harbour will do: none left
    ]
    try:
        async with legato.Coordinator(log) as coordinator:
            coordinator.register(book_trip)
            answering = asyncio.create_task(manager(coordinator))
            for i, order in enumerate(trips):
                gid = f"example-trip-{i}"
                handle = await coordinator.start_workflow(book_trip, desk, order, gid=gid)
                outcome = await handle.result(timeout=60)
                if outcome.succeeded:
                    hotel, paid = outcome.result["hotel"], outcome.result["paid"] / 100
                    print(f"{gid}: booked for {order['customer']} at {hotel}, paid {paid:.2f}")
                else:
                    print(f"{gid}: rolled back: {outcome.reason}")
            answering.cancel()
    finally:
        OPEN[desk].wait_idle()
        OPEN.pop(desk).close()
    print(f"\nthe services' databases and the log are in {directory}")
    print(f"legato tx list --log {log}")
    print(f"legato tx show example-trip-3 --log {log}   # the refused trip, undone in reverse")


if __name__ == "__main__":
    asyncio.run(main())
