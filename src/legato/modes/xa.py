"""The XA mode (two-phase commit) as a pure state machine.

Each branch prepared its part in its database before ``Submit``; the status
``submitted`` written to the log *is* the commit decision, and nothing is
committed before it is durable. Then every branch's ``commit`` starts; an abort or
a timeout while prepared rolls the branches back, newest first. The rules are the
branch rules of ``modes._branches``, with commit as the forward op and rollback as
the undo.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._model import OpName
from ._branches import BranchPlan, apply, new_state

COMMIT = OpName.COMMIT
ROLLBACK = OpName.ROLLBACK


def plan(branches: Sequence[str]) -> BranchPlan:
    """An XA transaction's plan: its branches in order of registration."""
    return BranchPlan(tuple(branches), forward=COMMIT, undo=ROLLBACK)


__all__ = ["COMMIT", "ROLLBACK", "BranchPlan", "apply", "new_state", "plan"]
