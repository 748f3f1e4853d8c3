"""The presumed-abort rule a service applies to a branch it finds prepared."""

from __future__ import annotations

import pytest

from legato.participant import xa


@pytest.mark.parametrize(
    ("status", "registered", "expected"),
    [
        (None, False, "rollback"),  # the coordinator never heard of the transaction
        (None, True, "rollback"),
        ("prepared", False, None),  # its initiator may still register and decide
        ("prepared", True, None),
        ("submitted", True, "commit"),
        ("succeed", True, "commit"),  # DTM's spelling
        ("succeeded", True, "commit"),
        ("submitted", False, "rollback"),  # never part of the decision
        ("succeed", False, "rollback"),
        ("aborting", True, "rollback"),
        ("failed", True, "rollback"),
        ("failed", False, "rollback"),
        ("something-new", True, None),  # a status this kit does not know: leave it
    ],
)
def test_the_verdict_commits_only_a_registered_branch_of_a_committing_transaction(
    status: str | None, registered: bool, expected: str | None
) -> None:
    assert xa.verdict(status, registered) == expected


def test_the_verdict_reads_dtm_s_query_reply() -> None:
    xid = xa.xid_for("g-1", "02", "shop")
    reply = {
        "transaction": {"gid": "g-1", "status": "succeed"},
        "branches": [{"branch_id": "01", "op": "commit"}, {"branch_id": "02", "op": "commit"}],
    }
    assert xa.verdict_from_query(xid, reply) == "commit"
    assert xa.verdict_from_query(xa.xid_for("g-1", "03", "shop"), reply) == "rollback"
    assert xa.verdict_from_query(xid, {"transaction": None, "branches": []}) == "rollback"
    assert xa.verdict_from_query(xid, {"transaction": {"status": "prepared"}}) is None
