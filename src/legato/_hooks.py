"""Hooks: where tracing, metrics and logging attach, one middleware each.

Subclass ``Hooks`` and override what you need; pass instances to
``Coordinator(hooks=[...])``. Hooks run inline on the coordinator's event loop:
keep them quick, and never raise (an exception is logged and ignored).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._model import OpName

if TYPE_CHECKING:
    from .modes.saga import SagaState

logger = logging.getLogger("legato.hooks")


class Hooks:
    def before_op(self, gid: str, branch: str, op: OpName, attempt: int) -> None:
        """An op attempt is about to run."""

    def after_op(
        self, gid: str, branch: str, op: OpName, attempt: int, outcome: str, seconds: float
    ) -> None:
        """An op attempt ended: ``outcome`` is 'ok', 'failed' or 'unknown'."""

    def after_write(self, gid: str, state: SagaState, before: SagaState) -> None:
        """A transition was logged (``state.status`` tells whether the saga ended)."""


class HookChain(Hooks):
    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = list(hooks)

    def before_op(self, gid: str, branch: str, op: OpName, attempt: int) -> None:
        for h in self.hooks:
            try:
                h.before_op(gid, branch, op, attempt)
            except Exception:
                logger.exception("hook %r failed in before_op", h)

    def after_op(
        self, gid: str, branch: str, op: OpName, attempt: int, outcome: str, seconds: float
    ) -> None:
        for h in self.hooks:
            try:
                h.after_op(gid, branch, op, attempt, outcome, seconds)
            except Exception:
                logger.exception("hook %r failed in after_op", h)

    def after_write(self, gid: str, state: SagaState, before: SagaState) -> None:
        for h in self.hooks:
            try:
                h.after_write(gid, state, before)
            except Exception:
                logger.exception("hook %r failed in after_write", h)
