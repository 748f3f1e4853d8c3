"""Every code block of README.md and docs/ runs as written (``tests.support.code_blocks``
says how each language is run, and what a ``<!-- fragment -->`` is).

One test per block, named by its file and line (``docs/getting-started.md:42``), run in a
fresh directory of its own: a block that writes ``legato.db`` or prints writes there.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import code_blocks
from tests.support.services import need_service, port_problem

TIMEOUT = 60.0

BLOCKS = code_blocks.every_block()


@pytest.mark.parametrize("block", BLOCKS, ids=[block.id for block in BLOCKS])
def test_code_block_runs_as_written(block: code_blocks.Block, tmp_path: Path) -> None:
    if block.language in code_blocks.PARSED:
        code_blocks.parse(block)
        return
    if block.fragment:
        code_blocks.compile_fragment(block)
        return
    for name, port in block.services():
        need_service(name, port_problem(port))
    run = code_blocks.run(block, tmp_path, TIMEOUT)
    assert run.returncode == 0, (
        f"{block.id} ({block.language}) exited {run.returncode}:\n{run.output[-4000:]}"
    )


def test_the_readme_opens_with_the_two_commands() -> None:
    readme = code_blocks.blocks(code_blocks.ROOT / "README.md")
    first = readme[0]
    assert first.language == "bash"
    commands = [line.split("#")[0].strip() for line in first.source.splitlines()]
    assert commands == ["scripts/demo", "scripts/test"]
    before = (code_blocks.ROOT / "README.md").read_text().splitlines()[: first.line - 1]
    prose = [line for line in before if line.strip() and not line.startswith(("#", "<!--"))]
    assert prose == [], "the README opens with its title, then the two commands"


def test_the_readme_s_first_python_example_is_a_complete_program() -> None:
    first = next(
        b for b in code_blocks.blocks(code_blocks.ROOT / "README.md") if b.language == "python"
    )
    assert not first.fragment


def test_the_readme_s_links_reach_files_of_the_repository() -> None:
    readme = (code_blocks.ROOT / "README.md").read_text()
    targets = [t for t in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme) if "://" not in t]
    assert targets, "the README links into the docs"
    missing = [t for t in targets if not (code_blocks.ROOT / t).exists()]
    assert missing == []


def test_fragments_are_marked_and_found(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- fragment -->\n\n```python\nawait x\n```\n\n"
        '```console\n$ echo hi\nhi\n```\n\n!!! note\n    ```json\n    {"a": 1}\n    ```\n'
    )
    found = code_blocks.blocks(page)
    assert [(b.language, b.fragment, b.line) for b in found] == [
        ("python", True, 5),
        ("console", False, 9),
        ("json", False, 15),
    ]
    code_blocks.compile_fragment(found[0])
    assert code_blocks.shell_script(found[1]) == "echo hi\n"  # the prompt's line only
    plain = code_blocks.Block(page, 1, "console", "echo a\necho b\n", fragment=False)
    assert code_blocks.shell_script(plain) == "echo a\necho b\n"  # no prompt: all of it
    code_blocks.parse(found[2])
