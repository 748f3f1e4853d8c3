"""Legato: distributed transactions for Python.

Sagas with compensations over plain Python callables, driven by a coordinator
that writes every decision to a durable log (embedded SQLite by default,
PostgreSQL in production) and resumes every unfinished transaction after a
crash.
"""

from ._errors import (
    BarrierRequestError,
    BranchBusy,
    BranchCommitted,
    BranchNotCommitted,
    BrokerError,
    DefinitionError,
    Failure,
    GidConflict,
    IllegalStateChange,
    LeaseLost,
    LegatoError,
    LogError,
    LogUnavailable,
    NoTransaction,
    PayloadError,
    ResourceError,
    SchemaMismatch,
    SettingsError,
    Stopping,
    TransactionEnded,
    TransactionInProgress,
    TransactionNotFound,
    TryFailed,
    UnknownSaga,
    WorkflowError,
    XaError,
    XaUnsupported,
    XidError,
)
from ._hooks import Hooks
from ._model import Json, Mode, OpName, OpStatus, RetryPolicy, TxStatus
from ._version import __version__
from .coordinator import Coordinator
from .engine.handle import Handle, Outcome
from .log import Log, TxQuery, open_log
from .saga import Saga
from .transports.http import HttpCall
from .transports.local import StepContext
from .workflow import Workflow, WorkflowDefinition, call, current_step, step, workflow

__all__ = [
    "BarrierRequestError",
    "BranchBusy",
    "BranchCommitted",
    "BranchNotCommitted",
    "BrokerError",
    "Coordinator",
    "DefinitionError",
    "Failure",
    "GidConflict",
    "Handle",
    "Hooks",
    "HttpCall",
    "IllegalStateChange",
    "Json",
    "LeaseLost",
    "LegatoError",
    "Log",
    "LogError",
    "LogUnavailable",
    "Mode",
    "NoTransaction",
    "OpName",
    "OpStatus",
    "Outcome",
    "PayloadError",
    "ResourceError",
    "RetryPolicy",
    "Saga",
    "SchemaMismatch",
    "SettingsError",
    "StepContext",
    "Stopping",
    "TransactionEnded",
    "TransactionInProgress",
    "TransactionNotFound",
    "TryFailed",
    "TxQuery",
    "TxStatus",
    "UnknownSaga",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowError",
    "XaError",
    "XaUnsupported",
    "XidError",
    "__version__",
    "call",
    "current_step",
    "open_log",
    "step",
    "workflow",
]
