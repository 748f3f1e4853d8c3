"""DTM's HTTP API under ``/api/dtmsvr``, so that a service written against DTM's
client libraries moves to Legato by changing the server URL.

Field names, statuses (``succeed``), status codes and ``dtm_result`` bodies are
DTM's (see DTM-PROTOCOL.md). DTM's clients send every field, ``null`` included,
and fields this server does not know: both are accepted. A success body never
contains the word FAILURE (older clients search the body for it).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._errors import (
    DefinitionError,
    GidConflict,
    IllegalStateChange,
    LegatoError,
    PayloadError,
    TransactionNotFound,
)
from .._model import (
    DEFAULT_ACTION_RETRY,
    DEFAULT_COMPENSATE_RETRY,
    OpRecord,
    OpStatus,
    RetryPolicy,
    TxRecord,
    TxStatus,
)
from .._msg import DEFAULT_MSG_TIMEOUT
from .._tcc import DEFAULT_TCC_TIMEOUT
from ..coordinator import WIRE_SAGA, Coordinator
from ..log import TxQuery
from ..saga import Saga
from ..transports.broker import BrokerCall
from ..transports.http import HttpCall
from ._auth import require_token
from ._schemas import http_url

PREFIX = "/api/dtmsvr"
router = APIRouter(prefix=PREFIX, tags=["DTM compatible"])
misc = APIRouter(prefix="/api", tags=["DTM compatible"])
guarded = [Depends(require_token)]

SUCCESS = {"dtm_result": "SUCCESS"}
_STATUS = {
    TxStatus.PREPARED: "prepared",
    TxStatus.SUBMITTED: "submitted",
    TxStatus.ABORTING: "aborting",
    TxStatus.SUCCEEDED: "succeed",
    TxStatus.FAILED: "failed",
}


class BadRequest(LegatoError):
    """The request is malformed."""


def error_response(exc: Exception) -> JSONResponse:
    """DTM's answers: 409 FAILURE for a definite failure or an illegal state change;
    a malformed request is a 400 naming the field; anything else a 500."""
    if isinstance(exc, GidConflict | IllegalStateChange):
        return JSONResponse({"dtm_result": "FAILURE", "message": str(exc)}, status_code=409)
    if isinstance(exc, BadRequest | DefinitionError | PayloadError):
        return JSONResponse({"message": str(exc)}, status_code=400)
    if isinstance(exc, TransactionNotFound):
        return JSONResponse({"message": str(exc)}, status_code=404)
    return JSONResponse({"message": str(exc)}, status_code=500)


class TransBase(BaseModel):
    """DTM's request body for prepare / submit / abort (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    gid: str = ""
    trans_type: str = ""
    steps: list[dict[str, Any] | None] | None = None
    payloads: list[str | None] | None = None
    custom_data: str | None = None
    query_prepared: str | None = None
    protocol: str | None = None
    rollback_reason: str | None = None
    wait_result: bool | None = None
    timeout_to_fail: float | None = None
    request_timeout: float | None = None
    retry_interval: float | None = None
    retry_limit: int | None = None
    branch_headers: dict[str, str] | None = None
    passthrough_headers: list[str] | None = None
    concurrent: bool | None = None


async def _body(request: Request, model: type[TransBase]) -> TransBase:
    try:
        data = await request.json()
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadRequest(f"field {where}: {first['msg']}") from exc
    if not body.gid or len(body.gid) > 128:
        raise BadRequest("field gid: a non-empty string of at most 128 characters is required")
    return body


async def coordinator(request: Request) -> Coordinator:
    c: Coordinator = request.app.state.coordinator
    return c


Coord = Annotated[Coordinator, Depends(coordinator)]


@router.get("/newGid", summary="A new gid")
async def new_gid() -> dict[str, str]:
    return {"gid": uuid.uuid4().hex, **SUCCESS}


@router.post("/prepare", dependencies=guarded, summary="TCC: begin, prepared")
async def prepare(request: Request, c: Coord) -> JSONResponse:
    body = await _body(request, TransBase)
    if body.trans_type == "xa":
        await c.begin_xa(body.gid, timeout_to_fail=body.timeout_to_fail or DEFAULT_TCC_TIMEOUT)
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
    )
    return JSONResponse(SUCCESS)


class BranchBody(BaseModel):
    """registerBranch's flat string map (unknown fields ignored)."""

    model_config = ConfigDict(extra="ignore")

    gid: str = ""
    branch_id: str = ""
    trans_type: str = ""
    status: str | None = None
    data: str | None = None
    confirm: str | None = None
    cancel: str | None = None
    url: str | None = None  # xa


@router.post("/registerBranch", dependencies=guarded, summary="TCC: add a branch")
@router.post("/registerTccBranch", dependencies=guarded, include_in_schema=False)
async def register_branch(request: Request, c: Coord) -> JSONResponse:
    try:
        body = BranchBody.model_validate(await request.json())
    except (ValueError, ValidationError) as exc:
        raise BadRequest(f"registerBranch takes a JSON object of strings: {exc}") from exc
    if body.trans_type not in ("tcc", "xa"):
        raise BadRequest(
            f"field trans_type: registerBranch takes 'tcc' or 'xa' here, not {body.trans_type!r}"
        )
    for name in ("gid", "branch_id"):
        if not getattr(body, name):
            raise BadRequest(f"field {name}: required")
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
    timeout = None
    await c.register_tcc_branch(
        body.gid,
        body.branch_id,
        HttpCall(confirm, body.data, timeout=timeout),
        HttpCall(cancel, body.data, timeout=timeout),
    )
    return JSONResponse(SUCCESS)


@router.post("/abort", dependencies=guarded, summary="TCC: cancel every branch")
async def abort(request: Request, c: Coord) -> JSONResponse:
    body = await _body(request, TransBase)
    if body.trans_type not in ("tcc", "xa", "msg", ""):
        raise BadRequest(
            f"field trans_type: abort takes 'tcc', 'xa' or 'msg', not {body.trans_type!r}"
        )
    await c.abort_tcc(body.gid, body.rollback_reason or "aborted by the initiator")
    return await _maybe_wait(c, body)


def _headers(request: Request, body: TransBase) -> dict[str, str]:
    headers = dict(body.branch_headers or {})
    for name in body.passthrough_headers or ():
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
    return headers


async def _maybe_wait(c: Coordinator, body: TransBase) -> JSONResponse:
    if not body.wait_result:
        return JSONResponse(SUCCESS)
    try:
        outcome = await c.handle(body.gid).result(timeout=body.request_timeout or 30)
    except TimeoutError:
        return JSONResponse(SUCCESS)  # still running: as DTM, the caller queries later
    if outcome.status is TxStatus.FAILED:
        return JSONResponse(
            {"dtm_result": "FAILURE", "message": outcome.reason or "failed"}, status_code=409
        )
    return JSONResponse(SUCCESS)


@router.post("/submit", dependencies=guarded, summary="Saga: create and start; TCC: confirm")
async def submit(request: Request, c: Coord) -> JSONResponse:
    body = await _body(request, TransBase)
    if body.trans_type in ("tcc", "xa"):
        await c.submit_tcc(body.gid)
        return await _maybe_wait(c, body)
    if body.trans_type == "msg":
        # a message may be submitted without a prepare (nothing local to guard); a
        # prepared one is submitted by its gid alone
        if body.steps:
            await _begin_msg(request, c, body)
        await c.submit_tcc(body.gid)
        return await _maybe_wait(c, body)
    if body.trans_type != "saga":
        raise BadRequest(f"field trans_type: {body.trans_type!r} is not supported by submit here")
    saga = saga_from_dtm(body)
    timeout = body.timeout_to_fail or None
    headers = _headers(request, body)
    await c.submit(saga, None, gid=body.gid, timeout_to_fail=timeout, headers=headers)
    return await _maybe_wait(c, body)


def msg_steps(body: TransBase) -> list[HttpCall | BrokerCall]:
    """DTM's message: step i is branch ``%02d % (i + 1)``, its payload the body; an
    action ``broker://<name>/<topic>`` publishes the payload to that topic instead."""
    steps = body.steps or []
    payloads = body.payloads or []
    if not steps:
        raise BadRequest("field steps: a message needs at least one step")
    if payloads and len(payloads) != len(steps):
        raise BadRequest(f"field payloads: {len(payloads)} payloads for {len(steps)} steps")
    calls: list[HttpCall | BrokerCall] = []
    for i, step in enumerate(steps):
        where = f"steps.{i}.action"
        raw = step.get("action") if isinstance(step, dict) else None
        if isinstance(raw, str) and raw.startswith("broker://"):
            try:
                calls.append(BrokerCall.from_url(raw, payloads[i] if payloads else None))
            except DefinitionError as exc:
                raise BadRequest(f"field {where}: {exc}") from exc
            continue
        action = _url(raw, where)
        if action is None:
            raise BadRequest(f"field {where}: a URL is required")
        calls.append(
            HttpCall(
                action, payloads[i] if payloads else None, timeout=body.request_timeout or None
            )
        )
    return calls


async def _begin_msg(request: Request, c: Coordinator, body: TransBase) -> None:
    query = _url(body.query_prepared, "query_prepared")
    await c.begin_msg(
        body.gid,
        msg_steps(body),
        query_prepared=HttpCall(query, method="GET") if query else None,
        timeout_to_fail=body.timeout_to_fail or DEFAULT_MSG_TIMEOUT,
        headers=_headers(request, body),
    )


def saga_from_dtm(body: TransBase) -> Saga:
    """DTM's saga: step i is branch ``%02d % (i + 1)``; its payload (JSON text) is the
    body of both its ops; ``custom_data.orders`` makes it a graph."""
    steps = body.steps or []
    payloads = body.payloads or []
    if not steps:
        raise BadRequest("field steps: a saga needs at least one step")
    if payloads and len(payloads) != len(steps):
        raise BadRequest(f"field payloads: {len(payloads)} payloads for {len(steps)} steps")
    orders = _orders(body, len(steps))
    timeout = body.request_timeout or None
    retry, compensate_retry = _policies(body)
    saga = Saga(WIRE_SAGA)
    for i, step in enumerate(steps):
        where = f"steps.{i}"
        if not isinstance(step, dict):
            raise BadRequest(f"field {where}: a step is an object with action and compensate")
        action = _url(step.get("action"), f"{where}.action")
        if action is None:
            raise BadRequest(f"field {where}.action: a URL is required")
        compensate = _url(step.get("compensate"), f"{where}.compensate")
        payload = payloads[i] if payloads else None
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


def _url(value: object, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {where}: a URL string, not {value!r}")
    try:
        return http_url(value)
    except ValueError as exc:
        raise BadRequest(f"field {where}: {exc}") from exc


def _orders(body: TransBase, n: int) -> dict[int, list[str]] | None:
    """``custom_data: {"concurrent": true, "orders": {"2": [0, 1]}}``: step 2 waits for 0
    and 1; steps not named wait for nothing. ``None``: the steps run in order."""
    if not body.custom_data:
        return None
    try:
        custom = json.loads(body.custom_data)
    except ValueError as exc:
        raise BadRequest(f"field custom_data: not JSON: {exc}") from exc
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
        changes.update(
            backoff=float(body.retry_interval), ongoing_interval=float(body.retry_interval)
        )
    if changes:
        compensate = dataclasses.replace(compensate, **changes)
    if body.retry_limit:
        changes["max_attempts"] = int(body.retry_limit)
    if changes:
        action = dataclasses.replace(action, **changes)
    return action, compensate


# -- reads ------------------------------------------------------------------------------


def _time(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def dtm_transaction(tx: TxRecord, ops: list[OpRecord]) -> dict[str, Any]:
    spec = tx.options.get("spec") or {}
    steps = [
        {
            "action": (s.get("action") or {}).get("url", ""),
            "compensate": (s.get("compensate") or {}).get("url", ""),
        }
        for s in spec.get("steps", [])
    ]
    payloads = [_text((s.get("action") or {}).get("body")) for s in spec.get("steps", [])]
    options = {k: v for k, v in tx.options.items() if k not in ("spec", "headers")}
    return {
        "create_time": _time(tx.created_at),
        "update_time": _time(tx.updated_at),
        "gid": tx.gid,
        "trans_type": str(tx.mode),
        "steps": steps,
        "payloads": payloads,
        "status": _STATUS[tx.status],
        "query_prepared": "",
        "protocol": "http",
        "finish_time": _time(tx.ended_at) if tx.status is TxStatus.SUCCEEDED else None,
        "rollback_time": _time(tx.ended_at) if tx.status is TxStatus.FAILED else None,
        "options": json.dumps(options),
        "custom_data": "",
        "next_cron_time": _time(tx.next_attempt_at),
        "owner": tx.lease_owner or "",
        "rollback_reason": tx.reason or "",
        "result": "",
    }


def _text(body: Any) -> str:
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body)


def dtm_branches(tx: TxRecord, ops: list[OpRecord]) -> list[dict[str, Any]]:
    out = []
    for o in sorted(ops, key=lambda o: o.seq):
        status = {OpStatus.SUCCEEDED: "succeed", OpStatus.FAILED: "failed"}.get(
            o.status, "prepared"
        )
        url = o.target.split(" ", 1)[1] if " " in o.target else o.target
        out.append(
            {
                "gid": tx.gid,
                "url": url,
                "data": _text((o.payload or {}).get("body")),
                "branch_id": o.branch,
                "op": str(o.op),
                "status": status,
                "finish_time": _time(o.updated_at) if status == "succeed" else None,
                "rollback_time": None,
                "create_time": _time(tx.created_at),
                "update_time": _time(o.updated_at),
            }
        )
    return out


@router.get("/query", summary="One transaction and its branches")
async def query(c: Coord, gid: str = "") -> JSONResponse:
    if not gid:
        raise BadRequest("field gid: required")
    loaded = await c.log.load(gid)
    if loaded is None:
        return JSONResponse({"transaction": None, "branches": []})
    tx, ops = loaded
    return JSONResponse(
        {"transaction": dtm_transaction(tx, ops), "branches": dtm_branches(tx, ops)}
    )


_FROM_DTM = {v: k for k, v in _STATUS.items()}


@router.get("/all", summary="A page of transactions, newest first")
async def all_transactions(
    c: Coord,
    status: str = "",
    trans_type: Annotated[str, Query(alias="transType")] = "",
    create_time_start: Annotated[str, Query(alias="createTimeStart")] = "",
    create_time_end: Annotated[str, Query(alias="createTimeEnd")] = "",
    position: str = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JSONResponse:
    if status and status not in _FROM_DTM:
        raise BadRequest(f"field status: one of {sorted(_FROM_DTM)}, not {status!r}")
    try:
        offset = int(position) if position else 0
        since = int(create_time_start) / 1000 if create_time_start else None
        until = int(create_time_end) / 1000 if create_time_end else None
    except ValueError as exc:
        raise BadRequest(f"position, createTimeStart, createTimeEnd are integers: {exc}") from exc
    rows = await c.list(
        TxQuery(
            status=(_FROM_DTM[status],) if status else (),
            mode=trans_type or None,
            since=since,
            until=until,
            limit=limit,
            offset=max(0, offset),
        )
    )
    transactions = [dtm_transaction(t, []) for t in rows]
    next_position = str(offset + len(rows)) if len(rows) == limit else ""
    return JSONResponse({"transactions": transactions, "next_position": next_position})


class GidBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    gid: str = Field(min_length=1, max_length=128)


@router.post("/forceStop", dependencies=guarded, summary="End a transaction as failed")
async def force_stop(body: GidBody, c: Coord) -> JSONResponse:
    tx, _ = await c.get(body.gid)
    if tx.status.ended:
        raise IllegalStateChange(f"current status '{_STATUS[tx.status]}', cannot forceStop")
    await c.force_end(body.gid, TxStatus.FAILED)
    return JSONResponse(SUCCESS)


@misc.get("/ping", summary="Health, as DTM answers it")
async def ping() -> dict[str, str]:
    return {"msg": "pong", **SUCCESS}


@misc.get("/version", summary="The server's version")
async def version() -> dict[str, str]:
    from .. import __version__

    return {"version": f"legato-{__version__}", "time": str(int(time.time()))}
