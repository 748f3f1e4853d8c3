"""``legato serve``'s output, as an operator's log shipper or terminal gets it: every line,
Legato's and uvicorn's (startup, a bad request, shutdown), is JSON off a terminal and
Legato's text on one."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import free_port


def _serve(log_url: str, port: int, workers: int, **streams: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEGATO_")}
    command = ["serve", "--log", log_url, "--port", str(port), "--workers", str(workers)]
    return subprocess.Popen([sys.executable, "-m", "legato.cli", *command], env=env, **streams)


def _exercise(port: int, process: subprocess.Popen[bytes]) -> None:
    """Wait for /health, send a request that is not HTTP (uvicorn logs it), then stop."""
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert process.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        s.recv(1024)
    process.terminate()


@pytest.mark.parametrize("workers", [1, 2])
def test_every_line_serve_writes_to_a_pipe_is_json(tmp_path: Path, workers: int) -> None:
    port = free_port()
    log_url = f"sqlite:///{tmp_path / 'legato.db'}"
    process = _serve(log_url, port, workers, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _exercise(port, process)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [line for line in (out + err).decode().splitlines() if line.strip()]
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a line that is not JSON: {line!r}\n(all of them: {lines})")
    messages = " | ".join(r["message"] for r in records)
    assert "Uvicorn running on" in messages
    assert "Invalid HTTP request received." in messages
    assert "Shutting down" in messages
    assert {r["logger"] for r in records} >= {"uvicorn.error"}
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert not any("color_message" in r for r in records)


def test_on_a_terminal_uvicorn_writes_in_legatos_text(tmp_path: Path) -> None:
    port = free_port()
    log_url = f"sqlite:///{tmp_path / 'legato.db'}"
    leader, follower = pty.openpty()
    process = _serve(log_url, port, 1, stdout=follower, stderr=follower)
    os.close(follower)
    try:
        _exercise(port, process)
        process.wait(timeout=30)
        text = b""
        while select.select([leader], [], [], 0.5)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            text += chunk
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
            process.wait()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text.decode(errors="replace"))
    lines = [line for line in plain.splitlines() if line.strip()]
    running = [line for line in lines if "Uvicorn running on" in line]
    assert running, lines
    # rich's layout: the level in its column, never uvicorn's own 'INFO:     ' prefix
    assert all(not line.lstrip().startswith("{") for line in lines)
    assert not any(line.startswith("INFO:") for line in lines), lines
    assert "INFO" in running[0]
