"""The API token: when set, every call that changes something must carry it, and so
must every read of payloads, outputs and errors unless reads are open
(``--open-reads``, for a trusted network). ``/health`` (and its probes ``/health/live``,
``/health/ready``) and ``/metrics`` stay open.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from .. import _throttle
from .._secrets import bearer, same_token
from ..settings import Settings


async def require_token(request: Request) -> None:
    """A dependency: this call needs the API token (when one is set)."""
    token: str | None = request.app.state.token
    if not token:
        return
    if wait := _throttle.refused_for(request):
        raise HTTPException(
            status_code=429,
            detail=f"too many wrong API tokens from {_throttle.client(request)}: try again in "
            f"{_throttle.retry_after(wait)} s",
            headers={"Retry-After": _throttle.retry_after(wait)},
        )
    given = bearer(request.headers)
    if given is None or not same_token(given, token):
        if request.headers.get("authorization"):
            _throttle.count_wrong(request)
        raise HTTPException(
            status_code=401,
            detail="this call needs the API token: 'Authorization: Bearer <LEGATO_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_reader(request: Request) -> None:
    """A dependency: this read shows payloads, outputs or errors, so it needs the token
    too, unless reads are open."""
    settings: Settings = request.app.state.settings
    if settings.open_reads:
        return
    await require_token(request)
