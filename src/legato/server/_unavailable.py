"""The headers of an answer while the log's database is away, or this coordinator is
stopping: come back in a moment (to another coordinator, behind a load balancer)."""

from __future__ import annotations

from .._errors import LogUnavailable, Stopping

RETRY_AFTER = 2
"""Seconds, about what a PostgreSQL restart or fail-over takes."""


def unavailable_headers(exc: Exception) -> dict[str, str]:
    """``Retry-After`` for an answer to ``exc`` when the same call is expected to
    succeed soon: the log's database cannot be reached (restarting, failing over).
    Repeating a submit is safe: its gid makes it idempotent. A stopping coordinator's
    answer: at once, to another one."""
    if isinstance(exc, Stopping):
        return {"Retry-After": "0"}
    return {"Retry-After": str(RETRY_AFTER)} if isinstance(exc, LogUnavailable) else {}
