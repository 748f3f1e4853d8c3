"""The trips the demo books, and the inventory the services start with, from the seed."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from legato import Json

CITIES = ("LIS", "NYC", "TYO", "CPT", "REK")
HOTELS = ("harbour", "old-town")
MERCHANT = "merchant"


@dataclass(frozen=True, slots=True)
class Trip:
    gid: str
    payload: dict[str, Json]


@dataclass(frozen=True, slots=True)
class Item:
    """A line of a service's inventory: a flight's seats, a hotel's rooms, a city's cars."""

    id: str
    city: str
    capacity: int
    price: int  # cents, per seat / per room-night / per car-day


@dataclass(frozen=True, slots=True)
class Inventory:
    flights: tuple[Item, ...]
    hotels: tuple[Item, ...]
    cars: tuple[Item, ...]
    accounts: dict[str, int] = field(default_factory=dict)  # cents; the merchant starts at 0


def make_trips(n: int, seed: int, prefix: str | None = None) -> list[Trip]:
    """``n`` trips, with gids ``<prefix>-<i>`` (``trip-<seed>-<i>`` by default)."""
    prefix = prefix or f"trip-{seed}"
    rng = random.Random(f"trips:{seed}")
    customers = max(10, n // 5)
    trips = []
    for i in range(n):
        city = rng.choice(CITIES)
        trips.append(
            Trip(
                gid=f"{prefix}-{i}",
                payload={
                    "trip": i,
                    "customer": f"customer-{rng.randrange(customers):03d}",
                    "city": city,
                    "flight": f"{city}-{rng.choice((1, 2))}",
                    "hotel": f"{city}-{rng.choice(HOTELS)}",
                    "nights": rng.randint(1, 5),
                },
            )
        )
    return trips


def car_item(city: str) -> str:
    return f"{city}-cars"


def plan_inventory(trips: list[Trip], seed: int, sold_out: float) -> Inventory:
    """Enough seats and rooms for every trip, a car fleet ``sold_out`` short of the
    demand in each city, and customers who can mostly pay."""
    rng = random.Random(f"inventory:{seed}")
    demand: Counter[str] = Counter()
    customers: set[str] = set()
    for t in trips:
        p = t.payload
        demand.update([str(p["flight"]), str(p["hotel"]), car_item(str(p["city"]))])
        customers.add(str(p["customer"]))

    def roomy(item: str) -> int:
        return math.ceil(demand[item] * 1.1) + 2

    flights = tuple(
        Item(f"{c}-{k}", c, roomy(f"{c}-{k}"), rng.randrange(150_00, 600_00, 5_00))
        for c in CITIES
        for k in (1, 2)
    )
    hotels = tuple(
        Item(f"{c}-{h}", c, roomy(f"{c}-{h}"), rng.randrange(80_00, 220_00, 5_00))
        for c in CITIES
        for h in HOTELS
    )
    cars = tuple(
        Item(
            car_item(c),
            c,
            round(demand[car_item(c)] * (1 - sold_out)),
            rng.randrange(30_00, 70_00, 5_00),
        )
        for c in CITIES
    )
    accounts = {name: 8_000_00 for name in sorted(customers)}
    return Inventory(flights, hotels, cars, accounts)
