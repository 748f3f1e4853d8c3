"""Legato's exception tree.

An exception's docstring is its default message.

::

    LegatoError
    ├── DefinitionError          a saga definition is malformed
    ├── PayloadError             a payload cannot be stored as JSON
    ├── GidConflict              a gid is reused for a different transaction
    ├── TransactionNotFound      no transaction has this gid
    ├── IllegalStateChange       the transaction's status forbids this request
    ├── UnknownSaga              no saga of this name is registered here
    ├── LogError                 the log failed
    │   ├── LeaseLost            another coordinator holds the transaction now
    │   ├── SchemaMismatch       the log's schema is not the one this version needs
    │   └── LogUnavailable       the log's database cannot be reached
    └── Failure                  a definite business failure, raised by a step

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
