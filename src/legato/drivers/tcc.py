"""The TCC mode plugged into the engine: each branch's confirm and cancel, as
registered in the log, are HTTP calls."""

from __future__ import annotations

from collections.abc import Sequence

from .._model import Mode, OpKey, OpRecord, TxRecord
from ..modes import tcc as machine
from ..modes._branches import BranchPlan
from ..modes._core import Event, Transition, TxState
from ._registered import OpCalls, http_call, registration_order

WIRE_TCC = "wire:tcc"
"""The name of every TCC transaction: its branches' calls are in the log."""


class TccDriver:
    def __init__(self, plan: BranchPlan, calls: OpCalls) -> None:
        self.plan = plan
        self.calls = calls

    def apply(self, state: TxState, event: Event) -> Transition:
        return machine.apply(self.plan, state, event)

    def call(self, key: OpKey) -> object:
        return self.calls[key]


class TccMode:
    mode = Mode.TCC

    def claims(self) -> Sequence[str]:
        return [WIRE_TCC]

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> TccDriver:
        return TccDriver(machine.plan(registration_order(ops)), OpCalls(ops, http_call))
