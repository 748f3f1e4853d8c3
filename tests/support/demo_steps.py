"""The commands a demo prints to run next (``next:``), read from its output and run as a
user would paste them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

# "next:     legato tx list" and the lines under it, up to their "# comment"
_LINE = re.compile(r"^(?:next:)?\s+(\S*legato (?:tx|serve)\b[^#]*?)\s*(?:#.*)?$")


def next_commands(output: str) -> list[list[str]]:
    """Each command after ``next:`` in ``output``, as its argv."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("next:"))
    commands = []
    for line in lines[start:]:
        found = _LINE.match(line)
        if found is None:
            break
        commands.append(shlex.split(found[1]))
    return commands


def run_next_commands(output: str, cwd: Path) -> list[str]:
    """Run the demo's ``tx`` commands in ``cwd`` (``serve`` would not return), each
    checked to exit 0 and, for ``tx show``, to show its gid; the gids shown."""
    env = {k: v for k, v in os.environ.items() if k != "LEGATO_LOG"}
    commands = next_commands(output)
    assert [c[1] for c in commands][:1] == ["tx"] and commands[-1][1] == "serve", commands
    shown = []
    for argv in commands[:-1]:
        done = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stdout}{done.stderr}"
        if argv[1:3] == ["tx", "show"]:
            assert argv[3] in done.stdout
            shown.append(argv[3])
    return shown
