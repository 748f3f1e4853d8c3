"""MkDocs hook: the pages made from the code when the site is built.

``reference/cli.md`` from ``legato.cli``'s argparse parser, ``reference/http.md``
from the OpenAPI document of ``legato serve``'s app, and the bench scripts as files
of the site (``bench/*.py``), so that the benchmarks page links to what it measures
with. None of them is in the repository as a page: they cannot go stale.
(``reference/api.md`` is written by mkdocstrings from the docstrings.)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

# mkdocs puts this folder on sys.path only while it loads the hook
sys.path.insert(0, str(Path(__file__).parent))

import cli_page
import http_page

ROOT = Path(__file__).resolve().parents[2]


def pages() -> dict[str, str]:
    """Each generated page's path in the site, and its Markdown."""
    from legato.cli import build_parser

    # the parser's defaults read the environment ($LEGATO_LOG...): the page shows the
    # defaults a user gets, not those of the machine that builds the site
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("LEGATO_")}
    try:
        return {
            "reference/cli.md": cli_page.page(build_parser()),
            "reference/http.md": http_page.page(http_page.openapi_document()),
        }
    finally:
        os.environ.update(saved)


def on_files(files: Files, config: Any) -> Files:
    for uri, markdown in pages().items():
        files.append(File.generated(config, uri, content=markdown))
    for script in sorted((ROOT / "bench").glob("*.py")):
        files.append(File.generated(config, f"bench/{script.name}", abs_src_path=str(script)))
    return files
