"""Choreographed sagas, recorded: services that react to each other's events on a broker
report each hop here, so that one global transaction (by the events' ``gid``) shows the
whole flow in the log, ``legato tx show`` and the dashboard.

A flow is a transaction of mode ``flow``: written ``submitted`` at its first hop, held
by the name ``flow:recorder`` (no coordinator claims it: nothing is driven, only
recorded), each hop an event ``hop`` with the service and the event it handled or
emitted, and ended ``succeeded`` or ``failed`` by the hop that ends it. A hop after
the end (a late notification, say) is recorded; the end stands (the rules:
``modes.flow``; a hop goes through the engine's one transition path,
``engine.records.transition``).
"""

from __future__ import annotations

import asyncio
import time

from ._model import Json, Mode, TxRecord, TxStatus
from .engine.records import state_from_log, transition
from .log import Log, NewTransaction, TxWrite
from .modes import flow

WIRE_FLOW = "wire:flow"
RECORDER = "flow:recorder"
_FOREVER = 100 * 365 * 86400.0


class FlowRecorder:
    """Records hops of choreographed flows in ``log``. A hop reads the flow's status and
    writes it back, so one recorder takes the hops of one flow one at a time: run one
    recorder per process, and let the hop that ends a flow be the last one sent."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # with its holders and waiters

    async def hop(
        self,
        gid: str,
        service: str,
        event: str,
        *,
        detail: dict[str, Json] | None = None,
        end: TxStatus | None = None,
        reason: str | None = None,
        compensation: bool = False,
        name: str | None = None,
    ) -> None:
        """Record that ``service`` handled or emitted ``event`` for ``gid``; with ``end``
        (``succeeded`` / ``failed``), the flow is over. ``compensation``: this hop undoes
        an earlier one (a refund): it is drawn on the compensation path. ``name`` names
        the flow where this hop is its first (else it is named after that hop's event)."""
        lock, users = self._locks.get(gid) or (asyncio.Lock(), 0)
        self._locks[gid] = (lock, users + 1)
        try:
            async with lock:
                info: dict[str, Json] = {"service": service, "event": event, **(detail or {})}
                if compensation:
                    info["compensation"] = True
                await self._hop(gid, info, end, reason, name or f"flow: {event}")
        finally:
            lock, users = self._locks[gid]
            if users == 1:
                del self._locks[gid]  # no one else holds or waits for it
            else:
                self._locks[gid] = (lock, users - 1)

    async def _hop(
        self,
        gid: str,
        info: dict[str, Json],
        end: TxStatus | None,
        reason: str | None,
        title: str,
    ) -> None:
        now = time.time()
        tx = TxRecord(
            gid=gid,
            mode=Mode.FLOW,
            name=WIRE_FLOW,
            fingerprint="flow",
            status=TxStatus.SUBMITTED,
            created_at=now,
            updated_at=now,
            lease_owner=RECORDER,
            lease_expires_at=now + _FOREVER,
            next_attempt_at=None,
            options={"title": title},
        )
        await self.log.create(NewTransaction(tx, [], []))
        loaded = await self.log.load(gid)
        if loaded is None:
            return
        step = transition(
            flow.apply, state_from_log(loaded[0], []), [flow.Hop(now, info, end, reason)]
        )
        await self.log.write(
            TxWrite(
                gid=gid,
                owner=RECORDER,
                at=now,
                status=step.state.status,
                reason=step.state.reason,
                stuck=None,
                next_attempt_at=None,
                events=list(step.records),
            )
        )
