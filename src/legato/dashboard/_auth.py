"""Who may see the dashboard's pages and press its buttons.

With an API token set (``LEGATO_API_TOKEN``), the pages (they show payloads,
outputs and errors) and every request that changes something need it, as
``Authorization: Bearer <token>`` (like the API) or as the session that
``/login`` starts after checking the token; with ``--open-reads`` the pages are
open and only the buttons need it. A session is a random id, kept by the browser
in an HttpOnly, SameSite=Strict cookie (another site's page can neither read it
nor make the browser send it) and by the log as a SHA-256 with its expiry, where
every process serving that log sees it: it ends after ``SESSION_SECONDS`` or at
``/logout``, whichever comes first, and a cookie replayed afterwards is refused.
Without a token, the pages and buttons work for anyone who reaches them, as the
API does.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from .. import _throttle
from .._secrets import bearer, same_token
from ..log import Log
from ..settings import Settings

COOKIE = "legato_dashboard"
SESSION_SECONDS = 12 * 3600
_MAX_COOKIE = 128  # a session id is 43 characters; anything far longer is not one


def token(request: Request) -> str | None:
    value: str | None = request.app.state.token
    return value or None


def _log(request: Request) -> Log:
    log: Log = request.app.state.dashboard.log
    return log


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


async def authorized(request: Request) -> bool:
    """Whether ``request`` may change something (and see everything)."""
    api_token = token(request)
    if api_token is None:
        return True
    given = bearer(request.headers)
    if given is not None and same_token(given, api_token):
        return True
    session = request.cookies.get(COOKIE, "")
    if not session or len(session) > _MAX_COOKIE:
        return False
    return await _log(request).session_valid(_digest(session), time.time())


async def may_read(request: Request) -> bool:
    """Whether ``request`` may see payloads, outputs and errors."""
    settings: Settings | None = getattr(request.app.state, "settings", None)
    if settings is not None and settings.open_reads:
        return True
    return await authorized(request)


def refused_for(request: Request) -> float:
    """Seconds this request's address must wait after too many wrong tokens (0: none,
    and always with no token set); see ``legato._throttle``."""
    return 0.0 if token(request) is None else _throttle.refused_for(request)


def gave_bearer(request: Request) -> bool:
    return bool(request.headers.get("authorization"))


def check(request: Request, given: str) -> bool:
    api_token = token(request)
    return api_token is None or same_token(given, api_token)


async def log_in(response: Response, request: Request) -> None:
    """Start a session (with a token set) and give the browser its id."""
    if token(request) is None:
        return
    session = secrets.token_urlsafe(32)
    now = time.time()
    await _log(request).session_start(_digest(session), now + SESSION_SECONDS, now)
    response.set_cookie(
        COOKIE,
        session,
        max_age=SESSION_SECONDS,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


async def log_out(response: Response, request: Request) -> None:
    """End this browser's session, in the log too: its cookie is worth nothing after."""
    session = request.cookies.get(COOKIE, "")
    if session and len(session) <= _MAX_COOKIE:
        await _log(request).session_end(_digest(session))
    response.delete_cookie(
        COOKIE, path=request.scope.get("root_path") or "/", httponly=True, samesite="strict"
    )


def same_origin(request: Request) -> bool:
    """A form posted from another site's page is refused, token or not: browsers
    name the page's origin in ``Origin`` on every POST. This site is the ``Host`` the
    browser asked for (never ``X-Forwarded-Host``, which any client can send), or one
    of the settings' ``allowed_origins``."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's form (curl, httpx): the token is what guards it
    if urlsplit(origin).netloc == request.headers.get("host", ""):
        return True
    settings: Settings | None = getattr(request.app.state, "settings", None)
    allowed = settings.allowed_origins if settings is not None else ()
    return origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed}


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
