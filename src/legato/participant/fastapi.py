"""The barrier for FastAPI: a dependency that reads it from the query string, typed.

A branch handler declares the barrier as a parameter (:data:`BarrierParam`, an
``Annotated`` alias of :func:`barrier_from_query`), then runs its business SQL in it::

    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from legato import Failure
    from legato.participant.fastapi import BarrierParam, run_in_barrier

    @app.post("/debit")
    async def debit(body: Debit, barrier: BarrierParam) -> JSONResponse:
        async def business(conn: asyncpg.Connection) -> None:
            if await conn.execute(DEBIT, body.amount, body.account) == "UPDATE 0":
                raise Failure("insufficient funds")

        async with pool.acquire() as conn:
            return await run_in_barrier(barrier, conn, business)

The answers (DESIGN section 5), as the Starlette helper's: 200 ``{"dtm_result":
"SUCCESS"}`` when the business code ran or the barrier skipped it (a duplicate, a
null compensation); 409 ``{"dtm_result": "FAILURE"}`` when it raised
:class:`legato.Failure` (its transaction rolled back). A query string that does not
name a valid barrier gets FastAPI's own 422, whose ``loc`` names the field
(``["query", "op"]``); the four fields appear in the OpenAPI schema.

:func:`run_in_barrier` takes an asyncio connection (asyncpg, psycopg's
``AsyncConnection``, aiomysql, SQLAlchemy's async session) with an async or sync
business function, or a sync connection, run in the thread pool. A plain ``def``
handler (FastAPI runs it in its thread pool) uses :func:`run_in_barrier_sync`.
A msg's ``query_prepared`` is answered by :func:`answer_query_prepared`, with the
gid from :data:`MsgGid`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse

from .._errors import BarrierRequestError, Failure
from . import _answers
from .barrier import Barrier, check_id, query_prepared
from .starlette import answer_query_prepared_for, run_barrier

C = TypeVar("C")

__all__ = [
    "BarrierParam",
    "MsgGid",
    "answer_query_prepared",
    "answer_query_prepared_sync",
    "barrier_from_query",
    "msg_gid",
    "run_in_barrier",
    "run_in_barrier_sync",
]


def _invalid(exc: BarrierRequestError, value: str) -> RequestValidationError:
    error: dict[str, Any] = {
        "type": "value_error",
        "loc": ("query", exc.field),
        "msg": str(exc),
        "input": value,
    }
    return RequestValidationError([error])


def barrier_from_query(
    gid: Annotated[str, Query(description="The global transaction's id.")],
    trans_type: Annotated[str, Query(description="saga, tcc, xa, msg or workflow.")],
    branch_id: Annotated[str, Query(description="The branch's id within the transaction.")],
    op: Annotated[str, Query(description="The op: action, compensate, try, confirm, ...")],
) -> Barrier:
    """The barrier of the op the coordinator's request names (a FastAPI dependency).

    A missing field gets FastAPI's 422; an invalid one (an op its transaction type
    does not have, an empty or overlong id) a 422 naming it the same way.
    """
    try:
        return Barrier(trans_type, gid, branch_id, op)
    except BarrierRequestError as exc:
        values = {"gid": gid, "trans_type": trans_type, "branch_id": branch_id, "op": op}
        raise _invalid(exc, values.get(exc.field, "")) from None


BarrierParam = Annotated[Barrier, Depends(barrier_from_query)]
"""A handler parameter ``barrier: BarrierParam`` is the request's :class:`Barrier`."""


def msg_gid(
    gid: Annotated[str, Query(description="The msg transaction's gid.")],
) -> str:
    """The gid of the msg a ``query_prepared`` request asks about (a FastAPI dependency)."""
    try:
        return check_id("gid", gid)
    except BarrierRequestError as exc:
        raise _invalid(exc, gid) from None


MsgGid = Annotated[str, Depends(msg_gid)]
"""A handler parameter ``gid: MsgGid`` is the gid a ``query_prepared`` request names."""


async def run_in_barrier(barrier: Barrier, conn: C, fn: Callable[[C], object]) -> JSONResponse:
    """Run ``fn(conn)`` in ``barrier``, in one new transaction on ``conn``; answer for DTM.

    ``conn`` must not be inside a transaction: the barrier begins and commits its own.
    ``fn`` may be a coroutine function (with an asyncio connection) or a plain one.
    """
    return await run_barrier(barrier, conn, fn)


def run_in_barrier_sync(barrier: Barrier, conn: C, fn: Callable[[C], object]) -> JSONResponse:
    """As :func:`run_in_barrier`, from a plain ``def`` handler on a sync connection."""
    try:
        result = barrier.call(conn, fn)
    except Failure as exc:
        return _response(_answers.failure(exc))
    return _response(_answers.success(result.outcome))


async def answer_query_prepared(gid: str, conn: object) -> JSONResponse:
    """Answer the coordinator's ``query_prepared`` for the msg ``gid``: 200 SUCCESS if its
    local transaction committed (deliver), 409 FAILURE if it did not and now never will."""
    return await answer_query_prepared_for(gid, conn)


def answer_query_prepared_sync(gid: str, conn: object) -> JSONResponse:
    """As :func:`answer_query_prepared`, from a plain ``def`` handler on a sync connection."""
    try:
        status = query_prepared(conn, gid)
    except BarrierRequestError as exc:
        return _response(_answers.bad_request(exc))
    return _response(_answers.prepared(status))


def _response(answer: _answers.Answer) -> JSONResponse:
    status, body = answer
    return JSONResponse(body, status_code=status)
