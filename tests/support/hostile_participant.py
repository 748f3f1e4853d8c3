"""An HTTP participant that answers the way a broken or hostile one would: a real
aiohttp server, run as its own process (its memory and CPU are not the coordinator's).

    with hostile_participant.running(tmp_path) as url:   # http://127.0.0.1:PORT
        ...

or by hand, from the repository: ``python -m tests.support.hostile_participant --port 8123
[--bomb-mib 1024]``.

Each path is one kind of answer, to any method, whatever the query:

========================  ====================================================
``/health``               200, so that a starter knows it is up
``/bomb``                 200 JSON, gzip: ~1 MiB on the wire, ``--bomb-mib`` inflated
``/bomb/chunked``         the same without ``Content-Length``
``/huge``                 200 JSON, 1.5 GB of plain body, ``Content-Length`` given
``/huge/chunked``         the same without ``Content-Length``, until the caller leaves
``/drip``                 200 JSON, then one byte every 0.2 s for a minute
``/bad-gzip``             200 JSON, ``Content-Encoding: gzip`` over bytes that are not
``/cut``                  200 JSON, ``Content-Length: 100000``, 1000 bytes, then closed
``/nan``                  200 JSON that Python reads and the log refuses: ``{"seat": NaN}``
``/deep``                 200 JSON nested 100,000 deep (200 kB)
========================  ====================================================
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
from aiohttp import web

from tests.support.processes import REPOSITORY
from tests.support.servers import free_port

HUGE = 1_500_000_000
CHUNK = bytes(1 << 20)


def gzip_bomb(mib: int) -> bytes:
    """``mib`` MiB of zeros, gzipped (about a thousandth of that on the wire)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    return b"".join([*(z.compress(CHUNK) for _ in range(mib)), z.flush()])


async def _stream(
    request: web.Request, *, length: int | None, gzip: bool = False
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    if gzip:
        response.headers["Content-Encoding"] = "gzip"
    if length is None:
        response.enable_chunked_encoding()
    else:
        response.content_length = length
    await response.prepare(request)
    return response


def app(bomb: bytes) -> web.Application:
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def bombed(request: web.Request) -> web.StreamResponse:
        chunked = request.path.endswith("/chunked")
        response = await _stream(request, length=None if chunked else len(bomb), gzip=True)
        for i in range(0, len(bomb), 64 * 1024):
            await response.write(bomb[i : i + 64 * 1024])
        await response.write_eof()
        return response

    async def huge(request: web.Request) -> web.StreamResponse:
        chunked = request.path.endswith("/chunked")
        response = await _stream(request, length=None if chunked else HUGE)
        sent = 0
        while sent < HUGE:  # a caller that leaves ends this with a connection error
            await response.write(CHUNK)
            sent += len(CHUNK)
        await response.write_eof()
        return response

    async def drip(request: web.Request) -> web.StreamResponse:
        response = await _stream(request, length=None)
        for _ in range(300):
            await response.write(b" ")
            await asyncio.sleep(0.2)
        await response.write_eof()
        return response

    async def bad_gzip(request: web.Request) -> web.Response:
        return web.Response(
            body=b'{"dtm_result": "SUCCESS"} is not gzip',
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )

    async def cut(request: web.Request) -> web.StreamResponse:
        response = await _stream(request, length=100_000)
        await response.write(b" " * 1000)
        assert request.transport is not None
        request.transport.close()  # the rest never comes
        return response

    async def nan(request: web.Request) -> web.Response:
        return web.Response(body=b'{"seat": NaN}', content_type="application/json")

    async def deep(request: web.Request) -> web.Response:
        return web.Response(body=b"[" * 100_000 + b"]" * 100_000, content_type="application/json")

    application = web.Application()
    application.router.add_route("*", "/health", health)
    for path, handler in (
        ("/bomb", bombed),
        ("/bomb/chunked", bombed),
        ("/huge", huge),
        ("/huge/chunked", huge),
        ("/drip", drip),
        ("/bad-gzip", bad_gzip),
        ("/cut", cut),
        ("/nan", nan),
        ("/deep", deep),
    ):
        application.router.add_route("*", path, handler)
    return application


@contextlib.contextmanager
def running(directory: Path, *, bomb_mib: int = 1024) -> Iterator[str]:
    """This participant in its own process on a free port (its output in ``directory``);
    yields its base URL, and kills it after."""
    port = free_port()
    log = directory / "hostile-participant.log"
    with log.open("wb") as sink:
        args = [sys.executable, "-m", __name__, "--port", str(port), "--bomb-mib", str(bomb_mib)]
        process = subprocess.Popen(args, stdout=sink, stderr=subprocess.STDOUT, cwd=REPOSITORY)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # making the bomb takes seconds on a busy machine
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the hostile participant did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        process.kill()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bomb-mib", type=int, default=1024)
    args = parser.parse_args()
    web.run_app(app(gzip_bomb(args.bomb_mib)), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
