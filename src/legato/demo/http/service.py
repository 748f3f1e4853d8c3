"""Run one travel service as its own process::

    python -m legato.demo.http.service --kind payments --db sqlite:///demo/payments.db \\
        --port 8004 --stock demo/payments.stock.json --flaky 0.2 --seed 1

``--db`` takes any SQLAlchemy URL the service supports: ``sqlite:///file.db``,
``postgresql+psycopg://user@host/db``, ``mysql+pymysql://user@host/db``. The
stock (inventory, or account balances) is loaded into an empty database only;
without ``--stock`` a default one is planned for 200 trips of ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..faults import Faults
from ..workload import Inventory, Item, make_trips, plan_inventory
from .apps import KINDS, create_app
from .store import Store


def stock_of(inventory: Inventory, kind: str) -> dict[str, Any]:
    """What the ``kind`` service starts with, as the JSON ``--stock`` reads."""
    if kind == "payments":
        return {"accounts": dict(inventory.accounts)}
    items: tuple[Item, ...] = getattr(inventory, kind)
    return {"items": [[i.id, i.city, i.capacity, i.price] for i in items]}


def load_stock(store: Store, kind: str, stock: dict[str, Any]) -> bool:
    """Stock an empty database; whether it was empty."""
    if kind == "payments":
        return store.open_accounts({str(k): int(v) for k, v in stock["accounts"].items()})
    return store.stock_items(
        [Item(str(i), str(c), int(n), int(p)) for i, c, n, p in stock["items"]]
    )


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a rate is a fraction between 0 and 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m legato.demo.http.service",
        description="One of the travel demo's HTTP participant services.",
    )
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--db", required=True, metavar="URL", help="the service's own database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--stock", type=Path, help="JSON inventory or balances for a new database")
    parser.add_argument("--log-level", default="warning")
    faults = parser.add_argument_group("faults (payments; --stuck-rate: hotels and payments)")
    faults.add_argument("--seed", type=int, default=1)
    faults.add_argument("--flaky", type=_rate, default=0.0, help="answer 503, do nothing")
    faults.add_argument("--lost-reply", type=_rate, default=0.0, help="commit, then answer 500")
    faults.add_argument("--slow", type=_rate, default=0.0, help="hold for --slow-seconds first")
    faults.add_argument("--slow-seconds", type=float, default=1.0)
    faults.add_argument("--decline", type=_rate, default=0.0, help="trips whose card is declined")
    faults.add_argument(
        "--stuck-rate", type=_rate, default=0.0, help="declined trips whose hotel will not cancel"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = build_parser().parse_args(argv)
    faults = Faults(
        seed=args.seed,
        flaky=args.flaky,
        lost_reply=args.lost_reply,
        slow=args.slow,
        decline=args.decline,
        stuck=args.stuck_rate,
        slow_seconds=args.slow_seconds,
    )
    app = create_app(args.kind, args.db, faults)
    if args.stock is not None:
        stock = json.loads(args.stock.read_text())
    else:
        plan = plan_inventory(make_trips(200, args.seed), args.seed, 0.15)
        stock = stock_of(plan, args.kind)
    load_stock(app.state.participant.store, args.kind, stock)
    from legato.observe import tracing
    from legato.participant.tracing import instrument

    # with OTEL_EXPORTER_OTLP_ENDPOINT set, each request continues the coordinator's trace
    served = instrument(app) if tracing.configure(f"travel-{args.kind}") else app
    uvicorn.run(
        served,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        # late requests (held up by a fault) finish before the process exits
        timeout_graceful_shutdown=10,
    )
    tracing.shutdown()  # the spans still buffered go out before the process ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
