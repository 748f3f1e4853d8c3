"""DTM's HTTP API under ``/api/dtmsvr``, so that a service written against DTM's
client libraries moves to Legato by changing the server URL.

Field names, statuses (``succeed``), status codes and ``dtm_result`` bodies are
DTM's (see DTM-PROTOCOL.md). DTM's clients send every field, ``null`` included,
and fields this server does not know: both are accepted; a number 0 means "not
set", as in DTM. Every field is held to the same bounds as the native API's
(``_fields``: gids, branch ids, URLs, headers, seconds, attempts, payload sizes),
and a refusal is a 400 naming the field. A success body never contains the word
FAILURE (older clients search the body for it). The reads are in ``_dtm_read``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .._bounds import check_gid, check_title, make_gid
from .._edge import PARSED
from .._errors import (
    BadRequest,
    DefinitionError,
    GidConflict,
    IllegalStateChange,
    LogError,
    PayloadError,
    Stopping,
    TransactionNotFound,
)
from .._model import DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATE_RETRY, RetryPolicy, TxStatus
from ..coordinator import WIRE_SAGA, Coordinator
from ..log import TxQuery
from ..msg import DEFAULT_MSG_TIMEOUT
from ..saga import Saga
from ..settings import Settings
from ..tcc import DEFAULT_TCC_TIMEOUT
from ..transports.broker import BrokerCall
from ..transports.http import HttpCall
from ._auth import require_reader, require_token
from ._dtm_views import DTM_STATUS, FROM_DTM, dtm_branches, dtm_transaction
from ._fields import (
    MAX_STEPS,
    MAX_URL,
    BranchId,
    DtmAttempts,
    DtmInterval,
    DtmRequestTimeout,
    DtmSeconds,
    Gid,
    HeaderName,
    Headers,
    Text,
    check_no_token,
    check_payload,
    http_url,
)
from ._paging import page
from ._unavailable import unavailable_headers
from ._waits import settled

PREFIX = "/api/dtmsvr"
router = APIRouter(prefix=PREFIX, tags=["DTM compatible"])
misc = APIRouter(prefix="/api", tags=["DTM compatible"])
guarded = [Depends(require_token)]
reader = [Depends(require_reader)]

SUCCESS = {"dtm_result": "SUCCESS"}
ONGOING = "ONGOING"


def error_response(exc: Exception) -> JSONResponse:
    """DTM's answers: 409 FAILURE for a definite failure or an illegal state change;
    a malformed request is a 400 naming the field; the log failing is a 503 (with
    ``Retry-After`` while its database cannot be reached), as on the native API;
    anything else a 500."""
    if isinstance(exc, GidConflict | IllegalStateChange):
        return JSONResponse({"dtm_result": "FAILURE", "message": str(exc)}, status_code=409)
    if isinstance(exc, BadRequest | DefinitionError | PayloadError):
        return JSONResponse({"message": str(exc)}, status_code=400)
    if isinstance(exc, TransactionNotFound):
        return JSONResponse({"message": str(exc)}, status_code=404)
    if isinstance(exc, LogError | Stopping):
        return JSONResponse(
            {"message": str(exc)}, status_code=503, headers=unavailable_headers(exc)
        )
    return JSONResponse({"message": str(exc)}, status_code=500)


def _blank_is_unset(value: Any) -> Any:
    return None if value == "" else value


Link = Annotated[Annotated[str, Field(max_length=MAX_URL)] | None, BeforeValidator(_blank_is_unset)]
"""A URL as DTM's clients send it ("" for none): checked where it is used, since a
msg step may name a broker (``broker://name/topic``) instead."""
Kind = Annotated[str, Field(max_length=16)]


class DtmStep(BaseModel):
    model_config = ConfigDict(extra="ignore")

    action: Link = None
    compensate: Link = None


class TransBase(BaseModel):
    """DTM's request body for prepare / submit / abort (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    gid: Gid
    trans_type: Kind = ""
    steps: Annotated[list[DtmStep | None], Field(max_length=MAX_STEPS)] | None = None
    payloads: Annotated[list[str | None], Field(max_length=MAX_STEPS)] | None = None
    custom_data: Text | None = None
    query_prepared: Link = None
    protocol: Kind | None = None
    rollback_reason: Text | None = None
    wait_result: bool | None = None
    timeout_to_fail: DtmSeconds = None
    request_timeout: DtmRequestTimeout = None
    retry_interval: DtmInterval = None
    retry_limit: DtmAttempts = None
    branch_headers: Headers | None = None
    passthrough_headers: Annotated[list[HeaderName], Field(max_length=64)] | None = None
    concurrent: bool | None = None


class BranchBody(BaseModel):
    """registerBranch's flat string map (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    gid: Gid
    branch_id: BranchId
    trans_type: Kind = ""
    status: Kind | None = None
    data: str | None = None
    confirm: Link = None
    cancel: Link = None
    url: Link = None  # xa


def parse(model: type[BaseModel], data: Any) -> Any:
    """``data`` as ``model``, or a 400 naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"field {where}: {first['msg']}") from None


async def _json(request: Request) -> Any:
    if PARSED in request.scope:  # the edge has parsed it
        return request.scope[PARSED]
    try:
        return await request.json()
    except ValueError as exc:  # the edge checked it is JSON; an empty body is not
        raise BadRequest(f"the body is not JSON: {exc}") from None


async def coordinator(request: Request) -> Coordinator:
    c: Coordinator = request.app.state.coordinator
    return c


Coord = Annotated[Coordinator, Depends(coordinator)]


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.get("/newGid", summary="A new gid")
async def new_gid() -> dict[str, str]:
    return {"gid": make_gid(), **SUCCESS}


@router.post("/prepare", dependencies=guarded, summary="TCC, XA, msg: begin, prepared")
async def prepare(request: Request, c: Coord) -> JSONResponse:
    body: TransBase = parse(TransBase, await _json(request))
    if body.trans_type == "xa":
        await c.begin_xa(
            body.gid,
            timeout_to_fail=body.timeout_to_fail or DEFAULT_TCC_TIMEOUT,
            custom_data=body.custom_data,
            title=dtm_title(body, opaque=True),
        )
        return JSONResponse(SUCCESS)
    if body.trans_type == "msg":
        await _begin_msg(request, c, body)
        return JSONResponse(SUCCESS)
    if body.trans_type != "tcc":
        raise BadRequest(
            f"field trans_type: prepare takes 'tcc', 'xa' or 'msg', not {body.trans_type!r}"
        )
    await c.begin_tcc(
        body.gid,
        timeout_to_fail=body.timeout_to_fail or DEFAULT_TCC_TIMEOUT,
        headers=_headers(request, body),
        custom_data=body.custom_data,
        title=dtm_title(body, opaque=True),
    )
    return JSONResponse(SUCCESS)


@router.post("/registerBranch", dependencies=guarded, summary="TCC, XA: add a branch")
@router.post("/registerTccBranch", dependencies=guarded, include_in_schema=False)
@router.post("/registerXaBranch", dependencies=guarded, include_in_schema=False)
async def register_branch(request: Request, c: Coord) -> JSONResponse:
    body: BranchBody = parse(BranchBody, await _json(request))
    if body.trans_type not in ("tcc", "xa"):
        raise BadRequest(
            f"field trans_type: registerBranch takes 'tcc' or 'xa' here, not {body.trans_type!r}"
        )
    _check_payload(request, body.data, "data")
    if body.trans_type == "xa":
        url = _url(body.url, "url")
        if url is None:
            raise BadRequest("field url: the branch's URL is required")
        await c.register_xa_http_branch(body.gid, body.branch_id, url)
        return JSONResponse(SUCCESS)
    confirm = _url(body.confirm, "confirm")
    cancel = _url(body.cancel, "cancel")
    if confirm is None or cancel is None:
        raise BadRequest("fields confirm and cancel: both URLs are required")
    await c.register_tcc_branch(
        body.gid, body.branch_id, HttpCall(confirm, body.data), HttpCall(cancel, body.data)
    )
    return JSONResponse(SUCCESS)


@router.post("/abort", dependencies=guarded, summary="TCC, XA, msg: roll back")
async def abort(request: Request, c: Coord) -> JSONResponse:
    body: TransBase = parse(TransBase, await _json(request))
    if body.trans_type not in ("tcc", "xa", "msg", ""):
        raise BadRequest(
            f"field trans_type: abort takes 'tcc', 'xa' or 'msg', not {body.trans_type!r}"
        )
    await c.abort_tcc(body.gid, body.rollback_reason or "aborted by the initiator")
    return await _maybe_wait(c, body)


def _headers(request: Request, body: TransBase) -> dict[str, str]:
    """The headers sent to every participant: ``branch_headers``, and the request's own
    headers that ``passthrough_headers`` names; never Legato's own token."""
    headers = dict(body.branch_headers or {})
    for name in body.passthrough_headers or ():
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
    token = _settings(request).api_token
    check_no_token(headers, token, "branch_headers or passthrough_headers")
    return headers


async def _maybe_wait(c: Coordinator, body: TransBase) -> JSONResponse:
    if not body.wait_result:
        return JSONResponse(SUCCESS)
    outcome = await settled(c, c.handle(body.gid), body.request_timeout or 30)
    if outcome is None:
        # not finished (its time is up, or this coordinator is stopping): DTM's answer
        # when a transaction waited for is still in progress, 425 ONGOING; a client
        # queries it later (dtmcli raises, DTM's Go client reads ErrOngoing)
        why = "stopping" if c.stopping else "still running"
        return JSONResponse(
            {"dtm_result": ONGOING, "message": f"{body.gid} is {why}: query it later"},
            status_code=425,
        )
    if outcome.status is TxStatus.FAILED:
        return JSONResponse(
            {"dtm_result": "FAILURE", "message": outcome.reason or "failed"}, status_code=409
        )
    return JSONResponse(SUCCESS)


@router.post("/submit", dependencies=guarded, summary="Saga: create and start; TCC: confirm")
async def submit(request: Request, c: Coord) -> JSONResponse:
    body: TransBase = parse(TransBase, await _json(request))
    if body.trans_type in ("tcc", "xa"):
        await c.submit_tcc(body.gid)
        return await _maybe_wait(c, body)
    if body.trans_type == "msg":
        # a message may be submitted without a prepare (nothing local to guard); a
        # prepared one is submitted by its gid alone
        _no_delay(body)
        if body.steps:
            await _begin_msg(request, c, body)
        await c.submit_tcc(body.gid)
        return await _maybe_wait(c, body)
    if body.trans_type != "saga":
        raise BadRequest(f"field trans_type: {body.trans_type!r} is not supported by submit here")
    _check_payloads(request, body)
    saga = saga_from_dtm(body)
    headers = _headers(request, body)
    await c.submit(
        saga,
        None,
        gid=body.gid,
        timeout_to_fail=body.timeout_to_fail,
        headers=headers,
        title=dtm_title(body),
        custom_data=body.custom_data,
    )
    return await _maybe_wait(c, body)


def dtm_title(body: TransBase, *, opaque: bool = False) -> str | None:
    """``custom_data: {"name": "..."}`` names the transaction for people (a DTM server
    ignores it); without it, Legato names it after its steps' URLs when it shows it.
    ``opaque``: custom_data may be any text (TCC, XA: DTM reads none of it), not
    necessarily JSON (saga, msg: DTM reads its options there)."""
    try:
        custom = _custom(body)
    except BadRequest:
        if opaque:
            return None
        raise
    name = custom.get("name") if isinstance(custom, dict) else None
    if name is None:
        return None
    try:
        return check_title(name, "custom_data.name")
    except DefinitionError as exc:
        raise BadRequest(f"field {exc}") from exc


def _check_payload(request: Request, payload: str | None, field: str) -> None:
    try:
        check_payload(payload, _settings(request).max_payload_bytes, f"field {field}")
    except DefinitionError as exc:
        raise BadRequest(str(exc)) from None


def _check_payloads(request: Request, body: TransBase) -> None:
    for i, payload in enumerate(body.payloads or ()):
        _check_payload(request, payload, f"payloads.{i}")


def _steps(body: TransBase, what: str) -> tuple[list[DtmStep | None], list[str | None]]:
    steps = body.steps or []
    payloads = body.payloads or []
    if not steps:
        raise BadRequest(f"field steps: a {what} needs at least one step")
    if payloads and len(payloads) != len(steps):
        raise BadRequest(f"field payloads: {len(payloads)} payloads for {len(steps)} steps")
    return steps, payloads or [None] * len(steps)


def msg_steps(body: TransBase) -> list[HttpCall | BrokerCall]:
    """DTM's message: step i is branch ``%02d % (i + 1)``, its payload the body; an
    action ``broker://<name>/<topic>`` publishes the payload to that topic instead."""
    steps, payloads = _steps(body, "message")
    calls: list[HttpCall | BrokerCall] = []
    for i, (step, payload) in enumerate(zip(steps, payloads, strict=True)):
        where = f"steps.{i}.action"
        raw = step.action if step is not None else None
        if raw is not None and raw.startswith("broker://"):
            try:
                calls.append(BrokerCall.from_url(raw, payload))
            except DefinitionError as exc:
                raise BadRequest(f"field {where}: {exc}") from exc
            continue
        action = _url(raw, where)
        if action is None:
            raise BadRequest(f"field {where}: a URL is required")
        calls.append(HttpCall(action, payload, timeout=body.request_timeout))
    return calls


def _custom(body: TransBase) -> Any:
    """``custom_data`` read as JSON (None when there is none)."""
    if not body.custom_data:
        return None
    try:
        return json.loads(body.custom_data)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"field custom_data: not JSON: {exc}") from exc


def _no_delay(body: TransBase) -> None:
    """DTM delays a message's delivery by ``custom_data: {"delay": seconds}``; Legato
    does not, and says so rather than deliver early."""
    custom = _custom(body)
    if isinstance(custom, dict) and custom.get("delay"):
        raise BadRequest(
            "field custom_data.delay: a delayed message is not supported here; "
            "deliver it later, or let its first step wait"
        )


async def _begin_msg(request: Request, c: Coordinator, body: TransBase) -> None:
    _check_payloads(request, body)
    _no_delay(body)
    query = _url(body.query_prepared, "query_prepared")
    await c.begin_msg(
        body.gid,
        msg_steps(body),
        query_prepared=HttpCall(query, method="GET") if query else None,
        timeout_to_fail=body.timeout_to_fail or DEFAULT_MSG_TIMEOUT,
        headers=_headers(request, body),
        concurrent=bool(body.concurrent),
        custom_data=body.custom_data,
        title=dtm_title(body),
    )


def saga_from_dtm(body: TransBase) -> Saga:
    """DTM's saga: step i is branch ``%02d % (i + 1)``; its payload (JSON text) is the
    body of both its ops; ``custom_data.orders`` makes it a graph."""
    steps, payloads = _steps(body, "saga")
    orders = _orders(body, len(steps))
    timeout = body.request_timeout
    retry, compensate_retry = _policies(body)
    saga = Saga(WIRE_SAGA)
    for i, (step, payload) in enumerate(zip(steps, payloads, strict=True)):
        where = f"steps.{i}"
        if step is None:
            raise BadRequest(f"field {where}: a step is an object with action and compensate")
        action = _url(step.action, f"{where}.action")
        if action is None:
            raise BadRequest(f"field {where}.action: a URL is required")
        compensate = _url(step.compensate, f"{where}.compensate")
        saga.step(
            f"{i + 1:02d}",
            action=HttpCall(action, payload, timeout=timeout),
            compensate=HttpCall(compensate, payload, timeout=timeout) if compensate else None,
            depends_on=orders.get(i) if orders is not None else None,
            retry=retry,
            compensate_retry=compensate_retry,
        )
    saga.plan()
    return saga


def _url(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    try:
        return http_url(value)
    except ValueError as exc:
        raise BadRequest(f"field {where}: {exc}") from exc


def _orders(body: TransBase, n: int) -> dict[int, list[str]] | None:
    """``custom_data: {"concurrent": true, "orders": {"2": [0, 1]}}``: step 2 waits for 0
    and 1; steps not named wait for nothing. ``None``: the steps run in order."""
    custom = _custom(body)
    if not isinstance(custom, dict) or not custom.get("concurrent"):
        return None
    orders = custom.get("orders") or {}
    if not isinstance(orders, dict):
        raise BadRequest("field custom_data.orders: an object of step index -> [step index]")
    out: dict[int, list[str]] = {i: [] for i in range(n)}
    for key, before in orders.items():
        try:
            i = int(key)
            deps = [int(b) for b in before]
        except (TypeError, ValueError) as exc:
            raise BadRequest(
                f"field custom_data.orders.{key}: step indexes, not {before!r}"
            ) from exc
        for j in (i, *deps):
            if not 0 <= j < n:
                raise BadRequest(f"field custom_data.orders.{key}: no step {j}")
        out[i] = [f"{j + 1:02d}" for j in deps]
    return out


def _policies(body: TransBase) -> tuple[RetryPolicy, RetryPolicy]:
    """DTM's retry_interval (s) is the first backoff (doubling) and the "ongoing" interval;
    retry_limit caps attempts of forward ops (undo ops keep the longer default)."""
    action, compensate = DEFAULT_ACTION_RETRY, DEFAULT_COMPENSATE_RETRY
    changes: dict[str, Any] = {}
    if body.retry_interval:
        changes.update(backoff=body.retry_interval, ongoing_interval=body.retry_interval)
    if changes:
        compensate = dataclasses.replace(compensate, **changes)
    if body.retry_limit:
        changes["max_attempts"] = body.retry_limit
    if changes:
        action = dataclasses.replace(action, **changes)
    return action, compensate


# -- reads ------------------------------------------------------------------------------


def _gid(gid: str) -> str:
    try:
        return check_gid(gid)
    except DefinitionError as exc:
        raise BadRequest(f"field {exc}") from None


@router.get("/query", dependencies=reader, summary="One transaction and its branches")
async def query(c: Coord, gid: str = "") -> JSONResponse:
    if not gid:
        raise BadRequest("field gid: required")
    loaded = await c.log.load(_gid(gid))
    if loaded is None:
        return JSONResponse({"transaction": None, "branches": []})
    tx, ops = loaded
    return JSONResponse(
        {"transaction": dtm_transaction(tx, ops), "branches": dtm_branches(tx, ops)}
    )


@router.get("/all", dependencies=reader, summary="A page of transactions, newest first")
async def all_transactions(
    request: Request,
    c: Coord,
    gid: Annotated[str, Query(max_length=200)] = "",
    status: str = "",
    trans_type: Annotated[str, Query(alias="transType", max_length=16)] = "",
    create_time_start: Annotated[str, Query(alias="createTimeStart", max_length=20)] = "",
    create_time_end: Annotated[str, Query(alias="createTimeEnd", max_length=20)] = "",
    position: Annotated[str, Query(max_length=20)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    if gid:  # as DTM: that transaction alone (the other filters do not apply), one page
        loaded = await c.log.load(_gid(gid))
        rows = [] if loaded is None else [dtm_transaction(*loaded)]
        return JSONResponse({"transactions": rows, "next_position": ""})
    if status and status not in FROM_DTM:
        raise BadRequest(f"field status: one of {sorted(FROM_DTM)}, not {status!r}")
    try:
        offset = max(0, int(position)) if position else 0
        since = int(create_time_start) / 1000 if create_time_start else None
        until = int(create_time_end) / 1000 if create_time_end else None
    except ValueError as exc:
        raise BadRequest(f"position, createTimeStart, createTimeEnd are integers: {exc}") from None
    settings: Settings = request.app.state.settings
    found = await page(
        c,
        TxQuery(
            status=(FROM_DTM[status],) if status else (),
            mode=trans_type or None,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
        ),
        lambda t: dtm_transaction(t, []),
        settings.max_page_bytes,
    )
    next_position = "" if found.next_offset is None else str(found.next_offset)
    return JSONResponse({"transactions": found.rows, "next_position": next_position})


class GidBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    gid: Gid


@router.post("/forceStop", dependencies=guarded, summary="End a transaction as failed")
async def force_stop(request: Request, c: Coord) -> JSONResponse:
    body: GidBody = parse(GidBody, await _json(request))
    tx, _ = await c.get(body.gid)
    if tx.status.ended:
        raise IllegalStateChange(f"current status '{DTM_STATUS[tx.status]}', cannot forceStop")
    await c.force_end(body.gid, TxStatus.FAILED)
    return JSONResponse(SUCCESS)


@misc.get("/ping", summary="Health, as DTM answers it")
async def ping() -> dict[str, str]:
    return {"msg": "pong", **SUCCESS}


@router.get("/version", summary="The server's version, where DTM answers it")
@misc.get("/version", summary="The server's version")
async def version() -> dict[str, str]:
    from .._version import __version__

    return {"version": f"legato-{__version__}", "time": str(int(time.time()))}
