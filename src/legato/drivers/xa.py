"""The XA mode plugged into the engine: each branch's phase 2 is the coordinator's own
commit or rollback through the branch's resource (``transports.xa``), or, for a
branch an HTTP service prepared itself (DTM's XA flow), a call to that service."""

from __future__ import annotations

from collections.abc import Sequence

from .._model import Mode, OpRecord, TxRecord
from ..modes import xa as machine
from ..modes._branches import BranchPlan
from ..transports.http import HttpCall
from ..transports.xa import XaCall
from ._registered import OpCalls, RegisteredDriver, registration_order

WIRE_XA = "wire:xa"
"""The name of every XA transaction: its branches' resources are in the log."""


def phase2_call(o: OpRecord) -> object:
    payload = o.payload or {}
    if "url" in payload:  # the service commits or rolls back its own branch
        return HttpCall.from_json(payload)
    return XaCall.from_json(payload, o.op)


class XaMode:
    mode = Mode.XA

    def claims(self) -> Sequence[str]:
        return [WIRE_XA]

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> RegisteredDriver[BranchPlan]:
        plan = machine.plan(registration_order(ops))
        return RegisteredDriver(machine.apply, plan, OpCalls(ops, phase2_call))
