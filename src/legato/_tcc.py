"""TCC transactions from the initiator's side: begin, register and try each branch,
then submit (confirm all) or abort (cancel all).

>>> async with coordinator.tcc() as t:                                # doctest: +SKIP
...     await t.call(try_url, confirm_url, cancel_url, {"amount": 30})
>>> outcome = await t.handle.result()                                 # doctest: +SKIP

Leaving the block normally submits; leaving it with an exception aborts, and
the exception goes on. The transaction is in the log from the start: an
initiator that dies halfway leaves it prepared, and the coordinator cancels it
once ``timeout_to_fail`` has passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING

from ._bounds import check_headers
from ._errors import Failure, IllegalStateChange, TryFailed
from ._handle import Handle
from ._model import EventRecord, Json, Mode, OpName, OpRecord, TxRecord, TxStatus
from .log import NewTransaction
from .transports.http import CallInfo, HttpCall

if TYPE_CHECKING:
    from .coordinator import Coordinator

DEFAULT_TCC_TIMEOUT = 35.0  # seconds a TCC may stay prepared (DTM's default too)
WIRE_TCC = "wire:tcc"
"""The name of every TCC transaction: its branches' calls are in the log."""


def prepared(
    gid: str,
    timeout_to_fail: float | None,
    headers: Mapping[str, str] | None,
    now: float,
    *,
    mode: Mode = Mode.TCC,
    name: str = WIRE_TCC,
) -> NewTransaction:
    """A transaction its initiator begins (TCC, and XA and msg through their own names):
    prepared, held by no coordinator, and due only once it times out (or its initiator
    asks to end it). Its branches come with ``NewTransaction.ops`` or are registered."""
    timeout_at = now + timeout_to_fail if timeout_to_fail is not None else None
    options: dict[str, Json] = {}
    if timeout_to_fail is not None:
        options["timeout_to_fail"] = timeout_to_fail
    if headers:
        options["headers"] = check_headers(headers)
    tx = TxRecord(
        gid=gid,
        mode=mode,
        name=name,
        fingerprint=str(mode),
        status=TxStatus.PREPARED,
        options=options,
        created_at=now,
        updated_at=now,
        timeout_at=timeout_at,
        next_attempt_at=timeout_at,
    )
    event = EventRecord(gid, now, "prepared", detail={"timeout_to_fail": timeout_to_fail})
    return NewTransaction(tx, [], [event])


def branch_ops(
    gid: str, branch: str, confirm: HttpCall, cancel: HttpCall, now: float
) -> list[OpRecord]:
    return [
        OpRecord(gid, branch, op, 0, call.target, updated_at=now, payload=call.to_json())
        for op, call in ((OpName.CONFIRM, confirm), (OpName.CANCEL, cancel))
    ]


def may_end(tx: TxRecord, what: str) -> bool:
    """Whether ``submit`` / ``abort`` has anything to do (False: done already), or raise
    ``IllegalStateChange`` when the transaction went the other way."""
    if tx.mode not in (Mode.TCC, Mode.XA, Mode.MSG):
        raise IllegalStateChange(
            f"{tx.gid} is a {tx.mode} transaction, not a TCC, XA or msg one: its initiator "
            "does not submit or abort it"
        )
    other = (
        (TxStatus.ABORTING, TxStatus.FAILED)
        if what == "submit"
        else (TxStatus.SUBMITTED, TxStatus.SUCCEEDED)
    )
    if tx.status in other:
        raise IllegalStateChange(f"current status '{tx.status}', cannot {what}")
    return tx.status is TxStatus.PREPARED


class TccTransaction:
    """One TCC transaction, driven by its initiator; see the module docstring."""

    def __init__(
        self,
        coordinator: Coordinator,
        gid: str | None = None,
        *,
        timeout_to_fail: float = DEFAULT_TCC_TIMEOUT,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.c = coordinator
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
        self._gid = await self.c.begin_tcc(
            self._gid, timeout_to_fail=self.timeout_to_fail, headers=self.headers
        )
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if e is None:
            self.handle = await self.c.submit_tcc(self.gid)
        else:
            reason = f"the initiator failed: {type(e).__name__}: {e}"
            self.handle = await self.c.abort_tcc(self.gid, reason)

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
        self.c.participants.check(try_url, f"branch {branch} try")
        await self.c.register_tcc_branch(self.gid, branch, confirm, cancel)
        kind, value = await _call_try(self.c, attempt, CallInfo(self.gid, "tcc", branch, "try", 1))
        if kind == "ok":
            return value
        if kind == "failed":
            raise Failure(f"try of branch {branch} failed: {value}")
        raise TryFailed(f"try of branch {branch}: {value}")


async def _call_try(c: Coordinator, call: HttpCall, info: CallInfo) -> tuple[str, Json]:
    # the initiator's own call: no retries (an unknown try is answered by aborting)
    return await c.http.call(call, info, timeout=c.request_timeout)
