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

from ._errors import IllegalStateChange
from ._model import EventRecord, Json, Mode, TxRecord, TxStatus
from .engine.records import state_from_log, transition
from .log import Log, NewTransaction, TxWrite
from .log.base import requested_event
from .modes import flow
from .modes._core import ForceEnd

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
        await _record(self.log, loaded[0], flow.Hop(now, info, end, reason), [])


async def operator_request(log: Log, gid: str, what: str, *, by: str | None) -> TxRecord | None:
    """Carry out an operator's request (``retry``, ``abort``, ``succeeded``, ``failed``)
    on ``gid`` if it is a choreographed flow, and return its row; ``None`` if ``gid`` is
    no flow (the caller records the request for the coordinator that drives it).

    No coordinator drives a flow, so a request recorded for one would wait for ever: a
    flow is ended by decree here at once (the hop that should have ended it never came,
    and its services were settled by hand), and retry and abort are refused, naming why.
    Raises ``IllegalStateChange`` for those, and for a flow that has ended already."""
    loaded = await log.load(gid)
    if loaded is None or loaded[0].mode is not Mode.FLOW:
        return None
    tx = loaded[0]
    if tx.ended_at is not None:
        raise IllegalStateChange(f"{gid} has already ended ({tx.status})")
    if what not in (TxStatus.SUCCEEDED, TxStatus.FAILED):
        raise IllegalStateChange(
            f"{gid} is a choreographed flow: its services drive it, so no coordinator can "
            f"{what} it; settle its services, then force-end it as succeeded or failed"
        )
    now = time.time()
    status = TxStatus(what)
    decree = ForceEnd(now, status, f"ended as {status} by an operator")
    await _record(log, tx, decree, [requested_event(gid, what, now, by)])
    ended = await log.load(gid)
    return ended[0] if ended is not None else tx


async def _record(
    log: Log, tx: TxRecord, event: flow.Hop | ForceEnd, before: list[EventRecord]
) -> None:
    """Feed ``event`` to the flow ``tx`` (the one transition path) and write the result
    as the recorder, with ``before`` (a request) ahead of what the transition records."""
    step = transition(flow.apply, state_from_log(tx, []), [event])
    await log.write(
        TxWrite(
            gid=tx.gid,
            owner=RECORDER,
            at=event.now,
            status=step.state.status,
            reason=step.state.reason,
            stuck=None,
            next_attempt_at=None,
            events=[*before, *step.records],
        )
    )
