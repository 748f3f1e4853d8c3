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
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from .. import _json
from .._errors import Failure, PayloadError
from .._model import Json

Outcome = tuple[str, Json]  # ("ok", output) | ("failed", reason) | ("unknown", reason)


@dataclass(frozen=True, slots=True)
class LocalTransport:
    pool: concurrent.futures.Executor

    async def invoke(
        self,
        fn: Callable[[Any], Any],
        ctx: Any,
        *,
        timeout: float | None,
        failures: tuple[type[BaseException], ...] = (),
        in_thread: bool = True,
    ) -> Outcome:
        definite: tuple[type[BaseException], ...] = (Failure, *failures)
        try:
            if _is_async(fn):
                awaitable = cast(Awaitable[Any], fn(ctx))
            elif not in_thread:
                awaitable = _done(fn(ctx))
            else:
                loop = asyncio.get_running_loop()
                awaitable = loop.run_in_executor(self.pool, functools.partial(fn, ctx))
            if timeout is not None:
                out = await asyncio.wait_for(awaitable, timeout)
            else:
                out = await awaitable
        except definite as exc:
            return (
                "failed",
                f"{type(exc).__name__}: {exc}" if type(exc) is not Failure else str(exc),
            )
        except TimeoutError:
            return ("unknown", f"attempt timed out after {timeout}s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return ("unknown", f"{type(exc).__name__}: {exc}")
        try:
            return ("ok", _json.check(out, what="output"))
        except PayloadError as exc:
            # it would fail the same way every time: not worth retrying
            return ("failed", f"the step returned a value that is not JSON: {exc}")


async def _done(value: Any) -> Any:
    return value


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )
