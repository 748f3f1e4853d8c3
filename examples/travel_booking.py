"""Book trips with a saga: a seat, a room and a car held at once, then the payment.

    python examples/travel_booking.py

The steps call the four small services that ``legato demo`` uses, each with its
own SQLite database; in your code they would call your own services. What to
look at: a flaky payment service is retried and still charges once; a trip
that cannot be paid for, or finds no car left, is rolled back (its holds
cancelled, its car free again for the next trip).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import legato
from legato.demo.faults import Faults
from legato.demo.services import Services
from legato.demo.workload import Inventory, Item


def trip_saga(services: Services) -> legato.Saga:
    """flight, hotel and car in parallel; then pay (the pivot); then confirm the holds."""
    trip = legato.Saga("travel_booking")
    for step, service in (
        ("flight", services.flights),
        ("hotel", services.hotels),
        ("car", services.cars),
    ):
        trip.step(step, action=service.reserve, compensate=service.cancel, depends_on=[])
    trip.step(
        "pay",
        action=services.payments.charge,  # charges the sum of the prices quoted above
        compensate=services.payments.refund,
        depends_on=["flight", "hotel", "car"],
        pivot=True,  # once paid, the trip only goes forward
        retry=legato.RetryPolicy(max_attempts=6, backoff=0.01, timeout=1.0),
    )
    trip.step("confirm", action=services.confirm_trip, depends_on=["pay"])
    return trip


INVENTORY = Inventory(  # prices in cents
    flights=(Item("LIS-1", "LIS", capacity=100, price=320_00),),
    hotels=(Item("LIS-harbour", "LIS", capacity=40, price=140_00),),
    cars=(Item("LIS-cars", "LIS", capacity=3, price=45_00),),  # three cars for five trips
    accounts={"ana": 3_000_00, "ben": 400_00, "cai": 3_000_00},
)


def trip(customer: str, nights: int) -> dict[str, object]:
    return {
        "customer": customer,
        "city": "LIS",
        "flight": "LIS-1",
        "hotel": "LIS-harbour",
        "nights": nights,
    }


async def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="legato-example-"))
    # one payment call in three fails before it reaches the service, and one reply
    # in ten is lost after the charge was made: both are retried, neither charges twice
    faults = Faults(seed=7, flaky=0.3, lost_reply=0.1, slow=0.0, decline=0.0)
    services = Services.open(directory, faults, INVENTORY)
    saga = trip_saga(services)
    log = f"sqlite:///{directory / 'legato.db'}"
    trips = [trip("ana", 3), trip("ben", 2), trip("cai", 4), trip("ana", 1), trip("cai", 2)]
    try:
        async with legato.Coordinator(log) as coordinator:
            for i, payload in enumerate(trips):
                handle = await coordinator.submit(saga, payload, gid=f"example-trip-{i}")
                outcome = await handle.result(timeout=30)
                _, ops = await coordinator.get(handle.gid)
                attempts = {o.branch: o.attempts for o in ops if o.op is legato.OpName.ACTION}
                if outcome.succeeded:
                    paid = outcome.outputs["pay"]["amount"] / 100
                    print(
                        f"{handle.gid}: booked for {payload['customer']}, paid {paid:.2f}"
                        f" (payment attempts: {attempts['pay']})"
                    )
                else:
                    print(f"{handle.gid}: rolled back: {outcome.reason}")
    finally:
        services.wait_idle()
        services.close()
    print(f"\nthe services' databases and the log are in {directory}")
    print(f"legato tx list --log {log}")


if __name__ == "__main__":
    asyncio.run(main())
