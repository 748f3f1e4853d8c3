"""A workflow that waits for a signal: the one the signal tests (over HTTP, with
``legato tx signal``) send theirs to.

It waits for the signal ``approval``, then for ``ship``, then ships the order into
the shipping service's own database, a SQLite file. It returns the approval, and a
second approval if one was kept meanwhile (None: there was only one): a test sends
what it likes while the workflow waits for ``ship``, then ``ship``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import legato


def shipments(db: Path) -> list[tuple[str, str]]:
    """The orders shipped, with who approved each, in order."""
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT orders, approved_by FROM shipment ORDER BY rowid"))


def approval_workflow(db: Path) -> legato.WorkflowDefinition:
    """The workflow, shipping into ``db`` (created here)."""
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS shipment (orders TEXT, approved_by TEXT)")

    def ship(order: str, approved_by: str) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute("INSERT INTO shipment VALUES (?, ?)", (order, approved_by))

    @legato.workflow("await_approval")
    async def await_approval(wf: legato.Workflow, order: str) -> dict[str, Any]:
        approval = await wf.wait_for("approval", timeout=60)
        await wf.wait_for("ship", timeout=60)
        again = await wf.wait_for("approval", timeout=0)
        await wf.step(ship, order, approval["by"])
        return {"approval": approval, "again": again}

    return await_approval
