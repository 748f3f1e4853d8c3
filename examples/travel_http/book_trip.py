"""Book trips through ``legato serve`` and the four services of ``run_service.py``.

    legato serve --log sqlite:///legato.db --port 36789 &
    python examples/travel_http/run_service.py flights --port 8001 &
    python examples/travel_http/run_service.py hotels --port 8002 &
    python examples/travel_http/run_service.py cars --port 8003 &
    python examples/travel_http/run_service.py payments --port 8004 &
    python examples/travel_http/book_trip.py --trips 5

Each trip is one ``POST /v1/sagas``: flight, hotel and car held in parallel,
then the card charged; each step names its compensation. The coordinator
answers once the saga has ended (``"wait": true``).
"""

from __future__ import annotations

import argparse
import json

import httpx

from legato.demo.http.saga import prices, saga_body
from legato.demo.workload import make_trips, plan_inventory

SERVICES = {
    "flights": "http://127.0.0.1:8001",
    "hotels": "http://127.0.0.1:8002",
    "cars": "http://127.0.0.1:8003",
    "payments": "http://127.0.0.1:8004",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coordinator", default="http://127.0.0.1:36789")
    parser.add_argument("--trips", type=int, default=1)
    parser.add_argument("--prefix", default="example-trip", help="gids are PREFIX-0, -1, ...")
    args = parser.parse_args()

    trips = make_trips(200, seed=1, prefix=args.prefix)[: args.trips]
    price = prices(plan_inventory(make_trips(200, seed=1), seed=1, sold_out=0.15))
    with httpx.Client(base_url=args.coordinator, timeout=60) as client:
        for trip in trips:
            body = saga_body(trip, SERVICES, price, wait_timeout=30)
            if trip is trips[0]:
                print("POST /v1/sagas", json.dumps(body, indent=1))
            outcome = client.post("/v1/sagas", json=body).raise_for_status().json()
            print(trip.gid, outcome["status"], outcome["reason"] or "")


if __name__ == "__main__":
    main()
