"""An HTTP participant, in a process of its own, that records in its own PostgreSQL
database every call it gets: the op, the attempt, when it began and ended, and which
coordinator made it.

The coordinator is told by the request's source: the connection's port, owned by one
of the processes the test names (``PUT /coordinators {"alpha": pid, ...}``), found in
``/proc`` (Linux) while the request is under way. Legato sends nothing else that says
which coordinator calls.

    python -m tests.chaos.recording_participant --db postgresql://... --port 8123 [--delay 0.3]

``POST /debit``, ``/refund`` and ``/credit`` run in the barrier and write ``ledger``
rows (a credit whose gid ends in ``-fail`` refuses: 409, the saga rolls back).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from typing import Any

import psycopg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from legato.participant import Barrier, acreate_table

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS ledger (id serial PRIMARY KEY, gid text, entry text)",
    "CREATE TABLE IF NOT EXISTS calls (id serial PRIMARY KEY, gid text, branch_id text, "
    "op text, attempt int, coordinator text, started double precision, "
    "ended double precision)",
]


class Refused(Exception):
    """The business refuses (a definite failure)."""


def _inode(port: int, server_port: int) -> str | None:
    """The inode of the loopback TCP socket connected from ``port`` to ``server_port``."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.rsplit(":", 1)[1], 16) == port and (
                    int(remote.rsplit(":", 1)[1], 16) == server_port
                ):
                    return fields[9]
    return None


def _owner(inode: str, pids: dict[str, int]) -> str | None:
    target = f"socket:[{inode}]"
    for name, pid in pids.items():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return name
    return None


class Participant:
    def __init__(self, db: str, port: int, delay: float) -> None:
        self.db = db
        self.port = port
        self.delay = delay
        self.pids: dict[str, int] = {}
        self.callers: dict[int, str] = {}  # source port -> coordinator

    def caller(self, request: Request) -> str:
        client = request.client
        if client is None:
            return "?"
        known = self.callers.get(client.port)
        if known is not None:
            return known
        inode = _inode(client.port, self.port)
        name = _owner(inode, self.pids) if inode else None
        if name is None:
            return "?"
        self.callers[client.port] = name
        return name

    async def coordinators(self, request: Request) -> JSONResponse:
        self.pids = {str(k): int(v) for k, v in (await request.json()).items()}
        self.callers.clear()
        return JSONResponse({"coordinators": self.pids})

    async def op(self, request: Request) -> JSONResponse:
        started = time.time()
        who = self.caller(request)
        barrier = Barrier.from_query(request.query_params)
        entry = request.url.path.strip("/")
        await asyncio.sleep(self.delay)  # the work takes a while: calls are in flight

        async def business(conn: Any) -> None:
            if entry == "credit" and barrier.gid.endswith("-fail"):
                raise Refused(f"{barrier.gid}: the credit is refused")
            await conn.execute(
                "INSERT INTO ledger (gid, entry) VALUES (%s, %s)", (barrier.gid, entry)
            )

        status, answer = 200, {"dtm_result": "SUCCESS"}
        async with await psycopg.AsyncConnection.connect(self.db) as conn:
            try:
                await barrier.acall(conn, business)
            except Refused as exc:
                status, answer = 409, {"dtm_result": "FAILURE", "message": str(exc)}
        ended = time.time()
        async with await psycopg.AsyncConnection.connect(self.db, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO calls (gid, branch_id, op, attempt, coordinator, started, ended) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    barrier.gid,
                    barrier.branch_id,
                    barrier.op,
                    int(request.headers.get("Legato-Attempt", "0")),
                    who,
                    started,
                    ended,
                ),
            )
        return JSONResponse(answer, status_code=status)

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})


async def prepare(db: str) -> None:
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        for statement in SCHEMA:
            await conn.execute(statement)
    async with await psycopg.AsyncConnection.connect(db) as conn:
        await acreate_table(conn)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.3)
    args = parser.parse_args()
    asyncio.run(prepare(args.db))
    p = Participant(args.db, args.port, args.delay)
    app = Starlette(
        routes=[
            Route("/health", p.health, methods=["GET"]),
            Route("/coordinators", p.coordinators, methods=["PUT"]),
            *(Route(f"/{name}", p.op, methods=["POST"]) for name in ("debit", "refund", "credit")),
        ]
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
