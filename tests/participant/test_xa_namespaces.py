"""XA namespaces on real servers: a branch belongs to the namespace it was prepared in, and
only that namespace's recovery lists it.

``xa_neighbours`` is two databases on one server (the session's throwaway PostgreSQL,
or the shared MariaDB), as two services with a database each would have: the same
gid and branch id prepared in both are two branches, each listed, committed and
rolled back by its own side only. Outcomes are read back from each ledger.
"""

from __future__ import annotations

from contextlib import closing
from typing import Any

import pytest

from legato.participant import xa
from legato.participant.xa import BranchNotCommitted, XaOutcome
from tests.support.xa import XaDb


def insert(gid: str, entry: str) -> Any:
    def run(conn: Any) -> None:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO ledger (gid, entry) VALUES (%s, %s)", (gid, entry))

    return run


def prepare(xdb: XaDb, gid: str, entry: str, namespace: str | None = None) -> xa.Xid:
    """Branch 01 of ``gid`` prepared on a connection then closed (MariaDB lets go of it)."""
    with closing(xdb.db.connect()) as conn:
        result = xa.prepare_branch(conn, gid, "01", insert(gid, entry), namespace=namespace)
    assert result.outcome is XaOutcome.PREPARED
    return result.xid


def listed(xdb: XaDb, gid: str, namespace: Any = None) -> list[str]:
    """The branches of ``gid`` that recovery on ``xdb`` lists (MariaDB's XA RECOVER lists
    the whole server's: other tests' too)."""
    with closing(xdb.db.connect()) as conn:
        found = xa.recover(conn, namespace=namespace)
    return [f"{x.gid}/{x.branch_id}@{x.namespace}" for x in found if x.gid == gid]


def name_of(xdb: XaDb) -> str:
    return xdb.db.url.rsplit("/", 1)[1]


def test_the_same_branch_prepared_in_two_databases_is_two_branches_each_ended_by_its_own(
    xa_neighbours: tuple[XaDb, XaDb],
) -> None:
    a, b = xa_neighbours
    gid = a.new_gid()

    ours, theirs = prepare(a, gid, "a"), prepare(b, gid, "b")

    assert ours.namespace == xa.database_namespace(name_of(a)) != theirs.namespace
    assert listed(a, gid) == [f"{gid}/01@{ours.namespace}"]
    assert listed(b, gid) == [f"{gid}/01@{theirs.namespace}"]
    with closing(a.db.connect()) as conn:
        xa.commit_branch(conn, gid, "01")
    with closing(b.db.connect()) as conn:
        xa.rollback_branch(conn, gid, "01")
    assert a.db.ledger(gid) == ["a"] and b.db.ledger(gid) == []
    assert listed(a, gid) == listed(b, gid) == []


def test_a_branch_prepared_in_a_namespace_is_found_under_that_namespace_only(
    xa_neighbours: tuple[XaDb, XaDb],
) -> None:
    a, _ = xa_neighbours
    gid = a.new_gid()
    xid = prepare(a, gid, "booked", namespace="svc-a")

    assert xid == xa.xid_for(gid, "01", "svc-a")
    assert listed(a, gid) == []  # the database's own namespace has nothing
    assert listed(a, gid, "svc-b") == []
    assert listed(a, gid, "svc-a") == [f"{gid}/01@svc-a"]
    assert listed(a, gid, xa.EVERY_NAMESPACE) == [f"{gid}/01@svc-a"]
    with closing(a.db.connect()) as conn, pytest.raises(BranchNotCommitted):
        xa.commit_branch(conn, gid, "01")  # another namespace's xid: never prepared
    with closing(a.db.connect()) as conn:
        xa.commit_branch(conn, gid, "01", namespace="svc-a")
    assert a.db.ledger(gid) == ["booked"]
