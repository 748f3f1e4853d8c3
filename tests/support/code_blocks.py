"""The code blocks of README.md and docs/, found and run the way a reader would run them.

The convention (the docs' pages follow it; ``tests/docs/test_code_blocks.py`` holds
them to it): a fence whose info string is ``python`` is a complete program, run with
this interpreter in a directory of its own; a ``bash``, ``sh`` or ``console`` block is
run by ``bash -e`` there, with the venv's ``bin`` first on ``PATH`` (a ``console``
block that shows prompts runs its ``$ `` lines, the rest being their output); ``json``, ``toml``
and ``yaml`` blocks are parsed. A block preceded by the line ``<!-- fragment -->``
(blank lines allowed between) is a fragment: a python fragment is only compiled
(top-level ``await`` allowed), any other fragment is left alone. Other languages
(``text``, ``ini``...) are shown, never run.

A block that names a local service by its URL scheme (``postgresql://``,
``mysql://``, ``amqp://``, ``nats://``, ``redis://``, ``mqtt://``) needs that server:
the test skips without it, and fails under ``CI=true``.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FRAGMENT = "<!-- fragment -->"
# the pages written by docs/_hooks/ at build time are not on disk; reference/api.md
# holds mkdocstrings' directives only
SKIPPED_DIRS = ("docs/_hooks",)

PYTHON = ("python", "py", "python3")
SHELL = ("bash", "sh", "shell", "console")
PARSED = ("json", "toml", "yaml", "yml")

_OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")

# a URL scheme in a block, and the local port of the server it needs
SERVICES = {
    "PostgreSQL": (re.compile(r"\bpostgres(?:ql)?(?:\+\w+)?://"), 5432),
    "MariaDB": (re.compile(r"\b(?:mysql|mariadb)(?:\+\w+)?://"), 3306),
    "RabbitMQ": (re.compile(r"\bamqps?://"), 5672),
    "NATS": (re.compile(r"\bnats://"), 4222),
    "Redis": (re.compile(r"\brediss?://"), 6379),
    "Mosquitto": (re.compile(r"\bmqtts?://"), 1883),
}


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language, its text, and whether a fragment."""

    path: Path
    line: int
    language: str
    source: str
    fragment: bool

    @property
    def id(self) -> str:
        where = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{where}:{self.line}"

    @property
    def runs(self) -> bool:
        """Whether the test does anything with it (runs, compiles or parses it)."""
        if self.language in PYTHON:
            return True
        return not self.fragment and self.language in SHELL + PARSED

    def services(self) -> list[tuple[str, int]]:
        """The local servers this block names, by URL scheme."""
        return [
            (name, port) for name, (scheme, port) in SERVICES.items() if scheme.search(self.source)
        ]


def pages() -> list[Path]:
    """README.md and every page of docs/ that is written by hand."""
    found = [ROOT / "README.md"]
    for page in sorted((ROOT / "docs").rglob("*.md")):
        relative = page.relative_to(ROOT).as_posix()
        if not relative.startswith(SKIPPED_DIRS):
            found.append(page)
    return found


def blocks(path: Path) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _OPENING.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        info = opening["info"].strip()
        language = info.split()[0].lstrip(".{").rstrip("}").lower() if info else ""
        closing = re.compile(rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            text = lines[j]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            j += 1
        found.append(Block(path, i + 1, language, "\n".join(body) + "\n", _marked(lines, i)))
        i = j + 1
    return found


def _marked(lines: list[str], opening: int) -> bool:
    k = opening - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    return k >= 0 and lines[k].strip() == FRAGMENT


def every_block() -> list[Block]:
    """Every block the test does something with, in README.md and docs/."""
    return [block for page in pages() for block in blocks(page) if block.runs]


def shell_script(block: Block) -> str:
    """What ``bash -e`` runs for a shell block: a console block that shows prompts
    (``$ command``, then its output) runs its ``$`` lines only, any other block whole."""
    commands = [line[2:] for line in block.source.splitlines() if line.startswith("$ ")]
    if block.language != "console" or not commands:
        return block.source
    return "\n".join(commands) + "\n"


def compile_fragment(block: Block) -> None:
    """Compile a python fragment (a top-level ``await`` allowed): SyntaxError if wrong."""
    compile(block.source, block.id, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def parse(block: Block) -> None:
    """Parse a json, toml or yaml block: the parser's error if it is not valid."""
    if block.language == "json":
        json.loads(block.source)
    elif block.language == "toml":
        tomllib.loads(block.source)
    else:
        yaml.safe_load(block.source)


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str


def run(block: Block, workdir: Path, timeout: float) -> Run:
    """Run a python or shell block as a program in ``workdir``; its exit code and output.

    It runs in a process group of its own, killed whole afterwards: a server a shell
    block started in the background does not outlive it.
    """
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("LEGATO_LOG", None)  # a block names its log, or gets the default one in workdir
    if block.language in PYTHON:
        script = workdir / "docs_block.py"
        script.write_text(block.source, encoding="utf-8")
        command = [sys.executable, script.name]
    else:
        script = workdir / "docs_block.sh"
        script.write_text(shell_script(block), encoding="utf-8")
        command = ["bash", "-e", script.name]
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process.pid)
        output, _ = process.communicate()
        text = output.decode(errors="replace")
        return Run(-1, f"{text}\n(still running after {timeout} s: killed)")
    finally:
        _kill_group(process.pid)
    return Run(process.returncode, output.decode(errors="replace"))


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
