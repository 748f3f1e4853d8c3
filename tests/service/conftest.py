"""A scripted HTTP participant: a real uvicorn server on a free port, in a thread.

A test says how each URL answers (``participant.script("/flight", [(425, ...), (200, ...)])``:
one answer per call, the last one repeated) and reads back every call it received,
with its query parameters, headers and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
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
    at: float


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
        with self.lock:
            self.calls.append(
                Call(path, dict(request.query_params), dict(request.headers), body, time.time())
            )
            answers = self.scripts.get(path) or [(200, {"dtm_result": "SUCCESS"})]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if len(answer) == 3:
            await asyncio.sleep(answer[2])
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


@pytest.fixture
def participant() -> Iterator[Participant]:
    holder: list[Participant] = []

    async def endpoint(request: Request) -> Response:
        return await holder[0].answer(request)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST", "PUT"])])
    with serve(app) as url:
        holder.append(Participant(url))
        yield holder[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    """A ``legato serve`` process."""

    url: str
    process: subprocess.Popen[bytes]
    log: str
    output: Path | None = None  # the process's stderr (its log lines)

    def lines(self) -> str:
        return self.output.read_text(errors="replace") if self.output else ""

    @property
    def dtm(self) -> str:
        return self.url + "/api/dtmsvr"


def start_legato(
    command: list[str], *, env: dict[str, str] | None = None, ready: str = "/health"
) -> tuple[str, subprocess.Popen[bytes], Path]:
    """Run ``legato <command> --port P`` (``env``: its whole environment, this process's
    by default) and wait until ``ready`` answers 200; returns its URL, the process, and
    the file its stderr (its log lines) goes to: a pipe nobody reads would fill up and
    stall it."""
    port = free_port()
    fd, name = tempfile.mkstemp(prefix=f"legato-{command[0]}-", suffix=".log")
    output = Path(name)
    with os.fdopen(fd, "wb") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "legato.cli", *command, "--port", str(port)],
            env=env if env is not None else dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + ready, timeout=1).status_code == 200:
                return url, process, output
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            err = output.read_text(errors="replace")
            output.unlink(missing_ok=True)
            raise RuntimeError(f"legato {command[0]} did not start: {err[-2000:]}")
        time.sleep(0.05)


def stop_legato(process: subprocess.Popen[bytes], output: Path | None) -> None:
    """Stop it (SIGTERM, then SIGKILL after 15 s) and delete its output file."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if output is not None:
        output.unlink(missing_ok=True)


def start_serve(
    log: str, *, env: dict[str, str] | None = None, owner: str | None = None, workers: int = 1
) -> Served:
    command = ["serve", "--log", log, *(["--owner", owner] if owner else [])]
    if workers > 1:
        command += ["--workers", str(workers)]
    url, process, output = start_legato(command, env={**os.environ, **(env or {})})
    return Served(url, process, log, output)


def stop_serve(served: Served) -> None:
    stop_legato(served.process, served.output)


@pytest.fixture
def server(log_url: str) -> Iterator[Served]:
    """``legato serve`` on the test's log, as a real process."""
    served = start_serve(log_url)
    try:
        yield served
    finally:
        stop_serve(served)
