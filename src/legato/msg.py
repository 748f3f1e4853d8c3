"""Two-phase messages (DESIGN section 4, msg) from the initiator's side.

A message is written prepared with all its branches (``01``, ``02``, ...: each an
HTTP call or a broker publish that delivers it) and, when the initiator gave one,
its ``query_prepared`` call (op ``("00", msg)``). The initiator runs its local
transaction with the msg barrier row, then submits; see ``modes.msg`` for what
happens after, or if it never does (the driver: ``drivers.msg``). The branches are
delivered one at a time, in order, unless the message is ``concurrent``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from . import _initiator
from ._errors import DefinitionError, GidConflict
from ._model import Json, Mode, OpName, OpRecord
from ._redact import mask
from .drivers.msg import CONCURRENT, WIRE_MSG
from .engine.handle import Handle
from .engine.port import Engine
from .log import NewTransaction
from .modes import msg
from .transports.broker import BrokerCall
from .transports.http import HttpCall

QUERY_SHOWN = "query_prepared"
"""The option holding the query's URL as shown (credentials masked), for lists."""

DEFAULT_MSG_TIMEOUT = 10.0
"""Seconds a message may stay prepared before the coordinator asks its initiator."""


def prepared_msg(
    gid: str,
    steps: Sequence[HttpCall | BrokerCall],
    query: HttpCall | None,
    timeout_to_fail: float | None,
    headers: Mapping[str, str] | None,
    now: float,
    *,
    concurrent: bool = False,
    custom_data: str | None = None,
    title: str | None = None,
) -> NewTransaction:
    """A message as prepared: its deliveries and its query, none run yet, held by no
    coordinator, due when it times out (or when its initiator submits)."""
    extra: dict[str, Json] = {CONCURRENT: True} if concurrent else {}
    if query is not None:  # shown with the message (its op is the one called)
        extra[QUERY_SHOWN] = mask(query.url)
    new = _initiator.prepared(
        gid, timeout_to_fail, headers, now, mode=Mode.MSG, name=WIRE_MSG,
        custom_data=custom_data, title=title, extra=extra,
    )  # fmt: skip
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


async def begin(
    engine: Engine,
    gid: str | None,
    steps: Sequence[HttpCall | BrokerCall],
    *,
    query_prepared: HttpCall | None = None,
    timeout_to_fail: float | None = DEFAULT_MSG_TIMEOUT,
    headers: Mapping[str, str] | None = None,
    concurrent: bool = False,
    custom_data: str | None = None,
    title: str | None = None,
) -> str:
    """Write a prepared message (two-phase message): ``steps`` deliver it once it is
    submitted (``submit``), one at a time in order, each once the one before it
    succeeded (``concurrent``: all at once); if it is still prepared after
    ``timeout_to_fail`` seconds, ``query_prepared`` is asked whether its local
    transaction committed. ``custom_data`` is the caller's own text, kept and shown
    back as given; ``title`` names the message for people. Idempotent by ``gid``."""
    engine.require_started()
    gid = _initiator.new_gid(gid)
    if not steps:
        raise DefinitionError("a message needs at least one step to deliver it")
    for i, step in enumerate(steps):
        if isinstance(step, HttpCall):
            engine.participants.check(step.url, f"steps.{i}.action")
    if query_prepared is not None:
        engine.participants.check(query_prepared.url, "query_prepared")
    _initiator.check_timeout(timeout_to_fail)
    new = prepared_msg(
        gid, steps, query_prepared, timeout_to_fail, headers, time.time(),
        concurrent=concurrent, custom_data=custom_data, title=title,
    )  # fmt: skip
    existing = await engine.create(new)
    if existing is not None and existing.mode is not Mode.MSG:
        raise GidConflict(f"gid {gid!r} is already used by a {existing.mode} transaction")
    return gid


async def submit(engine: Engine, gid: str) -> Handle:
    """The local transaction committed: deliver the message's branches."""
    await _initiator.expect(engine, gid, Mode.MSG)
    return await _initiator.submit(engine, gid)


async def abort(engine: Engine, gid: str, reason: str = "the local transaction failed") -> Handle:
    """The local transaction did not commit: the message is dropped, never delivered."""
    await _initiator.expect(engine, gid, Mode.MSG)
    return await _initiator.abort(engine, gid, reason)
