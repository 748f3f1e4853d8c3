"""The consistency check of ``legato demo --http``, read from the services' own databases.

The log side (every trip ended or is stuck) is the in-process demo's
(``legato.demo.check.check_log``). The services' side differs in schema: the
barrier here is Legato's ``legato_barrier`` table, and a booked trip keeps its
holds (there is no confirm step). What is checked is the same:

* each service: the inventory adds up (capacity = free + held), and every
  business row matches an op the barrier let run: one effect per op;
* payments: the balances add up to what was paid in (money is conserved), and
  the merchant holds exactly the charges minus the refunds;
* each trip: booked holds a seat, a room, a car and one charge of their price;
  rolled back holds nothing and was charged nothing.

The services' databases are named in ``services.json`` (SQLAlchemy URLs), so the
check can run again on its own: ``legato demo --http --check-only --dir DIR``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, create_engine, text

from ..check import BOOKED, ROLLED_BACK, Report, check_log, judge_payments, money
from .apps import RESERVATION_KINDS

SERVICES = "services.json"

# ops the barrier let run: an action's own row (reason 'action'), and a compensation
# whose action had run before it (its origin row was the action's, not its own)
RAN = """
SELECT own.op, count(*) FROM legato_barrier own
LEFT JOIN legato_barrier origin
  ON origin.gid = own.gid AND origin.branch_id = own.branch_id
 AND origin.barrier_id = own.barrier_id AND origin.op = 'action'
WHERE own.reason = own.op AND (own.op = 'action' OR origin.reason = 'action')
GROUP BY own.op
"""


def write_services(directory: Path, urls: dict[str, str]) -> None:
    (directory / SERVICES).write_text(json.dumps(urls, indent=1))


def read_services(directory: Path) -> dict[str, str]:
    urls: dict[str, str] = json.loads((directory / SERVICES).read_text())
    return urls


@dataclass
class Holds:
    """What one reservation service holds, per trip."""

    held: Counter[str] = field(default_factory=Counter)  # gid -> held reservations
    price: Counter[str] = field(default_factory=Counter)  # gid -> price of those


async def check(directory: Path) -> Report:
    """Check the demo directory's services against its log; see the module docstring."""
    report = await check_log(directory)
    check_services(read_services(directory), report)
    return report


def check_services(urls: dict[str, str], report: Report) -> None:
    """Add the services' checks to ``report``, reading the databases at ``urls`` (by kind)."""
    holds = {}
    for kind in RESERVATION_KINDS:
        with _connect(urls[kind]) as conn:
            holds[kind] = _reservations(conn, kind, report)
    with _connect(urls["payments"]) as conn:
        charged = _payments(conn, report)
    _trips(report, holds, charged)


@contextmanager
def _connect(url: str) -> Iterator[Connection]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _ran(conn: Connection) -> Counter[str]:
    return Counter({str(op): int(n) for op, n in conn.execute(text(RAN)).all()})


def _reservations(conn: Connection, kind: str, report: Report) -> Holds:
    rows = conn.execute(text("SELECT gid, item, price, state FROM reservations")).all()
    inventory = conn.execute(text("SELECT item, capacity, free FROM inventory")).all()
    ran = _ran(conn)
    holds = Holds()
    by_item: Counter[str] = Counter()
    per_trip: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for gid, item, price, state in rows:
        per_trip[gid] += 1
        states[state] += 1
        if state == "held":
            by_item[item] += 1
            holds.held[gid] += 1
            holds.price[gid] += int(price)
    report.add(
        f"{kind}: inventory adds up",
        [
            f"{item}: {capacity} in all, but {free} free and {by_item[item]} held"
            for item, capacity, free in inventory
            if free < 0 or capacity != free + by_item[item]
        ],
        f"{sum(r[1] for r in inventory)} in all, {sum(by_item.values())} taken",
    )
    problems = [f"{g} has {n} reservations" for g, n in per_trip.items() if n > 1]
    problems += [
        f"{n} {what} but {ran[op]} applied ops in the barrier"
        for what, n, op in (
            ("reservations", len(rows), "action"),
            ("cancellations", states["cancelled"], "compensate"),
        )
        if n != ran[op]
    ]
    problems += [
        f"{g} holds a reservation but was never submitted"
        for g in sorted(set(per_trip) - set(report.trips))
    ]
    report.add(
        f"{kind}: one effect per op",
        problems,
        f"{len(rows)} holds, {states['cancelled']} cancelled",
    )
    return holds


def _payments(conn: Connection, report: Report) -> dict[str, tuple[int, int]]:
    """Money and barrier of the payment service; returns (charges, net amount) per trip."""
    balances = {str(k): int(v) for k, v in conn.execute(text("SELECT id, balance FROM accounts"))}
    funded = int(conn.execute(text("SELECT total FROM funding")).scalar_one())
    rows = [
        (str(g), str(k), int(a))
        for g, k, a in conn.execute(text("SELECT gid, kind, amount FROM payments"))
    ]
    ran = _ran(conn)
    return judge_payments(report, rows, balances, funded, ran)


def _trips(report: Report, holds: dict[str, Holds], charged: dict[str, tuple[int, int]]) -> None:
    """What each trip holds, by its outcome in the log."""
    booked, orphans = [], []
    for gid, status in report.trips.items():
        charges, kept = charged.get(gid, (0, 0))
        if status == BOOKED:
            booked += [
                f"{gid}: {h.held[gid]} held in {kind}"
                for kind, h in holds.items()
                if h.held[gid] != 1
            ]
            price = sum(h.price[gid] for h in holds.values())
            if charges != 1 or kept != price:
                booked.append(f"{gid}: {charges} charges, {money(kept)} kept for {money(price)}")
        elif status == ROLLED_BACK:
            orphans += [
                f"{gid}: {h.held[gid]} orphaned reservation(s) in {kind}"
                for kind, h in holds.items()
                if h.held[gid]
            ]
            if kept:
                orphans.append(f"{gid}: {money(kept)} charged and not refunded")
    n_booked = sum(1 for s in report.trips.values() if s == BOOKED)
    n_back = sum(1 for s in report.trips.values() if s == ROLLED_BACK)
    report.add("booked: a seat, room, car, charge", booked, f"{n_booked} trips")
    report.add("rolled back: none held or charged", orphans, f"{n_back} trips")
