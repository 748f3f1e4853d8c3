"""The trip saga as the native API takes it (``POST /v1/sagas``)::

    flight ─┐
    hotel  ─┼─> pay
    car    ─┘

The three holds run in parallel; the card is charged once all three are held.
A definite failure of any step (sold out, declined) rolls the trip back:
every step that started is compensated, the failed one included.

Over HTTP a step cannot read the outputs of earlier ones, so the trip's price
is worked out when it is submitted, from the prices the services were stocked
with; each service records and undoes what it itself did, never what a request
claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..workload import Inventory, Trip, car_item

# short backoffs: the injected faults are brief, and the demo should finish in seconds
HOLD_TIMEOUT = 5.0
HOLD_RETRY = {"max_attempts": 6, "backoff": 0.02, "max_backoff": 0.2}
# a payment call held up by the "slow" fault sleeps past this, so the coordinator
# abandons it and retries while the first call is still on its way
PAY_TIMEOUT = 0.6
SLOW_SECONDS = 1.0
PAY_RETRY = {"max_attempts": 8, "backoff": 0.02, "max_backoff": 0.2}
# an undo is retried longer: past its attempts the trip is stuck for an operator
UNDO_RETRY = {"max_attempts": 12, "backoff": 0.02, "max_backoff": 0.2}


def prices(inventory: Inventory) -> dict[str, int]:
    """Cents per seat, per room-night, per car-day, by item."""
    return {i.id: i.price for i in (*inventory.flights, *inventory.hotels, *inventory.cars)}


def amount(trip: Trip, price: Mapping[str, int]) -> int:
    """What the trip costs, as the three services will quote it."""
    p = trip.payload
    nights = int(p["nights"])
    return (
        price[str(p["flight"])]
        + price[str(p["hotel"])] * nights
        + price[car_item(str(p["city"]))] * nights
    )


def saga_body(
    trip: Trip, urls: Mapping[str, str], price: Mapping[str, int], wait_timeout: float
) -> dict[str, Any]:
    """The ``POST /v1/sagas`` body of one trip; ``urls`` are the services' base URLs."""
    p = trip.payload

    def hold(name: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "action": f"{urls[kind]}/reserve",
            "compensate": f"{urls[kind]}/cancel",
            "payload": payload,
            "depends_on": [],
            "timeout": HOLD_TIMEOUT,
            "retry": HOLD_RETRY,
            "compensate_retry": UNDO_RETRY,
        }

    pay = {
        "name": "pay",
        "action": f"{urls['payments']}/charge",
        "compensate": f"{urls['payments']}/refund",
        "payload": {"customer": p["customer"], "amount": amount(trip, price)},
        "depends_on": ["flight", "hotel", "car"],
        "timeout": PAY_TIMEOUT,
        "retry": PAY_RETRY,
        "compensate_retry": UNDO_RETRY,
    }
    return {
        "gid": trip.gid,
        "name": "book_trip",  # as the in-process demo's saga is named (default: its steps)
        "steps": [
            hold("flight", "flights", {"flight": p["flight"]}),
            hold("hotel", "hotels", {"hotel": p["hotel"], "nights": p["nights"]}),
            hold("car", "cars", {"city": p["city"], "nights": p["nights"]}),
            pay,
        ],
        "wait": True,
        "wait_timeout": wait_timeout,
    }
