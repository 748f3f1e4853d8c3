"""What the XA resources raise (defined in ``legato._errors``, drawn in its tree);
import them from ``legato.participant.xa`` or ``legato``."""

from __future__ import annotations

from ..._errors import (
    BranchBusy,
    BranchCommitted,
    BranchNotCommitted,
    TransactionEnded,
    TransactionInProgress,
    XaError,
    XaUnsupported,
    XidError,
)

__all__ = [
    "BranchBusy",
    "BranchCommitted",
    "BranchNotCommitted",
    "TransactionEnded",
    "TransactionInProgress",
    "XaError",
    "XaUnsupported",
    "XidError",
]
