"""The barrier: each branch op takes effect at most once, in the participant's own database.

A row in ``legato_barrier``, unique on (gid, branch_id, op, barrier_id), is
inserted in the same local transaction as the op's business SQL, so the row
exists exactly when the business change was committed. Inside that transaction
(DTM's rules):

1. a compensating op (saga ``compensate``, tcc ``cancel``, xa ``rollback``)
   first inserts-or-ignores the row of its *origin* op (``action``, ``try``);
2. every op inserts-or-ignores its own row;
3. own row already there: a *duplicate* (or a *hanging* forward op, whose row
   its compensation wrote first): commit and skip the business code;
4. a compensating op that wrote its origin's row: the origin never ran, a *null
   compensation*: commit and skip (and the origin, if it ever comes, hangs);
5. otherwise run the business code in the same transaction; if it raises,
   everything rolls back, barrier rows included.

A request racing another one on the same row waits on the database's unique-key
lock until the other transaction ends, so the order is decided by the database.

The plans below are pure: they yield SQL commands and read the replies, and one
plan serves every sync and asyncio driver (see ``_drivers``).
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Literal, TypeVar

from .._errors import BarrierRequestError
from ._drivers import SyncDriver
from ._sql import Commit, Execute, Fetch, Plan, first_row, rowcount
from ._transaction import SyncTransaction, atransaction, transaction

C = TypeVar("C")
T = TypeVar("T")

PreparedStatus = Literal["committed", "rolled_back"]
"""What :func:`query_prepared` found: the msg's local transaction committed, or never will."""

OPS: Mapping[str, frozenset[str]] = {
    "saga": frozenset({"action", "compensate"}),
    "tcc": frozenset({"try", "confirm", "cancel"}),
    "xa": frozenset({"action", "commit", "rollback"}),
    "msg": frozenset({"action", "msg"}),
    "inbox": frozenset({"consume"}),
    "workflow": frozenset({"action", "compensate", "confirm"}),  # a step, its undo, its commit
}
"""The ops each transaction type's branches have (``msg`` is the initiator's local op;
``inbox`` is a consumer's record of a message it handled: see ``inbox``)."""

ORIGIN: Mapping[str, str] = {"compensate": "action", "cancel": "try", "rollback": "action"}
"""The op that each compensating op undoes."""

MSG_BRANCH, MSG_OP, MSG_BARRIER = "00", "msg", "01"
_MAX_ID = 128


class BarrierOutcome(StrEnum):
    """What the barrier did with the business code."""

    RAN = "ran"
    """The business code ran and committed with the barrier row."""
    DUPLICATE = "duplicate"
    """This op already took effect; nothing ran."""
    NULL_COMPENSATION = "null_compensation"
    """A compensating op whose forward op never ran: nothing to undo."""
    HANGING = "hanging"
    """A forward op arriving after its compensation (or a msg after query_prepared
    rolled it back): refused."""


@dataclass(frozen=True, slots=True)
class BarrierResult(Generic[T]):
    """The outcome of :meth:`Barrier.call`, and the business function's return value."""

    outcome: BarrierOutcome
    value: T | None = None

    @property
    def ran(self) -> bool:
        """Whether the business code ran (and committed)."""
        return self.outcome is BarrierOutcome.RAN

    @property
    def skipped(self) -> bool:
        """Whether the barrier skipped the business code; :attr:`outcome` says why."""
        return not self.ran


def check_id(field: str, value: str) -> str:
    """``value`` of the barrier field ``field`` (gid, branch_id): refused with a
    ``BarrierRequestError`` naming the field when empty, too long or unprintable."""
    if not value:
        raise BarrierRequestError(field, "must not be empty")
    if len(value) > _MAX_ID:
        raise BarrierRequestError(field, f"longer than {_MAX_ID} characters")
    if value != value.strip() or not value.isprintable():
        raise BarrierRequestError(field, "has surrounding blanks or unprintable characters")
    return value


class Barrier:
    """The barrier of one branch op: build one per request, then run the business code in it.

    Each :meth:`call` (or :meth:`acall`) on the same object gets the next barrier
    id (``01``, ``02``, ...), so a handler may guard several local transactions,
    in a fixed order. A ``Barrier`` is not shared between requests or threads.

    Example (sync)::

        barrier = Barrier.from_query(request.query_params)
        result = barrier.call(conn, lambda c: c.execute(
            "UPDATE account SET balance = balance - ? WHERE id = ?", (amount, uid)))
    """

    __slots__ = ("_calls", "branch_id", "gid", "op", "trans_type")

    def __init__(self, trans_type: str, gid: str, branch_id: str, op: str) -> None:
        if trans_type not in OPS:
            raise BarrierRequestError("trans_type", f"{trans_type!r} is not one of {sorted(OPS)}")
        if op not in OPS[trans_type]:
            allowed = sorted(OPS[trans_type])
            raise BarrierRequestError("op", f"{op!r} is not an op of {trans_type} ({allowed})")
        self.trans_type = trans_type
        self.gid = check_id("gid", gid)
        self.branch_id = check_id("branch_id", branch_id)
        self.op = op
        self._calls = itertools.count(1)

    @classmethod
    def from_request(cls, trans_type: str, gid: str, branch_id: str, op: str) -> Barrier:
        """The barrier of the op a coordinator request names."""
        return cls(trans_type, gid, branch_id, op)

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> Barrier:
        """The barrier of a participant request, from its query string (DESIGN section 5).

        Raises :class:`BarrierRequestError` naming the first missing or invalid field.
        """
        values = {}
        for field in ("gid", "trans_type", "branch_id", "op"):
            value = params.get(field)
            if value is None or value == "":
                raise BarrierRequestError(field, "missing from the query string")
            values[field] = value
        return cls(values["trans_type"], values["gid"], values["branch_id"], values["op"])

    @classmethod
    def for_msg(cls, gid: str) -> Barrier:
        """The barrier of a msg initiator's local transaction, the one query_prepared checks."""
        return cls("msg", gid, MSG_BRANCH, MSG_OP)

    def __repr__(self) -> str:
        return f"Barrier({self.trans_type!r}, {self.gid!r}, {self.branch_id!r}, {self.op!r})"

    def call(self, conn: C, fn: Callable[[C], T]) -> BarrierResult[T]:
        """Run ``fn(conn)`` inside the barrier, in one new transaction on a sync connection.

        ``conn`` must not be inside a transaction; the barrier begins one, and commits it
        (or, if ``fn`` raises, rolls it back and re-raises). ``fn`` must not commit.
        """
        plan = self._plan()
        with transaction(conn) as tx:
            outcome = tx.run(plan)
            return BarrierResult(outcome, fn(conn) if outcome is BarrierOutcome.RAN else None)

    async def acall(self, conn: C, fn: Callable[[C], Awaitable[T]]) -> BarrierResult[T]:
        """Run ``await fn(conn)`` inside the barrier, on an asyncio connection; as :meth:`call`."""
        plan = self._plan()
        async with atransaction(conn) as tx:
            outcome = await tx.run(plan)
            value = await fn(conn) if outcome is BarrierOutcome.RAN else None
            return BarrierResult(outcome, value)

    def run_inside(self, driver: SyncDriver) -> BarrierOutcome:
        """Write the barrier's rows through ``driver``, inside a transaction its caller owns.

        For a framework that runs the transaction itself (Django's ``transaction.atomic``):
        the caller runs the business code when the outcome is ``RAN``, in the same
        transaction, and commits or rolls back both. The barrier commits nothing here.
        """
        return SyncTransaction(driver).run(self._plan())

    def _plan(self) -> Plan[BarrierOutcome]:
        barrier_id = f"{next(self._calls):02d}"
        return barrier_plan(self.trans_type, self.gid, self.branch_id, self.op, barrier_id)


def _row(
    trans_type: str, gid: str, branch_id: str, op: str, barrier_id: str, reason: str
) -> dict[str, object]:
    return {
        "trans_type": trans_type,
        "gid": gid,
        "branch_id": branch_id,
        "op": op,
        "barrier_id": barrier_id,
        "reason": reason,
    }


def _key(row: Mapping[str, object]) -> dict[str, object]:
    return {k: row[k] for k in ("gid", "branch_id", "op", "barrier_id")}


def barrier_plan(
    trans_type: str, gid: str, branch_id: str, op: str, barrier_id: str
) -> Plan[BarrierOutcome]:
    origin_written = False
    origin = ORIGIN.get(op)
    if origin is not None:
        origin_row = _row(trans_type, gid, branch_id, origin, barrier_id, op)
        origin_written = rowcount((yield Execute("insert", origin_row))) > 0
    own = _row(trans_type, gid, branch_id, op, barrier_id, op)
    if rowcount((yield Execute("insert", own))) == 0:
        # the reason tells who wrote the row: this op before (duplicate), or a
        # compensation (or query_prepared) that came first (hanging)
        found = first_row((yield Fetch("reason", _key(own))))
        if found is not None and found[0] != op:
            return BarrierOutcome.HANGING
        return BarrierOutcome.DUPLICATE
    if origin_written:
        return BarrierOutcome.NULL_COMPENSATION
    return BarrierOutcome.RAN


def _query_prepared_plan(gid: str) -> Plan[PreparedStatus]:
    return _query_prepared_steps(check_id("gid", gid))


def _query_prepared_steps(gid: str) -> Plan[PreparedStatus]:
    row = _row("msg", gid, MSG_BRANCH, MSG_OP, MSG_BARRIER, "rollback")
    if rowcount((yield Execute("insert", row))) > 0:
        return "rolled_back"  # the local transaction never committed, and now never will
    found = first_row((yield Fetch("reason", _key(row))))
    return "rolled_back" if found is not None and found[0] == "rollback" else "committed"


def _purge_plan(older_than_seconds: float, limit: int) -> Plan[int]:
    if not older_than_seconds >= 0:
        raise ValueError(f"older_than_seconds must be >= 0, not {older_than_seconds}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, not {limit}")
    return _purge_batches({"age": float(older_than_seconds), "limit": int(limit)}, limit)


def _purge_batches(params: Mapping[str, object], limit: int) -> Plan[int]:
    total = 0
    while True:
        deleted = rowcount((yield Execute("purge", params)))
        total += deleted
        if deleted < limit:
            return total
        yield Commit()  # one batch per transaction: short locks, bounded undo


def _create_plan() -> Plan[None]:
    yield Execute("create_table", {})


def create_table(conn: object) -> None:
    """Create ``legato_barrier`` and its index where they do not exist yet (sync)."""
    with transaction(conn) as tx:
        tx.run(_create_plan())


async def acreate_table(conn: object) -> None:
    """Create ``legato_barrier`` and its index where they do not exist yet (asyncio)."""
    async with atransaction(conn) as tx:
        await tx.run(_create_plan())


def create_table_inside(driver: SyncDriver) -> None:
    """As :func:`create_table`, through a driver whose transaction (or autocommit) the
    caller owns."""
    SyncTransaction(driver).run(_create_plan())


def query_prepared_inside(driver: SyncDriver, gid: str) -> PreparedStatus:
    """As :func:`query_prepared`, inside a transaction the caller owns and commits."""
    return SyncTransaction(driver).run(_query_prepared_plan(gid))


def query_prepared(conn: object, gid: str) -> PreparedStatus:
    """Whether a msg's local transaction (run in ``Barrier.for_msg(gid)``) committed.

    Writes the msg's barrier row with reason ``rollback`` if it is not there: from
    then on that local transaction can never commit (its own insert will find the
    row and skip). If the local transaction is still running, this waits for it.
    """
    plan = _query_prepared_plan(gid)
    with transaction(conn) as tx:
        return tx.run(plan)


async def aquery_prepared(conn: object, gid: str) -> PreparedStatus:
    """As :func:`query_prepared`, on an asyncio connection."""
    plan = _query_prepared_plan(gid)
    async with atransaction(conn) as tx:
        return await tx.run(plan)


def purge(conn: object, older_than_seconds: float, limit: int = 1000) -> int:
    """Delete barrier rows older than ``older_than_seconds``, ``limit`` rows per transaction.

    Returns how many were deleted. Keep rows at least as long as a transaction can
    still be retried: a purged row lets a late duplicate run again.
    """
    plan = _purge_plan(older_than_seconds, limit)
    with transaction(conn) as tx:
        return tx.run(plan)


async def apurge(conn: object, older_than_seconds: float, limit: int = 1000) -> int:
    """As :func:`purge`, on an asyncio connection."""
    plan = _purge_plan(older_than_seconds, limit)
    async with atransaction(conn) as tx:
        return await tx.run(plan)
