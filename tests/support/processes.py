"""Processes a test runs: a ``legato`` command (``serve``, ``dashboard``), started on a
free port and stopped after, and the suite's own programs (the chaos workers, the
hostile participant), run as ``python -m tests....`` from :data:`REPOSITORY` so that
they import ``tests.support`` by its full name, as the suite does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.servers import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
"""The checkout: the working directory of the suite's own programs
(``[sys.executable, "-m", "tests.chaos.worker", ...]``)."""


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
    if answers(url + ready, process):
        return url, process, output
    process.kill()
    process.wait()
    err = output.read_text(errors="replace")
    output.unlink(missing_ok=True)
    raise RuntimeError(f"legato {command[0]} did not start: {err[-2000:]}")


def answers(
    url: str, process: subprocess.Popen[bytes], *, within: float = 30, every: float = 0.05
) -> bool:
    """Whether ``url`` (a process' health page) answers 200 within ``within`` seconds;
    False as soon as ``process`` has exited, or once the time is up."""
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(every)


def stop_legato(process: subprocess.Popen[bytes], output: Path | None) -> None:
    """Stop it and delete its output file: SIGTERM (a graceful stop, which waits for
    the ops in flight), a second one after 3 s (at once), SIGKILL after 15 s more."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(3)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if output is not None:
        output.unlink(missing_ok=True)


def start_serve(
    log: str,
    *,
    env: dict[str, str] | None = None,
    owner: str | None = None,
    workers: int = 1,
    extra: Sequence[str] = (),
) -> Served:
    """``legato serve --log LOG`` (``extra``: more of its options, ``--lease 3`` say)."""
    command = ["serve", "--log", log, *(["--owner", owner] if owner else [])]
    if workers > 1:
        command += ["--workers", str(workers)]
    command += extra
    url, process, output = start_legato(command, env={**os.environ, **(env or {})})
    return Served(url, process, log, output)


def stop_serve(served: Served) -> None:
    stop_legato(served.process, served.output)
