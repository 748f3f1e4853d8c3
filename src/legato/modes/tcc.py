"""The TCC mode as a pure state machine (try / confirm / cancel).

The initiator begins the transaction (``prepared``), registers each branch (its
confirm and cancel calls) and calls the branch's try itself. Then ``Submit``
(every try succeeded) confirms every branch at once; ``AbortRequested`` (a try
failed) or ``Timeout`` (still prepared past ``timeout_to_fail``) cancels them one
at a time, newest first (a cancel of a branch whose try never ran is the
participant's null compensation, which its barrier absorbs). The rules are the
branch rules of ``modes._branches``, with confirm as the forward op and cancel as
the undo.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._model import OpName
from ._branches import BranchPlan, apply, new_state

CONFIRM = OpName.CONFIRM
CANCEL = OpName.CANCEL


def plan(branches: Sequence[str]) -> BranchPlan:
    """A TCC transaction's plan: its branches in order of registration."""
    return BranchPlan(tuple(branches), forward=CONFIRM, undo=CANCEL)


__all__ = ["CANCEL", "CONFIRM", "BranchPlan", "apply", "new_state", "plan"]
