"""``legato serve``: the coordinator as an HTTP service.

>>> app = create_app("postgresql://legato@db/legato")  # doctest: +SKIP
>>> uvicorn.run(app, port=36789)                          # doctest: +SKIP

The app answers the native API under ``/v1`` (OpenAPI at ``/openapi.json``),
DTM's API under ``/api/dtmsvr`` and ``/health``. It owns one ``Coordinator``,
started and stopped with the app; any number of such processes may share one
PostgreSQL log.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .._errors import (
    DefinitionError,
    GidConflict,
    IllegalStateChange,
    LegatoError,
    LogError,
    PayloadError,
    TransactionNotFound,
)
from ..coordinator import Coordinator
from ..log import Log
from ..log.sqlite import SqliteLog
from . import api, dtm

_STATUS: list[tuple[type[LegatoError], int]] = [
    (DefinitionError, 422),
    (PayloadError, 422),
    (GidConflict, 409),
    (IllegalStateChange, 409),
    (TransactionNotFound, 404),
    (LogError, 503),
]


def create_app(
    coordinator: Coordinator | str = "sqlite:///legato.db",
    *,
    token: str | None = None,
) -> FastAPI:
    """An ASGI app driving ``coordinator`` (or a new one on that log URL).

    ``token`` (default: ``$LEGATO_API_TOKEN``) guards every call that changes
    something: it must come as ``Authorization: Bearer <token>``.
    """
    c = Coordinator(coordinator) if isinstance(coordinator, str) else coordinator

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await c.start()
        try:
            yield
        finally:
            await c.stop()

    from .. import __version__

    app = FastAPI(
        title="Legato coordinator",
        version=__version__,
        description="Distributed transactions over HTTP: sagas, TCC, and DTM's wire API.",
        lifespan=lifespan,
    )
    app.state.coordinator = c
    app.state.token = token if token is not None else os.environ.get("LEGATO_API_TOKEN") or None

    async def legato_error(request: Request, exc: Exception) -> JSONResponse:
        if request.url.path.startswith(dtm.PREFIX):
            return dtm.error_response(exc)
        status = next((code for t, code in _STATUS if isinstance(exc, t)), 500)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    app.add_exception_handler(LegatoError, legato_error)
    app.include_router(api.router)
    app.include_router(api.tcc)
    app.include_router(api.xa)
    app.include_router(api.health)
    app.include_router(dtm.router)
    app.include_router(dtm.misc)
    return app


def app_from_env() -> FastAPI:
    """The app ``legato serve`` runs, configured by ``LEGATO_LOG``, ``LEGATO_OWNER``,
    ``LEGATO_REQUEST_TIMEOUT``, ``LEGATO_LEASE``, ``LEGATO_BROKERS`` (JSON: name -> URL)
    and ``LEGATO_API_TOKEN``."""
    url = os.environ.get("LEGATO_LOG", "sqlite:///legato.db")
    log: Log | str = url
    if url.startswith("sqlite:"):
        # the loop serves HTTP too: an fsync on it would hold every request up
        log = SqliteLog(url, inline_commits=False)
    c = Coordinator(
        log,
        owner=os.environ.get("LEGATO_OWNER") or None,
        request_timeout=float(os.environ.get("LEGATO_REQUEST_TIMEOUT", "10")),
        lease=float(os.environ.get("LEGATO_LEASE", "15")),
        brokers=json.loads(os.environ.get("LEGATO_BROKERS") or "{}"),
    )
    return create_app(c)


__all__ = ["app_from_env", "create_app"]
