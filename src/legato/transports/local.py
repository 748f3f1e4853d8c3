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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from .. import _json
from .._errors import Failure, PayloadError
from .._model import Json, OpName
from .base import AttemptResult, Done, OpAttempt


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a Python step receives: who is calling, and what it may need.

    ``(gid, step, op)`` is the op's idempotency key: Legato delivers each op at
    least once, so a participant records that key with its change to make a
    repeat change nothing (``idempotency_key`` joins the three).
    """

    gid: str
    step: str
    op: OpName
    attempt: int
    payload: Json
    outputs: Mapping[str, Json] = field(default_factory=dict)
    output: Json = None  # for a compensation: what the action returned, if it succeeded

    @property
    def idempotency_key(self) -> str:
        return f"{self.gid}/{self.step}/{self.op}"


@dataclass(frozen=True, slots=True)
class LocalCall:
    """An op carried out by a Python callable: ``fn(StepContext)``. An exception of one
    of ``failures`` (or ``legato.Failure``) is a definite failure; ``in_thread=False``
    runs a quick sync one on the event loop instead of a step thread."""

    fn: Callable[[StepContext], Any]
    failures: tuple[type[BaseException], ...] = ()
    in_thread: bool = True


def step_context(attempt: OpAttempt) -> StepContext:
    return StepContext(
        gid=attempt.gid,
        step=attempt.branch,
        op=attempt.op,
        attempt=attempt.attempt,
        payload=attempt.payload,
        outputs=attempt.outputs(),
        output=attempt.output,
    )


@dataclass(frozen=True, slots=True)
class LocalTransport:
    pool: concurrent.futures.Executor
    remote = False

    def start(
        self, call: LocalCall, attempt: OpAttempt, *, timeout: float | None, done: Done
    ) -> asyncio.Task[None] | None:
        """Start one attempt; ``done(result)`` is called on the event loop, once.

        Returns the task of an async op (to cancel it on stop), else ``None``. A
        sync op past its timeout is reported unknown at once; its thread runs on to
        its end regardless, and what it returns then is not reported.
        """
        fn, ctx = call.fn, step_context(attempt)
        definite: tuple[type[BaseException], ...] = (Failure, *call.failures)
        loop = asyncio.get_running_loop()
        if _is_async(fn):
            return loop.create_task(_run_async(fn, ctx, timeout, definite, done))
        if not call.in_thread:
            done(_call(fn, ctx, definite))
            return None
        self.in_thread(lambda: _call(fn, ctx, definite), timeout, done)
        return None

    def in_thread(
        self, work: Callable[[], AttemptResult], timeout: float | None, done: Done
    ) -> None:
        """Run ``work`` in a step thread and report its result, or ``unknown`` once
        ``timeout`` has passed (the thread runs on to its end regardless)."""
        loop = asyncio.get_running_loop()
        # The thread hands its result straight back to the loop: lighter than an
        # asyncio future chained to the executor's, and this runs for every op.
        reported = False
        timer: asyncio.TimerHandle | None = None

        def expire() -> None:
            nonlocal reported
            if not reported:
                reported = True
                done(AttemptResult.unknown(f"attempt timed out after {timeout}s"))

        def finished(result: AttemptResult) -> None:
            nonlocal reported
            if timer is not None:
                timer.cancel()
            if not reported:
                reported = True
                done(result)

        def run() -> None:
            try:
                result = work()
            except BaseException as exc:  # SystemExit from a step: else no one would report
                result = _unknown(exc)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody to tell
                loop.call_soon_threadsafe(finished, result)

        try:
            # the thread runs in the caller's context (the attempt's span, for tracing)
            self.pool.submit(contextvars.copy_context().run, run)
        except RuntimeError:  # the pool is shut down: the coordinator is stopping
            finished(AttemptResult.unknown("the coordinator is stopping"))
            return None
        if timeout is not None:
            timer = loop.call_later(timeout, expire)
        return None


def _call(
    fn: Callable[[Any], Any], ctx: Any, definite: tuple[type[BaseException], ...]
) -> AttemptResult:
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
    result: AttemptResult
    try:
        async with asyncio.timeout(timeout) as deadline:
            out = await cast(Awaitable[Any], fn(ctx))
    except definite as exc:
        result = _failed(exc)
    except TimeoutError as exc:
        expired = deadline.expired()
        why = f"attempt timed out after {timeout}s" if expired else f"TimeoutError: {exc}"
        result = AttemptResult.unknown(why)
    except Exception as exc:
        result = _unknown(exc)
    else:
        result = _ok(out)
    done(result)


def _failed(exc: BaseException) -> AttemptResult:
    return AttemptResult.failed(
        str(exc) if type(exc) is Failure else f"{type(exc).__name__}: {exc}"
    )


def _unknown(exc: BaseException) -> AttemptResult:
    return AttemptResult.unknown(f"{type(exc).__name__}: {exc}")


def _ok(out: Any) -> AttemptResult:
    try:
        return AttemptResult.ok(_json.check(out, what="output"))
    except PayloadError as exc:
        # it would fail the same way every time: not worth retrying
        return AttemptResult.failed(f"the step returned a value that is not JSON: {exc}")
    except Exception as exc:  # a mapping whose items() raises, say
        return _unknown(exc)


def _is_async(fn: Callable[..., Any]) -> bool:
    said = getattr(fn, "legato_async", None)  # a call that knows (a workflow step's)
    if said is not None:
        return bool(said)
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
