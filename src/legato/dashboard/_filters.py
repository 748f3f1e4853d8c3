"""The transaction list's filters, read from the query string and checked.

Anything wrong (an unknown status, a time that is not one, a page size out of
bounds) is a ``BadFilter`` naming the field, which the page answers with a 400.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from .._model import Mode, TxStatus
from .._moments import moment
from ..log import TxQuery

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
MAX_OFFSET = 1_000_000


class BadFilter(ValueError):
    """A filter of the transaction list is not valid."""


@dataclass(frozen=True, slots=True)
class Filters:
    status: tuple[TxStatus, ...] = ()
    mode: Mode | None = None
    stuck: bool = False
    since: str = ""  # as typed, for the form; parsed into the query
    until: str = ""
    search: str = ""
    limit: int = DEFAULT_LIMIT
    offset: int = 0
    since_at: float | None = field(default=None, compare=False)
    until_at: float | None = field(default=None, compare=False)

    @property
    def active(self) -> bool:
        return bool(
            self.status or self.mode or self.stuck or self.since or self.until or self.search
        )

    def query(self, *, limit: int | None = None, offset: int | None = None) -> TxQuery:
        return TxQuery(
            status=self.status,
            mode=str(self.mode) if self.mode else None,
            stuck=True if self.stuck else None,
            since=self.since_at,
            until=self.until_at,
            search=self.search or None,
            limit=self.limit if limit is None else limit,
            offset=self.offset if offset is None else offset,
        )

    def link(self, offset: int) -> str:
        """The query string of this list at another offset."""
        params: list[tuple[str, str]] = [("status", str(s)) for s in self.status]
        for name, value in (
            ("mode", str(self.mode) if self.mode else ""),
            ("stuck", "1" if self.stuck else ""),
            ("since", self.since),
            ("until", self.until),
            ("q", self.search),
        ):
            if value:
                params.append((name, value))
        if self.limit != DEFAULT_LIMIT:
            params.append(("limit", str(self.limit)))
        if offset:
            params.append(("offset", str(offset)))
        return "?" + urlencode(params) if params else "?"


def parse(params: Mapping[str, Sequence[str]], now: float | None = None) -> Filters:
    """``Filters`` from a query string's values (``{"status": ["failed"], ...}``)."""
    now = time.time() if now is None else now

    def one(name: str) -> str:
        values = params.get(name) or [""]
        return values[-1].strip()

    statuses: list[TxStatus] = []
    for s in params.get("status") or ():
        if not s:
            continue
        try:
            statuses.append(TxStatus(s))
        except ValueError:
            allowed = ", ".join(str(t) for t in TxStatus)
            raise BadFilter(f"status: {s!r} is not a status (one of {allowed})") from None
    mode_text = one("mode")
    try:
        mode = Mode(mode_text) if mode_text else None
    except ValueError:
        allowed = ", ".join(str(m) for m in Mode)
        raise BadFilter(f"mode: {mode_text!r} is not a mode (one of {allowed})") from None
    since, until = one("since"), one("until")
    since_at = parse_time("since", since, now) if since else None
    until_at = parse_time("until", until, now) if until else None
    search = one("q")
    if len(search) > 128:
        raise BadFilter("q: search at most 128 characters of a gid")
    return Filters(
        status=tuple(dict.fromkeys(statuses)),
        mode=mode,
        stuck=one("stuck") in ("1", "on", "true"),
        since=since,
        until=until,
        search=search,
        limit=_int("limit", one("limit"), DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_int("offset", one("offset"), 0, 0, MAX_OFFSET),
        since_at=since_at,
        until_at=until_at,
    )


def parse_time(name: str, text: str, now: float) -> float:
    """An ISO 8601 time (UTC unless it says otherwise) or a span back from now:
    ``90s``, ``15m``, ``2h``, ``7d``."""
    try:
        return moment(text, now, spaced=True)
    except ValueError:
        raise BadFilter(
            f"{name}: {text!r} is neither an ISO time (2026-01-31T12:00) nor a span (15m, 2h)"
        ) from None


def _int(name: str, text: str, default: int, low: int, high: int) -> int:
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadFilter(f"{name}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadFilter(f"{name}: {value} is out of range ({low} to {high})")
    return value
