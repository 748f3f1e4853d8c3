"""The headers of an answer while the log's database is away: come back in a moment."""

from __future__ import annotations

from .._errors import LogUnavailable

RETRY_AFTER = 2
"""Seconds, about what a PostgreSQL restart or fail-over takes."""


def unavailable_headers(exc: Exception) -> dict[str, str]:
    """``Retry-After`` for an answer to ``exc`` when the same call is expected to
    succeed soon: the log's database cannot be reached (restarting, failing over).
    Repeating a submit is safe: its gid makes it idempotent."""
    return {"Retry-After": str(RETRY_AFTER)} if isinstance(exc, LogUnavailable) else {}
