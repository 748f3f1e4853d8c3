"""The trips the demo books, and the inventory the services start with, from the seed."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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


def hotels_in_order(payload: Mapping[str, Json]) -> list[str]:
    """The hotels a trip would take, best first: the one it asked for, then the other
    hotel of its city (the workflow falls back to it when the first is sold out)."""
    first = str(payload["hotel"])
    city = str(payload["city"])
    return [first, *(f"{city}-{h}" for h in HOTELS if f"{city}-{h}" != first)]


def plan_inventory(
    trips: list[Trip], seed: int, sold_out: float, short: Literal["cars", "hotels"] = "cars"
) -> Inventory:
    """Enough seats for every trip, customers who can mostly pay, and in each city a
    shortage of ``sold_out`` (a fraction of its trips): of cars (the saga's trips find
    none left), or of rooms (the workflow's trips fall back to their city's other
    hotel, and find none left when both are full); the other is plentiful."""
    rng = random.Random(f"inventory:{seed}")
    demand: Counter[str] = Counter()
    customers: set[str] = set()
    for t in trips:
        p = t.payload
        demand.update([str(p["flight"]), str(p["hotel"]), car_item(str(p["city"]))])
        demand[str(p["city"])] += 1
        customers.add(str(p["customer"]))

    def roomy(item: str) -> int:
        return math.ceil(demand[item] * 1.1) + 2

    def rooms(city: str, hotel: str) -> int:
        item = f"{city}-{hotel}"
        if short != "hotels":
            return roomy(item)
        # the city's first hotel is twice the shortage short of the trips that ask for
        # it, its second has the shortage to spare: half the trips turned away by the
        # first find a room in the second
        missing = round(demand[city] * sold_out)
        spare = missing if hotel != HOTELS[0] else -2 * missing
        return max(0, demand[item] + spare)

    def fleet(item: str) -> int:
        return round(demand[item] * (1 - sold_out)) if short == "cars" else roomy(item)

    flights = tuple(
        Item(f"{c}-{k}", c, roomy(f"{c}-{k}"), rng.randrange(150_00, 600_00, 5_00))
        for c in CITIES
        for k in (1, 2)
    )
    hotels = tuple(
        Item(f"{c}-{h}", c, rooms(c, h), rng.randrange(80_00, 220_00, 5_00))
        for c in CITIES
        for h in HOTELS
    )
    cars = tuple(
        Item(car_item(c), c, fleet(car_item(c)), rng.randrange(30_00, 70_00, 5_00)) for c in CITIES
    )
    accounts = {name: 8_000_00 for name in sorted(customers)}
    return Inventory(flights, hotels, cars, accounts)
