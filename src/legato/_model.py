"""The words of DESIGN.md as types: statuses, ops, retry policies, log records."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Json = Any
"""A value that :mod:`legato._json` can encode."""


class Mode(StrEnum):
    SAGA = "saga"
    TCC = "tcc"
    XA = "xa"
    MSG = "msg"
    FLOW = "flow"  # a choreographed saga: services exchanging events, recorded as they go
    WORKFLOW = "workflow"  # a durable workflow: plain Python, its steps journaled as it goes


class TxStatus(StrEnum):
    """A global transaction's status (DESIGN section 4)."""

    PREPARED = "prepared"
    SUBMITTED = "submitted"
    ABORTING = "aborting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        return self is TxStatus.SUCCEEDED or self is TxStatus.FAILED


class OpName(StrEnum):
    ACTION = "action"
    COMPENSATE = "compensate"
    TRY = "try"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    MSG = "msg"  # a msg's local transaction, asked about through its query_prepared
    SIGNAL = "signal"  # a signal sent to a workflow, kept until the workflow takes it


class OpStatus(StrEnum):
    """Where one op of one branch stands."""

    PENDING = "pending"  # not started
    RUNNING = "running"  # an attempt was issued; its outcome is not known yet
    RETRY_WAIT = "retry_wait"  # the last attempt's outcome was unknown; waiting to retry
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # ended without success (definite failure, or given up)


class RequestKind(StrEnum):
    """What an operator or an initiator asks of whoever drives a transaction."""

    RETRY = "retry"  # try the parked ops of a stuck transaction again
    ABORT = "abort"  # roll back (cancel)
    SUCCEEDED = "succeeded"  # end by decree, as succeeded
    FAILED = "failed"  # end by decree, as failed
    SUBMIT = "submit"  # an initiator's: go forward (TCC, XA, msg)
    SIGNAL = "signal"  # a workflow has a signal waiting (the signal itself is an op row)


@dataclass(frozen=True, slots=True)
class Request:
    """A request recorded on a transaction for whoever drives it (the log keeps it as
    text: ``encode`` and ``decode``)."""

    kind: RequestKind
    reason: str | None = None  # an abort's, when its asker gave one

    def encode(self) -> str:
        if self.kind is RequestKind.ABORT and self.reason:
            return f"abort:{self.reason}"
        return str(self.kind)

    @staticmethod
    def decode(text: str | None) -> Request | None:
        """The request ``encode`` wrote, or None for anything else (no request)."""
        if not text:
            return None
        what, _, why = text.partition(":")
        try:
            kind = RequestKind(what)
        except ValueError:
            return None
        return Request(kind, why or None) if kind is RequestKind.ABORT else Request(kind)

    @staticmethod
    def end(status: TxStatus | str) -> Request:
        """A forced end as ``status`` (succeeded or failed)."""
        return Request(RequestKind(str(status)))


OpKey = tuple[str, OpName]
"""(branch, op): the op's identity inside its transaction."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How an op is retried after an unknown outcome.

    ``max_attempts`` counts every attempt, the first included. The delay before
    attempt n+1 is ``min(max_backoff, backoff * multiplier**(n-1))``, spread by
    +/- ``jitter`` (a fraction). ``timeout`` bounds each attempt (seconds).
    A participant that answers "not yet" (HTTP 425, ``ONGOING``) is asked again
    every ``ongoing_interval`` seconds; such an answer uses up no attempt.
    """

    max_attempts: int = 5
    backoff: float = 0.1
    max_backoff: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2
    timeout: float | None = None
    ongoing_interval: float = 1.0

    def __post_init__(self) -> None:
        from ._errors import DefinitionError

        if self.max_attempts < 1:
            raise DefinitionError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise DefinitionError("backoff and max_backoff must be >= 0 and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise DefinitionError(f"jitter is a fraction between 0 and 1, not {self.jitter}")
        if self.timeout is not None and self.timeout <= 0:
            raise DefinitionError(f"timeout must be positive, not {self.timeout}")
        if not self.ongoing_interval > 0:
            raise DefinitionError(f"ongoing_interval must be positive, not {self.ongoing_interval}")

    def delay(self, attempt: int, seed: str) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        The jitter is drawn from a hash of ``seed`` and the attempt so that the
        state machines stay pure and replayable, while different transactions
        still spread out.
        """
        # the exponent is bounded so that a very late attempt cannot overflow
        growth = self.multiplier ** min(max(0, attempt - 1), 64)
        base = min(self.max_backoff, self.backoff * growth)
        digest = hashlib.blake2b(f"{seed}:{attempt}".encode(), digest_size=8).digest()
        unit = int.from_bytes(digest, "big") / 2**64  # [0, 1)
        return max(0.0, base * (1 + self.jitter * (2 * unit - 1)))


DEFAULT_ACTION_RETRY = RetryPolicy()
DEFAULT_COMPENSATE_RETRY = RetryPolicy(max_attempts=20, backoff=0.1, max_backoff=30.0)


@dataclass(slots=True)
class TxRecord:
    """One row of the log's transaction table."""

    gid: str
    mode: Mode
    name: str
    fingerprint: str
    status: TxStatus
    payload: Json = None
    options: dict[str, Json] = field(default_factory=dict)
    reason: str | None = None
    stuck: str | None = None
    requested: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    ended_at: float | None = None
    timeout_at: float | None = None
    next_attempt_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    version: int = 0


@dataclass(slots=True)
class OpRecord:
    """One row of the log's op table: one op of one branch."""

    gid: str
    branch: str
    op: OpName
    seq: int
    target: str
    status: OpStatus = OpStatus.PENDING
    attempts: int = 0
    budget: int = 0
    next_at: float | None = None
    output: Json = None
    error: str | None = None
    completed: int | None = None
    updated_at: float = 0.0
    payload: Json = None  # the call, for an op registered at run time (a TCC branch's)

    @property
    def key(self) -> OpKey:
        return (self.branch, self.op)


@dataclass(slots=True)
class EventRecord:
    """One entry of a transaction's append-only timeline."""

    gid: str
    at: float
    kind: str
    branch: str | None = None
    op: str | None = None
    attempt: int | None = None
    detail: dict[str, Json] = field(default_factory=dict)
    id: int | None = None
