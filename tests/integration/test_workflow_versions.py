"""A workflow started on v1 whose coordinator is killed (kill -9), finished on v2's
code both ways: v2 a new version registered beside v1 (the v1 run finishes on v1's
code), or v2 the same version with the change behind ``wf.patched`` (the v1 run replays
the old path). The log is the one LEGATO_TEST_LOG picks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from legato import Coordinator

V1 = """
import legato

def book(what):
    return what

@legato.workflow("trip", version="1")
async def trip(wf, tag):
    a = await wf.step(book, "a")
    await wf.sleep(1.0)
    return [a, await wf.step(book, "b")]
"""

# v2 as a new version: another step where the journal has a sleep
NEW_VERSION = V1.replace('version="1"', 'version="2"').replace(
    "    await wf.sleep(1.0)\n", '    await wf.step(book, "audit")\n    await wf.sleep(1.0)\n'
)
# v2 as a patch of version 1: the same change, behind wf.patched
PATCHED = V1.replace(
    "    await wf.sleep(1.0)\n",
    '    if wf.patched("audit"):\n        await wf.step(book, "audit")\n    await wf.sleep(1.0)\n',
)

STARTER = """
import asyncio, os, signal
import legato
from wf_v1 import trip

async def main():
    async with legato.Coordinator({log!r}, lease=1.0, poll_interval=0.1, owner="v1") as c:
        h = await c.start_workflow(trip, "x", gid={gid!r})
        while True:
            _, ops = await c.get(h.gid)
            if any(o.branch.endswith(".@sleep") for o in ops):
                os.kill(os.getpid(), signal.SIGKILL)   # crashed while asleep
            await asyncio.sleep(0.01)

asyncio.run(main())
"""


@pytest.fixture
def code(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "wf_v1.py").write_text(textwrap.dedent(V1))
    try:
        yield tmp_path
    finally:
        for name in [m for m in sys.modules if m.startswith("wf_")]:
            del sys.modules[name]


def load(folder: Path, name: str, source: str) -> ModuleType:
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def start_on_v1_and_kill(folder: Path, log_url: str, gid: str) -> None:
    script = STARTER.format(log=log_url, gid=gid)
    # run in the folder: `python -c` finds wf_v1 there
    done = subprocess.run(
        [sys.executable, "-c", script], timeout=60, capture_output=True, cwd=folder
    )
    assert done.returncode == -9, done.stderr.decode()[-2000:]


async def test_v1_killed_finishes_on_v1_code_beside_a_new_version(log_url: str, code: Path) -> None:
    start_on_v1_and_kill(code, log_url, "ver-1")
    v1 = load(code, "wf_v1", V1).trip
    v2 = load(code, "wf_v2", NEW_VERSION).trip
    async with Coordinator(log_url, lease=1.0, poll_interval=0.1, owner="v2") as c:
        c.register(v1, v2)  # the deploy keeps v1 until its runs are done
        old = await c.handle("ver-1").result(timeout=30)
        new = await (await c.start_workflow(v2, "y", gid="ver-2")).result(timeout=30)
        _, new_ops = await c.get("ver-2")
    assert old.succeeded and old.result == ["a", "b"]
    assert new.succeeded and new.result == ["a", "b"]
    assert any(o.branch == "0002.book" for o in new_ops)  # v2's audit step, at 2


async def test_v1_killed_replays_the_old_path_of_a_patched_v1(log_url: str, code: Path) -> None:
    start_on_v1_and_kill(code, log_url, "patch-1")
    patched = load(code, "wf_patched", PATCHED).trip
    async with Coordinator(log_url, lease=1.0, poll_interval=0.1, owner="v1-patched") as c:
        c.register(patched)
        old = await c.handle("patch-1").result(timeout=30)
        _, old_ops = await c.get("patch-1")
        new = await (await c.start_workflow(patched, "y", gid="patch-2")).result(timeout=30)
        _, new_ops = await c.get("patch-2")
    assert old.succeeded and old.result == ["a", "b"]
    assert [o.branch for o in old_ops if o.op == "action"][:3] == [
        "0001.book", "0002.@sleep", "0003.book",
    ]  # fmt: skip
    assert new.succeeded
    assert [o.branch for o in new_ops if o.op == "action"][:4] == [
        "0001.book", "0002.@patch", "0003.book", "0004.@sleep",
    ]  # fmt: skip
