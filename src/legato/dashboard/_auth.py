"""Who may press the dashboard's buttons.

With an API token set (``LEGATO_API_TOKEN``), a request that changes something
must carry it, as ``Authorization: Bearer <token>`` (like the API) or as the
session cookie that ``/login`` sets after checking the token. The cookie holds
an HMAC of the token, not the token itself: it is HttpOnly and SameSite=Strict,
so another site's page can neither read it nor make the browser send it.
Without a token, the buttons work for anyone who reaches the page, as the API does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from .. import _throttle

COOKIE = "legato_dashboard"
SESSION_SECONDS = 12 * 3600


def token(request: Request) -> str | None:
    value: str | None = request.app.state.token
    return value or None


def session_value(api_token: str) -> str:
    return hmac.new(api_token.encode(), b"legato dashboard session", hashlib.sha256).hexdigest()


def authorized(request: Request) -> bool:
    """Whether ``request`` may change something."""
    api_token = token(request)
    if api_token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secrets.compare_digest(given.strip(), api_token):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return secrets.compare_digest(cookie, session_value(api_token))


def refused_for(request: Request) -> float:
    """Seconds this request's address must wait after too many wrong tokens (0: none,
    and always with no token set); see ``legato._throttle``."""
    return 0.0 if token(request) is None else _throttle.refused_for(request)


def gave_bearer(request: Request) -> bool:
    return bool(request.headers.get("authorization"))


def check(request: Request, given: str) -> bool:
    api_token = token(request)
    return api_token is None or secrets.compare_digest(given, api_token)


def log_in(response: Response, request: Request) -> None:
    api_token = token(request)
    if api_token is None:
        return
    response.set_cookie(
        COOKIE,
        session_value(api_token),
        max_age=SESSION_SECONDS,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def log_out(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE, path=request.scope.get("root_path") or "/", httponly=True, samesite="strict"
    )


def same_origin(request: Request) -> bool:
    """A form posted from another site's page is refused, token or not: browsers
    name the page's origin in ``Origin`` on every POST."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's form (curl, httpx): the token is what guards it
    host = request.headers.get("x-forwarded-host") or request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def local_path(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target
