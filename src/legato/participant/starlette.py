"""The barrier for Starlette and FastAPI handlers: the HTTP answer the coordinator expects.

A branch handler reads its payload, then hands the business SQL to
:func:`run_in_barrier`::

    from legato import Failure
    from legato.participant.starlette import run_in_barrier

    @app.post("/transfer-out")
    async def transfer_out(request: Request) -> Response:
        amount = (await request.json())["amount"]

        async def debit(conn: asyncpg.Connection) -> None:
            if await conn.execute(DEBIT, amount, uid) == "UPDATE 0":
                raise Failure("insufficient funds")

        async with pool.acquire() as conn:
            return await run_in_barrier(request, conn, debit)

The answers (DESIGN section 5): 200 ``{"dtm_result": "SUCCESS"}`` when the
business code ran or the barrier skipped it; 409 ``{"dtm_result": "FAILURE"}``
when it raised :class:`legato.Failure` (its transaction rolled back); 400 naming
the field when the query string does not name a valid barrier. Any other
exception propagates (a 500: the coordinator retries).

A sync connection is used from Starlette's thread pool, with a sync business
function; a sqlite3 connection then needs ``check_same_thread=False``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from .._errors import BarrierRequestError, Failure
from . import _answers
from ._drivers import is_async
from .barrier import Barrier, aquery_prepared, query_prepared

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

C = TypeVar("C")

__all__ = [
    "answer_query_prepared",
    "answer_query_prepared_for",
    "run_barrier",
    "run_in_barrier",
]


def _json(answer: _answers.Answer) -> JSONResponse:
    from starlette.responses import JSONResponse

    status, body = answer
    return JSONResponse(body, status_code=status)


async def run_in_barrier(request: Request, conn: C, fn: Callable[[C], object]) -> JSONResponse:
    """Run ``fn(conn)`` in the barrier that the request's query string names; answer for DTM.

    ``fn`` may be a coroutine function (with an asyncio connection) or a plain one.
    """
    try:
        barrier = Barrier.from_query(request.query_params)
    except BarrierRequestError as exc:
        return _json(_answers.bad_request(exc))
    return await run_barrier(barrier, conn, fn)


async def run_barrier(barrier: Barrier, conn: C, fn: Callable[[C], object]) -> JSONResponse:
    """Run ``fn(conn)`` in ``barrier``; answer 200 SUCCESS, or 409 FAILURE on :class:`Failure`.

    An asyncio connection runs here; a sync one (with a sync ``fn``) in Starlette's
    thread pool.
    """
    try:
        if is_async(conn):

            async def business(c: C) -> object:
                out = fn(c)
                return await out if inspect.isawaitable(out) else out

            result = await barrier.acall(conn, business)
        else:
            from starlette.concurrency import run_in_threadpool

            result = await run_in_threadpool(barrier.call, conn, fn)
    except Failure as exc:
        return _json(_answers.failure(exc))
    return _json(_answers.success(result.outcome))


async def answer_query_prepared(request: Request, conn: object) -> JSONResponse:
    """Answer the coordinator's query_prepared for the msg whose gid the query string names.

    200 SUCCESS if the msg's local transaction committed (deliver the message); 409
    FAILURE if it did not, and now never will (the message fails).
    """
    return await answer_query_prepared_for(request.query_params.get("gid", ""), conn)


async def answer_query_prepared_for(gid: str, conn: object) -> JSONResponse:
    """As :func:`answer_query_prepared`, for a gid already read from the request."""
    try:
        if is_async(conn):
            status = await aquery_prepared(conn, gid)
        else:
            from starlette.concurrency import run_in_threadpool

            status = await run_in_threadpool(query_prepared, conn, gid)
    except BarrierRequestError as exc:
        return _json(_answers.bad_request(exc))
    return _json(_answers.prepared(status))
