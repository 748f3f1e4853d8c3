"""What is never shown: header values and the credentials in URLs.

A transaction's headers (``X-Api-Key``, an ``Authorization`` passed through) and
a participant URL's ``user:password@`` are kept in the log, since the
coordinator needs them to make its calls, but every read path (the HTTP APIs,
the dashboard, the CLI, alerts) shows them through these functions: header
names without their values, URLs with their password masked.

>>> mask("POST http://svc:hunter2@pay:8000/charge failed")
'POST http://svc:***@pay:8000/charge failed'
>>> header_names({"X-Api-Key": "k-123"})
['X-Api-Key']
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ._model import EventRecord, OpRecord, TxRecord

HIDDEN = "***"

# scheme://userinfo@ : the userinfo ends at the first '@' before any '/', blank or quote
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")


def _masked(m: re.Match[str]) -> str:
    user, sep, _ = m.group("userinfo").partition(":")
    # user:password@ keeps the user; a lone userinfo (https://TOKEN@host) is the secret
    return f"{m.group('scheme')}{user}:{HIDDEN}@" if sep else f"{m.group('scheme')}{HIDDEN}@"


def mask(text: str | None) -> str | None:
    """``text`` with the credentials of every URL in it masked (None stays None)."""
    if not text or "@" not in text:
        return text
    return _USERINFO.sub(_masked, text)


def mask_any(value: Any) -> Any:
    """:func:`mask` applied to every string inside a JSON value (an event's detail)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [mask_any(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_any(v) for k, v in value.items()}
    return value


def header_names(headers: object) -> list[str]:
    """The names of ``headers`` (a mapping), never their values."""
    return sorted(headers) if isinstance(headers, Mapping) else []


def options_view(options: Mapping[str, Any]) -> dict[str, Any]:
    """A transaction's options as shown: its stored definition left out (it holds the
    calls, with their headers), its headers as names only."""
    out = {k: v for k, v in options.items() if k not in ("spec", "headers")}
    if "headers" in options:
        out["headers"] = header_names(options["headers"])
    return out


def shown_tx(tx: TxRecord) -> TxRecord:
    """A copy of ``tx`` fit to show: its reasons masked (they quote participants' errors,
    URLs included), its headers' values dropped."""
    options = dict(tx.options)
    if "headers" in options:
        options["headers"] = _hidden(options["headers"])
    spec = options.get("spec")
    if isinstance(spec, Mapping) and isinstance(spec.get("steps"), list):
        options["spec"] = {**spec, "steps": [_step_shown(s) for s in spec["steps"]]}
    return dataclasses.replace(tx, reason=mask(tx.reason), stuck=mask(tx.stuck), options=options)


def _hidden(headers: object) -> dict[str, str]:
    return {name: HIDDEN for name in header_names(headers)}


def _call_shown(call: object) -> object:
    if isinstance(call, Mapping) and isinstance(call.get("headers"), Mapping):
        return {**call, "headers": _hidden(call["headers"])}
    return call


def _step_shown(step: object) -> object:
    if not isinstance(step, Mapping):
        return step
    return {k: _call_shown(v) if k in ("action", "compensate") else v for k, v in step.items()}


def shown_op(op: OpRecord) -> OpRecord:
    """A copy of ``op`` fit to show: its target's and last error's credentials masked, its
    call's headers' values dropped."""
    return dataclasses.replace(
        op,
        target=mask(op.target) or op.target,
        error=mask(op.error),
        payload=_call_shown(op.payload),
    )


def shown_event(event: EventRecord) -> EventRecord:
    return dataclasses.replace(event, detail=mask_any(event.detail))


def shown(
    tx: TxRecord, ops: Sequence[OpRecord], events: Sequence[EventRecord] = ()
) -> tuple[TxRecord, list[OpRecord], list[EventRecord]]:
    """A transaction, its ops and its events, fit to show (see the module docstring)."""
    return shown_tx(tx), [shown_op(o) for o in ops], [shown_event(e) for e in events]
