"""The dashboard's routes: the list, a transaction's page, its buttons, the login."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from .. import _throttle
from .._bounds import check_gid
from .._errors import DefinitionError, IllegalStateChange, TransactionNotFound
from .._model import Mode, TxStatus
from .._redact import shown, shown_tx
from ..log import UNCLAIMED_GRACE, TxQuery
from ..observe import readable, unclaimed
from . import _auth, _format
from ._desk import ACTIONS, Desk
from ._filters import BadFilter, parse
from ._tx import HEADER, header, tx_page

HERE = Path(__file__).parent
STUCK_SHOWN = 50
MAX_FORM = 4096

# every page escapes what it shows; the policy is a second fence should one not
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters.update(
    when=_format.when,
    clock=_format.clock,
    duration=_format.duration,
    pretty=_format.pretty,
    tx_name=readable.title,
)

router = APIRouter(include_in_schema=False)


def _desk(request: Request) -> Desk:
    desk: Desk = request.app.state.dashboard
    return desk


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path") or ""
    return root.rstrip("/")


def tx_url(root: str, gid: str) -> str:
    return f"{root}/tx/{quote(gid, safe='')}"


async def _render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    now = time.time()
    root = _root(request)
    summary = await _desk(request).log.summary(now - 60, unclaimed_before=now - UNCLAIMED_GRACE)
    html = _templates.get_template(name).render(
        root=root,
        here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        tx_url=lambda gid: tx_url(root, gid),
        header_items=HEADER,
        header=header(summary, now),
        token_set=_auth.token(request) is not None,
        authorized=await _auth.authorized(request),
        now=now,
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


async def _problem(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return await _render(request, "problem.html", status, title=title, message=message)


@router.get("/")
async def transactions(request: Request) -> Response:
    try:
        filters = parse({k: request.query_params.getlist(k) for k in request.query_params})
    except BadFilter as exc:
        return await _problem(request, 400, "Bad filter", str(exc))
    if refused := await _must_read(request):
        return refused
    log = _desk(request).log
    now = time.time()
    rows = [shown_tx(t) for t in await log.list(filters.query(limit=filters.limit + 1))]
    more = len(rows) > filters.limit
    stuck = []
    if filters.offset == 0 and not filters.stuck:
        q: TxQuery = filters.query(limit=STUCK_SHOWN, offset=0)
        q.stuck = True
        stuck = [shown_tx(t) for t in await log.list(q) if not t.status.ended]
    return await _render(
        request,
        "list.html",
        filters=filters,
        rows=rows[: filters.limit],
        stuck=stuck,
        stuck_shown=STUCK_SHOWN,
        next_link=filters.link(filters.offset + filters.limit) if more else None,
        prev_link=(
            filters.link(max(0, filters.offset - filters.limit)) if filters.offset > 0 else None
        ),
        statuses=[str(s) for s in TxStatus],
        modes=[str(m) for m in Mode],
        waiting=lambda t: unclaimed.note(t, now),
    )


_STATIC = {
    name: (media, (HERE / "static" / name).read_bytes())
    for name, media in (
        ("dashboard.css", "text/css; charset=utf-8"),
        ("dashboard.js", "text/javascript; charset=utf-8"),
    )
}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    found = _STATIC.get(name)
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    media, body = found
    return Response(body, media_type=media, headers={"Cache-Control": "max-age=300"})


@router.get("/summary.json")
async def summary(request: Request) -> Response:
    if not await _auth.may_read(request):
        return JSONResponse({"detail": "log in first"}, status_code=401)
    now = time.time()
    s = await _desk(request).log.summary(now - 60, unclaimed_before=now - UNCLAIMED_GRACE)
    return JSONResponse(
        {
            "at": now,
            "text": header(s, now),
            "counts": s.counts,
            "stuck": s.stuck,
            "unclaimed": [dataclasses.asdict(u) for u in s.unclaimed],
            "oldest_unfinished_at": s.oldest_unfinished_at,
            "started": s.started,
            "ended": s.ended,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/tx/{gid:path}")
async def transaction(request: Request, gid: str) -> Response:
    if refused := await _must_read(request):
        return refused
    log = _desk(request).log
    loaded = await log.load(gid) if _valid_gid(gid) else None
    if loaded is None:
        return await _problem(request, 404, "Not found", f"No transaction has gid {gid!r}.")
    tx, ops, events = shown(*loaded, await log.events(gid))
    page = tx_page(tx, ops, events, time.time())
    done = request.query_params.get("done")
    return await _render(
        request, "tx.html", page=page, done=done if done in _DONE else None, done_text=_DONE
    )


def _valid_gid(gid: str) -> bool:
    try:
        check_gid(gid)
    except DefinitionError:
        return False  # no transaction can have it: not asked of the log
    return True


async def _must_read(request: Request) -> Response | None:
    """None when this request may see payloads and errors; else where to log in."""
    if await _auth.may_read(request):
        return None
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    login = f"{_root(request)}/login?next={quote(here, safe='')}"
    return RedirectResponse(login, status_code=303, headers={"Cache-Control": "no-store"})


_DONE = {
    "retry": "Retry requested.",
    "abort": "Cancel (abort) requested.",
    "succeeded": "Forced end (succeeded) requested.",
    "failed": "Forced end (failed) requested.",
}


async def _form(request: Request) -> dict[str, str] | None:
    body = await request.body()
    if len(body) > MAX_FORM:
        return None
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


async def _too_many(request: Request, wait: float) -> Response:
    response = await _problem(
        request,
        429,
        "Too many wrong tokens",
        f"Too many wrong tokens came from this address: try again in "
        f"{_throttle.retry_after(wait)} s.",
    )
    response.headers["Retry-After"] = _throttle.retry_after(wait)
    return response


async def _act(request: Request, gid: str, what: str) -> Response:
    if not _auth.same_origin(request):
        return await _problem(request, 403, "Refused", "This form was posted from another site.")
    if wait := _auth.refused_for(request):
        return await _too_many(request, wait)
    if not await _auth.authorized(request):
        if _auth.gave_bearer(request):
            _throttle.count_wrong(request)
        login = f"{_root(request)}/login?next={quote(tx_url(_root(request), gid), safe='')}"
        response = await _render(
            request,
            "problem.html",
            401,
            title="Log in first",
            message="This action needs the API token (LEGATO_API_TOKEN).",
            login=login,
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if what == "force-end":
        form = await _form(request)
        what = (form or {}).get("status", "")
        if what not in ("succeeded", "failed"):
            return await _problem(
                request, 400, "Bad request", "force-end needs status=succeeded or status=failed."
            )
    assert what in ACTIONS
    try:
        if not _valid_gid(gid):
            raise TransactionNotFound
        await _desk(request).request(gid, what)
    except TransactionNotFound:
        return await _problem(request, 404, "Not found", f"No transaction has gid {gid!r}.")
    except IllegalStateChange as exc:
        return await _problem(request, 409, "Refused", str(exc))
    return RedirectResponse(f"{tx_url(_root(request), gid)}?done={what}", status_code=303)


@router.post("/tx/{gid:path}/retry")
async def retry(request: Request, gid: str) -> Response:
    return await _act(request, gid, "retry")


@router.post("/tx/{gid:path}/abort")
async def abort(request: Request, gid: str) -> Response:
    return await _act(request, gid, "abort")


@router.post("/tx/{gid:path}/force-end")
async def force_end(request: Request, gid: str) -> Response:
    return await _act(request, gid, "force-end")


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    target = _auth.local_path(request.query_params.get("next"), f"{_root(request)}/")
    return await _render(request, "login.html", target=target, wrong=False)


@router.post("/login")
async def login(request: Request) -> Response:
    if not _auth.same_origin(request):
        return await _problem(request, 403, "Refused", "This form was posted from another site.")
    if wait := _auth.refused_for(request):
        return await _too_many(request, wait)
    form = await _form(request) or {}
    target = _auth.local_path(form.get("next"), f"{_root(request)}/")
    if not _auth.check(request, form.get("token", "")):
        _throttle.count_wrong(request)
        return await _render(request, "login.html", 401, target=target, wrong=True)
    response = RedirectResponse(target, status_code=303)
    await _auth.log_in(response, request)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse(f"{_root(request)}/", status_code=303)
    await _auth.log_out(response, request)
    return response
