"""A stop on SIGTERM (or SIGINT) in a ``legato serve`` worker, before the HTTP server's.

uvicorn, on a signal, closes its listener, waits for the requests under way, then
runs the app's shutdown. A coordinator must move first: its readiness turns false
(``/health/ready`` answers 503), its waits are answered, it claims nothing more and
starts no op, all before the listener closes.

So the handler installed here, in front of uvicorn's own, begins the coordinator's
stop on the event loop, and hands the signal on to uvicorn only once the coordinator
has drained (its ops in flight reported and written, its leases released) or the
grace has run out. Meanwhile the listener stays open: a load balancer polling
``/health/ready`` sees 503 and takes this process out of rotation while it still
answers, a request that comes anyway is refused with 503 ``Retry-After: 0`` (a
submit) or answered (a read), and nothing meets a closed port while ops finish. The
app's shutdown (``Coordinator.close``) then finds the work given up. A second signal
cuts the grace short: the ops still in flight are cut, the leases released, and the
process exits at once (the log has every decision; the next owner retries the cut
ops). It is not handed on: uvicorn would skip the app's shutdown, and the leases would
then wait to expire. A repeat within ``REPEAT_WINDOW`` seconds is the same stop, not
a second one: a supervisor forwarding the signal its process group already got (a
terminal's Ctrl+C, systemd's default ``KillMode``) sends each worker two at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from ..coordinator import Coordinator

logger = logging.getLogger("legato.serve")

REPEAT_WINDOW = 1.0
"""Seconds after the first signal during which another is the same stop."""

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_on_signals(c: Coordinator, grace: float) -> Callable[[], None]:
    """Install the handlers (in the main thread, where the running loop is); returns
    what puts the previous ones back. Elsewhere (a thread) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in SIGNALS}
    first: list[float] = []  # when the first signal came
    drains: list[asyncio.Task[None]] = []  # the one that hands the signal on once drained

    def begin(sig: int, frame: FrameType | None) -> None:
        logger.info(  # a stop asked for is no warning; one cut short is
            "%s: stopping within %gs (readiness off, waits answered, no new op; the leases "
            "released once the ops in flight end); another signal stops at once",
            signal.Signals(sig).name, grace,
        )  # fmt: skip
        c.begin_stop(grace)
        drains.append(loop.create_task(_then_hand_on(c, previous[sig], sig, frame)))

    def hurry() -> None:
        logger.warning("stopping at once: the ops still in flight are cut")
        c.begin_stop(0.0)

    def handler(sig: int, frame: FrameType | None) -> None:
        # a signal handler runs between any two bytecodes of the loop's thread: the
        # work is handed to the loop, which the threadsafe call also wakes
        if not first:
            first.append(time.monotonic())
            loop.call_soon_threadsafe(begin, sig, frame)
        elif time.monotonic() - first[0] >= REPEAT_WINDOW:
            loop.call_soon_threadsafe(hurry)

    for sig in SIGNALS:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, was in previous.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, was)

    return restore


async def _then_hand_on(c: Coordinator, handler: Any, sig: int, frame: FrameType | None) -> None:
    """Once ``c`` has drained (or the grace ran out, or a second signal cut it short),
    tell the HTTP server: it closes its listener, and the app's shutdown ends the rest."""
    try:
        await c.drained()
    except Exception:  # the stop goes on whatever went wrong while waiting
        logger.exception("waiting for the ops in flight failed; stopping the server now")
    _hand_on(handler, sig, frame)


def _hand_on(handler: Any, sig: int, frame: FrameType | None) -> None:
    """Tell the HTTP server (uvicorn's handler); Python's own SIGINT handler would raise
    KeyboardInterrupt inside the loop, so it is not called."""
    if callable(handler) and handler is not signal.default_int_handler:
        handler(sig, frame)
