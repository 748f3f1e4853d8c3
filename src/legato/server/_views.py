"""Log records as the JSON the native API answers with: header values never, URL
credentials masked (``legato._redact``)."""

from __future__ import annotations

from typing import Any

from .._model import EventRecord, OpRecord, TxRecord
from .._redact import mask, mask_any, options_view
from ..engine.handle import Outcome
from ..observe import readable


def tx_view(tx: TxRecord) -> dict[str, Any]:
    return {
        "gid": tx.gid,
        "mode": str(tx.mode),
        "name": tx.name,
        "title": mask(readable.title(tx)),  # its name as a person reads it
        "status": str(tx.status),
        "reason": mask(tx.reason),
        "stuck": mask(tx.stuck),
        "requested": tx.requested,
        "created_at": tx.created_at,
        "updated_at": tx.updated_at,
        "ended_at": tx.ended_at,
        "timeout_at": tx.timeout_at,
        "lease_owner": tx.lease_owner,
        "options": options_view(tx.options),
    }


def op_view(op: OpRecord) -> dict[str, Any]:
    return {
        "branch": op.branch,
        "op": str(op.op),
        "target": mask(op.target),
        "status": str(op.status),
        "attempts": op.attempts,
        "next_at": op.next_at,
        "output": op.output,
        "error": mask(op.error),
        "updated_at": op.updated_at,
    }


def event_view(e: EventRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at,
        "kind": e.kind,
        "branch": e.branch,
        "op": e.op,
        "attempt": e.attempt,
        "detail": mask_any(e.detail),
    }


def outcome_view(o: Outcome) -> dict[str, Any]:
    return {
        "gid": o.gid,
        "status": str(o.status),
        "reason": mask(o.reason),
        "stuck": mask(o.stuck),
        "outputs": dict(o.outputs),
        "settled": o.settled,
    }
