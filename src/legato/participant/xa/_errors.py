"""What the XA resources raise; import them from ``legato.participant.xa``.

An exception's docstring is its default message.

::

    LegatoError
    ├── TransactionInProgress (RuntimeError)   the connection is already inside a transaction
    └── XaError                                an XA branch could not be run or ended as asked
        ├── XidError (ValueError)              this gid / branch id cannot be an XA xid
        ├── XaUnsupported (TypeError)          this connection's database has no 2PC (SQLite)
        ├── TransactionEnded                   the branch function ended the transaction (DDL)
        ├── BranchBusy                         another session holds the xid right now: retry
        ├── BranchNotCommitted                 commit asked, but the branch did not commit
        └── BranchCommitted                    rollback asked, but the branch had committed
"""

from __future__ import annotations

from ..._errors import LegatoError


class XaError(LegatoError):
    """An XA branch could not be run or ended as asked."""


class XidError(XaError, ValueError):
    """This gid or branch id cannot be encoded losslessly as an XA transaction id."""


class XaUnsupported(XaError, TypeError):
    """This connection's database has no two-phase commit the XA resources can use."""


class TransactionEnded(XaError):
    """The branch function ended the two-phase transaction (a COMMIT, or DDL that commits
    implicitly); nothing was prepared."""


class BranchBusy(XaError):
    """Another session holds this xid right now (it is being prepared, or is still attached to
    the session that prepared it); retry later."""


class BranchNotCommitted(XaError):
    """Commit was asked, but the branch is not prepared and its barrier row shows it never
    committed: it was rolled back, or never prepared."""


class BranchCommitted(XaError):
    """Rollback was asked, but the branch had already committed (a heuristic mismatch: the
    coordinator's decision and the database disagree)."""
