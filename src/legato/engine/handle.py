"""What ``Coordinator.submit`` returns: a handle on one global transaction, and the
``Outcome`` it reads (where the transaction stands)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from .._model import Json, OpName, OpRecord, OpStatus, TxRecord, TxStatus


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a transaction stands: ended (``succeeded`` / ``failed`` with its reason),
    or *stuck* (``stuck`` holds why) waiting for an operator."""

    gid: str
    status: TxStatus
    reason: str | None = None
    stuck: str | None = None
    outputs: Mapping[str, Json] = field(default_factory=dict)
    requested: str | None = None  # an operator request not carried out yet

    @property
    def succeeded(self) -> bool:
        return self.status is TxStatus.SUCCEEDED

    @property
    def result(self) -> Json:
        """A workflow's return value (once it has succeeded)."""
        return self.outputs.get("@result")

    @property
    def settled(self) -> bool:
        """Ended, or stuck: nothing more happens without an operator."""
        return self.status.ended or (self.stuck is not None and self.requested is None)

    @staticmethod
    def from_log(tx: TxRecord, ops: list[OpRecord]) -> Outcome:
        outputs = {
            o.branch: o.output
            for o in ops
            if o.op is OpName.ACTION and o.status is OpStatus.SUCCEEDED
        }
        return Outcome(tx.gid, tx.status, tx.reason, tx.stuck, outputs, tx.requested)


class Source(Protocol):
    """What a handle reads the transaction through (the engine)."""

    async def outcome(self, gid: str) -> Outcome: ...

    def settled(self, gid: str) -> asyncio.Future[Outcome | None] | None:
        """The outcome of ``gid`` as its runner here settles it; None: not driven here."""

    def runner_started(self, gid: str) -> AbstractContextManager[asyncio.Future[None]]:
        """A future done once a runner for ``gid`` starts here."""


class Handle:
    """A handle on the transaction ``gid``, wherever it is driven."""

    def __init__(self, engine: Source, gid: str) -> None:
        self._engine = engine
        self.gid = gid

    def __repr__(self) -> str:
        return f"<Handle gid={self.gid!r}>"

    async def status(self) -> Outcome:
        """The transaction's status now, read from the log."""
        return await self._engine.outcome(self.gid)

    async def result(self, timeout: float | None = None, poll: float = 0.2) -> Outcome:
        """Wait until the transaction has ended or is stuck, and return its outcome.

        Driven here, it is answered as soon as the saga settles (a transaction this
        coordinator is about to pick up, a submitted TCC or XA one say, as soon as it
        does); driven by another coordinator (after a hand-over), the log is polled
        every ``poll`` seconds.
        """
        engine = self._engine
        async with asyncio.timeout(timeout):
            while True:
                settled = engine.settled(self.gid)
                if settled is not None:
                    outcome = await asyncio.shield(settled)
                    if outcome is not None:
                        return outcome
                with engine.runner_started(self.gid) as started:
                    outcome = await engine.outcome(self.gid)
                    if outcome.settled:
                        return outcome
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(poll):
                            await asyncio.shield(started)
