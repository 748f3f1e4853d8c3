"""The API token: when set, every call that changes something must carry it."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request


async def require_token(request: Request) -> None:
    token: str | None = request.app.state.token
    if not token:
        return
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(value.strip(), token):
        raise HTTPException(
            status_code=401,
            detail="this call needs the API token: 'Authorization: Bearer <LEGATO_API_TOKEN>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
