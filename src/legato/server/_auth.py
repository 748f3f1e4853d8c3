"""The API token: when set, every call that changes something must carry it."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request

from .. import _throttle


async def require_token(request: Request) -> None:
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
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip(), token):
        if given:
            _throttle.count_wrong(request)
        raise HTTPException(
            status_code=401,
            detail="this call needs the API token: 'Authorization: Bearer <LEGATO_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
