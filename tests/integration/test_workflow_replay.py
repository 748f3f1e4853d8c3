"""`legato replay`: a workflow's current code against the journals in a log (SQLite or
PostgreSQL, by LEGATO_TEST_LOG) or in an exported file, calling no step."""

from __future__ import annotations

import asyncio
import importlib
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

CALLS = []

def book(what):
    CALLS.append(what)
    return what

@legato.workflow("replayed")
async def flow(wf, n):
    a = await wf.step(book, "a")
    stamp = wf.now()
    if n > 1:
        await wf.step(book, "big")
    await wf.sleep(BEFORE_B)
    b = await wf.step(book, "b")
    return [a, b, n]
"""

# a change at a position the journals hold: another step where "big" was
CHANGED = V1.replace('await wf.step(book, "big")', 'await wf.step(book, "huge")')
# a change past every journal's end: fine
LATER = V1.replace("return [a, b, n]", 'return [a, b, n, await wf.step(book, "c")]')
# a patched change: old journals take the old path
PATCHED = V1.replace(
    '    b = await wf.step(book, "b")',
    '    if wf.patched("audit"):\n'
    '        await wf.step(book, "audit")\n'
    '    b = await wf.step(book, "b")',
)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "legato.cli", "replay", *args],
        capture_output=True, text=True, timeout=60, cwd=cwd,
    )  # fmt: skip


def write(folder: Path, name: str, source: str, before_b: float) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source).replace("BEFORE_B", str(before_b)))


@pytest.fixture
def code(tmp_path: Path) -> Iterator[Path]:
    try:
        yield tmp_path
    finally:
        for name in [m for m in sys.modules if m.startswith("wf_")]:
            del sys.modules[name]


def load(folder: Path, name: str) -> ModuleType:
    """The module ``name`` written in ``folder``, imported under that name."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


async def run_journals(log_url: str, folder: Path) -> list[str]:
    """Two finished runs and two asleep (one each way through the branch)."""
    write(folder, "wf_done", V1, 0.0)
    write(folder, "wf_asleep", V1.replace('"replayed"', '"replayed_asleep"'), 3600.0)
    done = load(folder, "wf_done").flow
    asleep = load(folder, "wf_asleep").flow
    gids = []
    async with Coordinator(log_url, lease=5.0, poll_interval=0.1) as c:
        for n in (1, 2):
            h = await c.start_workflow(done, n, gid=f"done-{n}")
            assert (await h.result(timeout=10)).succeeded
            h = await c.start_workflow(asleep, n, gid=f"asleep-{n}")
            gids.append(h.gid)
        for gid in gids:
            for _ in range(100):
                if (await c.get(gid))[0].lease_owner is None:
                    break
                await asyncio.sleep(0.05)
    return gids


async def test_replay_passes_the_same_code_and_a_later_change_and_fails_a_changed_position(
    log_url: str, code: Path
) -> None:
    await run_journals(log_url, code)
    for name, source in (("wf_same", V1), ("wf_later", LATER), ("wf_patched", PATCHED)):
        write(code, name, source, 0.0)
        out = cli(code, f"{name}:flow", "--log", log_url, "-v")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "2 journal(s) of replayed@1" in out.stdout and "2 match, 0 diverge" in out.stdout
    write(code, "wf_changed", CHANGED, 0.0)
    out = cli(code, "wf_changed:flow", "--log", log_url)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "DIVERGES done-2 at position 3" in out.stdout
    assert "'big'" not in out.stdout and "book" in out.stdout  # both records named by kind
    assert "1 match, 1 diverge" in out.stdout
    # the asleep ones, by their own name: the code of the other name matches them too
    write(code, "wf_asleep_changed", CHANGED.replace('"replayed"', '"replayed_asleep"'), 0.0)
    out = cli(code, "wf_asleep_changed:flow", "--log", log_url, "--gid", "asleep-2")
    assert out.returncode == 1 and "DIVERGES asleep-2 at position 3" in out.stdout
    # no step was called by any replay: nothing here ran in this process but the runs
    assert sys.modules["wf_done"].CALLS.count("a") == 2


async def test_replay_reads_an_exported_file_and_refuses_bad_input(
    log_url: str, code: Path
) -> None:
    await run_journals(log_url, code)
    write(code, "wf_same", V1, 0.0)
    exported = code / "journals.json"
    out = cli(code, "wf_same:flow", "--log", log_url, "--export", str(exported))
    assert out.returncode == 0 and exported.exists(), out.stdout + out.stderr
    write(code, "wf_changed", CHANGED, 0.0)
    out = cli(code, "wf_changed:flow", "--from", str(exported))
    assert out.returncode == 1 and "DIVERGES done-2" in out.stdout
    out = cli(code, "wf_same:flow", "--from", str(exported))
    assert out.returncode == 0 and "2 match" in out.stdout
    (code / "junk.json").write_text("{not json")
    out = cli(code, "wf_same:flow", "--from", str(code / "junk.json"))
    assert out.returncode == 2 and "is not a journal export" in out.stderr
    out = cli(code, "wf_same:nothing", "--from", str(exported))
    assert out.returncode == 2 and "cannot find the workflow" in out.stderr
    out = cli(code, "wf_same:CALLS", "--from", str(exported))
    assert out.returncode == 2 and "is not a @legato.workflow" in out.stderr
