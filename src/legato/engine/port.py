"""The engine's narrow ports: what a collaborator is handed instead of the engine itself.

- ``Driver``: one transaction's rules and its ops' calls, for the runner.
- ``ModeDriver``: a mode plugged into the engine: how a transaction of that mode,
  read back from the log, is driven again (``drivers/`` has one per mode).
- ``RunnerHost``: what a runner uses while it drives one transaction.
- ``Engine``: what a mode's public API (``legato.tcc``, ``legato.xa``, ``legato.msg``)
  and a handle use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .._allow import AllowList
from .._hooks import HookChain
from .._model import Mode, OpKey, OpRecord, Request, TxRecord
from ..log import Log, NewTransaction
from ..modes._core import Event, Transition, TxState
from ..observe.tracing import Tracing
from ..transports.base import Transport
from .handle import Handle, Source


class Live(Protocol):
    """Code that runs alongside a runner and moves its transaction (a workflow's body):
    it feeds the runner events, and hears each state the log has taken."""

    def begin(self, feed: Callable[[Any], None], state: TxState) -> None:
        """The runner drives the transaction from ``state``: start (``feed`` takes the
        events to apply)."""

    def written(self, state: TxState) -> bool:
        """``state`` is the transaction's latest (written, or about to be written with
        whatever the code feeds before the write); True if that woke the code (it has
        an outcome it waited for), so that it may move on before the write."""

    def describe(self, key: OpKey) -> OpRecord:
        """The row of an op the code added (its place, what it calls, its payload)."""

    def idle_until(self, state: TxState) -> float | None:
        """When the code only waits (for a time or a signal, nothing in flight): until
        when (``inf``: for a signal, no time set); None: it is busy."""

    def signal(self, record: OpRecord) -> None:
        """A signal has arrived for the transaction (already in the log)."""

    def stop(self) -> None:
        """The runner stops: stop the code (it is run again, replaying, wherever the
        transaction is driven next)."""


class Driver(Protocol):
    """One transaction's rules (its mode's machine with its plan) and its ops' calls."""

    @property
    def live(self) -> Live | None:
        """The code that moves the transaction alongside its runner, if any (a workflow's
        body); None for a mode whose machine alone moves it."""

    def apply(self, state: TxState, event: Event) -> Transition: ...

    def call(self, key: OpKey) -> object:
        """What op ``key`` runs: a call of a kind some transport carries."""


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A transaction of this mode that cannot be driven as it stands (its definition
    changed, or cannot be read): the engine parks it as stuck, with ``reason``."""

    reason: str


class ModeDriver(Protocol):
    """A mode plugged into the engine."""

    @property
    def mode(self) -> Mode: ...

    def claims(self) -> Sequence[str]:
        """The transaction names this engine may claim for this mode (a saga's: the
        sagas registered here)."""

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> Driver | Unreadable | None:
        """How to drive ``tx`` from its logged state; None: not here (no definition of
        it is registered with this engine: the lease goes, for another engine)."""


class RunnerHost(Protocol):
    """What a runner uses while it drives one transaction."""

    @property
    def log(self) -> Log: ...

    @property
    def owner(self) -> str: ...

    @property
    def hooks(self) -> HookChain: ...

    @property
    def tracing(self) -> Tracing: ...

    @property
    def lease(self) -> float:
        """Seconds a lease lasts from the call that takes or renews it."""

    def transport(self, call: object) -> Transport:
        """The transport that carries ``call`` (by its kind)."""

    def fenced(self, tx: TxRecord, cancelled: int) -> None:
        """The runner of ``tx`` stopped at its fence (``fence.py``), cancelling
        ``cancelled`` calls in flight."""


class Engine(Source, Protocol):
    """What a mode's public API is handed (a handle takes its narrower ``Source``)."""

    @property
    def log(self) -> Log: ...

    @property
    def owner(self) -> str: ...

    @property
    def lease(self) -> float: ...

    @property
    def participants(self) -> AllowList: ...

    @property
    def request_timeout(self) -> float: ...

    def require_started(self) -> None: ...

    def transport(self, call: object) -> Transport: ...

    async def create(self, new: NewTransaction) -> TxRecord | None:
        """Write a new transaction (its trace begins here), or return the existing row."""

    async def begin(
        self, new: NewTransaction, driver: Driver, before: TxState, events: Sequence[Event]
    ) -> TxRecord | None:
        """Create ``new`` as ``events`` leave it from ``before`` (its ops' fresh state), and
        drive it here; or return the existing row (nothing written, nothing driven)."""

    async def request(
        self, gid: str, request: Request, *, drive: bool = False, by: str | None = None
    ) -> None:
        """Log ``request`` for whoever drives ``gid`` (``by``: who asks); with ``drive``,
        take the lease where no one holds it and drive it here at once."""

    async def signal(self, gid: str, record: OpRecord, *, by: str | None = None) -> bool:
        """Keep a signal for the workflow ``gid``; False if it was kept already."""

    async def get(self, gid: str) -> tuple[TxRecord, list[OpRecord]]: ...

    def handle(self, gid: str) -> Handle: ...


__all__ = ["Driver", "Engine", "Live", "ModeDriver", "RunnerHost", "Unreadable"]
