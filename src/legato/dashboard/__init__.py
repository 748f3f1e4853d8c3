"""The web dashboard: the transactions in a log, their timelines, and the operator's buttons.

Served by ``legato serve`` at ``/`` (through its coordinator) and by ``legato
dashboard --log URL`` on its own (over the log alone):

>>> app = create_app("postgresql://legato@db/legato")  # doctest: +SKIP
>>> uvicorn.run(app, port=36790)                          # doctest: +SKIP

Pages are rendered on the server (Jinja2, autoescaped); the only script is a
few lines that refresh the header's counts. Retry, cancel and force-end are POST
forms, guarded by the API token when one is set (see ``_auth``), and each is
recorded on the transaction as a ``requested`` event by ``dashboard``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from .._edge import EdgeGuard
from ..coordinator import Coordinator
from ..log import Log, open_log
from ..settings import Settings
from ._desk import CoordinatorDesk, Desk, LogDesk
from ._pages import router


def mount(app: FastAPI, coordinator: Coordinator) -> None:
    """Serve the dashboard from ``app`` (``legato serve``'s), over ``coordinator``;
    the buttons need ``app.state.token`` when it is set."""
    app.state.dashboard = CoordinatorDesk(coordinator)
    app.include_router(router)


def create_app(
    log: Log | str, *, token: str | None = None, settings: Settings | None = None
) -> FastAPI:
    """A dashboard alone over ``log`` (a URL or an unopened ``Log``), with no
    coordinator: its buttons record requests in the log, for whichever coordinator
    drives the transaction. ``token`` defaults to ``settings.api_token``
    (``$LEGATO_API_TOKEN``); ``settings`` to the environment's."""
    settings = settings or Settings.from_env()
    if token is not None:
        settings = settings.model_copy(update={"api_token": token or None})
    the_log = open_log(log) if isinstance(log, str) else log

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await the_log.open()
        try:
            yield
        finally:
            await the_log.close()

    app = FastAPI(
        title="Legato dashboard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    app.state.token = settings.api_token
    desk: Desk = LogDesk(the_log)
    app.state.dashboard = desk
    app.include_router(router)
    app.add_middleware(EdgeGuard, settings=settings)
    return app


__all__ = ["create_app", "mount"]
