"""A request that waits for its transaction to settle (``wait: true``, DTM's
``wait_result``): answered once it settles, when its time is up, or as soon as this
coordinator begins to stop, so that the client asks another one instead of holding
the stop up (its transaction is driven on by whichever coordinator takes it over)."""

from __future__ import annotations

import asyncio
import contextlib

from ..coordinator import Coordinator
from ..engine.handle import Handle, Outcome


async def settled(c: Coordinator, handle: Handle, timeout: float) -> Outcome | None:
    """The transaction's outcome once it settles; None if it has not within ``timeout``
    seconds, or a stop of ``c`` begins first."""
    if c.stopping:
        return None
    waiting = asyncio.ensure_future(handle.result(timeout=timeout))
    stop = asyncio.ensure_future(c.until_stopping())
    try:
        await asyncio.wait([waiting, stop], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for f in (waiting, stop):
            f.cancel()
    if not waiting.done() or waiting.cancelled():
        with contextlib.suppress(asyncio.CancelledError):
            await waiting  # the stop came first: let the wait end before answering
        return None
    try:
        return waiting.result()
    except TimeoutError:
        return None
