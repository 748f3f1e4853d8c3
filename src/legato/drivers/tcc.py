"""The TCC mode plugged into the engine: each branch's confirm and cancel, as
registered in the log, are HTTP calls."""

from __future__ import annotations

from collections.abc import Sequence

from .._model import Mode, OpRecord, TxRecord
from ..modes import tcc as machine
from ..modes._branches import BranchPlan
from ._registered import OpCalls, RegisteredDriver, http_call, registration_order

WIRE_TCC = "wire:tcc"
"""The name of every TCC transaction: its branches' calls are in the log."""


class TccMode:
    mode = Mode.TCC

    def claims(self) -> Sequence[str]:
        return [WIRE_TCC]

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> RegisteredDriver[BranchPlan]:
        plan = machine.plan(registration_order(ops))
        return RegisteredDriver(machine.apply, plan, OpCalls(ops, http_call))
