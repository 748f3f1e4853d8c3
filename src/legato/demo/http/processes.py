"""The demo's child processes: four services and ``legato serve``, on free ports.

Each child writes its output to a log file in the demo directory (shown if it
fails to come up), is ready once its ``/health`` answers 200, and is stopped
with SIGTERM (uvicorn lets requests in progress finish), then SIGKILL.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

START_TIMEOUT = 30.0  # a cold start imports FastAPI and SQLAlchemy: seconds on a busy laptop
STOP_TIMEOUT = 10.0


class StartError(RuntimeError):
    """A child process exited, or did not answer /health, in time."""


def free_port() -> int:
    """A port free now. Another process could take it before the child binds it: then
    the child fails to start and says so, which is rare enough for a demo."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Child:
    """One child process serving HTTP on ``url``."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes]

    @staticmethod
    def spawn(
        name: str, args: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
    ) -> Child:
        log = log_path.open("ab")
        try:
            process = subprocess.Popen(
                [sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, env=env
            )
        except BaseException:
            log.close()
            raise
        return Child(name, f"http://127.0.0.1:{port}", process, log_path, log)

    async def ready(self, client: httpx.AsyncClient, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if (await client.get(f"{self.url}/health", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._log.flush()
                tail = self.log_path.read_text(errors="replace")[-1500:]
                raise StartError(f"{self.name} did not start ({self.log_path}):\n{tail}")
            await asyncio.sleep(0.05)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self) -> int:
        """Wait for the process to end (killing it after ``STOP_TIMEOUT``); its exit code."""
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        finally:
            self._log.close()
        return code

    def stop(self) -> int:
        self.terminate()
        return self.wait()


def service_args(
    kind: str, db_url: str, port: int, stock: Path, fault_options: list[str]
) -> list[str]:
    """The command line of one travel service (after the interpreter)."""
    return [
        "-m",
        "legato.demo.http.service",
        "--kind",
        kind,
        "--db",
        db_url,
        "--port",
        str(port),
        "--stock",
        str(stock),
        *fault_options,
    ]


def coordinator_args(log_url: str, port: int) -> list[str]:
    """The command line of ``legato serve`` (after the interpreter)."""
    return [
        "-m",
        "legato.cli",
        "serve",
        "--log",
        log_url,
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


def stop_all(children: list[Child]) -> None:
    """Terminate every child at once, then wait for each (so they stop in parallel)."""
    for c in children:
        c.terminate()
    for c in children:
        c.wait()
