"""One participant service of the HTTP travel saga bench: a real uvicorn process.

    python bench/_http_participant.py --step flight --db postgresql://... --port 9001

``POST /action`` inserts ``(gid, step)`` into its ``booking`` table, ``POST
/compensate`` deletes it, both inside Legato's barrier (one local transaction).
A payload ``{"fail": true}`` makes the action refuse (409). Each answer carries
``took_ms``, the handler's own time (barrier + SQL), which the coordinator keeps
as the step's output: the bench subtracts it to get the coordinator's overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from legato import Failure
from legato.participant import Barrier, BarrierRequestError


def answer(took: float, outcome: str) -> JSONResponse:
    return JSONResponse({"took_ms": round(took * 1000, 3), "barrier": outcome})


def postgres_app(step: str, dsn: str) -> Starlette:
    import asyncpg

    pools: list[Any] = []

    async def reset(conn: Any) -> None:
        # The handlers change no session state (no SET, LISTEN, cursors or advisory
        # locks), so asyncpg's default reset on release (RESET ALL, CLOSE ALL, UNLISTEN,
        # unlock all: one more round trip per request) only needs to end a transaction
        # a failed handler might have left open.
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pools.append(await asyncpg.create_pool(dsn, min_size=4, max_size=16, reset=reset))
        try:
            yield
        finally:
            await pools[0].close()

    def handler(op: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def handle(request: Request) -> JSONResponse:
            body = json.loads(await request.body() or b"{}")
            started = time.perf_counter()
            try:
                barrier = Barrier.from_query(request.query_params)
            except BarrierRequestError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)

            async def work(conn: Any) -> None:
                if op == "action":
                    if body.get("fail") and step == "car":
                        raise Failure("no car left")
                    await conn.execute(
                        "INSERT INTO booking (gid, step) VALUES ($1, $2)", barrier.gid, step
                    )
                else:
                    await conn.execute(
                        "DELETE FROM booking WHERE gid = $1 AND step = $2", barrier.gid, step
                    )

            try:
                async with pools[0].acquire() as conn:
                    result = await barrier.acall(conn, work)
            except Failure as exc:
                return JSONResponse({"dtm_result": "FAILURE", "message": str(exc)}, status_code=409)
            return answer(time.perf_counter() - started, str(result.outcome))

        return handle

    return Starlette(
        routes=[
            Route("/action", handler("action"), methods=["POST"]),
            Route("/compensate", handler("compensate"), methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def sqlite_app(step: str, path: str) -> Starlette:
    # one connection, used by one thread at a time: SQLite has one writer anyway
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    lock = threading.Lock()

    def handler(op: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def handle(request: Request) -> JSONResponse:
            body = json.loads(await request.body() or b"{}")
            started = time.perf_counter()
            barrier = Barrier.from_query(request.query_params)

            def work(c: sqlite3.Connection) -> None:
                if op == "action":
                    if body.get("fail") and step == "car":
                        raise Failure("no car left")
                    c.execute("INSERT INTO booking (gid, step) VALUES (?, ?)", (barrier.gid, step))
                else:
                    c.execute("DELETE FROM booking WHERE gid = ? AND step = ?", (barrier.gid, step))

            try:
                # a local SQLite write of ~50 us: run inline rather than pay two thread hops
                with lock:
                    result = barrier.call(conn, work)
            except Failure as exc:
                return JSONResponse({"dtm_result": "FAILURE", "message": str(exc)}, status_code=409)
            return answer(time.perf_counter() - started, str(result.outcome))

        return handle

    return Starlette(
        routes=[
            Route("/action", handler("action"), methods=["POST"]),
            Route("/compensate", handler("compensate"), methods=["POST"]),
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--step", required=True)
    p.add_argument("--db", required=True, help="postgresql://... or a SQLite file path")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    if args.db.startswith("postgresql"):
        app = postgres_app(args.step, args.db)
    else:
        app = sqlite_app(args.step, args.db)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
