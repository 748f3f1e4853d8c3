"""Log records in DTM's shapes, for its ``query`` and ``all``: header values never
shown, URL credentials masked (``legato._redact``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .._model import OpRecord, OpStatus, TxRecord, TxStatus
from .._redact import mask, options_view

DTM_STATUS = {
    TxStatus.PREPARED: "prepared",
    TxStatus.SUBMITTED: "submitted",
    TxStatus.ABORTING: "aborting",
    TxStatus.SUCCEEDED: "succeed",
    TxStatus.FAILED: "failed",
}
FROM_DTM = {v: k for k, v in DTM_STATUS.items()}


def _time(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # a time no calendar holds: not shown
        return None


def dtm_transaction(tx: TxRecord, ops: list[OpRecord]) -> dict[str, Any]:
    spec = tx.options.get("spec") or {}
    steps = [
        {
            "action": mask((s.get("action") or {}).get("url", "")),
            "compensate": mask((s.get("compensate") or {}).get("url", "")),
        }
        for s in spec.get("steps", [])
    ]
    payloads = [_text((s.get("action") or {}).get("body")) for s in spec.get("steps", [])]
    options = options_view(tx.options)
    return {
        "create_time": _time(tx.created_at),
        "update_time": _time(tx.updated_at),
        "gid": tx.gid,
        "trans_type": str(tx.mode),
        "steps": steps,
        "payloads": payloads,
        "status": DTM_STATUS[tx.status],
        "query_prepared": "",
        "protocol": "http",
        "finish_time": _time(tx.ended_at) if tx.status is TxStatus.SUCCEEDED else None,
        "rollback_time": _time(tx.ended_at) if tx.status is TxStatus.FAILED else None,
        "options": json.dumps(options),
        "custom_data": "",
        "next_cron_time": _time(tx.next_attempt_at),
        "owner": tx.lease_owner or "",
        "rollback_reason": mask(tx.reason) or "",
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
                "url": mask(url),
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
