"""How a transaction reads to a person: its name, its ops' statuses, its events' times.

Pure, shared by ``legato tx list`` / ``tx show`` and the dashboard, so that both say
the same thing:

- **A name** (``title``): the one its caller gave (``options["title"]``: the native
  API's ``name``, DTM's ``custom_data.name``, a flow's first hop); else, for what came
  over HTTP (``wire:saga``, ``wire:tcc``...), one made from its steps: their names, or
  the last part of each step's URL path (``saga: debit, credit``). A log written before
  titles existed reads the same way.
- **An op's status** (``op_status``): an op still ``pending`` once its transaction has
  ended will never run: a compensation is ``not needed``, a forward op ``not reached``;
  a running transaction's pending ops stay ``pending``.
- **A moment in an event's detail** (``detail_text``): an epoch such as
  ``op.retry_scheduled``'s ``at`` reads as a UTC time and how long after the event
  it falls (``at=15:40:12.345 UTC (in 2.1 s)``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from .._model import EventRecord, Json, OpName, OpRecord, OpStatus, TxRecord

BACKWARD = frozenset({OpName.COMPENSATE, OpName.CANCEL, OpName.ROLLBACK})
NOT_NEEDED = "not needed"
NOT_REACHED = "not reached"
TITLE_CHARS = 60
_MOMENTS = frozenset({"at", "until", "due", "deadline", "next_at", "timeout_at", "expires_at"})
_EPOCH_FROM = 946_684_800.0  # 2000-01-01: a number under this is not a moment
_STEPS_SHOWN = 3


def title(
    tx: TxRecord,
    ops: Sequence[OpRecord] = (),
    events: Sequence[EventRecord] = (),
) -> str:
    """The transaction's name as a person reads it (see the module's docstring)."""
    given = tx.options.get("title")
    if isinstance(given, str) and given.strip():
        return _short(given.strip())
    if not tx.name.startswith("wire:"):
        return tx.name
    kind = tx.name.removeprefix("wire:")
    if kind == "flow":
        first = next((e for e in events if e.kind == "hop"), None)
        if first is None:
            return tx.name
        return _short(f"flow: {first.detail.get('event', '?')}")
    parts = _spec_parts(tx.options.get("spec")) or _op_parts(ops)
    if not parts:
        return tx.name
    counts = {part: parts.count(part) for part in parts}  # the same URL path, repeated
    shown = [p if n == 1 else f"{p} x{n}" for p, n in counts.items()]
    more = len(shown) - _STEPS_SHOWN
    text = ", ".join(shown[:_STEPS_SHOWN]) + (f" +{more}" if more > 0 else "")
    return _short(f"{kind}: {text}")


def _short(text: str) -> str:
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


def _spec_parts(spec: Json) -> list[str]:
    if not isinstance(spec, Mapping):
        return []
    steps = spec.get("steps")
    if not isinstance(steps, list):
        return []
    names = [str(s.get("name")) for s in steps if isinstance(s, Mapping)]
    if names and not all(n.isdigit() for n in names):
        return names  # the caller named its steps
    out = []
    for s in steps:
        action = s.get("action") if isinstance(s, Mapping) else None
        url = action.get("url") if isinstance(action, Mapping) else None
        if isinstance(url, str):
            out.append(url_word(url))
    return out


def _op_parts(ops: Iterable[OpRecord]) -> list[str]:
    """What the forward ops call (a TCC's try, an XA's or a message's action)."""
    out = []
    for o in sorted(ops, key=lambda o: o.seq):
        if o.op in (OpName.ACTION, OpName.TRY) and o.target:
            out.append(url_word(o.target.rsplit(" ", 1)[-1]))
    return out


def url_word(url: str) -> str:
    """The last part of a URL's path (``http://bank/api/debit?x=1`` -> ``debit``); its
    host where the path says nothing; a ``broker://`` target's topic."""
    parts = urlsplit(url)
    words = [w for w in parts.path.split("/") if w]
    return words[-1] if words else (parts.netloc or url)


def op_status(ended: bool, op: OpRecord, said: str | None = None) -> str:
    """``op``'s status as shown (see the module's docstring); ``said``: in its own words
    (a workflow's journal entry's), kept but where it only says ``pending``."""
    if said is not None and said != str(OpStatus.PENDING):
        return said
    if ended and op.status is OpStatus.PENDING:
        return NOT_NEEDED if op.op in BACKWARD else NOT_REACHED
    return str(op.status)


def when(ts: float) -> str:
    """A moment in UTC, to the millisecond: ``2026-12-05 15:40:12.345 UTC``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3]


def span(seconds: float) -> str:
    """``0.4 ms``, ``12 ms``, ``1.5 s``, ``3 min``, ``2.1 h``, ``4.0 d``."""
    s = abs(seconds)
    if s < 0.01:
        return f"{s * 1000:.1f} ms".replace(".0 ms", " ms")
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{s / 60:.3g} min"
    if s < 86400:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.1f} d"


def relative(ts: float, since: float) -> str:
    """``in 2.1 s`` or ``3 min ago``, from ``since``."""
    delta = ts - since
    return f"in {span(delta)}" if delta >= 0 else f"{span(delta)} ago"


def moment(ts: float, since: float) -> str:
    """``15:40:12.345 UTC (in 2.1 s)``; the date too when it is not ``since``'s day."""
    same_day = _day(ts) == _day(since)
    text = f"{clock(ts)} UTC" if same_day else when(ts)
    return f"{text} ({relative(ts, since)})"


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def detail_text(detail: Mapping[str, Any], at: float) -> str:
    """An event's detail as ``key=value, ...``, its moments human (see the module's
    docstring)."""
    return ", ".join(f"{k}={detail_value(k, v, at)}" for k, v in detail.items())


def detail_value(key: str, value: Any, at: float) -> str:
    if (
        (key in _MOMENTS or key.endswith("_at"))
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and value >= _EPOCH_FROM
    ):
        return moment(float(value), at)
    return str(value)
