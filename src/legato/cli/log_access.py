"""The ``--log`` flag every command that reads the log takes, and running a command's
body on the log it names."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from .._errors import LogError
from ..log import DEFAULT_URL, Log, default_url, log_exists, open_log

T = TypeVar("T")


def add_log_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log",
        default=default_url(),
        help=f"log URL (default: $LEGATO_LOG or {DEFAULT_URL})",
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
