"""The transport port: how one attempt of one op reaches its participant.

Every transport (a Python callable in this process, an HTTP participant, a broker
topic, an XA branch in its database) takes a call of its own kind and an
``OpAttempt`` (who is calling), starts the attempt, and reports what it came to,
once, through ``done``:

======================  ==========================================================
``ResultKind.OK``        done; ``value`` is the op's output
``ResultKind.FAILED``    a definite failure; ``value`` is the reason
``ResultKind.ONGOING``   "not yet": ask again at the op's fixed interval
``ResultKind.UNKNOWN``   anything else (an error, a timeout, no answer): retried
======================  ==========================================================

The engine finds a call's transport by the call's type.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from .._model import Json, OpName


class ResultKind(StrEnum):
    OK = "ok"
    FAILED = "failed"
    ONGOING = "ongoing"
    UNKNOWN = "unknown"


@dataclass(slots=True)
class AttemptResult:
    """What one attempt of one op came to (see the module docstring). Not frozen, as
    ``OpAttempt``: made for every attempt, and a frozen dataclass costs six times as
    much to make; nothing changes one once made."""

    kind: ResultKind
    value: Json = None

    @staticmethod
    def ok(value: Json = None) -> AttemptResult:
        return AttemptResult(ResultKind.OK, value)

    @staticmethod
    def failed(reason: str) -> AttemptResult:
        return AttemptResult(ResultKind.FAILED, reason)

    @staticmethod
    def ongoing(reason: str) -> AttemptResult:
        return AttemptResult(ResultKind.ONGOING, reason)

    @staticmethod
    def unknown(reason: str) -> AttemptResult:
        return AttemptResult(ResultKind.UNKNOWN, reason)


Done = Callable[[AttemptResult], None]
"""Told an attempt's result, on the event loop, once."""


def _nothing() -> Mapping[str, Json]:
    return {}


@dataclass(slots=True)
class OpAttempt:
    """Who is calling: one attempt of one op of one transaction.

    ``headers`` go with a remote call (the transaction's own, and the trace's);
    ``payload``, ``outputs`` (asked for only when a step wants them) and ``output``
    (a compensation's action's) are what a Python step sees.
    """

    gid: str
    mode: str
    branch: str
    op: OpName
    attempt: int
    headers: Mapping[str, str] = field(default_factory=dict)
    payload: Json = None
    outputs: Callable[[], Mapping[str, Json]] = _nothing
    output: Json = None


class Transport(Protocol):
    """Carries the attempts of one kind of call."""

    @property
    def remote(self) -> bool:
        """Does a call leave this process (a client span, headers to send)?"""

    def start(
        self, call: Any, attempt: OpAttempt, *, timeout: float | None, done: Done
    ) -> asyncio.Task[None] | None:
        """Start the attempt; ``done`` hears its result once, on the loop. Returns the
        attempt's task, if it has one (cancelled when the engine stops)."""
