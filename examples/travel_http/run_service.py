"""Run one of the travel services over HTTP, on a database of your choice.

    python examples/travel_http/run_service.py cars --db sqlite:///cars.db --port 8003
    python examples/travel_http/run_service.py payments \\
        --db postgresql+psycopg://localhost/payments --port 8004

The service is ``legato.demo.http.apps``: a Starlette app whose handlers run
their SQL inside Legato's barrier. The heart of one handler, in short::

    async def reserve(request: Request) -> Response:
        barrier = Barrier.from_query(request.query_params)   # gid, branch_id, op
        payload = await request.json()

        def hold(conn: sqlalchemy.Connection) -> None:        # the business SQL
            if not conn.execute(TAKE_ONE, payload).rowcount:
                raise legato.Failure("sold out")             # -> 409: roll the trip back
            conn.execute(INSERT_RESERVATION, payload)

        with engine.connect() as conn:                       # the barrier row and the
            result = barrier.call(conn, hold)                # SQL commit together
        return JSONResponse({"dtm_result": "SUCCESS", "barrier": result.outcome})

A repeated call, an undo of a hold that never happened, and a hold arriving
after its undo all come back 200 with nothing changed; ``result.outcome`` says
which (``duplicate``, ``null_compensation``, ``hanging``).
"""

from __future__ import annotations

import argparse

import uvicorn

from legato.demo.http.apps import KINDS, create_app
from legato.demo.http.service import load_stock, stock_of
from legato.demo.workload import make_trips, plan_inventory
from legato.observe import tracing
from legato.participant.tracing import instrument


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--db", default=None, help="SQLAlchemy URL (default sqlite:///KIND.db)")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()

    app = create_app(args.kind, args.db or f"sqlite:///{args.kind}.db")
    # stock for 200 trips of seed 1 (what book_trip.py asks for), if the database is new
    inventory = plan_inventory(make_trips(200, seed=1), seed=1, sold_out=0.15)
    load_stock(app.state.participant.store, args.kind, stock_of(inventory, args.kind))
    # with OTEL_EXPORTER_OTLP_ENDPOINT set, each request is a span continuing the
    # coordinator's trace of the booking (the attempt that called it is its parent)
    served = instrument(app) if tracing.configure(f"travel-{args.kind}") else app
    uvicorn.run(served, port=args.port, log_level="info")
    tracing.shutdown()


if __name__ == "__main__":
    main()
