"""Legato's exception tree: every ``LegatoError`` there is, defined here.

An exception's docstring is its default message. A test checks this tree against
the classes, and that each one users can meet is exported from ``legato``.

::

    LegatoError
    ├── DefinitionError                 a saga definition (or a call, a gid, a header) is malformed
    │   └── BadRequest                  an HTTP request to the coordinator service is malformed
    ├── PayloadError                    a payload cannot be stored as JSON
    ├── GidConflict                     a gid is reused for a different transaction
    ├── TransactionNotFound             no transaction has this gid
    ├── IllegalStateChange              the transaction's status forbids this request
    ├── UnknownSaga                     no saga of this name is registered here
    ├── WorkflowError                   a workflow is used wrongly (a step outside its body)
    ├── LogError                        the log failed
    │   ├── LeaseLost                   another coordinator holds the transaction now
    │   ├── SchemaMismatch              the log's schema is not the one this version needs
    │   └── LogUnavailable              the log's database cannot be reached
    ├── Failure                         a definite business failure, raised by a step
    ├── TryFailed                       a TCC branch's try did not succeed (unknown outcome)
    ├── ResourceError                   an XA resource is unknown or unreachable
    ├── SettingsError                   a setting has a value that cannot be used
    ├── Stopping                        this coordinator is stopping: ask another one
    ├── BrokerError                     the broker refused or lost a request
    ├── BarrierRequestError (ValueError)  a request names no valid barrier
    ├── TransactionInProgress (RuntimeError)  the connection is already inside a transaction
    ├── NoTransaction (RuntimeError)    the connection would commit each statement alone
    └── XaError                         an XA branch could not be run or ended as asked
        ├── XidError (ValueError)       this gid / branch id cannot be an XA xid
        ├── XaUnsupported (TypeError)   this connection's database has no 2PC (SQLite)
        ├── TransactionEnded            the branch function ended the transaction (DDL)
        ├── BranchBusy                  another session holds the xid right now: retry
        ├── BranchNotCommitted          commit asked, but the branch did not commit
        └── BranchCommitted             rollback asked, but the branch had committed

``Failure`` is the one a step raises on purpose: it means "this op will never
succeed, roll back" (a seat sold out, a card declined). Any other exception
from a step is an *unknown* outcome and is retried.
"""

from __future__ import annotations


class LegatoError(Exception):
    """A Legato error."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or type(self).__name__).strip())


class DefinitionError(LegatoError):
    """The saga definition is malformed."""


class PayloadError(LegatoError):
    """The payload cannot be stored as JSON."""


class WorkflowError(LegatoError):
    """A workflow is used wrongly: a step called outside its body, or in a task of its own."""


class GidConflict(LegatoError):
    """This gid is already used by a different transaction."""


class TransactionNotFound(LegatoError):
    """No transaction has this gid."""


class IllegalStateChange(LegatoError):
    """The transaction's status forbids this request."""


class UnknownSaga(LegatoError):
    """No saga of this name is registered with this coordinator."""


class LogError(LegatoError):
    """The log failed."""


class LeaseLost(LogError):
    """Another coordinator holds this transaction's lease now."""


class SchemaMismatch(LogError):
    """The log's schema is not the one this version of Legato needs; run `legato migrate`."""


class LogUnavailable(LogError):
    """The log's database cannot be reached."""


class Failure(LegatoError):
    """The op failed definitively."""


class BadRequest(DefinitionError):
    """The request is malformed."""


class TryFailed(LegatoError):
    """A branch's try did not succeed."""


class ResourceError(LegatoError):
    """An XA resource is unknown or unreachable."""


class SettingsError(LegatoError):
    """A setting has a value that cannot be used."""


class Stopping(LegatoError):
    """This coordinator is stopping and takes no new work: send it to another one (a
    request that carries its gid is safe to repeat there)."""


class BrokerError(LegatoError):
    """The broker refused or lost a request; what was asked may not have happened."""


class BarrierRequestError(LegatoError, ValueError):
    """The request does not name a valid barrier (gid, trans_type, branch_id, op)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class TransactionInProgress(LegatoError, RuntimeError):
    """The connection is already inside a transaction; the barrier opens and commits its own."""


class NoTransaction(LegatoError, RuntimeError):
    """The connection would commit each statement on its own (autocommit), where the
    caller's transaction was wanted."""


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
