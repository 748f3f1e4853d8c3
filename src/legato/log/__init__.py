"""Log adapters, chosen by URL: ``memory://``, ``sqlite:///path.db``, ``postgresql://...``."""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import LogError
from .base import (
    UNCLAIMED_GRACE,
    Claimed,
    Log,
    LogSummary,
    NewTransaction,
    TxQuery,
    TxWrite,
    Unclaimed,
    unclaimed_since,
)

__all__ = [
    "DEFAULT_URL",
    "UNCLAIMED_GRACE",
    "Claimed",
    "Log",
    "LogSummary",
    "NewTransaction",
    "TxQuery",
    "TxWrite",
    "Unclaimed",
    "absolute_url",
    "default_url",
    "log_exists",
    "log_file",
    "open_log",
    "outlives_process",
    "unclaimed_since",
]

# the log of the ``legato`` commands (and the demo) when none is named: a file here
DEFAULT_URL = "sqlite:///legato.db"


def default_url() -> str:
    """The log the ``legato`` commands read when ``--log`` is not given: ``$LEGATO_LOG``,
    else ``DEFAULT_URL``."""
    return os.environ.get("LEGATO_LOG") or DEFAULT_URL


def open_log(url: str, *, auto_migrate: bool = True, serving: bool = False) -> Log:
    """The log adapter for ``url`` (not opened yet).

    ``serving``: the process's event loop also serves HTTP (``legato serve``, the
    dashboard), so no adapter may hold it up with an fsync: SQLite then commits on
    its writer thread instead of the loop's own (see ``SqliteLog``); the others
    never commit on the loop's thread anyway.
    """
    if url.startswith("memory:"):
        from .memory import MemoryLog

        return MemoryLog(url)
    if url.startswith("sqlite:"):
        from .sqlite import SqliteLog

        return SqliteLog(url, auto_migrate=auto_migrate, inline_commits=not serving)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresLog

        return PostgresLog(url, auto_migrate=auto_migrate)
    raise LogError(f"unknown log URL {url!r}: use memory://, sqlite:///path.db or postgresql://...")


def log_exists(url: str) -> bool:
    """Whether there is a log at ``url`` to read, where opening one would create it: a
    SQLite log's file. A server's database (PostgreSQL) is taken to be there (opening
    it says otherwise), and a memory log always is."""
    if url.startswith("sqlite:"):
        from .sqlite import path_from_url

        return os.path.exists(path_from_url(url))
    return True


def log_file(url: str) -> Path | None:
    """The file a log at ``url`` lives in (a SQLite log's), or None (a server's database,
    or memory)."""
    if url.startswith("sqlite:"):
        from .sqlite import path_from_url

        return Path(path_from_url(url))
    return None


def absolute_url(url: str) -> str:
    """``url`` with its log file's path made absolute (it may be read from elsewhere)."""
    path = log_file(url)
    return url if path is None else f"sqlite:///{path.resolve()}"


def outlives_process(url: str) -> bool:
    """Whether a log at ``url`` is still there once this process ends (not ``memory://``)."""
    return not url.startswith("memory:")
