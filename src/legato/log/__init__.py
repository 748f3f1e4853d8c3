"""Log adapters, chosen by URL: ``memory://``, ``sqlite:///path.db``, ``postgresql://...``."""

from __future__ import annotations

from .._errors import LogError
from .base import Claimed, Log, LogSummary, NewTransaction, TxQuery, TxWrite

__all__ = ["Claimed", "Log", "LogSummary", "NewTransaction", "TxQuery", "TxWrite", "open_log"]


def open_log(url: str, *, auto_migrate: bool = True) -> Log:
    """The log adapter for ``url`` (not opened yet)."""
    if url.startswith("memory:"):
        from .memory import MemoryLog

        return MemoryLog(url)
    if url.startswith("sqlite:"):
        from .sqlite import SqliteLog

        return SqliteLog(url, auto_migrate=auto_migrate)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresLog

        return PostgresLog(url, auto_migrate=auto_migrate)
    raise LogError(f"unknown log URL {url!r}: use memory://, sqlite:///path.db or postgresql://...")
