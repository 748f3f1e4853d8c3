"""What the drivers of the initiator-begun modes (TCC, XA, msg) share: branches in
the order they were registered, and each op's call as the log holds it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .._model import OpKey, OpRecord
from ..engine.port import Live
from ..modes._core import Event, Transition, TxState
from ..transports.http import HttpCall

P = TypeVar("P")


def registration_order(ops: Sequence[OpRecord]) -> tuple[str, ...]:
    """A transaction's branches in registration order (ties, registered at once, by
    branch id)."""
    ordered = sorted(ops, key=lambda o: (o.seq, o.branch))
    return tuple(dict.fromkeys(o.branch for o in ordered))


class OpCalls:
    """Each op's call as the log holds it, decoded when the op first runs.

    A call that cannot be decoded (stored by a laxer version, say) then fails the
    attempts of its op, which are retried and end stuck with the reason, visibly;
    decoded up front, it would fail the transaction's every resumption instead, with
    its ops left as they were, running included.
    """

    def __init__(self, ops: Sequence[OpRecord], decode: Callable[[OpRecord], object]) -> None:
        self._ops = {o.key: o for o in ops}
        self._decode = decode
        self._decoded: dict[OpKey, object] = {}

    def __getitem__(self, key: OpKey) -> object:
        call = self._decoded.get(key)
        if call is None:
            call = self._decoded[key] = self._decode(self._ops[key])
        return call


def http_call(o: OpRecord) -> HttpCall:
    return HttpCall.from_json(o.payload)


class RegisteredDriver(Generic[P]):
    """A transaction's rules (``rules`` with its ``plan``) and its ops' calls as the log
    holds them: the driver of every initiator-begun mode."""

    def __init__(
        self, rules: Callable[[P, TxState, Event], Transition], plan: P, calls: OpCalls
    ) -> None:
        self.rules = rules
        self.plan = plan
        self.calls = calls

    live: Live | None = None  # the machine alone moves the transaction

    def apply(self, state: TxState, event: Event) -> Transition:
        return self.rules(self.plan, state, event)

    def call(self, key: OpKey) -> object:
        return self.calls[key]
