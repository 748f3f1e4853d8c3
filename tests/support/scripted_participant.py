"""A scripted HTTP participant: a real uvicorn server on a free port, in a thread.

A test says how each URL answers (``participant.script("/flight", [(425, ...), (200, ...)])``:
one answer per call, the last one repeated) and reads back every call it received,
with its query parameters, headers and body. ``serve(app)`` runs any other ASGI app
the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Answer = tuple[int, Any] | tuple[int, Any, float]  # status, JSON body, seconds to wait first


@dataclass
class Call:
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float  # when it arrived
    answered: float | None = None  # when its answer was sent (after any scripted wait)


@dataclass
class Participant:
    url: str
    calls: list[Call] = field(default_factory=list)
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, path: str, answers: list[Answer]) -> str:
        """How ``path`` answers, call by call; returns its full URL."""
        with self.lock:
            self.scripts[path] = list(answers)
        return self.url + path

    def calls_to(self, path: str, op: str | None = None) -> list[Call]:
        with self.lock:
            return [
                c for c in self.calls if c.path == path and (op is None or c.params["op"] == op)
            ]

    def ops(self) -> list[tuple[str, str, str]]:
        """(branch_id, op, path) of every call, in the order received."""
        with self.lock:
            return [
                (c.params.get("branch_id", ""), c.params.get("op", ""), c.path) for c in self.calls
            ]

    async def answer(self, request: Request) -> Response:
        body = await request.body()
        path = request.url.path
        call = Call(path, dict(request.query_params), dict(request.headers), body, time.time())
        with self.lock:
            self.calls.append(call)
            answers = self.scripts.get(path) or [(200, {"dtm_result": "SUCCESS"})]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if len(answer) == 3:
            await asyncio.sleep(answer[2])
        call.answered = time.time()
        status, payload = answer[0], answer[1]
        if isinstance(payload, str):
            return Response(payload, status_code=status, media_type="text/plain")
        return JSONResponse(payload, status_code=status)


@contextlib.contextmanager
def serve(app: Any, port: int = 0) -> Iterator[str]:
    """Run ``app`` on ``port`` (a free one by default) in a thread; yields its base URL."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the participant server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def scripted_participant() -> Iterator[Participant]:
    """A :class:`Participant` serving every path, each answering 200 SUCCESS until scripted."""
    holder: list[Participant] = []

    async def endpoint(request: Request) -> Response:
        return await holder[0].answer(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT"])])
    with serve(app) as url:
        holder.append(Participant(url))
        yield holder[0]
