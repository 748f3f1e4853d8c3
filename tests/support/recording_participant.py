"""An HTTP participant that records every call it gets: when it began, when it ended
(answered, or the caller hung up), and which process made it. A real aiohttp server,
run as its own process:

    with recording_participant.running(tmp_path, hold=4.0) as participant:
        participant.url                    # http://127.0.0.1:PORT
        participant.calls()                # every call so far, ended or not

or by hand, from the repository: ``python -m tests.support.recording_participant --port
8123 --hold 4``.

Every path answers any POST with ``{"dtm_result": "SUCCESS"}`` after ``--hold``
seconds; ``GET /calls`` lists the calls (JSON), ``GET /health`` answers 200. A caller
that hangs up ends its call at once (the handler is cancelled, as a participant that
stops work nobody waits for would). The caller is told apart by its process id, found
from its end of the TCP connection in ``/proc`` (Linux): the coordinators' requests
carry nothing that says which of them sent it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from aiohttp import web

from tests.support.processes import REPOSITORY, answers
from tests.support.servers import free_port

_MODULE = (sys.executable, "-m", "tests.support.recording_participant")


@dataclass
class Call:
    gid: str
    branch: str
    op: str
    attempt: int
    pid: int | None  # the caller's process, if found
    began: float  # time.time()
    ended: float | None = None
    how: str = ""  # "answered", or "caller hung up"


def _inode(client_port: int, server_port: int) -> str | None:
    """The inode of the caller's socket: its local port is ``client_port``, its remote
    one ``server_port`` (``/proc/net/tcp``: hex ports, the inode in column 10)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                local, remote = cols[1], cols[2]
                if (
                    int(local.rsplit(":", 1)[1], 16) == client_port
                    and int(remote.rsplit(":", 1)[1], 16) == server_port
                ):
                    return cols[9]
    return None


def caller_pid(client_port: int, server_port: int) -> int | None:
    """The process holding the client end of a connection to this server, if found."""
    inode = _inode(client_port, server_port)
    if inode is None:
        return None
    link = f"socket:[{inode}]"
    me = os.getpid()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path) == link:
                        return int(entry.name)
    return None


def app(port: int, hold: float) -> web.Application:
    calls: list[Call] = []
    pids: dict[tuple[int, str], int | None] = {}  # (client port, inode) -> pid

    async def whose(request: web.Request) -> int | None:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if not peer:
            return None
        client_port = int(peer[1])
        inode = await asyncio.to_thread(_inode, client_port, port)
        key = (client_port, inode or "")
        if key not in pids:
            pids[key] = await asyncio.to_thread(caller_pid, client_port, port)
        return pids[key]

    async def record(request: web.Request) -> web.Response:
        q = request.query
        call = Call(
            gid=q.get("gid", ""),
            branch=q.get("branch_id", ""),
            op=q.get("op", ""),
            attempt=int(request.headers.get("Legato-Attempt", "0")),
            pid=None,
            began=time.time(),
        )
        calls.append(call)
        try:
            call.pid = await whose(request)
            await asyncio.sleep(max(0.0, call.began + hold - time.time()))
        except asyncio.CancelledError:  # the caller hung up
            call.ended, call.how = time.time(), "caller hung up"
            raise
        call.ended, call.how = time.time(), "answered"
        return web.json_response({"dtm_result": "SUCCESS"})

    async def listed(request: web.Request) -> web.Response:
        return web.json_response([asdict(c) for c in calls])

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    application = web.Application()
    application.router.add_get("/health", health)
    application.router.add_get("/calls", listed)
    application.router.add_post("/{path:.*}", record)
    return application


@dataclass
class Running:
    url: str

    def calls(self) -> list[Call]:
        return [Call(**c) for c in httpx.get(self.url + "/calls", timeout=10).json()]


@contextlib.contextmanager
def running(directory: Path, *, hold: float) -> Iterator[Running]:
    """Run it as a process on a free port until the block ends."""
    port = free_port()
    out = (directory / "recording-participant.log").open("wb")
    process = subprocess.Popen(
        [*_MODULE, "--port", str(port), "--hold", str(hold)],
        cwd=REPOSITORY,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers(url + "/health", process):
            raise RuntimeError("the recording participant did not start")
        yield Running(url)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        out.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hold", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)

    async def serve() -> None:
        # handler_cancellation: a caller that hangs up ends its call's handler at once
        runner = web.AppRunner(app(args.port, args.hold), handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
