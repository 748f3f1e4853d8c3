"""``legato serve``: the coordinator as an HTTP service.

>>> app = create_app("postgresql://legato@db/legato")  # doctest: +SKIP
>>> uvicorn.run(app, port=36789)                          # doctest: +SKIP

The app answers the native API under ``/v1`` (OpenAPI at ``/openapi.json``),
DTM's API under ``/api/dtmsvr``, ``/health`` and the probes ``/health/live`` and
``/health/ready``, and the API's pages ``/docs`` and ``/redoc`` (their scripts served
by the app itself, so they work offline). It owns one ``Coordinator``, started with
the app and closed with it (gracefully: ``settings.grace``); any number of such
processes may share one PostgreSQL log.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from .._edge import EdgeGuard
from .._errors import (
    DefinitionError,
    GidConflict,
    IllegalStateChange,
    LegatoError,
    LogError,
    PayloadError,
    Stopping,
    TransactionNotFound,
)
from ..coordinator import Coordinator
from ..log import open_log
from ..observe import tracing
from ..observe.alerts import Webhook
from ..observe.logs import TxLogging
from ..observe.metrics import Metrics
from ..settings import Settings, from_environment, process_settings
from . import api, dtm, probes, telemetry
from ._lean import lean_routes
from ._signals import stop_on_signals as stop_on
from ._unavailable import unavailable_headers

_STATUS: list[tuple[type[LegatoError], int]] = [
    (DefinitionError, 422),
    (PayloadError, 422),
    (GidConflict, 409),
    (IllegalStateChange, 409),
    (TransactionNotFound, 404),
    (LogError, 503),
    (Stopping, 503),
]


def create_app(
    coordinator: Coordinator | str = "sqlite:///legato.db",
    *,
    token: str | None = None,
    settings: Settings | None = None,
    stop_on_signals: bool = False,
) -> FastAPI:
    """An ASGI app driving ``coordinator`` (or a new one on that log URL).

    Its shutdown closes the coordinator within ``settings.grace`` seconds (the ops in
    flight finish, the leases are released). ``stop_on_signals`` (``legato serve``'s
    workers) begins that stop on SIGTERM or SIGINT before the HTTP server closes its
    listener (``server._signals``).

    ``token`` (default: ``settings.api_token``, read from ``$LEGATO_API_TOKEN``)
    guards every call that changes something, and every read of payloads, outputs
    and errors unless ``settings.open_reads``: it must come as ``Authorization:
    Bearer <token>``. ``settings`` (default: read from the environment) bounds
    what a request may hold (see ``server._edge``).
    """
    settings = settings or Settings.from_env()
    if token is not None:
        settings = settings.model_copy(update={"api_token": token or None})
    c = Coordinator(coordinator) if isinstance(coordinator, str) else coordinator
    metrics = observed(c, settings.alert_webhook)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await c.start()
        restore = stop_on(c, settings.grace) if stop_on_signals else None
        try:
            yield
        finally:
            await c.close(settings.grace)
            if restore is not None:
                restore()
            metrics.process_ended()
            tracing.flush()  # spans still buffered go out before the process ends

    from .._version import __version__

    # /docs and /redoc load Swagger UI and ReDoc from files this package's dependency
    # ships (served under /docs-assets), not from a CDN: they work offline
    app = FastAPIOffline(
        static_url="/docs-assets",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from elsewhere
        title="Legato coordinator",
        version=__version__,
        description="Distributed transactions over HTTP: sagas, TCC, and DTM's wire API.",
        lifespan=lifespan,
    )
    app.state.coordinator = c
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.token = settings.api_token

    async def legato_error(request: Request, exc: Exception) -> JSONResponse:
        if request.url.path.startswith(dtm.PREFIX):
            return dtm.error_response(exc)
        status = next((code for t, code in _STATUS if isinstance(exc, t)), 500)
        return JSONResponse(
            {"detail": str(exc)}, status_code=status, headers=unavailable_headers(exc)
        )

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": validation_detail(exc)}, status_code=422)

    app.add_exception_handler(LegatoError, legato_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.include_router(api.router)
    app.include_router(api.tcc)
    app.include_router(api.xa)
    app.include_router(api.health)
    app.include_router(probes.router)
    app.include_router(dtm.router)
    app.include_router(dtm.misc)
    # the endpoints every transaction comes through, first in line without FastAPI's
    # per-request machinery (its routes stay, for the OpenAPI document)
    app.router.routes[:0] = [
        *lean_routes(api.router, api.submit_saga),
        *lean_routes(dtm.router, dtm.prepare, dtm.submit, dtm.register_branch, dtm.abort),
    ]
    from ..dashboard import mount as mount_dashboard  # pages at /, over this coordinator

    mount_dashboard(app, c)
    app.include_router(telemetry.router)
    if tracing.active():
        # each request a server span, current while it is handled: a transaction begun
        # by a traced initiator joins the initiator's trace
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["send", "receive"])
    app.add_middleware(EdgeGuard, settings=settings)  # outermost: before anything reads
    return app


def validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    """pydantic's errors without the input they quote: a refused value is the caller's
    own, may be large, and may not even be JSON (a NaN in a query)."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]


def observed(c: Coordinator, webhook: str | None = None) -> Metrics:
    """Give ``c`` the hooks the service needs: metrics (for ``/metrics``), log lines, and
    the alert webhook (``webhook``); returns its ``Metrics``."""
    for hook in c.hooks.hooks:
        if isinstance(hook, Metrics):
            return hook
    metrics = Metrics()
    c.hooks.add(metrics)
    if not any(isinstance(h, TxLogging) for h in c.hooks.hooks):
        c.hooks.add(TxLogging())
    if webhook and not any(isinstance(h, Webhook) for h in c.hooks.hooks):
        c.hooks.add(Webhook(webhook))
    return metrics


def app_from_env() -> FastAPI:
    """The app ``legato serve`` runs in each worker, configured by the environment as
    ``legato.settings`` read it: ``LEGATO_LOG``, ``LEGATO_API_TOKEN``, the limits...,
    and OpenTelemetry's ``OTEL_EXPORTER_OTLP_ENDPOINT`` (its spans are the service
    ``legato``'s)."""
    from ..observe import logs

    settings = from_environment()
    logs.configure(
        log_format=settings.log_format,
        level=settings.log_level.upper(),
        loggers=logs.SERVER_LOGGERS,
    )
    tracing.configure("legato", endpoint=process_settings().traces_endpoint)
    c = Coordinator(
        open_log(settings.log, serving=True),
        owner=settings.owner,
        request_timeout=settings.request_timeout,
        lease=settings.lease,
        brokers=settings.brokers,
        retention=settings.retention,
        participants=settings.participants,
        xa_namespace=settings.xa_namespace,
        max_answer_bytes=settings.max_answer_bytes,
    )
    return create_app(c, settings=settings, stop_on_signals=True)


__all__ = ["app_from_env", "create_app"]
