"""Two-phase messages (DESIGN section 4, msg): what the log holds, and the driver.

A message is written prepared with all its branches (``01``, ``02``, ...: each an
HTTP call that delivers it) and, when the initiator gave one, its
``query_prepared`` call (op ``("00", msg)``). The initiator runs its local
transaction with the msg barrier row, then submits; see ``modes.msg`` for what
happens after, or if it never does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._model import Mode, OpKey, OpName, OpRecord
from ._runner import OpCall, OpCalls, http_call, registration_order
from ._tcc import prepared
from .brokers.base import Broker
from .log import NewTransaction
from .modes import msg
from .modes import saga as machine
from .saga import StepOp
from .transports.broker import BrokerCall, is_broker_op
from .transports.http import HttpCall

WIRE_MSG = "wire:msg"
"""The name of every msg transaction: its branches' calls are in the log."""

DEFAULT_MSG_TIMEOUT = 10.0
"""Seconds a message may stay prepared before the coordinator asks its initiator."""


def prepared_msg(
    gid: str,
    steps: Sequence[HttpCall | BrokerCall],
    query: HttpCall | None,
    timeout_to_fail: float | None,
    headers: Mapping[str, str] | None,
    now: float,
) -> NewTransaction:
    """A message as prepared: its deliveries and its query, none run yet, held by no
    coordinator, due when it times out (or when its initiator submits)."""
    new = prepared(gid, timeout_to_fail, headers, now, mode=Mode.MSG, name=WIRE_MSG)
    ops = [
        OpRecord(gid, f"{i + 1:02d}", OpName.ACTION, i, call.target, updated_at=now,
                 payload=call.to_json())
        for i, call in enumerate(steps)
    ]  # fmt: skip
    if query is not None:
        ops.append(
            OpRecord(gid, msg.QUERY[0], OpName.MSG, len(ops), query.target, updated_at=now,
                     payload=query.to_json())
        )  # fmt: skip
    new.ops = ops
    return new


class MsgDriver:
    """The msg rules, and each op's call as the log holds it."""

    def __init__(self, plan: msg.MsgPlan, calls: OpCalls) -> None:
        self.plan = plan
        self.calls = calls

    @staticmethod
    def from_ops(
        ops: Sequence[OpRecord],
        brokers: Mapping[str, Broker] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> MsgDriver:
        def decode(o: OpRecord) -> StepOp:
            if is_broker_op(o.payload):
                publish: StepOp = BrokerCall.from_json(o.payload or {}).bind(
                    brokers or {}, headers or {}
                )
                return publish
            return http_call(o)

        deliveries = [o for o in ops if o.op is OpName.ACTION]
        has_query = any(o.key == msg.QUERY for o in ops)
        plan = msg.MsgPlan(registration_order(deliveries), has_query)
        return MsgDriver(plan, OpCalls(ops, decode))

    def apply(self, state: machine.SagaState, event: msg.Event) -> machine.Transition:
        return msg.apply(self.plan, state, event)

    def call(self, key: OpKey) -> OpCall:
        return OpCall(self.calls[key])
