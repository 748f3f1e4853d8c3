"""The XA mode plugged into the engine: each branch's phase 2 is the coordinator's own
commit or rollback through the branch's resource (``transports.xa``), or, for a
branch an HTTP service prepared itself (DTM's XA flow), a call to that service."""

from __future__ import annotations

from collections.abc import Sequence

from .._model import Mode, OpKey, OpRecord, TxRecord
from ..modes import xa as machine
from ..modes._branches import BranchPlan
from ..modes._core import Event, Transition, TxState
from ..transports.http import HttpCall
from ..transports.xa import XaCall
from ._registered import OpCalls, registration_order

WIRE_XA = "wire:xa"
"""The name of every XA transaction: its branches' resources are in the log."""


def phase2_call(o: OpRecord) -> object:
    payload = o.payload or {}
    if "url" in payload:  # the service commits or rolls back its own branch
        return HttpCall.from_json(payload)
    return XaCall.from_json(payload, o.op)


class XaDriver:
    def __init__(self, plan: BranchPlan, calls: OpCalls) -> None:
        self.plan = plan
        self.calls = calls

    def apply(self, state: TxState, event: Event) -> Transition:
        return machine.apply(self.plan, state, event)

    def call(self, key: OpKey) -> object:
        return self.calls[key]


class XaMode:
    mode = Mode.XA

    def claims(self) -> Sequence[str]:
        return [WIRE_XA]

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> XaDriver:
        return XaDriver(machine.plan(registration_order(ops)), OpCalls(ops, phase2_call))
