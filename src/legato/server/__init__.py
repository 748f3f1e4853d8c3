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
from ..observe import tracing
from ..observe.alerts import Webhook
from ..observe.logs import TxLogging
from ..observe.metrics import Metrics
from . import api, dtm, telemetry

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
    metrics = observed(c)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await c.start()
        try:
            yield
        finally:
            await c.stop()
            metrics.process_ended()
            tracing.flush()  # spans still buffered go out before the process ends

    from .. import __version__

    app = FastAPI(
        title="Legato coordinator",
        version=__version__,
        description="Distributed transactions over HTTP: sagas, TCC, and DTM's wire API.",
        lifespan=lifespan,
    )
    app.state.coordinator = c
    app.state.metrics = metrics
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
    from ..dashboard import mount as mount_dashboard  # pages at /, over this coordinator

    mount_dashboard(app, c)
    app.include_router(telemetry.router)
    if tracing.active():
        # each request a server span, current while it is handled: a transaction begun
        # by a traced initiator joins the initiator's trace
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["send", "receive"])
    return app


def observed(c: Coordinator) -> Metrics:
    """Give ``c`` the hooks the service needs: metrics (for ``/metrics``), log lines, and
    the alert webhook named by ``LEGATO_ALERT_WEBHOOK``; returns its ``Metrics``."""
    for hook in c.hooks.hooks:
        if isinstance(hook, Metrics):
            return hook
    metrics = Metrics()
    c.hooks.add(metrics)
    if not any(isinstance(h, TxLogging) for h in c.hooks.hooks):
        c.hooks.add(TxLogging())
    webhook = os.environ.get("LEGATO_ALERT_WEBHOOK")
    if webhook and not any(isinstance(h, Webhook) for h in c.hooks.hooks):
        c.hooks.add(Webhook(webhook))
    return metrics


def app_from_env() -> FastAPI:
    """The app ``legato serve`` runs, configured by ``LEGATO_LOG``, ``LEGATO_OWNER``,
    ``LEGATO_REQUEST_TIMEOUT``, ``LEGATO_LEASE``, ``LEGATO_BROKERS`` (JSON: name -> URL),
    ``LEGATO_RETENTION`` (seconds an ended transaction is kept), ``LEGATO_API_TOKEN``,
    ``LEGATO_ALERT_WEBHOOK``, ``LEGATO_LOG_FORMAT`` (json or text) and OpenTelemetry's
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_SERVICE_NAME``."""
    from ..observe import logs

    logs.configure(level=os.environ.get("LEGATO_LOG_LEVEL", "INFO"))
    tracing.configure("legato")
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
        retention=float(os.environ["LEGATO_RETENTION"])
        if "LEGATO_RETENTION" in os.environ
        else None,
    )
    return create_app(c)


__all__ = ["app_from_env", "create_app"]
