"""TCC transactions from the initiator's side: begin, register and try each branch,
then submit (confirm all) or abort (cancel all). The engine drives them on (the
rules: ``modes.tcc``; the driver: ``drivers.tcc``).

>>> async with coordinator.tcc() as t:                                # doctest: +SKIP
...     await t.call(try_url, confirm_url, cancel_url, {"amount": 30})
>>> outcome = await t.handle.result()                                 # doctest: +SKIP

Leaving the block normally submits; leaving it with an exception aborts, and
the exception goes on. The transaction is in the log from the start: an
initiator that dies halfway leaves it prepared, and the coordinator cancels it
once ``timeout_to_fail`` has passed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from types import TracebackType

from . import _initiator
from ._bounds import check_branch_id
from ._errors import Failure, GidConflict, IllegalStateChange, TryFailed
from ._model import Json, Mode, OpName, OpRecord, TxStatus
from .drivers.tcc import WIRE_TCC
from .engine.handle import Handle
from .engine.port import Engine
from .transports.base import OpAttempt, ResultKind
from .transports.http import HttpCall, HttpTransport

DEFAULT_TCC_TIMEOUT = 35.0  # seconds a TCC may stay prepared (DTM's default too)


async def begin(
    engine: Engine,
    gid: str | None = None,
    *,
    timeout_to_fail: float | None = DEFAULT_TCC_TIMEOUT,
    headers: Mapping[str, str] | None = None,
    custom_data: str | None = None,
    title: str | None = None,
) -> str:
    """Write a prepared TCC transaction; idempotent by ``gid``. Past ``timeout_to_fail``
    seconds still prepared, it is cancelled (``None``: it waits for its initiator).
    ``custom_data`` is the caller's own text, kept and shown back as given; ``title``
    names the transaction for people."""
    engine.require_started()
    gid = _initiator.new_gid(gid)
    _initiator.check_timeout(timeout_to_fail)
    new = _initiator.prepared(
        gid, timeout_to_fail, headers, time.time(), mode=Mode.TCC, name=WIRE_TCC,
        custom_data=custom_data, title=title,
    )  # fmt: skip
    existing = await engine.create(new)
    if existing is not None and existing.mode is not Mode.TCC:
        raise GidConflict(f"gid {gid!r} is already used by a {existing.mode} transaction")
    if existing is not None and existing.status is not TxStatus.PREPARED:
        raise IllegalStateChange(f"current status '{existing.status}', cannot prepare")
    return gid


def branch_ops(
    gid: str, branch: str, confirm: HttpCall, cancel: HttpCall, now: float
) -> list[OpRecord]:
    return [
        OpRecord(gid, branch, op, 0, call.target, updated_at=now, payload=call.to_json())
        for op, call in ((OpName.CONFIRM, confirm), (OpName.CANCEL, cancel))
    ]


async def register_branch(
    engine: Engine, gid: str, branch: str, confirm: HttpCall, cancel: HttpCall
) -> None:
    """Add a branch (its confirm and cancel calls) to a prepared TCC transaction."""
    engine.require_started()
    check_branch_id(branch)
    engine.participants.check(confirm.url, f"branch {branch} confirm")
    engine.participants.check(cancel.url, f"branch {branch} cancel")
    now = time.time()
    await engine.log.register(gid, branch_ops(gid, branch, confirm, cancel, now), now)


async def submit(engine: Engine, gid: str) -> Handle:
    """The tries all succeeded: confirm every branch."""
    return await _initiator.submit(engine, gid)


async def abort(engine: Engine, gid: str, reason: str = "aborted by the initiator") -> Handle:
    """Cancel every branch (newest first)."""
    return await _initiator.abort(engine, gid, reason)


class TccTransaction:
    """One TCC transaction, driven by its initiator; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        gid: str | None = None,
        *,
        timeout_to_fail: float = DEFAULT_TCC_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.engine = engine
        self._gid = gid
        self.timeout_to_fail = timeout_to_fail
        self.headers = dict(headers or {})
        self._branches = 0
        self.handle: Handle | None = None

    @property
    def gid(self) -> str:
        if self._gid is None:
            raise RuntimeError("the transaction is not begun yet: use `async with`")
        return self._gid

    async def __aenter__(self) -> TccTransaction:
        self._gid = await begin(
            self.engine, self._gid, timeout_to_fail=self.timeout_to_fail, headers=self.headers
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if e is None:
            self.handle = await submit(self.engine, self.gid)
        else:
            reason = f"the initiator failed: {type(e).__name__}: {e}"
            self.handle = await abort(self.engine, self.gid, reason)

    async def call(
        self,
        try_url: str,
        confirm_url: str,
        cancel_url: str,
        body: Json = None,
        *,
        branch_id: str | None = None,
        timeout: float | None = None,
    ) -> Json:
        """Register a branch, then call its try; returns what the try answered.

        Raises ``legato.Failure`` when the try answers with a definite failure, and
        ``TryFailed`` when its outcome is unknown (an error, a timeout, no answer):
        either way, leaving the block aborts, and every registered branch is cancelled.
        """
        self._branches += 1
        branch = branch_id or f"{self._branches:02d}"
        confirm = HttpCall(confirm_url, body, timeout=timeout)
        cancel = HttpCall(cancel_url, body, timeout=timeout)
        attempt = HttpCall(try_url, body, timeout=timeout)
        self.engine.participants.check(try_url, f"branch {branch} try")
        await register_branch(self.engine, self.gid, branch, confirm, cancel)
        # the initiator's own call: no retries (an unknown try is answered by aborting)
        who = OpAttempt(self.gid, str(Mode.TCC), branch, OpName.TRY, 1)
        http = self.engine.transport(attempt)
        assert isinstance(http, HttpTransport)
        result = await http.call(attempt, who, timeout=self.engine.request_timeout)
        if result.kind is ResultKind.OK:
            return result.value
        if result.kind is ResultKind.FAILED:
            raise Failure(f"try of branch {branch} failed: {result.value}")
        raise TryFailed(f"try of branch {branch}: {result.value}")
