"""The msg mode (two-phase message) plugged into the engine: each delivery is an HTTP
call or a publish to a broker topic, the query an HTTP call, as the log holds them."""

from __future__ import annotations

from collections.abc import Sequence

from .._model import Mode, OpName, OpRecord, TxRecord
from ..modes import msg as machine
from ..transports.broker import BrokerCall, is_broker_op
from ._registered import OpCalls, RegisteredDriver, http_call, registration_order

WIRE_MSG = "wire:msg"
"""The name of every msg transaction: its branches' calls are in the log."""

CONCURRENT = "concurrent"
"""The option (True) of a message whose branches are delivered all at once."""


def delivery_call(o: OpRecord) -> object:
    return BrokerCall.from_json(o.payload or {}) if is_broker_op(o.payload) else http_call(o)


class MsgMode:
    mode = Mode.MSG

    def claims(self) -> Sequence[str]:
        return [WIRE_MSG]

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> RegisteredDriver[machine.MsgPlan]:
        deliveries = [o for o in ops if o.op is OpName.ACTION]
        has_query = any(o.key == machine.QUERY for o in ops)
        concurrent = tx.options.get(CONCURRENT) is True
        plan = machine.MsgPlan(registration_order(deliveries), has_query, concurrent)
        return RegisteredDriver(machine.apply, plan, OpCalls(ops, delivery_call))
