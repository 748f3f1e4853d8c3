"""A service's own recovery of the XA branches it prepared (DTM's XA flow over HTTP).

In that flow the service prepares its branch first and registers its URL with the
coordinator afterwards. A service killed between the two leaves a prepared branch
the coordinator has never heard of: no phase 2 will ever reach it, and it holds
its row locks until someone ends it. So the service, when it starts and then now
and again, lists its prepared branches and asks the coordinator what became of
each one's transaction (DTM's ``query``, which ``legato serve`` answers too)::

    report = xa.resolve(conn, "http://coordinator:36789/api/dtmsvr")

The rule (:func:`verdict`) is presumed abort, applied per branch: commit only a
branch the coordinator lists under a transaction decided to commit; roll back
every other branch of a transaction that is ending, decided to abort, or unknown
to the coordinator; leave alone one whose transaction is still prepared (its
initiator may yet register it). A branch both resolved here and reached by the
coordinator's phase 2 is fine: both are idempotent and reach the same end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._ids import Xid
from ._plans import Phase2

_COMMITTING = frozenset({"submitted", "succeed", "succeeded"})
_ABORTING = frozenset({"aborting", "failed"})


def verdict(status: str | None, registered: bool) -> Phase2 | None:
    """What a prepared branch must become, from its global transaction's ``status`` as
    the coordinator reports it (DTM's words or Legato's; None: the coordinator does not
    know the transaction) and whether the branch is ``registered`` in it. None: not yet.
    """
    if status is None or status in _ABORTING:
        return "rollback"
    if status in _COMMITTING:
        # the decision covers the registered branches only: one the coordinator never
        # heard of was never part of it, and nothing else will ever end it
        return "commit" if registered else "rollback"
    return None  # prepared (or a status this kit does not know): its initiator decides


def verdict_from_query(xid: Xid, reply: Mapping[str, Any]) -> Phase2 | None:
    """:func:`verdict` from the JSON of DTM's ``GET query?gid=``."""
    tx = reply.get("transaction")
    status = tx.get("status") if isinstance(tx, Mapping) else None
    branches = reply.get("branches") or []
    registered = any(
        isinstance(b, Mapping) and b.get("branch_id") == xid.branch_id for b in branches
    )
    return verdict(status if isinstance(status, str) else None, registered)


@dataclass
class ResolveReport:
    """What :func:`resolve` did, one ``gid/branch_id`` per entry."""

    committed: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # their transactions are still prepared
    failed: list[str] = field(default_factory=list)  # with the error; try again later


def query_url(coordinator: str) -> str:
    """DTM's query endpoint under a server URL (``.../api/dtmsvr``)."""
    return coordinator.rstrip("/") + "/query"
