"""The consistency check: read the four services' databases and the log, and compare.

It needs nothing but the demo directory: the trips submitted (and the log
they were written to) are in its ``trips.json``, and the services' state is
read straight from their SQLite files, read-only. So it can be run again at
any time, e.g. after tampering with a database to see it fail.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from legato import TxStatus, open_log

from .services import DATABASES
from .workload import MERCHANT

MANIFEST = "trips.json"
RESERVATION_STEPS = {"flights": "flight", "hotels": "hotel", "cars": "car"}

BOOKED, ROLLED_BACK, STUCK, UNSETTLED, MISSING = (
    "booked",
    "rolled back",
    "stuck",
    "in progress",
    "not in the log",
)


def step_name(step: str) -> str:
    """A step's name as the checks count it: a workflow's journal puts the step's
    position first (``0002.hotel``, after a sold-out ``0001.hotel``), a saga does not."""
    position, dot, name = step.partition(".")
    return name if dot and position.isdigit() else step


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class Report:
    checks: list[Check] = field(default_factory=list)
    trips: dict[str, str] = field(default_factory=dict)  # gid -> BOOKED, ROLLED_BACK, ...
    stuck: dict[str, str] = field(default_factory=dict)  # gid -> why, from the log
    repeats: int = 0  # deliveries after the first that the barriers absorbed

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, problems: list[str], fine: str = "") -> None:
        if problems:
            shown = "; ".join(problems[:3]) + (
                f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            )
            self.checks.append(Check(name, False, shown))
        else:
            self.checks.append(Check(name, True, fine))


def write_manifest(
    directory: Path, log_url: str, gids: Iterable[str], stuck: Iterable[str]
) -> None:
    """Record the trips of this run (added to those of earlier runs kept with ``--keep``)."""
    path = directory / MANIFEST
    known: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if known.get("log") != log_url:
        known = {}
    manifest = {
        "log": log_url,
        "gids": list(dict.fromkeys([*known.get("gids", []), *gids])),
        "stuck": list(dict.fromkeys([*known.get("stuck", []), *stuck])),
    }
    path.write_text(json.dumps(manifest, indent=1))


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        yield db


async def check(directory: Path) -> Report:
    """Check the demo directory's services against its log; see the module docstring."""
    with _read_only(directory / DATABASES["hotels"]) as db:
        roomless = {g for (g,) in db.execute("SELECT gid FROM barrier WHERE outcome = 'failed'")}
        roomless -= {g for (g,) in db.execute("SELECT gid FROM reservations")}
    report = await check_log(directory, roomless)
    active: dict[str, Counter[str]] = {}
    for service in RESERVATION_STEPS:
        active[service] = _check_reservations(directory / DATABASES[service], service, report)
    net = _check_payments(directory / DATABASES["payments"], report)
    _check_trips(report, active, net)
    return report


async def check_log(directory: Path, roomless: Collection[str] = ()) -> Report:
    """The checks that read the log alone: how each trip of the manifest ended, and
    that the stuck ones are visible (the services' side is checked by the caller).
    ``roomless``: trips every hotel turned away (sold out), which had no room for their
    hotel to refuse to cancel."""
    manifest = json.loads((directory / MANIFEST).read_text())
    gids: list[str] = manifest["gids"]
    report = Report()
    await _read_log(str(manifest["log"]), gids, report)
    _check_settled(report)
    _check_stuck(report, set(manifest["stuck"]) - set(roomless))
    return report


async def _read_log(url: str, gids: list[str], report: Report) -> None:
    log = open_log(url, auto_migrate=False)
    await log.open()
    try:
        for gid in gids:
            loaded = await log.load(gid)
            if loaded is None:
                report.trips[gid] = MISSING
                continue
            tx = loaded[0]
            if tx.status.ended:
                report.trips[gid] = BOOKED if tx.status is TxStatus.SUCCEEDED else ROLLED_BACK
            elif tx.stuck is not None:
                report.trips[gid] = STUCK
                report.stuck[gid] = tx.stuck
            else:
                report.trips[gid] = UNSETTLED
    finally:
        await log.close()


def _check_settled(report: Report) -> None:
    report.add(
        "every trip ended or is stuck",
        [f"{g} is {s}" for g, s in report.trips.items() if s in (UNSETTLED, MISSING)],
        f"{len(report.trips)} trips in the log",
    )


def _check_stuck(report: Report, injected: set[str]) -> None:
    """A stuck trip is not a broken one (DESIGN 3.1): it is visible, with its reason,
    and holds what it holds until an operator retries or ends it. The trips whose
    hotel was made to refuse cancellations must be among them (save those that held
    no room: a workflow's trip that found every hotel sold out); with harsh fault
    rates, others may be too (an undo that ran out of attempts)."""
    stuck = {g for g, s in report.trips.items() if s == STUCK}
    problems = [f"{g} is stuck without a reason" for g in sorted(stuck) if not report.stuck[g]]
    problems += [
        f"{g} should be stuck (its hotel refuses to cancel) but is {report.trips.get(g)}"
        for g in sorted(injected - stuck)
    ]
    others = len(stuck - injected)
    detail = f"{len(stuck & injected)} injected" + (f", {others} out of retries" if others else "")
    report.add("stuck trips visible, with reason", problems, detail)


def _done(db: sqlite3.Connection) -> Counter[tuple[str, str]]:
    """How many ops a service's barrier applied, by step name and op."""
    done: Counter[tuple[str, str]] = Counter()
    for step, op, n in db.execute(
        "SELECT step, op, count(*) FROM barrier WHERE outcome = 'done' GROUP BY step, op"
    ):
        done[(step_name(step), op)] += n
    return done


def _check_reservations(path: Path, service: str, report: Report) -> Counter[str]:
    """Inventory and barrier of one reservation service; returns confirmed/held per trip."""
    step = RESERVATION_STEPS[service]
    with _read_only(path) as db:
        rows = db.execute("SELECT gid, item, state FROM reservations").fetchall()
        inventory = db.execute("SELECT item, capacity, free FROM inventory").fetchall()
        done = _done(db)
        report.repeats += db.execute(
            "SELECT coalesce(sum(deliveries - 1), 0) FROM barrier"
        ).fetchone()[0]
    held_by_item: Counter[str] = Counter()
    active: Counter[str] = Counter()  # "gid/state"
    per_trip: Counter[str] = Counter()
    states: Counter[str] = Counter()
    for gid, item, state in rows:
        per_trip[gid] += 1
        states[state] += 1
        if state != "cancelled":
            held_by_item[item] += 1
            active[f"{gid}/{state}"] += 1
    problems = [
        f"{item}: {capacity} in all, but {free} free and {held_by_item[item]} reserved"
        for item, capacity, free in inventory
        if free < 0 or capacity != free + held_by_item[item]
    ]
    report.add(
        f"{service}: inventory adds up",
        problems,
        f"{sum(r[1] for r in inventory)} in all, {sum(held_by_item.values())} taken",
    )
    problems = [f"{g} has {n} reservations" for g, n in per_trip.items() if n > 1]
    expected = {
        "reservations": (len(rows), done.get((step, "action"), 0)),
        "cancellations": (states["cancelled"], done.get((step, "compensate"), 0)),
        "confirmations": (states["confirmed"], done.get(("confirm", "action"), 0)),
    }
    problems += [
        f"{n} {what} but {k} applied ops in the barrier"
        for what, (n, k) in expected.items()
        if n != k
    ]
    unknown = sorted(set(per_trip) - set(report.trips))
    problems += [f"{g} holds a reservation but was never submitted" for g in unknown]
    report.add(
        f"{service}: one effect per op",
        problems,
        f"{len(rows)} holds, {states['cancelled']} cancelled",
    )
    return active


def _check_payments(path: Path, report: Report) -> dict[str, tuple[int, int]]:
    """Money and barrier of the payment service; returns (charges, net amount) per trip."""
    with _read_only(path) as db:
        balances = dict(db.execute("SELECT id, balance FROM accounts").fetchall())
        funded = db.execute("SELECT total FROM funding").fetchone()[0]
        payments = db.execute("SELECT gid, kind, amount FROM payments").fetchall()
        barrier = _done(db)
        report.repeats += db.execute(
            "SELECT coalesce(sum(deliveries - 1), 0) FROM barrier"
        ).fetchone()[0]
    applied = {op: barrier.get(("pay", op), 0) for op in ("action", "compensate")}
    return judge_payments(report, payments, balances, funded, applied)


def judge_payments(
    report: Report,
    payments: Sequence[tuple[str, str, int]],
    balances: Mapping[str, int],
    funded: int,
    applied: Mapping[str, int],
) -> dict[str, tuple[int, int]]:
    """The payment service's checks, whichever demo read it: the money adds up, and one
    effect per op (``applied``: the barrier's applied ops by op name). Returns (charges,
    net amount) per trip."""
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    net: dict[str, int] = defaultdict(int)
    for gid, kind, amount in payments:
        kinds[gid][kind] += 1
        net[gid] += amount if kind == "charge" else -amount
    charged = sum(a for _, k, a in payments if k == "charge")
    refunded = sum(a for _, k, a in payments if k == "refund")
    total, merchant = sum(balances.values()), balances.get(MERCHANT, 0)
    problems = []
    if total != funded:
        problems.append(f"the balances add up to {money(total)}, not the {money(funded)} paid in")
    if merchant != charged - refunded:
        problems.append(
            f"the merchant holds {money(merchant)}, but charges minus refunds"
            f" are {money(charged - refunded)}"
        )
    problems += [f"{a} is overdrawn" for a, b in balances.items() if b < 0]
    report.add(
        "payments: money adds up", problems, f"{money(total)} total, merchant {money(merchant)}"
    )
    problems = [
        f"{g}: {c['charge']} charges, {c['refund']} refunds"
        for g, c in kinds.items()
        if c["charge"] > 1 or c["refund"] > c["charge"]
    ]
    counts = Counter(k for _, k, _ in payments)
    for kind, op in (("charge", "action"), ("refund", "compensate")):
        if counts[kind] != applied[op]:
            problems.append(f"{counts[kind]} {kind}s but {applied[op]} applied ops in the barrier")
    problems += [
        f"{g} was charged but never submitted" for g in sorted(set(kinds) - set(report.trips))
    ]
    report.add(
        "payments: one effect per op",
        problems,
        f"{counts['charge']} charges, {counts['refund']} refunds",
    )
    return {g: (kinds[g]["charge"], net[g]) for g in kinds}


def _check_trips(
    report: Report, active: dict[str, Counter[str]], net: dict[str, tuple[int, int]]
) -> None:
    """What each trip holds, by its outcome in the log."""
    booked, orphans = [], []
    for gid, status in report.trips.items():
        if status == BOOKED:
            for service, counts in active.items():
                if counts[f"{gid}/confirmed"] != 1 or counts[f"{gid}/held"]:
                    booked.append(
                        f"{gid}: {counts[f'{gid}/confirmed']} confirmed and "
                        f"{counts[f'{gid}/held']} held in {service}"
                    )
            charges, amount = net.get(gid, (0, 0))
            if charges != 1 or amount <= 0:
                booked.append(f"{gid}: {charges} charges, {money(amount)} kept")
        elif status == ROLLED_BACK:
            for service, counts in active.items():
                n = counts[f"{gid}/confirmed"] + counts[f"{gid}/held"]
                if n:
                    orphans.append(f"{gid}: {n} orphaned reservation(s) in {service}")
            if net.get(gid, (0, 0))[1] != 0:
                orphans.append(f"{gid}: {money(net[gid][1])} charged and not refunded")
    n_booked = sum(1 for s in report.trips.values() if s == BOOKED)
    n_back = sum(1 for s in report.trips.values() if s == ROLLED_BACK)
    report.add("booked: a seat, room, car, charge", booked, f"{n_booked} trips")
    report.add("rolled back: none held or charged", orphans, f"{n_back} trips")


def money(cents: int) -> str:
    """Cents as the checks show them: ``1,250`` or ``1,250.50``."""
    whole, rest = divmod(cents, 100)
    return f"{whole:,}" if rest == 0 else f"{cents / 100:,.2f}"
