"""Legato: distributed transactions for Python.

Sagas with compensations over plain Python callables, driven by a coordinator
that writes every decision to a durable log (embedded SQLite by default,
PostgreSQL in production) and resumes every unfinished transaction after a
crash.
"""

from ._errors import (
    DefinitionError,
    Failure,
    GidConflict,
    IllegalStateChange,
    LeaseLost,
    LegatoError,
    LogError,
    LogUnavailable,
    PayloadError,
    SchemaMismatch,
    TransactionNotFound,
    UnknownSaga,
)
from ._handle import Handle, Outcome
from ._hooks import Hooks
from ._model import OpName, OpStatus, RetryPolicy, TxStatus
from .coordinator import Coordinator
from .log import Log, TxQuery, open_log
from .saga import Saga, StepContext

__version__ = "0.1.0"

__all__ = [
    "Coordinator",
    "DefinitionError",
    "Failure",
    "GidConflict",
    "Handle",
    "Hooks",
    "IllegalStateChange",
    "LeaseLost",
    "LegatoError",
    "Log",
    "LogError",
    "LogUnavailable",
    "OpName",
    "OpStatus",
    "Outcome",
    "PayloadError",
    "RetryPolicy",
    "Saga",
    "SchemaMismatch",
    "StepContext",
    "TransactionNotFound",
    "TxQuery",
    "TxStatus",
    "UnknownSaga",
    "__version__",
    "open_log",
]
