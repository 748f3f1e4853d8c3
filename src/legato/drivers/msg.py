"""The msg mode (two-phase message) plugged into the engine: each delivery is an HTTP
call or a publish to a broker topic, the query an HTTP call, as the log holds them."""

from __future__ import annotations

from collections.abc import Sequence

from .._model import Mode, OpKey, OpName, OpRecord, TxRecord
from ..modes import msg as machine
from ..modes._core import Event, Transition, TxState
from ..transports.broker import BrokerCall, is_broker_op
from ._registered import OpCalls, http_call, registration_order

WIRE_MSG = "wire:msg"
"""The name of every msg transaction: its branches' calls are in the log."""


def delivery_call(o: OpRecord) -> object:
    return BrokerCall.from_json(o.payload or {}) if is_broker_op(o.payload) else http_call(o)


class MsgDriver:
    def __init__(self, plan: machine.MsgPlan, calls: OpCalls) -> None:
        self.plan = plan
        self.calls = calls

    def apply(self, state: TxState, event: Event) -> Transition:
        return machine.apply(self.plan, state, event)

    def call(self, key: OpKey) -> object:
        return self.calls[key]


class MsgMode:
    mode = Mode.MSG

    def claims(self) -> Sequence[str]:
        return [WIRE_MSG]

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> MsgDriver:
        deliveries = [o for o in ops if o.op is OpName.ACTION]
        has_query = any(o.key == machine.QUERY for o in ops)
        plan = machine.MsgPlan(registration_order(deliveries), has_query)
        return MsgDriver(plan, OpCalls(ops, delivery_call))
