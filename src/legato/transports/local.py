"""The in-process transport: an op is a Python callable, sync or async.

Sync callables run in the coordinator's step thread pool so that a slow one
never stalls the event loop. The outcome is classified as DESIGN section 5
says for HTTP: a value is success; ``legato.Failure`` (or a configured
exception type) is a definite failure; anything else, a timeout included, is
unknown and retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from .. import _json
from .._errors import Failure, PayloadError
from .._model import Json

Outcome = tuple[str, Json]  # ("ok", output) | ("failed", reason) | ("unknown", reason)
Done = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class LocalTransport:
    pool: concurrent.futures.Executor

    def start(
        self,
        fn: Callable[[Any], Any],
        ctx: Any,
        *,
        timeout: float | None,
        failures: tuple[type[BaseException], ...] = (),
        in_thread: bool = True,
        done: Done,
    ) -> asyncio.Task[None] | None:
        """Start one attempt; ``done(outcome)`` is called on the event loop, once.

        Returns the task of an async op (to cancel it on stop), else ``None``. A
        sync op past its timeout is reported unknown at once; its thread runs on to
        its end regardless, and what it returns then is not reported.
        """
        definite: tuple[type[BaseException], ...] = (Failure, *failures)
        loop = asyncio.get_running_loop()
        if _is_async(fn):
            return loop.create_task(_run_async(fn, ctx, timeout, definite, done))
        if not in_thread:
            done(_call(fn, ctx, definite))
            return None
        # The thread hands its outcome straight back to the loop: lighter than an
        # asyncio future chained to the executor's, and this runs for every op.
        reported = False
        timer: asyncio.TimerHandle | None = None

        def expire() -> None:
            nonlocal reported
            if not reported:
                reported = True
                done(("unknown", f"attempt timed out after {timeout}s"))

        def finished(outcome: Outcome) -> None:
            nonlocal reported
            if timer is not None:
                timer.cancel()
            if not reported:
                reported = True
                done(outcome)

        def work() -> None:
            try:
                outcome = _call(fn, ctx, definite)
            except BaseException as exc:  # SystemExit from a step: else no one would report
                outcome = _unknown(exc)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to tell
                loop.call_soon_threadsafe(finished, outcome)

        try:
            # the thread runs in the caller's context (the attempt's span, for tracing)
            self.pool.submit(contextvars.copy_context().run, work)
        except RuntimeError:  # the pool is shut down: the coordinator is stopping
            finished(("unknown", "the coordinator is stopping"))
            return None
        if timeout is not None:
            timer = loop.call_later(timeout, expire)
        return None


def _call(fn: Callable[[Any], Any], ctx: Any, definite: tuple[type[BaseException], ...]) -> Outcome:
    """Run a sync op and classify what happened (in a step thread, or on the loop)."""
    try:
        out = fn(ctx)
    except definite as exc:
        return _failed(exc)
    except Exception as exc:
        return _unknown(exc)
    return _ok(out)


async def _run_async(
    fn: Callable[[Any], Any],
    ctx: Any,
    timeout: float | None,
    definite: tuple[type[BaseException], ...],
    done: Done,
) -> None:
    outcome: Outcome
    try:
        async with asyncio.timeout(timeout) as deadline:
            out = await cast(Awaitable[Any], fn(ctx))
    except definite as exc:
        outcome = _failed(exc)
    except TimeoutError as exc:
        expired = deadline.expired()
        why = f"attempt timed out after {timeout}s" if expired else f"TimeoutError: {exc}"
        outcome = ("unknown", why)
    except Exception as exc:
        outcome = _unknown(exc)
    else:
        outcome = _ok(out)
    done(outcome)


def _failed(exc: BaseException) -> Outcome:
    return ("failed", str(exc) if type(exc) is Failure else f"{type(exc).__name__}: {exc}")


def _unknown(exc: BaseException) -> Outcome:
    return ("unknown", f"{type(exc).__name__}: {exc}")


def _ok(out: Any) -> Outcome:
    try:
        return ("ok", _json.check(out, what="output"))
    except PayloadError as exc:
        # it would fail the same way every time: not worth retrying
        return ("failed", f"the step returned a value that is not JSON: {exc}")
    except Exception as exc:  # a mapping whose items() raises, say
        return _unknown(exc)


def _is_async(fn: Callable[..., Any]) -> bool:
    try:
        return _is_async_cached(fn)
    except TypeError:  # an unhashable callable object
        return _async_callable(fn)


@functools.lru_cache(maxsize=4096)
def _is_async_cached(fn: Callable[..., Any]) -> bool:
    return _async_callable(fn)


def _async_callable(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
