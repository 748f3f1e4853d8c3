"""The saga mode plugged into the engine: a saga is driven by the definition
registered under its name here (or, for one submitted over the API, the definition
stored with it in the log)."""

from __future__ import annotations

from collections.abc import Sequence

from .. import _spec
from .._errors import DefinitionError
from .._model import Mode, OpKey, OpName, OpRecord, TxRecord
from ..engine.port import Live, Unreadable
from ..modes import saga as machine
from ..modes._core import Event, Transition, TxState
from ..saga import WIRE_SAGA, Saga
from ..transports.http import HttpCall
from ..transports.local import LocalCall


class SagaDriver:
    """A saga's rules (its plan) and its steps' calls."""

    def __init__(self, saga: Saga) -> None:
        self.saga = saga
        self.plan = saga.plan()
        self._calls: dict[OpKey, object] = {}

    live: Live | None = None  # the machine alone moves the transaction

    def apply(self, state: TxState, event: Event) -> Transition:
        return machine.apply(self.plan, state, event)

    def call(self, key: OpKey) -> object:
        found = self._calls.get(key)
        if found is None:
            step = self.saga.by_name(key[0])
            fn = step.action if key[1] is OpName.ACTION else step.compensate
            assert fn is not None, "the plan only has compensate ops for compensable steps"
            found = self._calls[key] = (
                fn
                if isinstance(fn, HttpCall)
                else LocalCall(fn, self.saga.failures + step.failures, step.in_thread)
            )
        return found


class SagaMode:
    """Sagas, by the definitions registered here."""

    mode = Mode.SAGA

    def __init__(self) -> None:
        self.sagas: dict[str, Saga] = {}

    def register(self, saga: Saga) -> None:
        """Make ``saga`` known here, so that this engine can drive it from the log."""
        if saga.name.startswith("wire:"):
            raise DefinitionError(f"saga names starting with 'wire:' are Legato's: {saga.name!r}")
        known = self.sagas.get(saga.name)
        if known is saga:
            return
        saga.plan()  # validate now, not at the first submit
        if known is not None and known.fingerprint() != saga.fingerprint():
            raise DefinitionError(
                f"another saga named {saga.name!r} with different steps is already registered"
            )
        self.sagas[saga.name] = saga

    def claims(self) -> Sequence[str]:
        return [*self.sagas, WIRE_SAGA]

    def driver(self, tx: TxRecord, ops: Sequence[OpRecord]) -> SagaDriver | Unreadable | None:
        saga = self.sagas.get(tx.name)
        spec = tx.options.get("spec")
        if tx.name == WIRE_SAGA and spec is not None:
            try:
                saga = _spec.from_spec(spec)
            except (DefinitionError, LookupError, TypeError, ValueError) as exc:
                # stored by a laxer version, say: retrying cannot help, an operator can
                return Unreadable(f"the definition of {tx.gid} in the log cannot be read: {exc}")
        if saga is None:
            return None
        if saga.fingerprint() != tx.fingerprint:
            # The code changed under a running saga: driving it on could run the wrong
            # steps. It is parked as stuck, visibly; once the definition it was submitted
            # with is deployed again, `legato tx retry` lets an engine resume it.
            return Unreadable(
                f"the definition of saga {tx.name!r} changed since {tx.gid} was submitted "
                "(its steps differ): deploy the old definition, then retry"
            )
        return SagaDriver(saga)
