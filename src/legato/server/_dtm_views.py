"""Log records in DTM's shapes, for its ``query`` and ``all``: header values never
shown, URL credentials masked (``legato._redact``).

DTM's fields are all there, under DTM's names: a transaction's ``id``,
``concurrent``, ``query_prepared`` and ``custom_data`` as its client sent them; a
branch's ``id`` and its payload as ``bin_data``, base64 as DTM's JSON encodes bytes.
A msg lists its deliveries only (``op: action``), as DTM does: the question Legato
asks its ``query_prepared`` is an op of its own (``00``/``msg``), not a branch.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .._model import Mode, OpName, OpRecord, OpStatus, TxRecord, TxStatus
from .._redact import mask, options_view

DTM_STATUS = {
    TxStatus.PREPARED: "prepared",
    TxStatus.SUBMITTED: "submitted",
    TxStatus.ABORTING: "aborting",
    TxStatus.SUCCEEDED: "succeed",
    TxStatus.FAILED: "failed",
}
FROM_DTM = {v: k for k, v in DTM_STATUS.items()}

_BRANCH_STATUS = {OpStatus.SUCCEEDED: "succeed", OpStatus.FAILED: "failed"}
"""Any other op (not started, running, waiting to retry) is DTM's ``prepared``."""
_UNDO = frozenset({OpName.COMPENSATE, OpName.CANCEL, OpName.ROLLBACK})
"""DTM writes a branch's undo op before its forward op; its answers list them so."""
_NOT_BRANCHES = frozenset({OpName.MSG, OpName.SIGNAL})
"""Ops of Legato's own that DTM has no branch for: a msg's question to its initiator
(``query_prepared``), a signal sent to a workflow."""
_OWN_OPTIONS = ("custom_data", "query_prepared", "title")
"""Options shown in fields of their own, left out of ``options``."""
_JS_SAFE = (1 << 53) - 1  # DTM's dashboard reads ids as JavaScript numbers


def dtm_id(*parts: str) -> int:
    """DTM's numeric ``id``: DTM numbers its rows; Legato's log keys them by gid (and
    branch and op), so the number is made from those: the same on every replica and
    after a restart, never 0, not ordered by time."""
    digest = hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") & _JS_SAFE) or 1


def _time(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # a time no calendar holds: not shown
        return None


def _text(body: Any) -> str:
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body)


def _bin_data(body: Any) -> str:
    """A payload as DTM's JSON shows its ``[]byte`` ``BinData``: base64 of its text."""
    return base64.b64encode(_text(body).encode()).decode("ascii")


def _url(o: OpRecord) -> str:
    """The op's URL (its target is ``METHOD url`` for an HTTP call)."""
    return o.target.split(" ", 1)[1] if " " in o.target else o.target


def _shown(url: Any) -> str:
    return (mask(url) or "") if isinstance(url, str) else ""


def _call(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _concurrent(tx: TxRecord) -> bool:
    """As DTM's client sets it: a concurrent msg; a saga whose ``custom_data`` makes
    it concurrent (DTM's clients send both together)."""
    if tx.options.get("concurrent") is True:
        return True
    if tx.mode is not Mode.SAGA:
        return False
    try:
        custom = json.loads(str(tx.options.get("custom_data") or "null"))
    except (ValueError, RecursionError):
        return False
    return isinstance(custom, dict) and bool(custom.get("concurrent"))


def _steps(tx: TxRecord, ops: list[OpRecord]) -> tuple[list[dict[str, str]], list[str]]:
    """A saga's steps and payloads (from its definition), a msg's (from its ops)."""
    spec = _call(tx.options.get("spec"))
    if spec.get("steps"):
        steps = [_call(s) for s in spec["steps"]]
        return (
            [
                {
                    "action": _shown(_call(s.get("action")).get("url")),
                    "compensate": _shown(_call(s.get("compensate")).get("url")),
                }
                for s in steps
            ],
            [_text(_call(s.get("action")).get("body")) for s in steps],
        )
    if tx.mode is not Mode.MSG:
        return [], []
    deliveries = sorted((o for o in ops if o.op is OpName.ACTION), key=lambda o: o.seq)
    return (
        [{"action": _shown(_url(o))} for o in deliveries],
        [_text(_call(o.payload).get("body")) for o in deliveries],
    )


def _query_prepared(ops: list[OpRecord]) -> str:
    query = next((o for o in ops if o.op is OpName.MSG), None)
    return _shown(_url(query)) if query is not None else ""


def dtm_transaction(tx: TxRecord, ops: list[OpRecord]) -> dict[str, Any]:
    """The transaction as DTM's ``TransGlobal``; ``ops`` fill its steps, payloads and
    ``query_prepared`` (a list shows its rows without them)."""
    steps, payloads = _steps(tx, ops)
    options = {k: v for k, v in options_view(tx.options).items() if k not in _OWN_OPTIONS}
    custom_data = tx.options.get("custom_data")
    query_prepared = tx.options.get("query_prepared")
    return {
        "id": dtm_id(tx.gid),
        "create_time": _time(tx.created_at),
        "update_time": _time(tx.updated_at),
        "gid": tx.gid,
        "trans_type": str(tx.mode),
        "steps": steps,
        "payloads": payloads,
        "status": DTM_STATUS[tx.status],
        "query_prepared": _shown(query_prepared)
        if isinstance(query_prepared, str)
        else _query_prepared(ops),
        "protocol": "http",
        "finish_time": _time(tx.ended_at) if tx.status is TxStatus.SUCCEEDED else None,
        "rollback_time": _time(tx.ended_at) if tx.status is TxStatus.FAILED else None,
        "options": json.dumps(options),
        "custom_data": custom_data if isinstance(custom_data, str) else "",
        "next_cron_time": _time(tx.next_attempt_at),
        "owner": tx.lease_owner or "",
        "rollback_reason": mask(tx.reason) or "",
        "result": "",
        "concurrent": _concurrent(tx),
    }


def _bodies(tx: TxRecord) -> dict[tuple[str, str], Any]:
    """A saga's ops' bodies, from its definition (its ops do not carry their calls)."""
    out: dict[tuple[str, str], Any] = {}
    for s in _call(tx.options.get("spec")).get("steps") or ():
        step = _call(s)
        for op in ("action", "compensate"):
            out[(str(step.get("name")), op)] = _call(step.get(op)).get("body")
    return out


def dtm_branches(tx: TxRecord, ops: list[OpRecord]) -> list[dict[str, Any]]:
    """The transaction's branches as DTM's ``TransBranch`` rows, in DTM's order: by
    branch, its undo op first."""
    bodies = _bodies(tx)
    shown = [o for o in ops if o.op not in _NOT_BRANCHES]
    first: dict[str, int] = {}
    for o in sorted(shown, key=lambda o: o.seq):
        first.setdefault(o.branch, o.seq)
    out = []
    for o in sorted(shown, key=lambda o: (first[o.branch], o.op not in _UNDO, o.seq)):
        status = _BRANCH_STATUS.get(o.status, "prepared")
        body = _call(o.payload).get("body", bodies.get((o.branch, str(o.op))))
        out.append(
            {
                "id": dtm_id(tx.gid, o.branch, str(o.op)),
                "create_time": _time(tx.created_at),
                "update_time": _time(o.updated_at),
                "gid": tx.gid,
                "url": _shown(_url(o)),
                "bin_data": _bin_data(body),
                "branch_id": o.branch,
                "op": str(o.op),
                "status": status,
                "finish_time": _time(o.updated_at) if status != "prepared" else None,
                "rollback_time": None,
            }
        )
    return out
