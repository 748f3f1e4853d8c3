"""The service's front door: what a request must be before any handler sees it.

For every call that may change something (POST, PUT, PATCH, DELETE):

- its body is at most ``max_body_bytes`` (413 otherwise, read no further);
- on the JSON APIs (``/v1``, ``/api/dtmsvr``):
  - a browser page of another site may not make it: an ``Origin`` that is neither
    this server's nor one of ``allowed_origins`` (or ``Sec-Fetch-Site:
    cross-site`` with no ``Origin``) is refused with 403. A browser sends
    ``Origin`` on every cross-site POST, and a page's form or ``fetch`` can
    send ``text/plain`` without asking first, so this, not CORS, is the fence;
  - a body is ``application/json`` (415 otherwise: ``request.json()`` would read
    any content type, and a form posting text/plain would pass for JSON);
  - the body is JSON that every backend can hold: UTF-8, finite numbers (no
    ``NaN``, ``Infinity``, ``1e400``), no lone surrogates, nested at most
    ``max_json_depth`` deep (400 otherwise).

Refusals name what is wrong, in each API's own shape (``detail`` on the native
API, DTM's ``message`` on its own), and nothing is written for them. A JSON body
that passes is left parsed in the request's scope (``PARSED``), for the handler.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

DTM_PREFIX = "/api/dtmsvr"
API_PREFIXES = ("/v1/", "/v1?", DTM_PREFIX + "/")
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


PARSED = "legato.json"
"""Where a checked JSON body's value is left in the request's scope, parsed once."""


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def is_api(path: str) -> bool:
    return path == "/v1" or path.startswith(API_PREFIXES) or path == DTM_PREFIX


def _own_origin(scope: Scope) -> str:
    host = _header(scope, b"host") or ""
    return f"{scope.get('scheme', 'http')}://{host}".lower()


def check_origin(scope: Scope, allowed: tuple[str, ...]) -> None:
    """Refuse a call a browser makes for another site's page."""
    origin = _header(scope, b"origin")
    if origin is None:
        if (_header(scope, b"sec-fetch-site") or "").lower() == "cross-site":
            raise Refused(403, "a cross-site request is refused (Sec-Fetch-Site: cross-site)")
        return
    given = origin.strip().lower().rstrip("/")
    if given == _own_origin(scope) or given in {a.lower().rstrip("/") for a in allowed}:
        return
    raise Refused(
        403,
        f"a call from another site's page is refused (Origin: {origin[:100]}); "
        "name the site with --allowed-origin to let it call",
    )


def check_content_type(scope: Scope, has_body: bool) -> None:
    if not has_body:
        return
    kind = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return
    raise Refused(
        415, f"the body must be application/json, not {kind or 'a body with no Content-Type'}"
    )


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is too large for a number")
    return value


# made once: json.loads(text, parse_float=...) builds a decoder at every call
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


def check_json(body: bytes, max_depth: int) -> Any:
    """Refuse a body that is not JSON every log backend can store (see the module);
    return its value."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(400, f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise Refused(400, f"the body is nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, or our own two
        raise Refused(400, f"the body is not JSON: {exc}") from None
    # Walking every value costs as much as parsing; a scan of the bytes shows when it
    # cannot find anything: UTF-8 decoding refuses an encoded surrogate, so a lone one
    # can only come from a \u escape, and a body with at most max_depth brackets
    # cannot nest deeper than that.
    if b"\\u" in body or body.count(b"[") + body.count(b"{") > max_depth:
        _walk(value, max_depth)
    return value


def _walk(value: Any, max_depth: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            raise Refused(400, f"the body is nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, inner in item.items():
                _check_text(key)
                stack.append((inner, depth + 1))
        else:
            stack.extend((inner, depth + 1) for inner in item)


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(400, "the body holds a lone surrogate (\\ud800...): not text") from None


def refusal(path: str, status: int, message: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A refusal in the API's own shape: DTM's ``message`` or the native ``detail``."""
    key = "message" if path.startswith(DTM_PREFIX) else "detail"
    body = json.dumps({key: message}).encode()
    return body, [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]


class EdgeGuard:
    """The ASGI middleware that applies the checks above (``settings``: the limits)."""

    def __init__(self, app: App, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in UNSAFE:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        api = is_api(path)
        try:
            declared = _content_length(scope)
            if declared is not None and declared > self.settings.max_body_bytes:
                raise _too_large(self.settings.max_body_bytes, declared)
            if api:
                check_origin(scope, self.settings.allowed_origins)
                chunked = "chunked" in (_header(scope, b"transfer-encoding") or "").lower()
                check_content_type(scope, bool(declared) or chunked)
            body = await self._read(receive)
            if body is None:
                return  # the client went away
            if api and body:
                scope[PARSED] = check_json(body, self.settings.max_json_depth)
        except Refused as refused:
            payload, headers = refusal(path, refused.status, refused.message)
            await send(
                {"type": "http.response.start", "status": refused.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        limit = self.settings.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit, None)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise Refused(400, f"Content-Length is not a number: {raw[:40]!r}") from None


def _too_large(limit: int, declared: int | None) -> Refused:
    size = f" ({declared} bytes)" if declared is not None else ""
    return Refused(413, f"the body is larger than {limit} bytes{size} (--max-body-bytes)")


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, already read, handed to the app as one message; then the client's own."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again
