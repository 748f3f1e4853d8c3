"""The durable workflow of the chaos tests: a trip booked as plain Python
(``legato.workflow``), over the flight, hotel and car services of
``tests.support.travel`` (each a SQLite file or a PostgreSQL database).

Workflow ``wf-<i>`` books the flight, then the hotel, then the car; by ``i % 4``:

* ``plain``: it books all three and succeeds;
* ``late``: the car service refuses, late: the hotel and the flight are undone, it fails;
* ``sleep``: it sleeps ``SLEEP`` seconds durably after the flight (let go meanwhile);
* ``signal``: after the flight it waits for the signal ``go``; "yes" books the rest,
  "no" undoes the flight and fails. The worker sends it (``signal_of``).

Each step and compensation is a module-level function, found by its import path
after a crash. A booking writes a barrier row keyed by ``(gid, branch, op)`` in the
same local transaction as the booking (travel's tables: their ``step`` column holds
the journal entry's branch, ``0002.book_hotel``), so that a step run again after a
crash changes nothing, a compensation with nothing to undo leaves a mark that
refuses a late booking, and a booking made twice (a step journaled twice) shows up
as two rows. Some first attempts commit and then lose their reply, so that a retry
meets the barrier.

``check_workflows`` reads the outcome back: every workflow in the log ended as its
kind says, all done or all undone in the services' own databases.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import legato
from legato import Failure, OpName, OpStatus, RetryPolicy, TxQuery, TxStatus
from legato._model import OpRecord, TxRecord
from tests.support.travel import (
    STEPS,
    Database,
    LostReply,
    Tracker,
    cancel_once,
    reserve_once,
)

WORKFLOW = "chaos_trip_wf"
SLEEP = 4.0
"""How long the ``sleep`` kind sleeps: long enough that it is let go, and that a worker
killed while it sleeps is back before it is due."""
KINDS = ("plain", "late", "sleep", "signal")


def gid_of(i: int) -> str:
    return f"wf-{i}"


def index_of(gid: str) -> int:
    return int(gid.rsplit("-", 1)[1])


def kind_of(i: int) -> str:
    return KINDS[i % 4]


def signal_of(i: int) -> str:
    """The value of the signal a ``signal`` workflow is sent: half say no."""
    return "yes" if i % 8 == 3 else "no"


def signal_delay(i: int) -> float:
    """Seconds after its start that the worker signals workflow ``i``: a few at once (the
    signal is kept until the workflow waits for it), the rest once it was let go."""
    return 0.0 if i % 16 == 3 else 1.5


def succeeds(i: int) -> bool:
    return kind_of(i) in ("plain", "sleep") or (kind_of(i) == "signal" and signal_of(i) == "yes")


def _loses_reply(i: int, service: str, op: OpName, attempt: int) -> bool:
    if attempt != 1:
        return False
    if op is OpName.ACTION:
        return service == "hotel" and i % 5 == 0
    return service == "flight" and i % 3 == 0


# -- the services -----------------------------------------------------------------------


class _Service:
    def __init__(self, name: str, db: Database, tracker: Tracker | None) -> None:
        self.name, self.db, self.tracker = name, db, tracker

    def tracked(self, ctx: legato.StepContext) -> contextlib.AbstractContextManager[None]:
        return self.tracker.run(ctx) if self.tracker else contextlib.nullcontext()

    def book(self, i: int) -> str:
        ctx = legato.current_step()
        with self.tracked(ctx):
            if self.name == "car" and kind_of(i) == "late":
                raise Failure("no car left")
            if not reserve_once(self.db, ctx.gid, ctx.step):
                return f"{self.name}:{ctx.gid}"  # a repeat: it took effect the first time
        if _loses_reply(i, self.name, ctx.op, ctx.attempt):
            raise LostReply("connection reset after commit")
        return f"{self.name}:{ctx.gid}"

    def cancel(self, i: int) -> str:
        ctx = legato.current_step()
        with self.tracked(ctx):
            done = cancel_once(self.db, ctx.gid, ctx.step)
        if done == "cancelled" and _loses_reply(i, self.name, ctx.op, ctx.attempt):
            raise LostReply("connection reset after commit")
        return done


# the steps are module-level functions (a compensation is found again by its import
# path, in whichever process resumes the workflow), so they find their services here:
# set once per worker process, by ``configure``
_services: dict[str, _Service] = {}


def configure(
    locations: Mapping[str, str], track_owner: str | None = None, *, hold: float = 0.03
) -> None:
    """Point the steps at the services' databases (by service), in the worker process;
    ``track_owner`` records each run's interval (``travel.Tracker``, PostgreSQL)."""
    dbs: dict[str, Database] = {}
    for service in STEPS:
        location = locations[service]
        db = dbs.setdefault(location, Database(location, track_owner or "chaos"))
        tracker = Tracker(db, track_owner, hold) if track_owner else None
        _services[service] = _Service(service, db, tracker)


def book_flight(i: int) -> str:
    return _services["flight"].book(i)


def book_hotel(i: int) -> str:
    return _services["hotel"].book(i)


def book_car(i: int) -> str:
    return _services["car"].book(i)


def cancel_flight(i: int) -> str:
    return _services["flight"].cancel(i)


def cancel_hotel(i: int) -> str:
    return _services["hotel"].cancel(i)


def cancel_car(i: int) -> str:
    return _services["car"].cancel(i)


_QUICK = RetryPolicy(max_attempts=5, backoff=0.05, max_backoff=0.2)
_UNDO = RetryPolicy(max_attempts=20, backoff=0.05, max_backoff=0.5)


@legato.workflow(WORKFLOW, retry=_QUICK, compensate_retry=_UNDO)
async def trip(wf: legato.Workflow, i: int) -> list[str]:
    booked = [await wf.step(book_flight, i, compensate=cancel_flight)]
    if kind_of(i) == "sleep":
        wf.now()  # journaled: when the sleep began, for the test to see it woke on time
        await wf.sleep(SLEEP)
    elif kind_of(i) == "signal":
        answer = await wf.wait_for("go")
        if answer != "yes":
            raise Failure(f"not approved: {answer!r}")
    booked.append(await wf.step(book_hotel, i, compensate=cancel_hotel))
    booked.append(await wf.step(book_car, i, compensate=cancel_car))
    return booked


# -- reading the outcome back -----------------------------------------------------------


def service_of(branch: str) -> str:
    """The service a journal entry books or undoes: ``0002.book_hotel`` -> ``hotel``."""
    return branch.partition(".")[2].rpartition("_")[2]


async def read_log(log_url: str) -> dict[str, tuple[TxRecord, list[OpRecord]]]:
    """Every workflow in the log, with its ops (journal entries and signals)."""
    log = legato.open_log(log_url)
    await log.open()
    try:
        found = {}
        for tx in await log.list(TxQuery(limit=10_000)):
            loaded = await log.load(tx.gid)
            assert loaded is not None
            found[tx.gid] = loaded
        return found
    finally:
        await log.close()


def read_services(locations: Mapping[str, str]) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
    """Each service's reservations, barrier rows and effects (its own rows only, where
    services share a database)."""
    state: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
    for service, location in locations.items():
        db = Database(location)
        try:
            state[service] = {
                table: [
                    r for r in db.query(f"SELECT gid, step, {c} FROM {table}")
                    if service_of(r[1]) == service
                ]
                for table, c in (("reservation", "status"), ("barrier", "op, reason"),
                                 ("effect", "kind"))
            }  # fmt: skip
        finally:
            db.close()
    return state


async def check_workflows(
    log_url: str, locations: Mapping[str, str], n: int, *, complete: bool = True
) -> list[str]:
    """Every problem found; ``[]`` means every workflow in the log ended as its kind says,
    all done or all undone in the services' databases, each booking made at most once,
    and no service holds a booking of a workflow the log does not know.

    ``complete`` asks for all ``n`` workflows to be in the log (a worker killed before
    it started them all, then only resumed, leaves fewer)."""
    problems: list[str] = []
    found = await read_log(log_url)
    services = read_services(locations)
    expected = {gid_of(i) for i in range(n)}
    missing = sorted(expected - set(found)) if complete else []
    if missing or set(found) - expected:
        problems.append(f"the log holds {len(found)}: missing {missing[:10]}, "
                        f"unexpected {sorted(set(found) - expected)[:10]}")  # fmt: skip
    for service, s in services.items():
        strays = sorted({r[0] for r in s["barrier"]} - set(found))
        if strays:
            problems.append(f"{service} holds bookings of workflows the log lacks: {strays[:10]}")
    for gid in sorted(found, key=index_of):
        tx, ops = found[gid]
        problems += _check_one(index_of(gid), tx, ops, services)
    return problems


def _check_one(
    i: int, tx: TxRecord, ops: list[OpRecord], services: Mapping[str, Mapping[str, list[Any]]]
) -> list[str]:
    where = f"{tx.gid} ({kind_of(i)}, {tx.status})"
    if not tx.status.ended or tx.stuck:
        return [f"{where} has not ended: stuck={tx.stuck!r} reason={tx.reason!r}"]
    problems = []
    want = TxStatus.SUCCEEDED if succeeds(i) else TxStatus.FAILED
    if tx.status is not want:
        problems.append(f"{where} should have {want}: {tx.reason}")
    signals = [o for o in ops if o.op is OpName.SIGNAL]
    if kind_of(i) == "signal" and [o.output for o in signals] != [signal_of(i)]:
        problems.append(f"{where}: the log keeps the signals {[o.output for o in signals]}")
    logged = {(o.branch, o.op): o for o in ops}
    active = {}
    for service in STEPS:
        s = services[service]
        rows = [(b, st) for g, b, st in s["reservation"] if g == tx.gid]
        if len(rows) > 1:
            problems.append(f"{where}: {service} booked more than once: {rows}")
        active[service] = any(st == "active" for _, st in rows)
        for branch, status in rows:
            kinds = sorted(k for g, b, k in s["effect"] if (g, b) == (tx.gid, branch))
            if kinds not in (["reserve"], ["cancel", "reserve"]):
                problems.append(f"{where}: {branch} took effect as {kinds}")
            if (status == "cancelled") != ("cancel" in kinds):
                problems.append(f"{where}: {branch} is {status!r}, its effects {kinds}")
            action = logged.get((branch, OpName.ACTION))
            undo = logged.get((branch, OpName.COMPENSATE))
            if action is None or undo is None:
                problems.append(f"{where}: {service} booked {branch}, the journal has no such step")
            elif want is TxStatus.SUCCEEDED and action.status is not OpStatus.SUCCEEDED:
                problems.append(f"{where}: the log says {branch} is {action.status}")
            elif want is TxStatus.FAILED and undo.status is not OpStatus.SUCCEEDED:
                problems.append(f"{where}: {branch} was booked, its undo is {undo.status}")
    if tx.status is TxStatus.SUCCEEDED and not all(active.values()):
        problems.append(f"{where}: succeeded, but a booking is missing: {active}")
    if tx.status is TxStatus.FAILED and any(active.values()):
        problems.append(f"{where}: failed, but keeps a booking: {active}")
    return problems
