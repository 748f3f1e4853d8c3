"""Hooks: where metrics, logging and alerts attach, one middleware each.

Subclass ``Hooks`` and override what you need; pass instances to
``Coordinator(hooks=[...])``. Hooks run inline on the coordinator's event loop:
keep them quick (hand slow work to a task), and never raise (an exception is
logged and ignored). Tracing is not a hook: it must put its context on the
calls themselves (see ``legato.observe.tracing``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._model import OpName, TxRecord

if TYPE_CHECKING:
    from .modes._core import TxState

logger = logging.getLogger("legato.hooks")


class Hooks:
    def on_created(self, tx: TxRecord) -> None:
        """A transaction was written to the log for the first time."""

    def on_resumed(self, tx: TxRecord, previous: str | None) -> None:
        """This coordinator took a transaction up from the log: at start, on a claim,
        or on a request. ``previous`` names the owner whose lease had expired (a
        takeover)."""

    def before_op(self, tx: TxRecord, branch: str, op: OpName, attempt: int) -> None:
        """An op attempt is about to run."""

    def after_op(
        self,
        tx: TxRecord,
        branch: str,
        op: OpName,
        attempt: int,
        outcome: str,
        seconds: float,
        detail: object,
    ) -> None:
        """An op attempt ended: ``outcome`` is 'ok', 'failed', 'ongoing' or 'unknown';
        ``detail`` is its output, or the reason."""

    def after_write(self, tx: TxRecord, state: TxState, before: TxState) -> None:
        """A transition was logged (``state.status`` tells whether it ended, ``state.stuck``
        whether it is stuck)."""

    def on_log_batch(self, size: int, seconds: float) -> None:
        """The log committed ``size`` writes together, in ``seconds``."""

    def on_fenced(self, tx: TxRecord) -> None:
        """This coordinator stopped driving ``tx`` at its fence: its lease was not renewed
        in time (the log unreachable, say), so it starts no op of it and has cancelled
        the calls it had in flight, before the lease can expire."""


_NAMES = (
    "on_created",
    "on_resumed",
    "before_op",
    "after_op",
    "after_write",
    "on_log_batch",
    "on_fenced",
)


class HookChain(Hooks):
    """Calls each hook in turn, only those that override a method."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = list(hooks)
        self._bind()

    def add(self, hook: Hooks) -> None:
        self.hooks.append(hook)
        self._bind()

    def _bind(self) -> None:
        # per method, only the hooks overriding it: most ops then call nothing at all
        self._by_name = {
            name: [getattr(h, name) for h in self.hooks if _overrides(h, name)] for name in _NAMES
        }
        for name, fns in self._by_name.items():
            setattr(self, name, _calling(name, fns) if fns else _nothing)

    def wants(self, name: str) -> bool:
        """Does any hook override ``name``?"""
        return bool(self._by_name.get(name))


def _overrides(hook: Hooks, name: str) -> bool:
    return getattr(type(hook), name, None) is not getattr(Hooks, name)


def _nothing(*args: object) -> None:
    return None


def _calling(name: str, fns: list[object]) -> object:
    def call(*args: object) -> None:
        for fn in fns:
            try:
                fn(*args)  # type: ignore[operator]
            except Exception:
                logger.exception("hook %r failed in %s", fn, name)

    return call
