"""The participant kit: what a service that owns a database runs around each branch op.

The barrier makes each op take effect once in the service's own database, turns
a compensation of an action that never ran into a no-op, and refuses an action
that arrives after its compensation::

    from legato.participant import Barrier, create_table

    create_table(conn)  # once, at start-up
    barrier = Barrier.from_query(request.query_params)
    result = barrier.call(conn, lambda c: c.execute("UPDATE ...", params))
    if result.skipped:
        log.info("skipped: %s", result.outcome)

Sync and asyncio drivers (``acall``, ``acreate_table``, ...): sqlite3, psycopg,
asyncpg, PyMySQL, aiomysql and SQLAlchemy sessions and connections. Drivers are
never imported here. The framework helpers answer the coordinator as it expects:
``legato.participant.starlette`` (``run_in_barrier(request, conn, fn)``),
``legato.participant.fastapi`` (a ``BarrierParam`` dependency) and
``legato.participant.django`` (``@barrier_view``, inside ``transaction.atomic``
on Django's own connection); the XA resources (a branch of a two-phase
commit: ``xa.prepare_branch``, ``xa.commit_branch``, ``xa.rollback_branch``,
``xa.recover``, in a namespace per deployment) are in ``legato.participant.xa``;
the transactional outbox (``outbox.add`` inside the business transaction,
``outbox.Relay`` to publish what committed) is in ``legato.participant.outbox``.
"""

from .._errors import BarrierRequestError, TransactionInProgress
from . import inbox, outbox, xa
from .barrier import (
    Barrier,
    BarrierOutcome,
    BarrierResult,
    PreparedStatus,
    acreate_table,
    apurge,
    aquery_prepared,
    create_table,
    purge,
    query_prepared,
)

__all__ = [
    "Barrier",
    "BarrierOutcome",
    "BarrierRequestError",
    "BarrierResult",
    "PreparedStatus",
    "TransactionInProgress",
    "acreate_table",
    "apurge",
    "aquery_prepared",
    "create_table",
    "inbox",
    "outbox",
    "purge",
    "query_prepared",
    "xa",
]
