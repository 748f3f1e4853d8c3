"""The native HTTP API of ``legato serve`` (JSON; OpenAPI at ``/openapi.json``)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from .._errors import IllegalStateChange, LogUnavailable
from .._model import DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATE_RETRY, Mode, RetryPolicy, TxStatus
from ..coordinator import WIRE_SAGA, Coordinator
from ..engine.handle import Handle
from ..log import TxQuery
from ..saga import Saga
from ..settings import Settings
from ..transports.http import HttpCall
from ._auth import require_reader, require_token
from ._fields import BranchId, Gid, check_no_token, check_payload
from ._paging import page
from ._schemas import (
    BranchIn,
    EndIn,
    ForceEndIn,
    RetryIn,
    SagaIn,
    SignalIn,
    TccIn,
    XaBranchIn,
    XaIn,
)
from ._views import event_view, op_view, outcome_view, tx_view
from ._waits import settled

router = APIRouter(prefix="/v1", tags=["transactions"])
guarded = [Depends(require_token)]
reader = [Depends(require_reader)]


async def coordinator(request: Request) -> Coordinator:
    c: Coordinator = request.app.state.coordinator
    return c


Coord = Annotated[Coordinator, Depends(coordinator)]


def _policy(r: RetryIn | None, default: RetryPolicy) -> RetryPolicy:
    return default if r is None else RetryPolicy(**r.model_dump())


def _checked_headers(request: Request, headers: dict[str, str], field: str) -> None:
    settings: Settings = request.app.state.settings
    check_no_token(headers, settings.api_token, field)


def _checked_payload(request: Request, payload: Any, field: str) -> None:
    settings: Settings = request.app.state.settings
    check_payload(payload, settings.max_payload_bytes, field)


def build_saga(body: SagaIn, request: Request) -> Saga:
    """A portable saga from the request (``DefinitionError`` names what is wrong)."""
    _checked_headers(request, body.headers, "headers")
    saga = Saga(WIRE_SAGA)
    for i, s in enumerate(body.steps):
        _checked_payload(request, s.payload, f"steps.{i}.payload")
        _checked_headers(request, s.headers, f"steps.{i}.headers")
        name = s.name or f"{i + 1:02d}"
        saga.step(
            name,
            action=HttpCall(s.action, s.payload, s.headers, s.timeout),
            compensate=HttpCall(s.compensate, s.payload, s.headers, s.timeout)
            if s.compensate
            else None,
            depends_on=s.depends_on,
            pivot=s.pivot,
            retry=_policy(s.retry, DEFAULT_ACTION_RETRY),
            compensate_retry=_policy(s.compensate_retry, DEFAULT_COMPENSATE_RETRY),
        )
    saga.plan()
    return saga


@router.post("/sagas", dependencies=guarded, summary="Submit a saga of HTTP steps")
async def submit_saga(body: SagaIn, c: Coord, request: Request) -> dict[str, Any]:
    saga = build_saga(body, request)
    handle = await c.submit(
        saga,
        None,
        gid=body.gid,
        timeout_to_fail=body.timeout_to_fail,
        headers=body.headers,
        title=body.name,
    )
    try:
        if body.wait and (outcome := await settled(c, handle, body.wait_timeout)) is not None:
            return outcome_view(outcome)
        # not settled (its time is up, or this coordinator is stopping): where it stands
        return outcome_view(await handle.status())
    except LogUnavailable as exc:  # it is written: the answer names it, for a repeat
        raise LogUnavailable(f"{exc}; {handle.gid!r} is submitted, its status unknown") from exc


PathGid = Annotated[Gid, Path(description="the transaction's gid")]
PathSignal = Annotated[BranchId, Path(description="the signal's name")]


@router.get(
    "/transactions/{gid}", dependencies=reader, summary="One transaction, its ops and its timeline"
)
async def get_transaction(gid: PathGid, c: Coord, events: bool = True) -> dict[str, Any]:
    tx, ops = await c.get(gid)
    out = tx_view(tx)
    out["ops"] = [op_view(o) for o in ops]
    if events:
        out["events"] = [event_view(e) for e in await c.events(gid)]
    return out


@router.get(
    "/transactions", dependencies=reader, summary="Transactions, newest first, with filters"
)
async def list_transactions(
    c: Coord,
    request: Request,
    status: Annotated[list[TxStatus] | None, Query()] = None,
    mode: Mode | None = None,
    stuck: bool | None = None,
    since: Annotated[
        float | None, Query(description="created at or after (unix s)", allow_inf_nan=False)
    ] = None,
    until: Annotated[
        float | None, Query(description="created before (unix s)", allow_inf_nan=False)
    ] = None,
    search: Annotated[
        str | None, Query(min_length=1, max_length=200, description="a part of the gid")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    query = TxQuery(
        status=tuple(status or ()),
        mode=str(mode) if mode else None,
        stuck=stuck,
        since=since,
        until=until,
        search=search,
        limit=limit,
        offset=offset,
    )
    found = await page(c, query, tx_view, settings.max_page_bytes)
    return {"transactions": found.rows, "next_offset": found.next_offset}


async def _known(c: Coordinator, gid: str) -> None:
    await c.get(gid)  # TransactionNotFound -> 404


@router.post("/transactions/{gid}/retry", dependencies=guarded, summary="Retry a stuck one")
async def retry(gid: PathGid, c: Coord) -> dict[str, Any]:
    await _known(c, gid)
    await c.retry(gid, by="api")
    return {"gid": gid, "requested": "retry"}


@router.post("/transactions/{gid}/abort", dependencies=guarded, summary="Roll one back")
@router.post("/transactions/{gid}/cancel", dependencies=guarded, summary="Roll one back")
async def abort(gid: PathGid, c: Coord) -> dict[str, Any]:
    await _known(c, gid)
    await c.abort(gid, by="api")
    return {"gid": gid, "requested": "abort"}


@router.post("/transactions/{gid}/force-end", dependencies=guarded, summary="End one by decree")
async def force_end(gid: PathGid, body: ForceEndIn, c: Coord) -> dict[str, Any]:
    await _known(c, gid)
    await c.force_end(gid, body.status, by="api")
    return {"gid": gid, "requested": body.status}


@router.post(
    "/transactions/{gid}/signals/{name}",
    dependencies=guarded,
    summary="Send a signal to a workflow",
)
async def send_signal(
    gid: PathGid, name: PathSignal, c: Coord, request: Request, body: SignalIn | None = None
) -> dict[str, Any]:
    body = body or SignalIn()
    _checked_payload(request, body.value, "value")
    kept = await c.signal(gid, name, body.value, id=body.id, by="api")
    return {"gid": gid, "signal": name, "kept": kept}


tcc = APIRouter(prefix="/v1/tcc", tags=["TCC"])


@tcc.post("", dependencies=guarded, summary="Begin a TCC transaction")
async def begin_tcc(body: TccIn, c: Coord, request: Request) -> dict[str, Any]:
    _checked_headers(request, body.headers, "headers")
    gid = await c.begin_tcc(body.gid, timeout_to_fail=body.timeout_to_fail, headers=body.headers)
    return {"gid": gid, "status": "prepared"}


async def _next_branch(c: Coordinator, gid: str, mode: Mode) -> str:
    """The next default branch id, once ``gid`` is known to be a ``mode`` transaction."""
    tx, ops = await c.get(gid)
    if tx.mode is not mode:
        raise IllegalStateChange(f"{gid} is a {tx.mode} transaction, not a {mode} one")
    return f"{len({o.branch for o in ops}) + 1:02d}"


@tcc.post("/{gid}/branches", dependencies=guarded, summary="Register a branch")
async def register_branch(
    gid: PathGid, body: BranchIn, c: Coord, request: Request
) -> dict[str, Any]:
    _checked_payload(request, body.payload, "payload")
    branch = await _next_branch(c, gid, Mode.TCC)
    branch = body.branch_id or branch
    await c.register_tcc_branch(
        gid,
        branch,
        HttpCall(body.confirm, body.payload, timeout=body.timeout),
        HttpCall(body.cancel, body.payload, timeout=body.timeout),
    )
    return {"gid": gid, "branch_id": branch}


async def _ended(c: Coordinator, handle: Handle, body: EndIn | None) -> dict[str, Any]:
    if body is not None and body.wait:
        outcome = await settled(c, handle, body.wait_timeout)
        if outcome is not None:
            return outcome_view(outcome)
    return outcome_view(await handle.status())


@tcc.post("/{gid}/submit", dependencies=guarded, summary="Confirm every branch")
async def submit_tcc(gid: PathGid, c: Coord, body: EndIn | None = None) -> dict[str, Any]:
    return await _ended(c, await c.submit_tcc(gid), body)


@tcc.post("/{gid}/abort", dependencies=guarded, summary="Cancel every branch")
async def abort_tcc(gid: PathGid, c: Coord, body: EndIn | None = None) -> dict[str, Any]:
    return await _ended(c, await c.abort_tcc(gid), body)


xa = APIRouter(prefix="/v1/xa", tags=["XA"])


@xa.post("", dependencies=guarded, summary="Begin an XA (two-phase commit) transaction")
async def begin_xa(body: XaIn, c: Coord) -> dict[str, Any]:
    gid = await c.begin_xa(body.gid, timeout_to_fail=body.timeout_to_fail)
    return {"gid": gid, "status": "prepared"}


@xa.post("/{gid}/branches", dependencies=guarded, summary="Register a prepared branch")
async def register_xa_branch(gid: PathGid, body: XaBranchIn, c: Coord) -> dict[str, Any]:
    branch = await _next_branch(c, gid, Mode.XA)
    branch = body.branch_id or branch
    await c.register_xa_http_branch(gid, branch, HttpCall(body.url, timeout=body.timeout))
    return {"gid": gid, "branch_id": branch}


async def _end_xa(c: Coordinator, gid: str, what: str, body: EndIn | None) -> dict[str, Any]:
    tx, _ = await c.get(gid)
    if tx.mode is not Mode.XA:
        raise IllegalStateChange(f"{gid} is a {tx.mode} transaction, not an XA one")
    handle = await (c.submit_tcc(gid) if what == "submit" else c.abort_tcc(gid))
    return await _ended(c, handle, body)


@xa.post("/{gid}/submit", dependencies=guarded, summary="Decide to commit: commit every branch")
async def submit_xa(gid: PathGid, c: Coord, body: EndIn | None = None) -> dict[str, Any]:
    return await _end_xa(c, gid, "submit", body)


@xa.post("/{gid}/abort", dependencies=guarded, summary="Roll every branch back")
async def abort_xa(gid: PathGid, c: Coord, body: EndIn | None = None) -> dict[str, Any]:
    return await _end_xa(c, gid, "abort", body)


health = APIRouter(tags=["health"])


@health.get("/health", summary="Is the coordinator up, and can it read its log?")
async def get_health(c: Coord) -> JSONResponse:
    started = time.perf_counter()
    # fenced: transactions it stopped driving, its lease renewals not landing in time
    leases = {"renewed_s_ago": round(c.lease_renewed_ago, 2), "fenced": c.fenced}
    try:
        # the unended only: indexed, cheap however many ended transactions the log keeps
        summary = await asyncio.wait_for(c.log.summary(time.time()), 5)
    except Exception as exc:  # any failure, a timeout included, means unhealthy
        return JSONResponse(
            {"status": "unhealthy", "log": str(exc), "leases": leases}, status_code=503
        )
    return JSONResponse(
        {
            "status": "ok",
            "owner": c.owner,
            "log_ms": round((time.perf_counter() - started) * 1000, 2),
            "unfinished": {**summary.counts, "stuck": summary.stuck},
            "leases": leases,
        }
    )
