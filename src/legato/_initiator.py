"""What the initiator-begun modes (TCC, XA, msg) share on the initiator's side: a
transaction written prepared, and its initiator's submit or abort, which is a
request that the engine holding it carries out."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ._bounds import check_custom_data, check_gid, check_headers, check_title, make_gid
from ._errors import DefinitionError, IllegalStateChange
from ._model import EventRecord, Json, Mode, Request, RequestKind, TxRecord, TxStatus
from .engine.handle import Handle
from .engine.port import Engine
from .log import NewTransaction


def new_gid(gid: str | None) -> str:
    """``gid`` once checked (before anything is written), or a new one (``make_gid``)."""
    if gid is not None:
        check_gid(gid)
        return gid
    return make_gid()


def check_timeout(timeout_to_fail: object) -> None:
    if timeout_to_fail is not None and not positive(timeout_to_fail):
        raise DefinitionError(
            f"timeout_to_fail must be a positive number of seconds, not {timeout_to_fail!r}"
        )


def positive(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def prepared(
    gid: str,
    timeout_to_fail: float | None,
    headers: Mapping[str, str] | None,
    now: float,
    *,
    mode: Mode,
    name: str,
    custom_data: str | None = None,
    title: str | None = None,
    extra: Mapping[str, Json] | None = None,
) -> NewTransaction:
    """A transaction its initiator begins: prepared, held by no coordinator, and due only
    once it times out (or its initiator asks to end it). Its branches come with
    ``NewTransaction.ops`` or are registered. ``custom_data`` is kept as given and
    shown back, ``title`` names it for people; ``extra`` adds the mode's own options."""
    timeout_at = now + timeout_to_fail if timeout_to_fail is not None else None
    options: dict[str, Json] = dict(extra or {})
    if timeout_to_fail is not None:
        options["timeout_to_fail"] = timeout_to_fail
    if headers:
        options["headers"] = check_headers(headers)
    if custom_data:
        options["custom_data"] = check_custom_data(custom_data)
    if title is not None:
        options["title"] = check_title(title)
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


def may_end(tx: TxRecord, what: RequestKind) -> bool:
    """Whether ``submit`` / ``abort`` has anything to do (False: done already), or raise
    ``IllegalStateChange`` when the transaction went the other way."""
    if tx.mode not in (Mode.TCC, Mode.XA, Mode.MSG):
        raise IllegalStateChange(
            f"{tx.gid} is a {tx.mode} transaction, not a TCC, XA or msg one: its initiator "
            "does not submit or abort it"
        )
    other = (
        (TxStatus.ABORTING, TxStatus.FAILED)
        if what is RequestKind.SUBMIT
        else (TxStatus.SUBMITTED, TxStatus.SUCCEEDED)
    )
    if tx.status in other:
        raise IllegalStateChange(f"current status '{tx.status}', cannot {what}")
    return tx.status is TxStatus.PREPARED


async def submit(engine: Engine, gid: str) -> Handle:
    """The initiator's part is done: go forward (confirm, commit, deliver)."""
    tx, _ = await engine.get(gid)
    if may_end(tx, RequestKind.SUBMIT):
        await engine.request(gid, Request(RequestKind.SUBMIT), drive=True)
    return engine.handle(gid)


async def abort(engine: Engine, gid: str, reason: str) -> Handle:
    """The initiator's part failed: roll back (cancel, roll back, drop the message)."""
    tx, _ = await engine.get(gid)
    if may_end(tx, RequestKind.ABORT):
        await engine.request(gid, Request(RequestKind.ABORT, reason[:500]), drive=True)
    return engine.handle(gid)


async def expect(engine: Engine, gid: str, mode: Mode) -> None:
    tx, _ = await engine.get(gid)
    if tx.mode is not mode:
        raise IllegalStateChange(f"{gid} is a {tx.mode} transaction, not a {mode} one")
