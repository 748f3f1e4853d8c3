"""The flow mode (a choreographed saga, recorded) as a pure state machine.

Services that react to each other's events on a broker report each hop; the flow
is one global transaction (by the events' gid), written ``submitted`` at its
first hop. Nothing is driven: a ``Hop`` only records, and the hop that ends the
flow (``end``: succeeded or failed) ends it. A hop after the end (a late
notification, say) is recorded too; the end stands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from .._model import Json, TxStatus
from ._core import Event, ForceEnd, Transition, TxState


@dataclass(frozen=True, slots=True)
class Hop:
    """``info`` (the service, the event it handled or emitted, and more) happened."""

    kind: ClassVar[str] = "hop"
    now: float
    info: Mapping[str, Json] = field(default_factory=dict)
    end: TxStatus | None = None
    end_reason: str | None = None


def new_state(gid: str) -> TxState:
    return TxState.fresh(gid, TxStatus.SUBMITTED, ())


def apply(state: TxState, event: Hop | Event) -> Transition:
    """Feed one event to the flow; see the module docstring for the rules."""
    if isinstance(event, Hop):
        if state.status.ended or event.end is None:
            return Transition(state)  # recorded, nothing else changes
        return Transition(TxState(state.gid, event.end, state.ops, event.end_reason))
    if isinstance(event, ForceEnd) and event.status.ended and not state.status.ended:
        return Transition(TxState(state.gid, event.status, state.ops, event.reason))
    return Transition(state, changed=False, note=f"a flow takes no {type(event).__name__}")
