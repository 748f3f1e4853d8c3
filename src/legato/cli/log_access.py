"""The ``--log`` flag every command that reads the log takes, and running a command's
body on the log it names."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._errors import LogError
from ..log import Log, log_exists, open_log

T = TypeVar("T")
DEFAULT_LOG = "sqlite:///legato.db"


def add_log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log",
        default=os.environ.get("LEGATO_LOG", DEFAULT_LOG),
        help="log URL (default: $LEGATO_LOG or %(default)s)",
    )


def check_log_exists(url: str) -> None:
    """Refuse a log that is not there, before opening it would create an empty one."""
    if not log_exists(url):
        raise LogError(f"there is no log at {url} (--log or $LEGATO_LOG names the log)")


def run_on_log(url: str, body: Callable[[Log], Awaitable[T]]) -> T:
    """``body`` on the log at ``url``, opened for it and closed after; refused when
    there is no log there (a command that reads the log never builds its schema:
    ``legato migrate`` does)."""
    check_log_exists(url)

    async def main() -> T:
        log = open_log(url, auto_migrate=False)
        await log.open()
        try:
            return await body(log)
        finally:
            await log.close()

    return asyncio.run(main())
