"""The log port: the durable record of transactions, their ops and their events.

The coordinator is the only writer. Every write that changes a transaction is
*fenced*: it names the lease owner, and is refused with ``LeaseLost`` when
another coordinator has taken the transaction over (DESIGN 3.5).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .._errors import GidConflict, IllegalStateChange, TransactionNotFound
from .._model import EventRecord, Mode, OpRecord, TxRecord, TxStatus


@dataclass(slots=True)
class NewTransaction:
    """A transaction as first written: its row, all its ops, its first events.

    It is written with its lease already taken by ``tx.lease_owner``, so that
    the submitting coordinator drives it at once.
    """

    tx: TxRecord
    ops: list[OpRecord]
    events: list[EventRecord] = field(default_factory=list)


@dataclass(slots=True)
class TxWrite:
    """One fenced change of one transaction: applied whole, or not at all."""

    gid: str
    owner: str
    at: float
    status: TxStatus
    reason: str | None
    stuck: str | None
    next_attempt_at: float | None
    ops: list[OpRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    release: bool = False  # give the lease up with this write (due again at next_attempt_at,
    # or at once if a request came in and this write does not answer it)
    handled: str | None = None  # the operator request this write answers, cleared with it
    new_ops: list[OpRecord] = field(default_factory=list)  # ops added (a workflow's journal)


@dataclass(slots=True)
class Claimed:
    gid: str
    requested: str | None = None
    previous: str | None = None  # the owner whose lease had expired: a takeover


@dataclass(slots=True)
class TxQuery:
    status: Sequence[TxStatus] = ()
    mode: str | None = None
    name: str | None = None
    stuck: bool | None = None
    since: float | None = None
    until: float | None = None
    search: str | None = None  # a part of the gid
    limit: int = 100
    offset: int = 0


UNCLAIMED_GRACE = 60.0
"""Seconds a transaction may be due with no coordinator holding it before it is said to
wait for code (``unclaimed_since``). A running coordinator claims what is due within its
poll interval (1 s by default, at once on a new request), so a minute is many polls
missed: no running coordinator claims the transaction's name (a workflow's
``name@version``, a saga's name), or none runs at all, or those running are too far
behind to claim it."""

UNCLAIMED_NAMES = 50
"""At most this many names in ``LogSummary.unclaimed`` (the most waiting first)."""


def unclaimed_since(tx: TxRecord, now: float) -> float | None:
    """When ``tx`` became due, if it has waited past ``UNCLAIMED_GRACE`` since with no
    coordinator holding it (no lease, or one expired as long ago): no coordinator that
    runs claims its name. None otherwise (ended, not due, held, or not for that long)."""
    before = now - UNCLAIMED_GRACE
    due = tx.next_attempt_at
    if tx.ended_at is not None or due is None or due > before:
        return None
    if tx.lease_owner is not None and (tx.lease_expires_at or 0.0) >= before:
        return None
    return due


@dataclass(frozen=True, slots=True)
class Unclaimed:
    """The unended transactions of one mode and name that have been due, held by no
    coordinator, since before the grace (see ``unclaimed_since``)."""

    mode: str
    name: str
    count: int
    due_since: float  # when the longest-waiting of them became due


@dataclass(slots=True)
class LogSummary:
    """The log at a glance: what the dashboard's header, ``legato stats`` and the
    metrics' gauges show."""

    counts: dict[str, int]  # unended transactions by status (ended ones: see ``ended``)
    stuck: int  # unended and stuck
    oldest_unfinished_at: float | None  # when the oldest unended transaction was created
    since: float  # the window the next two count over
    started: int  # created at or after ``since``
    ended: dict[str, int]  # ended at or after ``since``, by status
    unclaimed: list[Unclaimed] = field(default_factory=list)
    """By name, the most first (at most ``UNCLAIMED_NAMES``): transactions due before
    ``summary``'s ``unclaimed_before`` that no coordinator holds; empty when not asked."""

    @property
    def unclaimed_total(self) -> int:
        """How many transactions ``unclaimed`` counts, over every name it lists."""
        return sum(u.count for u in self.unclaimed)

    @property
    def unfinished(self) -> int:
        return sum(n for s, n in self.counts.items() if not TxStatus(s).ended)


@runtime_checkable
class Log(Protocol):
    """What the coordinator needs from durable storage. Every adapter passes
    ``tests/contract/test_log_contract.py``."""

    url: str
    batch_observer: Callable[[int, float], None] | None
    """Told each group commit's size and seconds (the metrics' hook); None: no one."""

    async def open(self) -> None:
        """Connect, and build or check the schema."""

    async def close(self) -> None: ...

    async def migrate(self) -> list[str]:
        """Apply the schema's migrations not applied yet and return their names (none for a
        log with no schema); needs no ``open()``."""

    async def deployment(self) -> str:
        """This log's deployment id: random, made once as the log is created, the same for
        every coordinator sharing the log (DESIGN section 8: XA xids carry it)."""

    async def schema_versions(self) -> tuple[int, int]:
        """(the log's schema version, the one this Legato's code builds): they differ
        once another version of Legato has migrated the log, or before a migration. One
        small read: a readiness probe asks it every few seconds."""

    async def create(self, new: NewTransaction) -> TxRecord | None:
        """Write a new transaction, or return the existing row if the gid is taken."""

    async def write(self, change: TxWrite) -> None:
        """Apply one fenced change; raise ``LeaseLost`` if ``change.owner`` lost the lease."""

    async def register(self, gid: str, ops: Sequence[OpRecord], now: float) -> None:
        """Add a branch's ops (a TCC branch's confirm and cancel) to a prepared transaction
        that no coordinator holds; registering the same branch again changes nothing.
        Raises ``TransactionNotFound``, ``IllegalStateChange`` (no longer prepared, or
        claimed), or ``GidConflict`` (the branch is registered with other calls)."""

    async def claim(
        self, owner: str, now: float, until: float, limit: int, names: Sequence[str] | None
    ) -> list[Claimed]:
        """Take the lease of up to ``limit`` due transactions: not ended, not leased by a
        live owner, and with ``next_attempt_at <= now``; ``names`` limits the saga names."""

    async def renew(
        self, owner: str, gids: Sequence[str], now: float, until: float
    ) -> dict[str, str | None]:
        """Extend the leases of ``gids`` that ``owner`` still holds; returns them with any
        pending request. Leases not named are left to expire."""

    async def release(self, owner: str, gid: str, next_attempt_at: float | None) -> None:
        """Give a lease up, so that any coordinator may claim the transaction at the time given."""

    async def release_owner(self, owner: str) -> int:
        """Give up every lease held under ``owner``: called by a coordinator starting
        under a stable name, since whatever its previous incarnation held is orphaned."""

    async def request(
        self,
        gid: str,
        what: str,
        now: float,
        claim: tuple[str, float] | None = None,
        by: str | None = None,
    ) -> TxRecord:
        """Record a request ('retry', 'abort', 'succeeded', 'failed', 'submit', ...) for
        the coordinator that drives ``gid``; makes it due now. With ``claim=(owner,
        until)``, also take the lease for ``owner`` where no live owner holds it, so that
        the requester drives it at once; the record returned says who holds it. The
        request is recorded as a ``requested`` event naming ``by`` (who asked: 'cli',
        'dashboard', 'api'...)."""

    async def signal(
        self,
        gid: str,
        op: OpRecord,
        now: float,
        claim: tuple[str, float] | None = None,
        by: str | None = None,
    ) -> tuple[TxRecord, bool]:
        """Keep a signal (``op``, of op name ``signal``: its branch names it and is its
        id, its output is its value) for the workflow ``gid`` until the workflow takes
        it, and make the workflow due now, with the request 'signal' unless another is
        pending. A signal already kept (same branch) changes nothing. Returns the
        transaction's row and whether the signal is new; with ``claim``, as ``request``.
        Raises ``TransactionNotFound``, or ``IllegalStateChange`` once it has ended."""

    async def load(self, gid: str) -> tuple[TxRecord, list[OpRecord]] | None: ...

    async def load_many(self, gids: Sequence[str]) -> dict[str, tuple[TxRecord, list[OpRecord]]]:
        """``load`` of each of ``gids``, in one read (one snapshot): those the log holds."""

    async def events(self, gid: str) -> list[EventRecord]: ...

    async def list(self, query: TxQuery) -> list[TxRecord]: ...

    async def counts(self) -> dict[str, int]:
        """Every transaction the log holds, by status, plus 'stuck'. A full count: for
        tools and tests; what is watched often (the dashboard, ``/health``, the metrics)
        reads ``summary``, which counts the unended ones only."""

    async def summary(self, since: float, unclaimed_before: float | None = None) -> LogSummary:
        """The unended transactions by status, the stuck, the oldest unfinished, and how
        many started and ended from ``since`` on; with ``unclaimed_before`` (``now -
        UNCLAIMED_GRACE``), the unended ones due before it that no coordinator holds (no
        lease, or one expired before it), by mode and name. Cheap however many ended
        transactions the log keeps (indexed), so that it can be asked every few seconds."""

    async def purge(self, ended_before: float, limit: int) -> int:
        """Delete up to ``limit`` transactions that ended before the time given."""

    # -- the dashboard's sessions (kept where every process serving the log sees them) --

    async def session_start(self, digest: str, expires_at: float, now: float) -> None:
        """Record a session (``digest``: a hash of its id) until ``expires_at``; sessions
        expired by ``now`` are forgotten."""

    async def session_valid(self, digest: str, now: float) -> bool:
        """Whether the session is recorded and not expired at ``now``."""

    async def session_end(self, digest: str) -> None:
        """Forget the session (a logout)."""


async def purge_in_batches(
    log: Log, ended_before: float, batch: int = 200, pause: float = 0.05
) -> int:
    """Delete every transaction that ended before the time given, ``batch`` at a time
    with ``pause`` seconds between batches, so that the transactions' own writes (which
    share the log's writer) go in between, never queued behind a purge. Returns how
    many were deleted."""
    deleted = 0
    while True:
        n = await log.purge(ended_before, batch)
        deleted += n
        if n < batch:
            return deleted
        await asyncio.sleep(pause)


def requested_event(gid: str, what: str, now: float, by: str | None) -> EventRecord:
    """The event that records an operator's (or an initiator's) request."""
    detail: dict[str, object] = {"what": what}
    if by:
        detail["by"] = by
    return EventRecord(gid, now, "requested", detail=detail)


def refuse_signal(tx: TxRecord) -> None:
    """Raise why ``tx`` takes no signal, if it takes none (else the signal was kept
    already: nothing to do)."""
    if tx.mode is not Mode.WORKFLOW:
        raise IllegalStateChange(f"{tx.gid} is a {tx.mode}, not a workflow: it takes no signals")
    if tx.ended_at is not None:
        raise IllegalStateChange(f"{tx.gid} has already ended ({tx.status})")


def registration_refused(
    gid: str,
    tx: TxRecord | None,
    existing: Sequence[OpRecord],
    ops: Sequence[OpRecord],
    now: float,
) -> None:
    """Why ``ops`` could not all be registered: raise the error, or return if every one
    of them is registered already, the same (a repeated registration)."""
    if tx is None:
        raise TransactionNotFound(f"no transaction has gid {gid!r}")
    if tx.status is not TxStatus.PREPARED:
        raise IllegalStateChange(f"current status '{tx.status}', cannot register a branch")
    have = {o.key: o for o in existing}
    for o in ops:
        old = have.get(o.key)
        if old is None:
            break
        if (old.target, old.payload) != (o.target, o.payload):
            raise GidConflict(f"{gid}: branch {o.branch!r} is registered already, with other calls")
    else:
        return
    if tx.lease_owner is not None and (tx.lease_expires_at or 0) >= now:
        raise IllegalStateChange(f"{gid} is being submitted or aborted: too late to register")
    raise IllegalStateChange(f"{gid}: cannot register a branch now")
